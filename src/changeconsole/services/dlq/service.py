"""Dead-letter queues, per customer: inspect, filter, export, redrive, import and purge.

Reading a message from SQS is never free. Every operation here that looks at messages (peek,
filter, dry-run, export, the selection scan of a redrive or purge) *receives* them: each one
becomes invisible for a short time (``PEEK_VISIBILITY`` / ``SCAN_VISIBILITY`` seconds, released
again as soon as the scan ends) and its ``ApproximateReceiveCount`` rises by one. DLQs have no
redrive policy of their own, so that only changes the numbers shown, but operators must know it.

Redrive is send-then-delete: a message is copied to the customer's source queue (with its original
message attributes plus the redrive marker ``cc-redriven-at``/``cc-redrive-count``/``cc-redriven-by``)
and only then deleted from the DLQ. A crash in between leaves a copy in both queues; the worker's
ledger makes the second delivery harmless, so nothing is ever lost and no recipient gets two emails.
"Redrive all" uses SQS's native ``StartMessageMoveTask`` where the endpoint supports it (rate,
progress and cancel through ``ListMessageMoveTasks``/``CancelMessageMoveTask``) and falls back to
the manual path where it does not (e.g. moto: HTTP 500), decided by error code and HTTP status.

Every action passes the authorization point (``services.authz``: peek and dry runs need ``read``,
the others ``dlq.redrive``/``dlq.export``/``dlq.import``/``dlq.purge`` on the customer) and becomes an
``operator.action`` audit record (``dlq.peek``, ``dlq.redrive``, …) with its counts and message ids.
An export is also recorded under ``dlq-exports/{code}.json`` (path, SHA-256, message ids) so that a
later purge without ``--yes`` deletes exactly the exported messages and nothing that arrived since.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from ...config import data_dir
from ...errors import describe, error_code, http_status, is_missing_object
from ...models import Config, CustomerMapping, OperatorAction, iso_utc, utcnow
from ..audit import OK, PARTIAL
from ..authz import ActionRecord, Authorizer
from ..aws import AwsFactory
from ..doorbell import Doorbell
from ..queues import IN_FLIGHT, VISIBLE, QueueUrlCache, is_missing_queue, message_counts
from .attributes import redrive_attributes
from .errors import DlqError, DlqInputError, PurgeRefused, QueueMissing
from .messages import DlqMessage, MessageFilter, as_filter
from .ratelimit import RateLimiter
from .results import (
    DlqSummary,
    ExportResult,
    ImportResult,
    PeekResult,
    PurgeResult,
    RedriveFailure,
    RedriveProgress,
    RedriveResult,
)

log = logging.getLogger("changeconsole.dlq")

# Seconds a peeked message stays invisible at most (released at once when the peek ends).
PEEK_VISIBILITY = 15
# Seconds messages are held invisible while a redrive, export, import check or purge scans the DLQ.
SCAN_VISIBILITY = 120
DEFAULT_PEEK = 10
MAX_PEEK = 1000
# A send batch stays under SQS's request size limit (256 KiB) with headroom for attributes.
MAX_BATCH_BYTES = 200 * 1024
# Native move tasks accept 1..500 messages per second.
NATIVE_MAX_RATE = 500
NATIVE_POLL_SECONDS = 2.0

EXPORT_RECORD_PREFIX = "dlq-exports/"

# Error codes (last dotted segment) and HTTP statuses meaning "this endpoint has no native move".
_UNSUPPORTED_CODES = frozenset(
    {"UnsupportedOperation", "InvalidAction", "UnknownOperation", "NotImplemented", "InternalFailure"}
)
_UNSUPPORTED_STATUS = frozenset({500, 501})

Target = Literal["source", "dlq"]
ProgressCallback = Callable[["RedriveProgress"], None]


def default_export_path(code: str, now: datetime) -> Path:
    """Where an export goes unless the operator says otherwise: an absolute path under the data dir
    (never the working directory, which may be a repository)."""
    return data_dir() / "dlq-exports" / f"dlq-{code}-{now.astimezone(UTC):%Y%m%dT%H%M%SZ}.jsonl"


def _age(now: datetime, then: datetime | None) -> float | None:
    return max(0.0, (now - then).total_seconds()) if then is not None else None


def _chunks(items: Sequence[DlqMessage], size: int) -> Iterator[list[DlqMessage]]:
    """Send batches of at most ``size`` messages and ``MAX_BATCH_BYTES`` of bodies."""
    batch: list[DlqMessage] = []
    total = 0
    for item in items:
        n = len(item.body.encode("utf-8", "surrogatepass"))
        if batch and (len(batch) >= size or total + n > MAX_BATCH_BYTES):
            yield batch
            batch, total = [], 0
        batch.append(item)
        total += n
    if batch:
        yield batch


def _refused(resp: dict[str, Any], chunk: Sequence[DlqMessage], stage: str) -> list[RedriveFailure]:
    """The entries a batch call answered as Failed, as failures of their messages."""
    return [
        RedriveFailure(
            chunk[int(bad["Id"])].message_id, stage, f"{bad.get('Code', '?')}: {bad.get('Message', '')}"
        )
        for bad in resp.get("Failed", [])
    ]


def native_unsupported(exc: ClientError) -> str | None:
    """Why an endpoint cannot run native move tasks, from the error code/HTTP status; else None."""
    code, status = error_code(exc), http_status(exc)
    short = code.rsplit(".", 1)[-1]
    if short in _UNSUPPORTED_CODES:
        return f"{code} (HTTP {status})"
    if status in _UNSUPPORTED_STATUS:
        return f"HTTP {status}" if code in ("", str(status)) else f"HTTP {status} {code}"
    return None


class _Scan:
    """Receive every visible message of a queue once, holding each invisible until released.

    Messages seen again (their visibility ran out during a long scan) are not yielded twice; the
    scan ends after ``empty_receives`` receives without an unseen message, at ``limit``, or on cancel.
    """

    def __init__(
        self,
        service: DlqService,
        url: str,
        *,
        visibility: int,
        limit: int | None = None,
        per_receive: int = 10,
        cancel: threading.Event | None = None,
    ) -> None:
        self.svc = service
        self.url = url
        self.visibility = visibility
        self.limit = limit
        self.per_receive = max(1, min(10, per_receive))
        self.cancel = cancel
        self.seen: set[str] = set()
        self.held: dict[str, str] = {}
        self.receives = 0

    def batches(self) -> Iterator[list[DlqMessage]]:
        sqs = self.svc.sqs
        empties = 0
        while True:
            if self.cancel is not None and self.cancel.is_set():
                return
            if self.limit is not None and len(self.seen) >= self.limit:
                return
            want = self.per_receive
            if self.limit is not None:
                want = min(want, self.limit - len(self.seen))
            resp = sqs.receive_message(
                QueueUrl=self.url,
                MaxNumberOfMessages=want,
                VisibilityTimeout=self.visibility,
                WaitTimeSeconds=self.svc.wait_seconds,
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
            self.receives += 1
            fresh: list[DlqMessage] = []
            for raw in resp.get("Messages", []):
                msg = DlqMessage.from_sqs(raw)
                if msg.message_id in self.seen:
                    if msg.receipt_handle:
                        self.held[msg.message_id] = msg.receipt_handle
                    continue
                self.seen.add(msg.message_id)
                fresh.append(msg)
            if not fresh:
                empties += 1
                if empties >= self.svc.empty_receives:
                    return
                continue
            empties = 0
            yield fresh

    def hold(self, messages: Iterable[DlqMessage]) -> None:
        for m in messages:
            if m.receipt_handle:
                self.held[m.message_id] = m.receipt_handle

    def forget(self, message_id: str) -> None:
        self.held.pop(message_id, None)

    def release(self) -> None:
        """Make every held message visible again at once (best effort: else it reappears on its own)."""
        items = list(self.held.items())
        self.held.clear()
        for start in range(0, len(items), 10):
            chunk = items[start : start + 10]
            try:
                self.svc.sqs.change_message_visibility_batch(
                    QueueUrl=self.url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": handle, "VisibilityTimeout": 0}
                        for i, (_mid, handle) in enumerate(chunk)
                    ],
                )
            except (ClientError, BotoCoreError) as exc:
                log.warning("could not release %d message(s): %s", len(chunk), describe(exc))

    def __enter__(self) -> _Scan:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class DlqService:
    """Per-customer DLQ operations for the console, the CLI and tests.

    ``now`` (wall clock, for markers, audit and ages), ``monotonic`` and ``sleep`` (rate limit, task
    polling) are injectable so tests never sleep. ``wait_seconds`` is the receive long-poll wait: 1 s
    against AWS (short polls sample only some servers), 0 against an emulator endpoint.
    """

    def __init__(
        self,
        aws: AwsFactory,
        config: Config,
        *,
        now: Callable[[], datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        wait_seconds: int | None = None,
        empty_receives: int | None = None,
        threads: int = 16,
        native_poll_seconds: float = NATIVE_POLL_SECONDS,
        authz: Authorizer | None = None,
    ) -> None:
        self.aws = aws
        self.config = config
        self.now = now
        self.monotonic = monotonic
        self.sleep = sleep
        emulator = bool(aws.settings.endpoint_url)
        self.wait_seconds = wait_seconds if wait_seconds is not None else (0 if emulator else 1)
        self.empty_receives = empty_receives if empty_receives is not None else (1 if emulator else 2)
        self.threads = threads
        self.native_poll_seconds = native_poll_seconds
        self._urls = QueueUrlCache()
        self._lock = threading.Lock()
        self._native_unsupported: str | None = None
        self._noretry: AwsFactory | None = None
        self.authz = authz or Authorizer(aws, config, clock=now, via="api")
        self.doorbell = Doorbell(aws, config)

    # -- plumbing ---------------------------------------------------------------------------------
    @property
    def sqs(self) -> Any:
        return self.aws.client("sqs")

    def native_sqs(self) -> Any:
        """SQS client for native move tasks, without retries: an endpoint that lacks them answers 500,
        which the normal client would retry for many seconds before we could fall back."""
        with self._lock:
            if self._noretry is None:
                self._noretry = AwsFactory(replace(self.aws.settings, max_attempts=1))
                for listener in self.aws.call_listeners:
                    self._noretry.add_call_listener(listener)
            return self._noretry.client("sqs")

    def customers(self) -> list[str]:
        return sorted(self.config.customer_mappings)

    def customer(self, code: str) -> CustomerMapping:
        return self.config.customer(code)

    def queue_url(self, name: str, account: str) -> str:
        try:
            return self._urls.lookup(self.sqs, name, account)
        except ClientError as exc:
            if is_missing_queue(exc):
                raise QueueMissing(
                    f"queue {name} does not exist in account {account}; run `changeconsole provision`"
                ) from None
            raise

    def dlq_url(self, code: str) -> str:
        c = self.customer(code)
        return self.queue_url(c.dlq_name, c.queue_account)

    def source_url(self, code: str) -> str:
        c = self.customer(code)
        return self.queue_url(c.queue_name, c.queue_account)

    def _depth(self, url: str) -> tuple[int, int]:
        counts = message_counts(self.sqs, url, (VISIBLE, IN_FLIGHT))
        return counts[VISIBLE], counts[IN_FLIGHT]

    @staticmethod
    def wall_clock() -> datetime:
        """Real time, compared with SQS's SentTimestamp (``now`` may be a test's fixed clock)."""
        return datetime.now(UTC)

    def operator(self) -> str:
        return self.authz.operator.name

    def _audit(self, rec: ActionRecord, *, count: int, ids: Sequence[str], **extra: Any) -> str | None:
        """Finish the action's audit record (``partial`` when some message failed) and log a line."""
        unfinished = extra.get("failed") or extra.get("not_found") or extra.get("cancelled")
        log.info(
            "%s customers=%s count=%d by=%s ids=%s",
            rec.name,
            ",".join(rec.customers or []),
            count,
            self.operator(),
            ",".join(ids[:20]),
        )
        return rec.finish(PARTIAL if unfinished else OK, count=count, message_ids=list(ids), **extra)

    # -- inspect -------------------------------------------------------------------------------------
    def summary(self, code: str) -> DlqSummary:
        c = self.customer(code)
        result = DlqSummary(customer=code, name=c.customer_name, queue=c.dlq_name)
        try:
            result.depth, result.in_flight = self._depth(self.dlq_url(code))
        except QueueMissing as exc:
            result.error = str(exc)
        except (ClientError, BotoCoreError) as exc:
            result.error = describe(exc)
        return result

    def summaries(self, codes: Iterable[str] | None = None, *, with_age: bool = True) -> list[DlqSummary]:
        """Depth of every customer's DLQ (in parallel), with the oldest message's age from CloudWatch
        (``ApproximateAgeOfOldestMessage``; ``None`` when there is no datapoint, e.g. on moto)."""
        wanted = sorted(codes) if codes is not None else self.customers()
        with ThreadPoolExecutor(max_workers=max(1, min(self.threads, len(wanted) or 1))) as pool:
            results = list(pool.map(self.summary, wanted))
        if with_age:
            self._cloudwatch_ages([r for r in results if r.error is None and r.depth])
        for r in results:
            if not r.depth:
                r.age_source = "cloudwatch" if r.error is None else "unavailable"
        return results

    def _cloudwatch_ages(self, summaries: list[DlqSummary]) -> None:
        if not summaries:
            return
        now = self.now()
        try:
            cw = self.aws.client("cloudwatch")
            for start in range(0, len(summaries), 500):
                chunk = summaries[start : start + 500]
                queries = [
                    {
                        "Id": f"q{i}",
                        "MetricStat": {
                            "Metric": {
                                "Namespace": "AWS/SQS",
                                "MetricName": "ApproximateAgeOfOldestMessage",
                                "Dimensions": [{"Name": "QueueName", "Value": s.queue}],
                            },
                            "Period": 60,
                            "Stat": "Maximum",
                        },
                    }
                    for i, s in enumerate(chunk)
                ]
                resp = cw.get_metric_data(
                    MetricDataQueries=queries,
                    StartTime=now - timedelta(minutes=15),
                    EndTime=now,
                    ScanBy="TimestampDescending",
                )
                values = {r["Id"]: r.get("Values", []) for r in resp.get("MetricDataResults", [])}
                for i, s in enumerate(chunk):
                    vals = values.get(f"q{i}") or []
                    s.oldest_age_seconds = float(vals[0]) if vals else None
                    s.age_source = "cloudwatch"
        except (ClientError, BotoCoreError) as exc:
            log.info("CloudWatch ages unavailable: %s", describe(exc))
            for s in summaries:
                s.age_source = "unavailable"

    def peek(
        self,
        code: str,
        *,
        max_messages: int = DEFAULT_PEEK,
        filter: str | MessageFilter | None = None,
        visibility: int = PEEK_VISIBILITY,
    ) -> PeekResult:
        """Look at up to ``max_messages`` (≤ ``MAX_PEEK``) messages of a customer's DLQ.

        Peeking RECEIVES the messages: each becomes invisible for up to ``visibility`` seconds (released
        as soon as the peek ends) and its ApproximateReceiveCount rises by one. With a filter, up to
        ``MAX_PEEK`` messages are scanned to find ``max_messages`` matches. The age of the oldest message
        is computed from the peeked messages' SentTimestamp.
        """
        with self.authz.act(OperatorAction.READ, [code], name="dlq.peek") as rec:
            if not 1 <= max_messages <= MAX_PEEK:
                raise DlqInputError(f"--max must be between 1 and {MAX_PEEK}, got {max_messages}")
            flt = as_filter(filter)
            c = self.customer(code)
            url = self.dlq_url(code)
            depth, in_flight = self._depth(url)
            limit = MAX_PEEK if flt else max_messages
            matched: list[DlqMessage] = []
            oldest: datetime | None = None
            with _Scan(self, url, visibility=visibility, limit=limit) as scan:
                for batch in scan.batches():
                    scan.hold(batch)
                    for m in batch:
                        if m.sent_at and (oldest is None or m.sent_at < oldest):
                            oldest = m.sent_at
                        if (flt is None or flt.matches(m)) and len(matched) < max_messages:
                            matched.append(m)
                    if len(matched) >= max_messages:
                        break
                scanned = len(scan.seen)
            matched.sort(key=lambda m: (m.sent_at or datetime.max.replace(tzinfo=UTC), m.message_id))
            audit = self._audit(
                rec,
                count=len(matched),
                ids=[m.message_id for m in matched],
                scanned=scanned,
                filter=flt.text if flt else None,
            )
            return PeekResult(
                customer=code,
                queue=c.dlq_name,
                messages=matched,
                scanned=scanned,
                depth=depth,
                in_flight=in_flight,
                oldest_age_seconds=_age(self.now(), oldest),
                visibility_seconds=visibility,
                filter=flt.text if flt else None,
                audit_key=audit,
            )

    # -- redrive --------------------------------------------------------------------------------------
    def redrive(
        self,
        code: str,
        *,
        message_ids: Iterable[str] | None = None,
        all_messages: bool = False,
        filter: str | MessageFilter | None = None,
        dry_run: bool = False,
        rate: float | None = None,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
        native: bool = True,
    ) -> RedriveResult:
        """Move messages of a customer's DLQ back to its source queue.

        Select with ``message_ids`` or ``all_messages`` (optionally narrowed by ``filter``). The manual
        path receives, sends (original attributes + redrive marker) and then deletes, at most ``rate``
        messages/s, reporting through ``progress`` and stopping between batches when ``cancel`` is set.
        An unfiltered "all" uses the native move task where the endpoint supports it. ``dry_run``
        moves nothing and lists what would move (it still receives them: see ``peek``).
        """
        ids = list(dict.fromkeys(message_ids or []))
        if bool(ids) == bool(all_messages):
            raise DlqInputError("give message ids or all, not both and not neither")
        # A dry run moves nothing: it reads, like a peek.
        action, name = (
            (OperatorAction.READ, "dlq.redrive-dry-run")
            if dry_run
            else (OperatorAction.DLQ_REDRIVE, "dlq.redrive")
        )
        with self.authz.act(action, [code], name=name) as rec:
            return self._redrive(
                rec, code, ids, all_messages, filter, dry_run, rate, progress, cancel, native
            )

    def _redrive(
        self,
        rec: ActionRecord,
        code: str,
        ids: list[str],
        all_messages: bool,
        filter: str | MessageFilter | None,
        dry_run: bool,
        rate: float | None,
        progress: ProgressCallback | None,
        cancel: threading.Event | None,
        native: bool,
    ) -> RedriveResult:
        flt = as_filter(filter)
        limiter = RateLimiter(rate, monotonic=self.monotonic, sleep=self.sleep)
        c = self.customer(code)
        started = self.monotonic()
        result = RedriveResult(
            customer=code,
            source_queue=c.queue_name,
            dlq=c.dlq_name,
            mode="dry-run" if dry_run else "manual",
            dry_run=dry_run,
            requested=ids or None,
            filter=flt.text if flt else None,
            rate=rate,
        )
        dlq_url = self.dlq_url(code)
        source_url = self.source_url(code)
        native_ok = all_messages and not flt and not dry_run and native and (rate is None or rate >= 1)
        if not (native_ok and self._native_redrive(c, result, rate, progress, cancel)):
            self._manual_redrive(c, dlq_url, source_url, ids, flt, limiter, result, progress, cancel)
        result.seconds = self.monotonic() - started
        result.audit_key = self._audit_redrive(rec, result)
        return result

    def _audit_redrive(self, rec: ActionRecord, r: RedriveResult) -> str | None:
        if r.dry_run:
            ids = [m.message_id for m in r.would_move]
            return self._audit(rec, count=len(ids), ids=ids, filter=r.filter, requested=r.requested)
        return self._audit(
            rec,
            count=r.moved_count,
            ids=r.moved,
            mode=r.mode,
            to=r.source_queue,
            new_ids=r.new_ids,
            requested=r.requested,
            filter=r.filter,
            rate=r.rate,
            not_found=r.not_found,
            failed=[f.to_json() for f in r.failed],
            cancelled=r.cancelled,
            native_task=r.native_task,
            fallback_reason=r.fallback_reason,
        )

    def _manual_redrive(
        self,
        c: CustomerMapping,
        dlq_url: str,
        source_url: str,
        ids: list[str],
        flt: MessageFilter | None,
        limiter: RateLimiter,
        result: RedriveResult,
        progress: ProgressCallback | None,
        cancel: threading.Event | None,
    ) -> None:
        wanted = set(ids)
        found: set[str] = set()
        # "All" means what is in the DLQ now: a message dead-lettered again during this redrive is
        # a new message (sent after we started) and stays for the operator to look at.
        cutoff = self.wall_clock()
        total: int | None = len(ids) if ids else None
        if total is None:
            depth, in_flight = self._depth(dlq_url)
            total = depth + in_flight
        by = self.operator() if not result.dry_run else ""
        # Receive no more than the rate lets us finish well within the hold time.
        per_receive = 10 if not limiter.rate else max(1, min(10, int(limiter.rate * SCAN_VISIBILITY / 2)))

        def report(status: str = "running") -> None:
            if progress is not None:
                progress(RedriveProgress(result.moved_count, len(result.failed), total, "manual", status))

        report()
        with _Scan(self, dlq_url, visibility=SCAN_VISIBILITY, per_receive=per_receive) as scan:
            for batch in scan.batches():
                selected = []
                for m in batch:
                    if wanted and m.message_id not in wanted:
                        continue
                    if not wanted and m.sent_at is not None and m.sent_at > cutoff:
                        continue
                    if flt is not None and not flt.matches(m):
                        continue
                    selected.append(m)
                chosen = {m.message_id for m in selected}
                found.update(chosen)
                scan.hold(m for m in batch if m.message_id not in chosen)
                if result.dry_run:
                    result.would_move.extend(selected)
                    scan.hold(selected)
                else:
                    pending = list(selected)
                    for chunk in _chunks(pending, limiter.batch_size):
                        if not limiter.acquire(len(chunk), cancel):
                            result.cancelled = True
                            scan.hold(pending)
                            break
                        self._move(source_url, dlq_url, chunk, scan, result, by, c.customer_code)
                        done = {m.message_id for m in chunk}
                        pending = [m for m in pending if m.message_id not in done]
                        report()
                    if result.cancelled:
                        break
                if wanted and found >= wanted:
                    break
                if cancel is not None and cancel.is_set():
                    result.cancelled = True
                    break
        result.not_found = [i for i in ids if i not in found]
        report("cancelled" if result.cancelled else "done")

    def _move(
        self,
        source_url: str,
        dlq_url: str,
        chunk: list[DlqMessage],
        scan: _Scan,
        result: RedriveResult,
        by: str,
        code: str,
    ) -> None:
        sent = self._send(source_url, chunk, result.failed, redrive_by=by, ring=code)
        for m, new_id in sent:
            result.new_ids[m.message_id] = new_id
        sent_ids = {m.message_id for m, _new_id in sent}
        scan.hold(m for m in chunk if m.message_id not in sent_ids)
        if not sent:
            return
        deleted = self._delete(dlq_url, [m for m, _new_id in sent], result.failed)
        for m, _new_id in sent:
            if m.message_id in deleted:
                scan.forget(m.message_id)
                result.moved.append(m.message_id)
                result.moved_count += 1
            else:
                # Copied but still in the DLQ: visible again at once for the operator to see; a later
                # redrive of it is harmless (the worker's ledger sends each email once).
                scan.hold([m])

    def _delete(self, url: str, messages: list[DlqMessage], failures: list[RedriveFailure]) -> set[str]:
        done: set[str] = set()
        for start in range(0, len(messages), 10):
            chunk = messages[start : start + 10]
            try:
                resp = self.sqs.delete_message_batch(
                    QueueUrl=url,
                    Entries=[{"Id": str(i), "ReceiptHandle": m.receipt_handle} for i, m in enumerate(chunk)],
                )
            except (ClientError, BotoCoreError) as exc:
                failures.extend(RedriveFailure(m.message_id, "delete", describe(exc)) for m in chunk)
                continue
            for ok in resp.get("Successful", []):
                done.add(chunk[int(ok["Id"])].message_id)
            failures.extend(_refused(resp, chunk, "delete"))
        return done

    def _send(
        self,
        url: str,
        chunk: Sequence[DlqMessage],
        failures: list[RedriveFailure],
        *,
        redrive_by: str | None,
        ring: str | None = None,
    ) -> list[tuple[DlqMessage, str]]:
        """Send ``chunk`` in one batch: (message, new id) of each sent; a failure for each not sent.

        With ``redrive_by`` each message gets the redrive marker; without, its attributes as they are.
        ``ring``: the customer whose queue ``url`` is, rung at its doorbell after a send.
        """
        now = self.now()
        entries = []
        for i, m in enumerate(chunk):
            entry: dict[str, Any] = {"Id": str(i), "MessageBody": m.body}
            attrs = (
                dict(m.message_attributes)
                if redrive_by is None
                else redrive_attributes(m.message_attributes, at=now, by=redrive_by)
            )
            if attrs:
                entry["MessageAttributes"] = attrs
            entries.append(entry)
        try:
            resp = self.sqs.send_message_batch(QueueUrl=url, Entries=entries)
        except (ClientError, BotoCoreError) as exc:
            failures.extend(RedriveFailure(m.message_id, "send", describe(exc)) for m in chunk)
            return []
        failures.extend(_refused(resp, chunk, "send"))
        sent = [(chunk[int(ok["Id"])], ok.get("MessageId", "")) for ok in resp.get("Successful", [])]
        if ring is not None and sent:
            self.doorbell.ring([ring])
        return sent

    def _native_redrive(
        self,
        c: CustomerMapping,
        result: RedriveResult,
        rate: float | None,
        progress: ProgressCallback | None,
        cancel: threading.Event | None,
    ) -> bool:
        """Run a native move task; False (with ``result.fallback_reason``) when the endpoint has none."""
        if self._native_unsupported:
            result.fallback_reason = self._native_unsupported
            return False
        sqs = self.native_sqs()
        source_arn = c.effective_dlq_arn
        try:
            running = [
                t
                for t in sqs.list_message_move_tasks(SourceArn=source_arn, MaxResults=10).get("Results", [])
                if t.get("Status") == "RUNNING"
            ]
            if running:
                raise DlqError(
                    f"a move task is already running on {c.dlq_name} "
                    f"(handle {running[0].get('TaskHandle', '?')}); wait for it or cancel it"
                )
            kwargs: dict[str, Any] = {"SourceArn": source_arn, "DestinationArn": c.sqs_queue_arn}
            if rate is not None:
                kwargs["MaxNumberOfMessagesPerSecond"] = max(1, min(NATIVE_MAX_RATE, int(rate)))
            handle = sqs.start_message_move_task(**kwargs)["TaskHandle"]
        except ClientError as exc:
            why = native_unsupported(exc)
            if why is None:
                raise
            self._native_unsupported = why
            result.fallback_reason = why
            log.info("native message move unavailable on this endpoint (%s); moving manually", why)
            return False
        result.mode = "native"
        task: dict[str, Any] = {"TaskHandle": handle}
        cancel_sent = False
        while True:
            if cancel is not None and cancel.is_set() and not cancel_sent:
                try:
                    sqs.cancel_message_move_task(TaskHandle=handle)
                except ClientError as exc:
                    log.warning("cancel of move task failed: %s", describe(exc))
                cancel_sent = True
            tasks = sqs.list_message_move_tasks(SourceArn=source_arn, MaxResults=10).get("Results", [])
            mine = [t for t in tasks if t.get("TaskHandle") == handle]
            task = mine[0] if mine else (tasks[0] if tasks else task)
            status = str(task.get("Status", "RUNNING"))
            result.moved_count = int(task.get("ApproximateNumberOfMessagesMoved", 0))
            to_move = task.get("ApproximateNumberOfMessagesToMove")
            if progress is not None:
                progress(
                    RedriveProgress(
                        result.moved_count,
                        0,
                        int(to_move) if to_move is not None else None,
                        "native",
                        status.lower(),
                    )
                )
            if status in ("COMPLETED", "CANCELLED", "FAILED"):
                break
            self.sleep(self.native_poll_seconds)
        result.cancelled = status == "CANCELLED"
        result.native_task = {
            "handle": handle,
            "status": status,
            "moved": result.moved_count,
            "to_move": task.get("ApproximateNumberOfMessagesToMove"),
            "failure_reason": task.get("FailureReason"),
        }
        if status == "FAILED":
            result.failed.append(RedriveFailure("*", "native", str(task.get("FailureReason", "FAILED"))))
        return True

    # -- export / import ---------------------------------------------------------------------------------
    def export_jsonl(
        self, code: str, path: str | Path, *, filter: str | MessageFilter | None = None
    ) -> ExportResult:
        """Write every message of the DLQ (or those matching ``filter``) to ``path`` as JSON lines.

        Lines carry body, system and message attributes, ids and receive counts; ``import_jsonl`` puts
        them back exactly. The export is recorded (path, SHA-256, ids) so ``purge`` can then delete
        exactly these messages. Messages are received for the scan (see ``peek``) and released after.
        """
        with self.authz.act(OperatorAction.DLQ_EXPORT, [code], name="dlq.export") as rec:
            flt = as_filter(filter)
            c = self.customer(code)
            url = self.dlq_url(code)
            target = Path(path).expanduser().resolve()
            target.parent.mkdir(parents=True, exist_ok=True)
            now = self.now()
            tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
            digest = hashlib.sha256()
            ids: list[str] = []
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with (
                    os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh,
                    _Scan(self, url, visibility=SCAN_VISIBILITY) as scan,
                ):
                    for batch in scan.batches():
                        scan.hold(batch)
                        for m in batch:
                            if flt is not None and not flt.matches(m):
                                continue
                            line = json.dumps(m.to_export(code, c.dlq_name, now), ensure_ascii=False) + "\n"
                            fh.write(line)
                            digest.update(line.encode("utf-8", "surrogatepass"))
                            ids.append(m.message_id)
                tmp.replace(target)
            finally:
                tmp.unlink(missing_ok=True)
            record = {
                "export_id": str(uuid.uuid4()),
                "customer": code,
                "queue": c.dlq_name,
                "at": iso_utc(now),
                "by": self.operator(),
                "host": socket.gethostname(),
                "path": str(target),
                "sha256": digest.hexdigest(),
                "count": len(ids),
                "filter": flt.text if flt else None,
                "message_ids": ids,
            }
            recorded = True
            try:
                self.aws.client("s3").put_object(
                    Bucket=self.config.s3_config.bucket_name,
                    Key=f"{EXPORT_RECORD_PREFIX}{code}.json",
                    Body=json.dumps(record, indent=1).encode("utf-8"),
                    ContentType="application/json",
                )
            except (ClientError, BotoCoreError) as exc:
                log.error("could not record the export of %s: %s", code, describe(exc))
                recorded = False
            audit = self._audit(
                rec,
                count=len(ids),
                ids=ids,
                path=str(target),
                sha256=digest.hexdigest(),
                filter=flt.text if flt else None,
                export_id=record["export_id"],
                recorded=recorded,
            )
            return ExportResult(
                customer=code,
                queue=c.dlq_name,
                path=str(target),
                count=len(ids),
                message_ids=ids,
                sha256=digest.hexdigest(),
                filter=flt.text if flt else None,
                recorded=recorded,
                audit_key=audit,
            )

    def export_record(self, code: str) -> dict[str, Any] | None:
        """The last recorded export of a customer's DLQ not yet used by a purge, or None."""
        self.customer(code)
        try:
            obj = self.aws.client("s3").get_object(
                Bucket=self.config.s3_config.bucket_name, Key=f"{EXPORT_RECORD_PREFIX}{code}.json"
            )
        except ClientError as exc:
            if is_missing_object(exc):
                return None
            raise
        try:
            data = json.loads(obj["Body"].read())
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    @staticmethod
    def read_export(path: str | Path, code: str | None = None) -> list[DlqMessage]:
        """Parse an export file; every problem (with its line number) is reported at once."""
        p = Path(path).expanduser()
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise DlqInputError(f"cannot read {p}: {exc.strerror}") from None
        messages: list[DlqMessage] = []
        problems: list[dict[str, str]] = []
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            where = f"line {n}"
            try:
                data = json.loads(line)
                msg = DlqMessage.from_export(data, where)
            except ValueError as exc:
                problems.append({"path": where, "message": str(exc).removeprefix(f"{where}: ")})
                continue
            if code is not None and data.get("customer") != code:
                problems.append(
                    {
                        "path": where,
                        "message": f"exported from customer {data.get('customer')!r}, not {code!r}",
                    }
                )
                continue
            messages.append(msg)
        if problems:
            raise DlqInputError(f"{p}: {len(problems)} bad line(s); nothing was imported", problems)
        return messages

    def import_jsonl(
        self,
        code: str,
        path: str | Path,
        *,
        to: Target = "dlq",
        rate: float | None = None,
        skip_present: bool = True,
    ) -> ImportResult:
        """Send the messages of an export file back to the customer's DLQ (exactly as exported) or to
        its source queue (as a redrive: with the redrive marker).

        Every line is validated first (and must come from this customer) before anything is sent.
        Into the DLQ, messages whose body and attributes are already there are skipped (counted as a
        multiset), so importing the same file twice duplicates nothing; that check receives the DLQ's
        messages briefly (see ``peek``).
        """
        with self.authz.act(OperatorAction.DLQ_IMPORT, [code], name="dlq.import") as rec:
            if to not in ("dlq", "source"):
                raise DlqInputError(f"--to must be source or dlq, got {to!r}")
            messages = self.read_export(path, code)
            c = self.customer(code)
            url = self.dlq_url(code) if to == "dlq" else self.source_url(code)
            result = ImportResult(
                customer=code,
                target=to,
                queue=c.dlq_name if to == "dlq" else c.queue_name,
                path=str(Path(path).expanduser()),
                read=len(messages),
            )
            todo = messages
            if to == "dlq" and skip_present and messages:
                present: Counter[str] = Counter()
                with _Scan(self, url, visibility=SCAN_VISIBILITY) as scan:
                    for batch in scan.batches():
                        scan.hold(batch)
                        present.update(m.content_key() for m in batch)
                todo = []
                for m in messages:
                    key = m.content_key()
                    if present[key] > 0:
                        present[key] -= 1
                        result.skipped_present.append(m.message_id)
                    else:
                        todo.append(m)
            by = self.operator()
            limiter = RateLimiter(rate, monotonic=self.monotonic, sleep=self.sleep)
            for chunk in _chunks(todo, limiter.batch_size):
                limiter.acquire(len(chunk))
                sent = self._send(
                    url,
                    chunk,
                    result.failed,
                    redrive_by=None if to == "dlq" else by,
                    ring=None if to == "dlq" else code,
                )
                for m, new_id in sent:
                    result.sent[m.message_id] = new_id
            result.audit_key = self._audit(
                rec,
                count=len(result.sent),
                ids=list(result.sent),
                to=result.queue,
                target=to,
                path=result.path,
                new_ids=result.sent,
                skipped_present=result.skipped_present,
                failed=[f.to_json() for f in result.failed],
            )
            return result

    # -- purge ------------------------------------------------------------------------------------------
    def check_export(self, code: str) -> dict[str, Any]:
        """The recorded export a purge without ``--yes`` relies on; raises PurgeRefused (naming why,
        not what to do: the CLI and the console each say that their own way) when there is none, or
        its file is not on this machine or has changed since."""
        record = self.export_record(code)
        if record is None:
            raise PurgeRefused(f"no export of {code}'s DLQ is recorded")
        path = Path(str(record.get("path", "")))
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            raise PurgeRefused(f"the recorded export file {path} is not readable here") from None
        if digest != record.get("sha256"):
            raise PurgeRefused(f"the recorded export file {path} has changed since the export")
        return record

    def purge(self, code: str, *, yes: bool = False) -> PurgeResult:
        """Delete messages from a customer's DLQ, never silently.

        Without ``yes`` a recorded export is required (see ``check_export``) and exactly the exported
        messages are deleted: anything that arrived since is kept and reported. With ``yes`` every
        message present when the purge starts is deleted. Messages are received and deleted one by one
        (not PurgeQueue) so the audit names every id; messages another consumer holds are reported.
        """
        with self.authz.act(OperatorAction.DLQ_PURGE, [code], name="dlq.purge") as rec:
            record = None if yes else self.check_export(code)
            c = self.customer(code)
            url = self.dlq_url(code)
            exported = set(record.get("message_ids", [])) if record else set()
            result = PurgeResult(customer=code, queue=c.dlq_name, mode="all" if yes else "export")
            if record:
                result.export = {
                    k: record.get(k) for k in ("export_id", "at", "by", "path", "sha256", "count")
                }
            cutoff = self.wall_clock()
            with _Scan(self, url, visibility=SCAN_VISIBILITY) as scan:
                for batch in scan.batches():
                    doomed = [
                        m
                        for m in batch
                        if (
                            m.message_id in exported if record else (m.sent_at is None or m.sent_at <= cutoff)
                        )
                    ]
                    doomed_ids = {m.message_id for m in doomed}
                    spared = [m for m in batch if m.message_id not in doomed_ids]
                    scan.hold(spared)
                    result.kept.extend(m.message_id for m in spared)
                    deleted = self._delete(url, doomed, result.failed)
                    for m in doomed:
                        if m.message_id not in deleted:
                            scan.hold([m])
                    result.deleted.extend(m.message_id for m in doomed if m.message_id in deleted)
            if record:
                result.missing = sorted(exported - set(result.deleted) - set(result.kept))
                try:
                    self.aws.client("s3").delete_object(
                        Bucket=self.config.s3_config.bucket_name, Key=f"{EXPORT_RECORD_PREFIX}{code}.json"
                    )
                except (ClientError, BotoCoreError) as exc:
                    log.warning("could not clear the export record of %s: %s", code, describe(exc))
            try:
                _depth, result.in_flight = self._depth(url)
            except (ClientError, BotoCoreError):
                result.in_flight = None
            result.audit_key = self._audit(
                rec,
                count=len(result.deleted),
                ids=result.deleted,
                mode=result.mode,
                kept=result.kept,
                missing=result.missing,
                export=result.export,
                failed=[f.to_json() for f in result.failed],
            )
            return result
