"""Audit events: each one logged at once (``changeconsole.audit``) and written to S3 as JSON lines,
``audit/{yyyy}/{mm}/{dd}/{source}-{uuid}.jsonl``, by the worker, the DLQ tools, the resend action and
the contact, topic and customer administration (``admin_audit``).

Events are buffered and written as one object per ``flush``; a batch S3 refuses stays buffered for the
next flush. Nothing here logs a message body, an email body or a credential.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..errors import describe
from ..models import Config
from .aws import AwsFactory

audit_log = logging.getLogger("changeconsole.audit")
audit_log.addHandler(logging.NullHandler())  # silent unless the application configures logging


def operator_name(aws: AwsFactory, log: logging.Logger = audit_log) -> str:
    """Who acts, for audit records: the AWS caller (or ``CHANGECONSOLE_OPERATOR``), else the OS user."""
    try:
        return aws.operator_identity()
    except (ClientError, BotoCoreError) as exc:  # the action goes on; the record names the local user
        log.warning("operator identity unavailable: %s", describe(exc))
        return os.environ.get("USER") or "unknown"


class AuditLog:
    """Audit events to the log at once and to S3 ``audit/`` as batched JSON-lines objects."""

    MAX_BUFFER = 20_000

    def __init__(
        self,
        aws: AwsFactory,
        config: Config,
        *,
        source: str = "worker",
        max_batch: int = 500,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.aws = aws
        self.bucket = config.s3_config.bucket_name
        self.source = source
        self.max_batch = max_batch
        self.clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._buffer: list[dict[str, Any]] = []
        self.objects_written = 0

    def entry(self, kind: str, **fields: Any) -> dict[str, Any]:
        """One event of type ``kind`` (None fields dropped), stamped now."""
        entry = {"ts": self.clock().isoformat(timespec="milliseconds"), "type": kind}
        entry.update({k: v for k, v in fields.items() if v is not None})
        return entry

    def record(self, kind: str, **fields: Any) -> None:
        """``entry(kind, **fields)``, buffered for the next object."""
        self.add(self.entry(kind, **fields))

    def add(self, entry: dict[str, Any]) -> None:
        """Log ``entry`` and buffer it for the next object (written at once when the buffer is full)."""
        self._log(entry)
        with self._lock:
            self._buffer.append(entry)
            if len(self._buffer) > self.MAX_BUFFER:
                del self._buffer[: len(self._buffer) - self.MAX_BUFFER]
            full = len(self._buffer) >= self.max_batch
        if full:
            self.flush()

    def write(self, entries: list[dict[str, Any]]) -> str | None:
        """Log ``entries`` and write them as one object now, unbuffered: its key, None when S3 refused."""
        for entry in entries:
            self._log(entry)
        return self._put(entries)

    def pending(self) -> int:
        with self._lock:
            return len(self._buffer)

    def flush(self) -> str | None:
        """Write buffered events as one object (its key); on failure keep them for the next flush."""
        with self._flush_lock:
            with self._lock:
                batch, self._buffer = self._buffer, []
            if not batch:
                return None
            key = self._put(batch)
            if key is None:
                with self._lock:
                    self._buffer[:0] = batch
            return key

    @staticmethod
    def _log(entry: dict[str, Any]) -> None:
        name = str(entry.get("type") or entry.get("action") or "audit")
        audit_log.info(name, extra={"cc": {k: v for k, v in entry.items() if k != "type"}})

    def _put(self, entries: list[dict[str, Any]]) -> str | None:
        now = self.clock()
        key = f"audit/{now:%Y/%m/%d}/{self.source}-{uuid.uuid4()}.jsonl"
        body = "".join(json.dumps(e, default=str, ensure_ascii=False) + "\n" for e in entries)
        try:
            self.aws.client("s3").put_object(
                Bucket=self.bucket, Key=key, Body=body.encode("utf-8"), ContentType="application/x-ndjson"
            )
        except Exception as exc:  # audit never stops the action it records
            error = f"{type(exc).__name__}: {exc}"[:300]
            audit_log.warning("audit.write_failed", extra={"cc": {"error": error, "events": len(entries)}})
            return None
        self.objects_written += 1
        return key
