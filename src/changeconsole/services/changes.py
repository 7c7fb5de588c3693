"""Change documents in the S3 metadata bucket (docs/architecture.md).

``drafts/{id}.json`` (never trigger anything), ``archive/{id}.json`` (the single source of truth:
created with ``If-None-Match: *``, every update with ``If-Match: <etag>``), ``versions/{id}/v{n}.json``
(every superseded version) and ``deleted/{id}.json`` (soft deletes).
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from ..errors import InputError, OperationError, error_code, http_status, is_missing_object
from ..models import Change, Config
from .aws import AwsFactory

DRAFTS = "drafts/"
ARCHIVE = "archive/"
VERSIONS = "versions/"
DELETED = "deleted/"
_VERSION_KEY_RE = re.compile(r"/v(\d+)\.json$")
# S3 answers a failed If-Match/If-None-Match with 412, a concurrent conditional write with 409.
_CONFLICT_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "412", "409"})


class ConflictError(OperationError):
    """Someone else changed the archived change since it was read; nothing was overwritten (exit 1)."""

    title = "Error"

    def __init__(
        self,
        change_id: str,
        modified_by: str | None,
        modified_at: str | None,
        *,
        current: Change | None = None,
        detail: str | None = None,
    ) -> None:
        self.change_id = change_id
        self.modified_by = modified_by
        self.modified_at = modified_at
        self.current = current
        state = f" (now version {current.version}, {current.status.value})" if current else ""
        message = (
            f"{change_id} was changed by {modified_by or 'someone else'} "
            f"at {modified_at or 'an unknown time'}{state}; reload it and try again"
        )
        if detail:
            message += f" ({detail})"
        super().__init__(message)


class ChangeNotFound(InputError):
    """No such change (where it was looked for): exit 2."""

    title = "Error"

    def __init__(self, change_id: str, where: str = "") -> None:
        super().__init__(f"no change {change_id}" + (f" in {where}" if where else ""))
        self.change_id = change_id
        self.where = where


@dataclass
class Stored:
    """A change as read from S3 with the ETag to make the next write conditional on."""

    change: Change
    etag: str


def is_conflict(exc: ClientError) -> bool:
    """S3 refused a conditional write: the object changed (412) or another write raced it (409)."""
    return error_code(exc) in _CONFLICT_CODES or http_status(exc) in (409, 412)


def _body(change: Change) -> bytes:
    return change.to_json().encode("utf-8")


def parse_change(raw: bytes | str) -> Change:
    """A stored change (no config context: customers removed from the config still load)."""
    return Change.model_validate(json.loads(raw))


class ChangeStore:
    def __init__(self, aws: AwsFactory, config: Config, *, threads: int = 16) -> None:
        self.aws = aws
        self.config = config
        self.bucket = config.s3_config.bucket_name
        self.threads = threads

    @property
    def _s3(self) -> Any:
        return self.aws.client("s3")

    @staticmethod
    def draft_key(change_id: str) -> str:
        return f"{DRAFTS}{change_id}.json"

    @staticmethod
    def archive_key(change_id: str) -> str:
        return f"{ARCHIVE}{change_id}.json"

    @staticmethod
    def version_key(change_id: str, version: int) -> str:
        return f"{VERSIONS}{change_id}/v{version}.json"

    @staticmethod
    def deleted_key(change_id: str) -> str:
        return f"{DELETED}{change_id}.json"

    # -- plumbing --------------------------------------------------------------------
    def _get(self, key: str, change_id: str, where: str) -> Stored:
        try:
            resp = self._s3.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if is_missing_object(exc):
                raise ChangeNotFound(change_id, where) from None
            raise
        return Stored(parse_change(resp["Body"].read()), resp["ETag"])

    def _put(self, key: str, change: Change, **conditions: str) -> str:
        resp = self._s3.put_object(
            Bucket=self.bucket, Key=key, Body=_body(change), ContentType="application/json", **conditions
        )
        return str(resp["ETag"])

    def _delete(self, key: str) -> None:
        self._s3.delete_object(Bucket=self.bucket, Key=key)

    def _keys(self, prefix: str) -> list[str]:
        keys: list[str] = []
        for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            keys.extend(obj["Key"] for obj in page.get("Contents", []))
        return keys

    def _conflict(self, change: Change, exc: ClientError) -> ConflictError:
        """Name who holds the archive now (read back after a failed conditional write)."""
        try:
            current = self.get(change.change_id).change
        except (ChangeNotFound, ClientError):
            return ConflictError(change.change_id, None, None, detail=error_code(exc))
        return ConflictError(change.change_id, current.modified_by, current.modified_at, current=current)

    # -- drafts ------------------------------------------------------------------------
    def save_draft(self, change: Change) -> str:
        """Write ``drafts/{id}.json`` (unconditionally: drafts are one operator's scratch pad)."""
        return self._put(self.draft_key(change.change_id), change)

    def load_draft(self, change_id: str) -> Change:
        return self._get(self.draft_key(change_id), change_id, "drafts").change

    def list_drafts(self) -> list[str]:
        """Ids of every draft."""
        return sorted(k[len(DRAFTS) : -len(".json")] for k in self._keys(DRAFTS) if k.endswith(".json"))

    def delete_draft(self, change_id: str) -> None:
        self._delete(self.draft_key(change_id))

    def draft_exists(self, change_id: str) -> bool:
        return self._exists(self.draft_key(change_id))

    def _exists(self, key: str) -> bool:
        try:
            self._s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if is_missing_object(exc):
                return False
            raise
        return True

    # -- archive ----------------------------------------------------------------------
    def get(self, change_id: str) -> Stored:
        """The current archived version and its ETag."""
        return self._get(self.archive_key(change_id), change_id, "archive")

    def find(self, change_id: str) -> Stored | None:
        try:
            return self.get(change_id)
        except ChangeNotFound:
            return None

    def create(self, change: Change) -> str:
        """First archive write (``If-None-Match: *``); ConflictError when it already exists."""
        try:
            return self._put(self.archive_key(change.change_id), change, IfNoneMatch="*")
        except ClientError as exc:
            if is_conflict(exc):
                raise self._conflict(change, exc) from None
            raise

    def update(self, change: Change, etag: str) -> str:
        """Replace the archive only if it still has ``etag``; ConflictError otherwise."""
        try:
            return self._put(self.archive_key(change.change_id), change, IfMatch=etag)
        except ClientError as exc:
            if is_conflict(exc):
                raise self._conflict(change, exc) from None
            if is_missing_object(exc):
                raise ChangeNotFound(change.change_id, "archive") from None
            raise

    # -- versions ---------------------------------------------------------------------
    def put_version(self, change: Change) -> str:
        """Save a superseded version under ``versions/{id}/v{n}.json`` (same content when repeated)."""
        return self._put(self.version_key(change.change_id, change.version), change)

    def get_version(self, change_id: str, version: int) -> Change:
        return self._get(self.version_key(change_id, version), change_id, f"versions (v{version})").change

    def version_numbers(self, change_id: str) -> list[int]:
        """Numbers of every saved superseded version, ascending."""
        numbers = set()
        for key in self._keys(f"{VERSIONS}{change_id}/"):
            match = _VERSION_KEY_RE.search(key)
            if match:
                numbers.add(int(match.group(1)))
        return sorted(numbers)

    def versions(self, change_id: str) -> list[Change]:
        """Every saved superseded version, oldest first (read in parallel)."""
        numbers = self.version_numbers(change_id)
        if not numbers:
            return []
        with ThreadPoolExecutor(max_workers=min(self.threads, len(numbers))) as pool:
            return list(pool.map(lambda n: self.get_version(change_id, n), numbers))

    # -- soft delete -------------------------------------------------------------------
    def soft_delete(self, change: Change, *, from_archive: bool) -> None:
        """Copy to ``deleted/{id}.json``, then remove the draft or archive object."""
        self._put(self.deleted_key(change.change_id), change)
        if from_archive:
            self._delete(self.archive_key(change.change_id))
        else:
            self._delete(self.draft_key(change.change_id))

    def get_deleted(self, change_id: str) -> Change:
        return self._get(self.deleted_key(change_id), change_id, "deleted").change
