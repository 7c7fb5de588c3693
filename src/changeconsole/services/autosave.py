"""Local autosave of unfinished changes in the XDG data dir, so nothing typed is lost.

Works without AWS. Stores raw form data as given (possibly an invalid change), one JSON file per key
under ``config.data_dir()/autosave/``; every write is atomic (temp file + rename).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import aiofiles
import aiofiles.os

from ..config import data_dir
from ..models import Change, iso_utc, utcnow

SUFFIX = ".json"


@dataclass
class AutosaveEntry:
    key: str
    saved_at: str
    path: Path


def _document(key: str, data: Mapping[str, Any] | Change) -> str:
    payload = data.to_json_dict() if isinstance(data, Change) else dict(data)
    doc = {"key": key, "saved_at": iso_utc(utcnow()), "data": payload}
    return json.dumps(doc, indent=2, ensure_ascii=False, default=str)


def _data_of(text: str) -> dict[str, Any] | None:
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    data = doc.get("data") if isinstance(doc, dict) else None
    return data if isinstance(data, dict) else None


class AutosaveStore:
    """``await save(key, data)`` / ``await load(key)``, ``list()``, ``delete(key)``; ``*_sync`` twins."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or data_dir() / "autosave"

    def path(self, key: str) -> Path:
        if not key:
            raise ValueError("autosave key must not be empty")
        return self.directory / (quote(key, safe="-_.") + SUFFIX)

    def _tmp(self, key: str) -> Path:
        return self.directory / f".{quote(key, safe='-_.')}.{uuid.uuid4().hex}.tmp"

    # -- async ------------------------------------------------------------------
    async def save(self, key: str, data: Mapping[str, Any] | Change) -> Path:
        target, tmp = self.path(key), self._tmp(key)
        text = _document(key, data)
        await aiofiles.os.makedirs(self.directory, exist_ok=True)
        try:
            async with aiofiles.open(tmp, "w", encoding="utf-8") as fh:
                await fh.write(text)
                await fh.flush()
                os.fsync(fh.fileno())
            await aiofiles.os.replace(tmp, target)
        finally:
            if await aiofiles.os.path.exists(tmp):
                await aiofiles.os.remove(tmp)
        return target

    async def load(self, key: str) -> dict[str, Any] | None:
        """The saved data, or None when nothing (readable) is saved under ``key``."""
        try:
            async with aiofiles.open(self.path(key), encoding="utf-8") as fh:
                text = await fh.read()
        except FileNotFoundError:
            return None
        return _data_of(text)

    # -- sync -------------------------------------------------------------------
    def save_sync(self, key: str, data: Mapping[str, Any] | Change) -> Path:
        target, tmp = self.path(key), self._tmp(key)
        text = _document(key, data)
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return target

    def load_sync(self, key: str) -> dict[str, Any] | None:
        try:
            text = self.path(key).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        return _data_of(text)

    def list(self) -> list[AutosaveEntry]:
        """Every autosaved entry, newest first."""
        if not self.directory.is_dir():
            return []
        entries = []
        for path in self.directory.glob(f"*{SUFFIX}"):
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            saved_at = doc.get("saved_at", "") if isinstance(doc, dict) else ""
            entries.append(AutosaveEntry(unquote(path.name[: -len(SUFFIX)]), str(saved_at), path))
        entries.sort(key=lambda e: (e.saved_at, e.key), reverse=True)
        return entries

    def delete(self, key: str) -> bool:
        """Remove an entry; True when one existed."""
        try:
            self.path(key).unlink()
        except FileNotFoundError:
            return False
        return True
