"""Distribution of one change event: the archive write, then one trigger per targeted customer.

Transport ``s3-events``: a trigger object ``customers/{code}/{id}/v{n:04d}-{event}.json`` (full change
snapshot) per customer; S3 notifies the customer's queue. Transport ``sqs-direct``: one SQS message per
customer with the snapshot embedded, or over ``DIRECT_INLINE_LIMIT`` an S3 reference to
``payloads/{code}/{id}/v{n:04d}-{event}.json``, and a ring of the customer's shard's doorbell
(``services.doorbell``, batched per fan-out). A trigger only rings the bell: the worker decides from
the archive what to send (the snapshot is kept for workers of older releases).

Customers the new version no longer targets (``removed``) get a trigger with event ``removed``: the
worker tells those it had notified, once, that the change no longer affects them.

The ``queued`` delivery record of a customer is written before its trigger, so a fast worker always
finds it. A failed archive write sends nothing; failed destinations can be retried on their own.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from ..errors import describe
from ..models import Change, Config, EmailEvent, direct_message, trigger_key, version_tag
from .aws import AwsFactory
from .changes import ConflictError
from .doorbell import Doorbell
from .status import DeliveryKey, StatusStore

log = logging.getLogger(__name__)

ARCHIVE = "archive"
# sqs-direct: snapshots larger than this (bytes of JSON) travel as an S3 reference.
DIRECT_INLINE_LIMIT = 200 * 1024
PAYLOAD_PREFIX = "payloads/"


class DestinationState(StrEnum):
    PENDING = "pending"
    UPLOADING = "uploading"
    DONE = "done"
    FAILED = "failed"


@dataclass
class ProgressEvent:
    destination: str  # "archive" or a customer code
    state: DestinationState
    error: str | None = None


ProgressCallback = Callable[[ProgressEvent], None]


@dataclass
class FanoutResult:
    change: Change
    event: EmailEvent
    states: dict[str, DestinationState]
    errors: dict[str, str] = field(default_factory=dict)
    # To redo a failed archive write: the ETag it must match (None: the first write, If-None-Match)
    # and the version it supersedes (saved under versions/).
    archive_etag: str | None = field(default=None, repr=False)
    previous: Change | None = field(default=None, repr=False)
    # Destinations the change no longer targets: their trigger's event is ``removed``.
    removed: frozenset[str] = frozenset()

    @property
    def failed(self) -> list[str]:
        return [d for d, s in self.states.items() if s is DestinationState.FAILED]

    @property
    def ok(self) -> bool:
        return all(s is DestinationState.DONE for s in self.states.values())

    @property
    def customers(self) -> list[str]:
        return [d for d in self.states if d != ARCHIVE]

    @property
    def targeted(self) -> list[str]:
        """Destinations that get this event (not a removal notice)."""
        return [d for d in self.customers if d not in self.removed]

    def event_of(self, code: str) -> EmailEvent:
        return EmailEvent.REMOVED if code in self.removed else self.event

    def to_json(self) -> dict[str, Any]:
        return {
            "change_id": self.change.change_id,
            "version": self.change.version,
            "status": self.change.status.value,
            "event": self.event.value,
            "ok": self.ok,
            "failed": self.failed,
            "destinations": [
                {
                    "destination": d,
                    "state": s.value,
                    "error": self.errors.get(d),
                    "event": None if d == ARCHIVE else self.event_of(d).value,
                }
                for d, s in self.states.items()
            ],
        }


def payload_key(code: str, change_id: str, version: int, event: EmailEvent) -> str:
    return f"{PAYLOAD_PREFIX}{code}/{change_id}/{version_tag(version)}-{event.value}.json"


class Fanout:
    def __init__(self, aws: AwsFactory, config: Config, status: StatusStore, *, threads: int = 16) -> None:
        self.aws = aws
        self.config = config
        self.status = status
        self.threads = threads
        self.bucket = config.s3_config.bucket_name
        self._queue_urls: dict[str, str] = {}
        self._lock = threading.Lock()
        self.doorbell = Doorbell(aws, config)

    @staticmethod
    def start(
        change: Change,
        event: EmailEvent,
        customers: list[str],
        *,
        archive: bool,
        archive_etag: str | None = None,
        previous: Change | None = None,
        removed: list[str] | None = None,
    ) -> FanoutResult:
        """A result with every destination pending (the archive first when it is to be written), the
        ``removed`` customers after the targeted ones."""
        states = {ARCHIVE: DestinationState.PENDING} if archive else {}
        states.update({c: DestinationState.PENDING for c in customers})
        gone = [c for c in removed or [] if c not in states]
        states.update({c: DestinationState.PENDING for c in gone})
        return FanoutResult(
            change, event, states, archive_etag=archive_etag, previous=previous, removed=frozenset(gone)
        )

    def run(
        self,
        result: FanoutResult,
        *,
        archive: Callable[[], None] | None = None,
        progress: ProgressCallback | None = None,
    ) -> FanoutResult:
        """Send every destination of ``result`` not yet done; returns a new result.

        ``archive`` writes the archive (required when the archive is not done). ``progress`` is
        called from worker threads, one call at a time.
        """
        result = replace(result, states=dict(result.states), errors=dict(result.errors))
        lock = threading.Lock()

        def emit(dest: str, state: DestinationState, error: str | None = None) -> None:
            with lock:
                result.states[dest] = state
                if error is None:
                    result.errors.pop(dest, None)
                else:
                    result.errors[dest] = error
                if progress is not None:
                    try:
                        progress(ProgressEvent(dest, state, error))
                    except Exception:  # a display bug must not break the fan-out
                        log.exception("progress callback failed")

        todo = [c for c in result.customers if result.states[c] is not DestinationState.DONE]
        archive_todo = result.states.get(ARCHIVE) not in (None, DestinationState.DONE)
        for dest in ([ARCHIVE] if archive_todo else []) + todo:
            emit(dest, DestinationState.PENDING)
        if archive_todo:
            if archive is None:
                raise ValueError("the archive is not written yet and no archive writer was given")
            emit(ARCHIVE, DestinationState.UPLOADING)
            try:
                archive()
            except ConflictError as exc:
                emit(ARCHIVE, DestinationState.FAILED, str(exc))
                raise
            except Exception as exc:  # reported per destination; nothing else is sent
                emit(ARCHIVE, DestinationState.FAILED, describe(exc))
                return result
            emit(ARCHIVE, DestinationState.DONE)
        if not todo:
            return result
        snapshot = result.change.to_json_dict()
        body = json.dumps(snapshot, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

        def one(code: str) -> None:
            emit(code, DestinationState.UPLOADING)
            try:
                self._send(code, result.change, result.event_of(code), snapshot, body)
            except Exception as exc:  # one customer's failure never stops the others
                emit(code, DestinationState.FAILED, describe(exc))
            else:
                emit(code, DestinationState.DONE)

        try:
            with ThreadPoolExecutor(max_workers=max(1, min(self.threads, len(todo)))) as pool:
                list(pool.map(one, todo))
        finally:
            self.doorbell.flush()
        return result

    # -- transports ---------------------------------------------------------------------
    def _send(
        self, code: str, change: Change, event: EmailEvent, snapshot: dict[str, Any], body: bytes
    ) -> None:
        self.config.customer(code)  # unknown customer: fail this destination, never write a stray trigger
        key = DeliveryKey(change.change_id, change.version, event, code)
        self.status.put_queued(key)
        if self.config.transport == "sqs-direct":
            self._send_direct(code, change, event, snapshot, body)
        else:
            self.aws.client("s3").put_object(
                Bucket=self.bucket,
                Key=trigger_key(code, change.change_id, change.version, event),
                Body=body,
                ContentType="application/json",
            )

    def _send_direct(
        self, code: str, change: Change, event: EmailEvent, snapshot: dict[str, Any], body: bytes
    ) -> None:
        mapping = self.config.customer(code)
        if len(body) > DIRECT_INLINE_LIMIT:
            key = payload_key(code, change.change_id, change.version, event)
            self.aws.client("s3").put_object(
                Bucket=self.bucket, Key=key, Body=body, ContentType="application/json"
            )
            message = direct_message(
                code, change.change_id, change.version, event, bucket=self.bucket, key=key
            )
        else:
            message = direct_message(code, change.change_id, change.version, event, change=snapshot)
        sqs = self.aws.client("sqs", mapping.queue_region)
        sqs.send_message(QueueUrl=self.queue_url(code), MessageBody=message)
        self.doorbell.add(code)

    def queue_url(self, code: str) -> str:
        """The customer's queue URL (looked up once, then cached)."""
        with self._lock:
            url = self._queue_urls.get(code)
        if url is not None:
            return url
        mapping = self.config.customer(code)
        sqs = self.aws.client("sqs", mapping.queue_region)
        url = str(
            sqs.get_queue_url(QueueName=mapping.queue_name, QueueOwnerAWSAccountId=mapping.queue_account)[
                "QueueUrl"
            ]
        )
        with self._lock:
            self._queue_urls[code] = url
        return url
