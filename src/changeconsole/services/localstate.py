"""The local stack's data kept across restarts (moto keeps everything in memory).

What is kept: every object of the bucket (changes, versions, drafts, audit, pending triggers), every
item of the status and ledger tables, and each customer account's contacts (operators edit them).
Queues are not: a trigger still in the bucket rings again when it is put back, so a delivery that was
pending resumes (the ledger makes a repeat harmless); dead-lettered messages are lost.

The data is one JSON file (``state_path()``, under the XDG data dir), written atomically (a temporary
file renamed over it) by ``LocalState.save``: when the stack stops cleanly and every ``interval``
seconds meanwhile (``Autosaver``). ``LocalState.restore`` puts it back into a freshly provisioned stack.
``changeconsole local reset`` deletes the file.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..config import data_dir
from ..models import Config, iso_utc
from .aws import AwsFactory

log = logging.getLogger(__name__)

FORMAT = "changeconsole.local-state/1"
TRIGGERS = "customers/"  # put back last: each rings the customer's queue again
BATCH = 25  # DynamoDB BatchWriteItem limit


def state_path() -> Path:
    return data_dir() / "local" / "state.json"


@dataclass(frozen=True)
class StateSummary:
    path: Path
    objects: int
    items: int
    contacts: int
    saved_at: str = ""

    def text(self) -> str:
        return f"{self.objects} objects, {self.items} table items, {self.contacts} contacts"


def _encode(value: Any) -> Any:
    """DynamoDB JSON with binary values (bytes) as ``{"__b64__": …}``."""
    if isinstance(value, bytes):
        return {"__b64__": base64.b64encode(value).decode("ascii")}
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__b64__"}:
            return base64.b64decode(value["__b64__"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _raw_contacts(ses: Any, list_name: str) -> Iterator[dict[str, Any]]:
    """Every contact of the list as SES returns it (following NextToken)."""
    kwargs: dict[str, Any] = {"ContactListName": list_name, "PageSize": 1000}
    while True:
        page = ses.list_contacts(**kwargs)
        yield from (c for c in page.get("Contacts") or [] if c.get("EmailAddress"))
        if not page.get("NextToken"):
            return
        kwargs["NextToken"] = page["NextToken"]


class LocalState:
    """Save the local stack's data to ``path`` and put it back (``aws``: clients of the local stack)."""

    def __init__(self, aws: AwsFactory, config: Config, path: Path | None = None) -> None:
        self.aws = aws
        self.config = config
        self.path = path or state_path()
        self._lock = threading.Lock()

    @property
    def tables(self) -> list[str]:
        return [self.config.status_table_name, self.config.ledger_table_name]

    # -- reading the stack -------------------------------------------------------------------
    def _objects(self) -> Iterator[dict[str, Any]]:
        s3 = self.aws.client("s3")
        bucket = self.config.s3_config.bucket_name
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for entry in page.get("Contents", []):
                try:
                    obj = s3.get_object(Bucket=bucket, Key=entry["Key"])
                except s3.exceptions.NoSuchKey:  # deleted since the listing (a trigger consumed)
                    continue
                yield {
                    "key": entry["Key"],
                    "body": base64.b64encode(obj["Body"].read()).decode("ascii"),
                    "content_type": obj.get("ContentType") or "application/octet-stream",
                    "metadata": obj.get("Metadata") or {},
                }

    def _items(self, table: str) -> list[Any]:
        ddb = self.aws.client("dynamodb")
        items: list[Any] = []
        for page in ddb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
            items.extend(_encode(item) for item in page.get("Items", []))
        return items

    def _contacts(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for code, mapping in sorted(self.config.customer_mappings.items()):
            ses = self.aws.customer_client(mapping, "sesv2")
            list_name = self.config.contact_list_for(code)
            out[code] = [
                {
                    "EmailAddress": c["EmailAddress"],
                    "TopicPreferences": c.get("TopicPreferences") or [],
                    "UnsubscribeAll": bool(c.get("UnsubscribeAll")),
                    **({"AttributesData": c["AttributesData"]} if c.get("AttributesData") else {}),
                }
                for c in _raw_contacts(ses, list_name)
            ]
        return out

    def snapshot(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "saved_at": iso_utc(datetime.now(UTC)),
            "bucket": self.config.s3_config.bucket_name,
            "objects": list(self._objects()),
            "tables": {table: self._items(table) for table in self.tables},
            "contacts": self._contacts(),
        }

    # -- the file ------------------------------------------------------------------------------
    def save(self) -> StateSummary:
        """Write the stack's data to ``path`` atomically (a reader never sees half a file)."""
        with self._lock:
            data = self.snapshot()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(data, fh, ensure_ascii=False, separators=(",", ":"))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        return summary_of(self.path, data)

    def load(self) -> dict[str, Any] | None:
        """The saved data, None when there is none; ValueError when the file is not ours."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{self.path} is not readable saved local data: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"{self.path} is not saved local data ({FORMAT})")
        return data

    def restore(self) -> StateSummary | None:
        """Put the saved data back into the (freshly provisioned) stack; None when nothing is saved."""
        data = self.load()
        if data is None:
            return None
        for table, items in (data.get("tables") or {}).items():
            if table in self.tables:
                self._put_items(table, [_decode(i) for i in items])
        for code, contacts in (data.get("contacts") or {}).items():
            if code in self.config.customer_mappings:
                self._put_contacts(code, contacts)
        objects = sorted(data.get("objects") or [], key=lambda o: o["key"].startswith(TRIGGERS))
        s3 = self.aws.client("s3")
        bucket = self.config.s3_config.bucket_name
        for obj in objects:
            s3.put_object(
                Bucket=bucket,
                Key=obj["key"],
                Body=base64.b64decode(obj["body"]),
                ContentType=obj.get("content_type") or "application/octet-stream",
                Metadata=obj.get("metadata") or {},
            )
        return summary_of(self.path, data)

    def _put_items(self, table: str, items: list[dict[str, Any]]) -> None:
        ddb = self.aws.client("dynamodb")
        for start in range(0, len(items), BATCH):
            pending: dict[str, Any] = {
                table: [{"PutRequest": {"Item": item}} for item in items[start : start + BATCH]]
            }
            for attempt in range(10):
                unprocessed = ddb.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
                if not unprocessed:
                    break
                pending = unprocessed
                time.sleep(0.05 * (attempt + 1))
            else:
                raise RuntimeError(f"{table}: items not written after 10 attempts")

    def _put_contacts(self, code: str, saved: list[dict[str, Any]]) -> None:
        """Make the customer's contact list hold exactly the saved contacts."""
        mapping = self.config.customer_mappings[code]
        ses = self.aws.customer_client(mapping, "sesv2")
        list_name = self.config.contact_list_for(code)
        wanted = {c["EmailAddress"]: c for c in saved}
        present = {c["EmailAddress"] for c in _raw_contacts(ses, list_name)}
        for address in sorted(present - set(wanted)):
            ses.delete_contact(ContactListName=list_name, EmailAddress=address)
        for address, contact in sorted(wanted.items()):
            fields = {k: v for k, v in contact.items() if k != "EmailAddress"}
            if address in present:
                ses.update_contact(ContactListName=list_name, EmailAddress=address, **fields)
            else:
                ses.create_contact(ContactListName=list_name, EmailAddress=address, **fields)


def summary_of(path: Path, data: dict[str, Any]) -> StateSummary:
    return StateSummary(
        path=path,
        objects=len(data.get("objects") or []),
        items=sum(len(v) for v in (data.get("tables") or {}).values()),
        contacts=sum(len(v) for v in (data.get("contacts") or {}).values()),
        saved_at=str(data.get("saved_at") or ""),
    )


def reset(path: Path | None = None) -> bool:
    """Delete the saved local data; True when there was some."""
    target = path or state_path()
    try:
        target.unlink()
    except FileNotFoundError:
        return False
    for leftover in target.parent.glob(f".{target.name}.*.tmp"):
        with contextlib.suppress(OSError):
            leftover.unlink()
    return True


class Autosaver:
    """Saves ``state`` every ``interval`` seconds in a daemon thread; ``stop()`` saves one last time."""

    def __init__(self, state: LocalState, interval: float = 30.0) -> None:
        self.state = state
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="local-state-autosave", daemon=True)
        self.last: StateSummary | None = None
        self.error: str | None = None

    def start(self) -> Autosaver:
        self._thread.start()
        return self

    def _save(self) -> None:
        try:
            self.last = self.state.save()
            self.error = None
        except Exception as exc:  # kept for the next try; the stack goes on
            self.error = str(exc)
            log.warning("saving the local stack's data to %s failed: %s", self.state.path, exc)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._save()

    def stop(self) -> StateSummary | None:
        """Stop the timer and save now (call before the stack stops)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.interval + 30)
        self._save()
        return self.last


def keep_local_data(
    config: Config,
    endpoint: str,
    *,
    path: Path | None = None,
    interval: float = 30.0,
    progress: Callable[[str], None] | None = None,
) -> tuple[Autosaver, StateSummary | None]:
    """For a stack this process started and provisioned: put the saved data back, then keep saving it
    (``Autosaver``; its ``stop()`` saves once more and must run before the stack stops).

    A saved file that cannot be read is moved aside (``state.json.unreadable-<time>``), never
    overwritten, and the stack starts empty."""
    from .localstack import local_factory

    state = LocalState(local_factory(endpoint, max_attempts=3), config, path)
    say = progress or (lambda _: None)
    try:
        restored = state.restore()
    except ValueError as exc:
        aside = state.path.with_name(f"{state.path.name}.unreadable-{datetime.now(UTC):%Y%m%dT%H%M%SZ}")
        os.replace(state.path, aside)
        say(f"{exc}; moved aside to {aside}, starting empty")
        restored = None
    if restored is None:
        say(f"no saved local data yet: it is kept in {state.path}")
    else:
        say(f"local data restored from {state.path}: {restored.text()}")
    return Autosaver(state, interval).start(), restored
