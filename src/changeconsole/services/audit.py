"""The audit trail: events logged at once (``changeconsole.audit``) and written to S3 as JSON lines,
``audit/{yyyy}/{mm}/{dd}/{source}-{uuid}.jsonl`` (the writer's UTC date), and searched back.

Writers: the worker (``worker-…``, buffered, one object per ``flush``; a batch S3 refuses stays buffered
for the next flush) and every operator action through ``services.authz`` (one object per action, with
``source`` the front end: ``cli-…``, ``console-…``; an action that changed many items, e.g. a contacts
import, adds a ``<action>.item`` line per item). With ``audit_retention.object_lock_mode`` each object
is written under S3 Object Lock for ``object_lock_days``.

An operator action record (``type`` ``operator.action``) says who (``operator``, ``operator_arn``,
``permission_set``, ``roles``), what (``action``, e.g. ``change.approve``), on what (``change_id``,
``version``, ``customers``), the ``result`` (``ok``, ``partial``, ``failed``, ``rejected``, ``refused``),
``detail`` and when (``ts``). ``AuditReader`` reads records of a date range (one listing per day) and
filters them; records of earlier releases (DLQ ``action``/``operator``, resend ``actor``) read the same.

Nothing here logs a message body, an email body or a credential.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from ..errors import InputError, describe
from ..models import AuditRetention, Config, OperatorAction
from .aws import AwsFactory

if TYPE_CHECKING:
    from .authz import Authorizer

AUDIT_PREFIX = "audit/"
OPERATOR_ACTION = "operator.action"
# Results of an operator action.
OK, PARTIAL, FAILED, REJECTED, REFUSED = "ok", "partial", "failed", "rejected", "refused"

audit_log = logging.getLogger("changeconsole.audit")
audit_log.addHandler(logging.NullHandler())  # silent unless the application configures logging


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
        self.retention: AuditRetention = config.audit_retention
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
        kwargs: dict[str, Any] = {}
        if self.retention.object_lock_mode and self.retention.object_lock_days:
            kwargs["ObjectLockMode"] = self.retention.object_lock_mode
            kwargs["ObjectLockRetainUntilDate"] = now + timedelta(days=self.retention.object_lock_days)
        try:
            self.aws.client("s3").put_object(
                Bucket=self.bucket,
                Key=key,
                Body=body.encode("utf-8"),
                ContentType="application/x-ndjson",
                **kwargs,
            )
        except Exception as exc:  # audit never stops the action it records
            error = f"{type(exc).__name__}: {exc}"[:300]
            audit_log.warning("audit.write_failed", extra={"cc": {"error": error, "events": len(entries)}})
            return None
        self.objects_written += 1
        return key


# -- reading ------------------------------------------------------------------------------------------


@dataclass
class AuditEntry:
    """One audit record as search sees it (``raw`` is the record as written)."""

    ts: datetime
    action: str
    operator: str | None
    result: str | None
    customers: list[str]
    change_id: str | None
    version: int | None
    roles: list[str]
    key: str
    raw: dict[str, Any]

    @property
    def operator_action(self) -> bool:
        return self.operator is not None

    def to_json(self) -> dict[str, Any]:
        data = {k: v for k, v in self.raw.items()}
        data.update(
            ts=self.ts.isoformat().replace("+00:00", "Z"),
            action=self.action,
            operator=self.operator,
            result=self.result,
            customers=self.customers,
            change_id=self.change_id,
            version=self.version,
            roles=self.roles,
            key=self.key,
        )
        return data


def parse_entry(raw: dict[str, Any], key: str) -> AuditEntry | None:
    """A record of any writer, old or new, in one shape; None when it has no readable time."""
    try:
        ts = datetime.fromisoformat(str(raw.get("ts", "")).replace("z", "Z"))
    except ValueError:
        return None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    kind = raw.get("type")
    action = raw.get("action") if kind in (None, OPERATOR_ACTION) else kind
    action = str(action or kind or "?")
    if raw.get("source") == "dlq" and "." not in action:  # DLQ records of earlier releases
        action = f"dlq.{action}"
    operator = raw.get("operator") or raw.get("actor")
    customers = raw.get("customers")
    if not isinstance(customers, list):
        customers = [raw["customer"]] if isinstance(raw.get("customer"), str) else []
    version = raw.get("version")
    roles = raw.get("roles")
    return AuditEntry(
        ts=ts.astimezone(UTC),
        action=action,
        operator=str(operator) if operator else None,
        result=raw.get("result") if isinstance(raw.get("result"), str) else None,
        customers=[str(c) for c in customers],
        change_id=raw.get("change_id") if isinstance(raw.get("change_id"), str) else None,
        version=version if isinstance(version, int) else None,
        roles=[str(r) for r in roles] if isinstance(roles, list) else [],
        key=key,
        raw=raw,
    )


@dataclass
class AuditQuery:
    """Which records: a time range and optional filters (globs for operator and action)."""

    since: datetime
    until: datetime
    operator: str | None = None
    customer: str | None = None
    change_id: str | None = None
    action: str | None = None
    result: str | None = None
    include_worker: bool = False  # the worker's delivery events too, not only operator actions
    limit: int = 1000

    def matches(self, entry: AuditEntry) -> bool:
        if not (self.since <= entry.ts <= self.until):
            return False
        if not self.include_worker and not entry.operator_action:
            return False
        if self.operator and not _glob(entry.operator or "", self.operator):
            return False
        if self.customer and self.customer not in entry.customers:
            return False
        if self.change_id and entry.change_id != self.change_id:
            return False
        if self.result and entry.result != self.result:
            return False
        return not self.action or _glob(entry.action, self.action) or entry.action.endswith("." + self.action)


def _glob(value: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(value.casefold(), pattern.casefold())


@dataclass
class AuditSearchResult:
    entries: list[AuditEntry]
    matched: int
    objects_read: int
    days: int
    errors: list[str] = field(default_factory=list)

    @property
    def truncated(self) -> bool:
        return self.matched > len(self.entries)


_RELATIVE = re.compile(r"^(\d+)\s*([mhdw])\Z")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
DEFAULT_SPAN = timedelta(days=7)


def parse_when(value: str, *, end: bool, now: datetime) -> datetime:
    """``7d``/``24h``/``30m``/``2w`` ago, ``YYYY-MM-DD`` (the start, or with ``end`` the end, of that UTC
    day) or an RFC 3339 time with its offset."""
    text = value.strip()
    match = _RELATIVE.match(text.lower())
    if match:
        return now - timedelta(**{_UNITS[match[2]]: int(match[1])})
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        try:
            day = date.fromisoformat(text)
        except ValueError:
            raise InputError(f"not a date: {value!r}") from None
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        return start + timedelta(days=1, microseconds=-1) if end else start
    try:
        moment = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise InputError(f"not a time: {value!r} (use 7d, 24h, YYYY-MM-DD or 2026-01-31T22:00:00Z)")
    return moment.astimezone(UTC)


def days_between(since: datetime, until: datetime) -> Iterator[date]:
    day, last = since.astimezone(UTC).date(), until.astimezone(UTC).date()
    while day <= last:
        yield day
        day += timedelta(days=1)


class AuditReader:
    """Searches ``audit/`` of a date range: one listing per day, objects read in parallel. Searching
    needs ``audit.read`` (the authorization point refuses it otherwise)."""

    # The worker's objects (``worker-…``) hold delivery events; skipped unless asked for.
    WORKER_SOURCE = "worker"

    def __init__(
        self, aws: AwsFactory, config: Config, *, threads: int = 16, authz: Authorizer | None = None
    ) -> None:
        self.aws = aws
        self.config = config
        self.bucket = config.s3_config.bucket_name
        self.threads = threads
        self._authz = authz

    @property
    def authz(self) -> Authorizer:
        if self._authz is None:
            from .authz import Authorizer  # authz writes through this module

            self._authz = Authorizer(self.aws, self.config, via="api")
        return self._authz

    def keys(self, query: AuditQuery) -> list[str]:
        s3 = self.aws.client("s3")
        keys: list[str] = []
        for day in days_between(query.since, query.until):
            prefix = f"{AUDIT_PREFIX}{day:%Y/%m/%d}/"
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                for obj in page.get("Contents", []):
                    name = obj["Key"].rsplit("/", 1)[-1]
                    if query.include_worker or not name.startswith(self.WORKER_SOURCE + "-"):
                        keys.append(obj["Key"])
        return keys

    def _read(self, key: str) -> list[AuditEntry]:
        body = self.aws.client("s3").get_object(Bucket=self.bucket, Key=key)["Body"].read()
        out = []
        for line in body.decode("utf-8", errors="replace").splitlines():
            try:
                raw = json.loads(line)
            except ValueError:
                continue
            entry = parse_entry(raw, key) if isinstance(raw, dict) else None
            if entry is not None:
                out.append(entry)
        return out

    def search(self, query: AuditQuery) -> AuditSearchResult:
        self.authz.require(OperatorAction.AUDIT_READ)
        keys = self.keys(query)
        errors: list[str] = []
        matched: list[AuditEntry] = []

        def read(key: str) -> list[AuditEntry]:
            try:
                return [e for e in self._read(key) if query.matches(e)]
            except (ClientError, BotoCoreError) as exc:
                errors.append(f"{key}: {describe(exc)}")
                return []

        if keys:
            with ThreadPoolExecutor(max_workers=min(self.threads, len(keys))) as pool:
                for found in pool.map(read, keys):
                    matched.extend(found)
        matched.sort(key=lambda e: (e.ts, e.key), reverse=True)
        days = sum(1 for _ in days_between(query.since, query.until))
        return AuditSearchResult(matched[: query.limit], len(matched), len(keys), days, errors)
