"""Processing one queue message: the worker's Textual-free core.

parse → isolation check → lock the (change, customer) lane (ledger) → read the change's current
archive record → decide what this customer must receive now (``decision.decide``) → claim the
delivery (ledger) → assume the customer's SES role → subscribed contacts → render from the archive
record → send per recipient (ledger per recipient) → delivery record → release the lane → delete
trigger → acknowledge. Every exit returns an ``Outcome`` the runtime applies to the SQS message
(delete, retry later, release).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError
from pydantic import ValidationError

from ..models import (
    CHANGE_ID_RE,
    MAX_CHANGE_BYTES,
    Change,
    Config,
    CustomerMapping,
    DeliveryState,
    Ignore,
    InvalidChange,
    IsolationViolation,
    PermanentMessageError,
    Trigger,
    iso_utc,
    parse_queue_message,
    topic_for,
    utcnow,
)
from ..services import emails
from ..services.audit import AuditLog
from ..services.aws import AwsFactory
from ..services.changes import ChangeStore, is_missing
from ..services.contacts import Audience, ContactListResolver, TopicDefaultsCache
from ..services.dlq.attributes import dead_letter_attributes
from ..services.ledger import FAILED, RETRY, SENT, UNKNOWN, Lane, LaneBusy, Ledger, Tally
from ..services.notices import PreparedNotice, Told, prepare_notice
from ..services.status import DeliveryKey, StatusStore
from .decision import Action, Decision, decide
from .errors import Failure, backoff_delay, classify
from .observe import Metrics, event
from .options import WorkerOptions

MAX_MESSAGE_IDS = 1000  # kept on the delivery record; every id is also in the ledger
LANE_POLL_SECONDS = 1.5  # how long a message polls a lane another worker holds before it retries via SQS

# States a worker never overwrites with processing/queued/dead_lettered.
SETTLED = (DeliveryState.SENT, DeliveryState.PARTIAL, DeliveryState.SUPERSEDED, DeliveryState.SKIPPED)


class TriggerMissing(PermanentMessageError):
    reason = "trigger_missing"


class Interrupted(Exception):
    """Shutdown deadline reached between two recipients."""


class ClaimBusy(Exception):
    def __init__(self, retry_in: float, what: str = "claimed") -> None:
        super().__init__(f"{what} by another worker; retry in {retry_in:.0f}s")
        self.retry_in = retry_in


class _Gone(Exception):
    """The trigger object no longer exists."""


class StageFailure(Exception):
    """An error of a call made for the customer (role, contacts, SES), classified where it happened."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.detail)
        self.failure = failure


def _customer_call(stage: str, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception as exc:
        raise StageFailure(classify(exc, stage)) from exc


@dataclass
class InFlight:
    """One received SQS message while this worker holds it."""

    customer: str  # the queue's customer
    queue_url: str
    message_id: str
    receipt: str
    body: str
    receive_count: int
    sent_at: float  # epoch seconds (SentTimestamp)
    attributes: dict[str, Any] = field(default_factory=dict)
    received_at: float = field(default_factory=time.monotonic)
    visible_until: float = 0.0  # monotonic
    claim: tuple[DeliveryKey, str] | None = None  # renewed by the heartbeat while held
    claim_lease_until: float = 0.0  # epoch
    lane: Lane | None = None  # the (change, customer) lock, renewed by the heartbeat while held
    settled: bool = False


@dataclass
class Outcome:
    action: str  # delete | retry | release
    delay: int = 0
    result: str = ""  # what happened, for stats and logs
    emails: int = 0
    throttled: bool = False
    failure: bool = True  # False: a retry/release that must not count towards maxReceiveCount


@dataclass
class _Delivery:
    key: DeliveryKey
    change: Change  # the archive record of ``key.version``
    mapping: CustomerMapping
    owner: str
    trigger: Trigger
    lane: Lane
    retargeted: bool = False  # not the delivery the trigger names (the lane's lock names the trigger's)
    # Reopened by an operator (``change resend-unknown``): send only to recipients in ``retry``.
    resend_only: bool = False


@dataclass
class _Job:
    """One message on its way: the delivery its trigger names and, once decided, the one being sent."""

    trigger: Trigger
    key: DeliveryKey | None  # the trigger's own delivery (None: a flat key naming no version)
    delivery: _Delivery | None = None

    @property
    def working(self) -> DeliveryKey | None:
        """The delivery whose record follows this message's fate."""
        return self.delivery.key if self.delivery is not None else self.key


class Processor:
    def __init__(
        self,
        aws: AwsFactory,
        config: Config,
        options: WorkerOptions,
        *,
        queues: Any,
        status: StatusStore,
        ledger: Ledger,
        audit: AuditLog,
        metrics: Metrics,
        send_pool: ThreadPoolExecutor | None,
        aborting: Callable[[], bool] = lambda: False,
        cooldown: Callable[[str, float], None] = lambda _c, _s: None,
    ) -> None:
        self.aws = aws
        self.config = config
        self.options = options
        self.queues = queues
        self.status = status
        self.ledger = ledger
        self.audit = audit
        self.metrics = metrics
        self.send_pool = send_pool
        self.aborting = aborting
        self.cooldown = cooldown
        self.defaults_cache = TopicDefaultsCache()
        self.contact_lists = ContactListResolver(config)
        self.bucket = config.s3_config.bucket_name
        self._local = threading.Condition()
        self._held: set[tuple[str, str]] = set()  # lanes held by this worker's threads

    @property
    def worker_id(self) -> str:
        return self.options.worker_id

    def _owner(self) -> str:
        return f"{self.worker_id}/{uuid.uuid4().hex[:12]}"

    # -- entry --------------------------------------------------------------------------
    def process(self, m: InFlight) -> Outcome:
        try:
            trigger = parse_queue_message(m.body)
        except PermanentMessageError as exc:
            return self._dead_letter(m, classify(exc), None, None)
        if isinstance(trigger, Ignore):
            event(
                logging.INFO,
                "message.ignored",
                customer=m.customer,
                message_id=m.message_id,
                reason=trigger.reason,
            )
            return Outcome("delete", result="ignored")
        job = _Job(trigger, _trigger_key(trigger) if trigger.customer == m.customer else None)
        try:
            mapping = self.config.customer(m.customer)
            self._check_trigger(m, trigger)
            try:
                change_id = trigger.change_id or self._trigger_change_id(trigger)
            except _Gone:
                raise TriggerMissing(f"{trigger.key} no longer exists", customer=m.customer) from None
            lane = self._take_lane(m, change_id, job.key)
            try:
                return self._handle(m, job, change_id, mapping, lane)
            finally:
                self._release_lane(m)
        except Interrupted:
            self._release_claim(m)
            if job.working is not None:
                self._status(
                    job.working,
                    state=DeliveryState.QUEUED,
                    last_error="interrupted by worker shutdown",
                    unless_state=(*SETTLED, DeliveryState.FAILED),
                )
            return Outcome("release", result="interrupted", failure=False)
        except ClaimBusy as exc:
            # Not a failure of this message: the runtime requeues it rather than let it reach the DLQ.
            self._release_claim(m)
            delay = int(min(self.options.backoff_cap, self.options.busy_retry, max(1.0, exc.retry_in)))
            return Outcome("retry", delay=max(1, delay), result="busy", failure=False)
        except Exception as exc:
            failure = exc.failure if isinstance(exc, StageFailure) else classify(exc, "central")
            self._release_claim(m)
            if failure.permanent:
                return self._dead_letter(m, failure, job.working, trigger)
            return self._transient(m, failure, job.working, trigger)

    # -- steps ----------------------------------------------------------------------------
    def _check_trigger(self, m: InFlight, trigger: Trigger) -> None:
        """The queue and the trigger must name the same customer, and the source must be ours."""
        if trigger.customer != m.customer:
            raise IsolationViolation(
                f"message in {m.customer}'s queue names customer {trigger.customer!r}", customer=m.customer
            )
        if trigger.bucket is not None and trigger.bucket != self.bucket:
            raise IsolationViolation(
                f"trigger in bucket {trigger.bucket!r}, not the metadata bucket", customer=m.customer
            )
        direct_ref = trigger.source == "direct" and trigger.key is not None
        if direct_ref and not str(trigger.key).startswith(f"payloads/{m.customer}/"):
            raise IsolationViolation(
                f"payload key {trigger.key!r} is outside payloads/{m.customer}/", customer=m.customer
            )

    def _trigger_change_id(self, trigger: Trigger) -> str:
        """The change a flat trigger key (``customers/{code}/{name}.json``) belongs to: its ``changeId``.

        Only the id is taken from the trigger object; what is sent comes from the archive."""
        assert trigger.bucket is not None and trigger.key is not None
        data = _json_object(self._get_object(trigger.bucket, trigger.key), "trigger")
        change_id = data.get("changeId")
        if not isinstance(change_id, str) or not CHANGE_ID_RE.match(change_id):
            raise InvalidChange(f"trigger {trigger.key} names no valid changeId", customer=trigger.customer)
        return change_id

    def _get_object(self, bucket: str, key: str) -> bytes:
        try:
            obj = self.aws.client("s3").get_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if is_missing(exc):
                raise _Gone() from None
            raise
        size = int(obj.get("ContentLength") or 0)
        if size > MAX_CHANGE_BYTES:
            obj["Body"].close()
            raise InvalidChange(f"{key} is {size} bytes (limit {MAX_CHANGE_BYTES})")
        return bytes(obj["Body"].read())

    def _read_archive(self, change_id: str, customer: str) -> Change | None:
        """The change's current archive record; None when there is none."""
        key = ChangeStore.archive_key(change_id)
        try:
            raw = self._get_object(self.bucket, key)
        except _Gone:
            return None
        try:
            change = Change.model_validate(_json_object(raw, key))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "$"
            raise InvalidChange(
                f"{key} is not a valid change ({exc.error_count()} problem(s); {where}: {first['msg']})",
                customer=customer,
            ) from None
        if change.change_id != change_id:
            raise InvalidChange(f"{key} holds change {change.change_id}", customer=customer)
        return change

    def _take_lane(self, m: InFlight, change_id: str, key: DeliveryKey | None) -> Lane:
        """One delivery at a time per change and customer: busy elsewhere → retry soon (not a failure).

        A lane another thread of this worker holds is waited for here (up to ``busy_retry``) rather
        than through SQS: a backlog of one change's versions then drains without round trips."""
        lane_id = (change_id, m.customer)
        with self._local:
            if not self._local.wait_for(lambda: lane_id not in self._held, self.options.busy_retry):
                raise ClaimBusy(self.options.busy_retry, f"{change_id} for {m.customer} held here")
            self._held.add(lane_id)
        try:
            got = self._acquire_lane(change_id, m.customer, key)
        except BaseException:
            self._unhold(lane_id)
            raise
        if isinstance(got, LaneBusy):
            self._unhold(lane_id)
            raise ClaimBusy(
                max(1.0, got.lease_until - time.time() + 1.0), f"{change_id} for {m.customer} held"
            )
        m.lane = got
        return got

    def _acquire_lane(self, change_id: str, customer: str, key: DeliveryKey | None) -> Lane | LaneBusy:
        """Try the lane a few times over about a second (a holder is usually done by then), so a
        message held elsewhere seldom takes the slower way back through SQS."""
        owner = self._owner()
        pause, waited = 0.1, 0.0
        while True:
            got = self.ledger.acquire_lane(change_id, customer, owner, delivery=key)
            if not isinstance(got, LaneBusy) or waited + pause > LANE_POLL_SECONDS or self.aborting():
                return got
            time.sleep(pause)
            waited += pause
            pause *= 2

    def _unhold(self, lane_id: tuple[str, str]) -> None:
        with self._local:
            self._held.discard(lane_id)
            self._local.notify_all()

    def _release_lane(self, m: InFlight) -> None:
        lane, m.lane = m.lane, None
        if lane is None:
            return
        try:
            if not self.ledger.release_lane(lane):
                event(logging.WARNING, "lane.lost", customer=lane.customer, change_id=lane.change_id)
        except Exception as exc:  # the lease expires on its own; the next holder reconciles
            event(
                logging.WARNING,
                "lane.release_failed",
                customer=lane.customer,
                change_id=lane.change_id,
                error=type(exc).__name__,
            )
        finally:
            self._unhold((lane.change_id, lane.customer))

    def _adopt(self, lane: Lane, archive: Change | None) -> None:
        """A holder died on ``lane.stolen``: what it may have sent counts as sent to the customer."""
        stolen = lane.stolen
        if stolen is None:
            return
        tally = self.ledger.reconcile(stolen)
        if tally.maybe_sent:
            ever_approved = archive is not None and archive.ever_approved
            lane.note_sent(stolen.version, stolen.event, topic_for(stolen.event, ever_approved=ever_approved))
        event(
            logging.WARNING,
            "lane.taken_over",
            **_key_fields(stolen),
            sent=tally.sent,
            unknown=tally.unknown,
        )

    def _handle(
        self, m: InFlight, job: _Job, change_id: str, mapping: CustomerMapping, lane: Lane
    ) -> Outcome:
        archive = self._read_archive(change_id, m.customer)
        self._adopt(lane, archive)
        trigger = job.trigger
        decision = decide(m.customer, trigger.version, trigger.event, archive, lane)
        if decision.action is Action.REJECT:
            raise IsolationViolation(decision.reason, customer=m.customer)
        if decision.action is Action.NOTHING:
            return self._nothing_due(m, job, archive, decision, lane)
        assert archive is not None and decision.event is not None
        key = DeliveryKey(change_id, archive.version, decision.event, m.customer)
        if key != job.key and job.key is not None:
            due = f"{decision.reason}; the notice due is version {key.version}'s {key.event.value}"
            self._settle_record(job.key, archive, due, lane)
        job.delivery = _Delivery(key, archive, mapping, lane.owner, trigger, lane, retargeted=key != job.key)
        return self._deliver(m, job.delivery)

    def _nothing_due(
        self, m: InFlight, job: _Job, archive: Change | None, decision: Decision, lane: Lane
    ) -> Outcome:
        """Nothing is due: the trigger's record says why, and what it had sent (``_settle_record``)."""
        state = DeliveryState.SKIPPED
        if job.key is not None:
            state = self._settle_record(job.key, archive, decision.reason, lane)
        self._delete_trigger(job.trigger)
        event(
            logging.WARNING if decision.row in (1, 2) else logging.INFO,
            f"delivery.{state.value}",
            customer=m.customer,
            change_id=job.key.change_id if job.key else None,
            version=job.key.version if job.key else None,
            event=job.key.event.value if job.key else None,
            rule=decision.row,
            reason=decision.reason,
        )
        return Outcome("delete", result=state.value)

    def _settle_record(
        self, key: DeliveryKey, archive: Change | None, reason: str, lane: Lane
    ) -> DeliveryState:
        """Record the trigger's delivery as superseded (a later version is current) or skipped, with
        what it had sent before: its recipient marks are reconciled (sent stays sent, a dead send
        becomes unknown), so no record says 0 sent when something was."""
        tally = self.ledger.reconcile(key)
        if tally.maybe_sent:
            ever_approved = archive is not None and archive.ever_approved
            lane.note_sent(key.version, key.event, topic_for(key.event, ever_approved=ever_approved))
        stale = archive is not None and key.version < archive.version
        state = DeliveryState.SUPERSEDED if stale else DeliveryState.SKIPPED
        fields: dict[str, Any] = {}
        if tally.total and stale:  # a worker began it and died: its claim is settled with it
            self.ledger.settle_abandoned(key, state.value)
        if tally.total:
            reason += f"; {_tally_text(tally)}"
            fields = {
                "recipients_total": tally.total,
                "recipients_sent": tally.sent,
                "recipients_failed": tally.unknown + tally.failed,
                "message_ids": tally.message_ids[:MAX_MESSAGE_IDS],
            }
        self._status(
            key,
            state=state,
            finished_at=iso_utc(utcnow()),
            last_error=f"{state.value}: {reason}",
            worker_id=self.worker_id,
            unless_state=SETTLED,
            **fields,
        )
        return state

    def _duplicate(self, m: InFlight, key: DeliveryKey, customer: str | None = None) -> Outcome:
        """The ledger says this delivery is done already: log it, delete the message."""
        event(logging.INFO, "delivery.duplicate", **_key_fields(key, customer), message_id=m.message_id)
        return Outcome("delete", result="duplicate")

    def _deliver(self, m: InFlight, d: _Delivery) -> Outcome:
        key = d.key
        claim = self.ledger.claim(key, d.owner, message_id=m.message_id)
        if claim.outcome == "done":
            self._delete_trigger(d.trigger)
            return self._duplicate(m, key)
        if not claim.acquired:
            raise ClaimBusy(max(1.0, claim.lease_until - time.time() + 1.0))
        m.claim, m.claim_lease_until = (key, d.owner), claim.lease_until
        if d.retargeted:  # what a successor reconciles, should this worker die while sending
            self.ledger.mark_lane_delivery(d.lane, key)
        d.resend_only = claim.resend_only
        started = iso_utc(utcnow())
        self._status(
            key,
            state=DeliveryState.PROCESSING,
            started_at=started,
            worker_id=self.worker_id,
            last_error=None,
            add_attempt=True,
            unless_state=SETTLED,
        )
        event(
            logging.INFO,
            "delivery.started",
            **_key_fields(key),
            message_id=m.message_id,
            receive_count=m.receive_count,
            resend_only=d.resend_only or None,
        )
        return self._send_all(m, d)

    def _send_all(self, m: InFlight, d: _Delivery) -> Outcome:
        key, mapping = d.key, d.mapping
        ses = _customer_call("assume_role", lambda: self.aws.customer_client(mapping, "sesv2"))
        # SendEmail goes through a client botocore never retries: a retried send could duplicate.
        sender_ses = _customer_call("assume_role", lambda: self.aws.customer_send_client(mapping))
        told = Told(frozenset(d.lane.topics), d.lane.invite_version)
        prepared: PreparedNotice = _customer_call(
            "contacts",
            lambda: prepare_notice(
                ses,
                self.config,
                d.change,
                key.event,
                key.customer,
                told,
                contact_lists=self.contact_lists,
                defaults_cache=self.defaults_cache,
            ),
        )
        audience, notice, list_name = prepared.audience, prepared.notice, prepared.list_name
        primary = prepared.plan.topic
        recipients = audience.addresses()
        sent: dict[str, str] = {}
        failed: dict[str, str] = {}
        total: int | None = None
        if d.resend_only:
            recipients, total = self._resend_scope(d, recipients, primary, sent, failed)
        if not recipients:
            return self._finish(m, d, audience, sent=sent, failed=failed, topic=primary, total=total)
        lock = threading.Lock()

        def reached(address: str, outcome: str, message_id: str = "", invite: bool = False) -> None:
            """Book one recipient's outcome; what may have reached it counts as sent on the lane."""
            with lock:
                if outcome == SENT:
                    sent[address] = message_id
                else:
                    failed[address] = outcome
                if outcome in (SENT, UNKNOWN):
                    d.lane.note_sent(key.version, key.event, primary)
                if invite:
                    d.lane.note_invite(key.version)

        def one(address: str) -> None:
            if self.aborting():
                raise Interrupted()
            addressed = notice.addressed(address, audience.recipients[address])
            topic, ics = addressed.topic, addressed.ics
            kwargs = notice.send_kwargs(addressed, address, list_name)
            # Rendered first: the window between "sending" and the SES call is only this call.
            slot = self.ledger.begin_send(key, address, d.owner)
            if slot.outcome in (SENT, FAILED, UNKNOWN):
                reached(address, slot.outcome, slot.message_id or "")
                return
            if slot.outcome == "busy":
                raise ClaimBusy(max(1.0, slot.lease_until - time.time() + 1.0))
            try:
                resp = sender_ses.send_email(**kwargs)
            except Exception as exc:
                f = classify(exc, "send")
                state = UNKNOWN if f.ambiguous else FAILED if f.recipient_only else RETRY
                self.ledger.record_failure(key, address, d.owner, state, f.detail)
                if f.recipient_only:
                    reached(address, f.reason)
                    self.audit.record(
                        "email.failed",
                        actor=self.worker_id,
                        **_key_fields(key),
                        recipient=address,
                        topic=topic,
                        result=f.reason,
                        detail=f.detail,
                    )
                    return
                if f.ambiguous:
                    reached(address, UNKNOWN)
                raise StageFailure(f) from exc
            message_id = str(resp.get("MessageId", ""))
            self.ledger.record_sent(key, address, d.owner, message_id)
            reached(
                address,
                SENT,
                message_id,
                invite=ics is not None and notice.plan.ics_method == emails.ICS_REQUEST,
            )
            self.metrics.count(key.customer, "EmailsSent")
            self.audit.record(
                "email.sent",
                actor=self.worker_id,
                **_key_fields(key),
                recipient=address,
                topic=topic,
                message_id=message_id,
                result="sent",
                invite=notice.plan.ics_method if ics is not None else None,
            )

        self._fan_out(recipients, one)
        return self._finish(m, d, audience, sent=sent, failed=failed, topic=primary, total=total)

    def _resend_scope(
        self, d: _Delivery, audience: list[str], topic: str, sent: dict[str, str], failed: dict[str, str]
    ) -> tuple[list[str], int]:
        """A resend pass: (addresses to send, the delivery's recipient total).

        The delivery's recipients are its ledger items (every recipient of the settled round has
        one). Only those an operator put back to ``retry`` are sent, and only if still subscribed;
        the others keep their state (``sent``/``failed``/``unknown``) and nobody new is added.
        """
        items = self.ledger.recipients(d.key)
        subscribed = {a.casefold(): a for a in audience}
        todo: list[str] = []
        for addr, item in sorted(items.items()):
            state = item.get("state")
            if state == RETRY:
                if addr in subscribed:
                    todo.append(subscribed[addr])
                    continue
                reason = f"no longer subscribed to {topic} when resent; not sent"
                if self.ledger.withdraw(d.key, addr, reason):
                    failed[addr] = "unsubscribed"
                    continue
                state = ((self.ledger.recipients(d.key).get(addr)) or {}).get("state")
            if state == SENT:
                sent[addr] = str(item.get("message_id") or "")
            elif state == FAILED:
                failed[addr] = "failed"
            elif state == UNKNOWN:
                failed[addr] = "unknown"
            elif addr in subscribed:  # sending (a dead pass's mark): the ledger decides in the send loop
                todo.append(subscribed[addr])
            else:  # an unsubscribed recipient's dead mark: maybe sent
                failed[addr] = "unknown"
        event(
            logging.INFO,
            "delivery.resend_pass",
            **_key_fields(d.key),
            resend=len(todo),
            recipients=len(items),
        )
        return todo, len(items)

    def _fan_out(self, items: Iterable[str], fn: Callable[[str], None]) -> None:
        """Run ``fn`` per recipient, ``send_parallelism`` at a time; stop at the first error and raise it."""
        limit = max(1, self.options.send_parallelism)
        if self.send_pool is None or limit == 1:
            for item in items:
                fn(item)
            return
        gate = threading.Semaphore(limit)
        stop = threading.Event()
        futures: list[Future[None]] = []

        def run(item: str) -> None:
            try:
                if not stop.is_set():
                    fn(item)
            except BaseException:
                stop.set()
                raise
            finally:
                gate.release()

        for item in items:
            gate.acquire()
            if stop.is_set():
                gate.release()
                break
            futures.append(self.send_pool.submit(run, item))
        errors = [f.exception() for f in futures]
        first = next((e for e in errors if e is not None), None)
        if first is not None:
            # A permanent failure says the most about the delivery: raise it first.
            for exc in errors:
                if isinstance(exc, StageFailure) and exc.failure.permanent:
                    raise exc
            raise first

    def _finish(
        self,
        m: InFlight,
        d: _Delivery,
        audience: Audience,
        *,
        sent: dict[str, str],
        failed: dict[str, str],
        topic: str,
        total: int | None = None,
    ) -> Outcome:
        key = d.key
        total = len(audience.recipients) if total is None else total
        if total == 0:
            state = DeliveryState.SKIPPED
            last_error: str | None = f"no subscribed recipients for {topic}"
        elif not failed:
            state, last_error = DeliveryState.SENT, None
        else:
            # "failed" only when every recipient was definitely not sent; an unknown outcome (a send
            # cut off by a crash) may have gone out, so it makes the delivery partial.
            unknown = sum(1 for reason in failed.values() if reason == "unknown")
            state = DeliveryState.PARTIAL if sent or unknown else DeliveryState.FAILED
            reasons = sorted(set(failed.values()))
            last_error = f"{len(failed)} of {total} recipient(s) not confirmed sent ({', '.join(reasons)})"
        now = iso_utc(utcnow())
        self._status(
            key,
            state=state,
            recipients_total=total,
            recipients_sent=len(sent),
            recipients_failed=len(failed),
            message_ids=[mid for mid in sent.values() if mid][:MAX_MESSAGE_IDS],
            finished_at=now,
            worker_id=self.worker_id,
            last_error=last_error,
            topic=topic,
        )
        self.ledger.finish_claim(key, d.owner, done=True, result=state.value)
        m.claim = None
        self._delete_trigger(d.trigger)
        event(
            logging.INFO,
            "delivery.finished",
            **_key_fields(key),
            state=state.value,
            recipients=total,
            sent=len(sent),
            failed=len(failed),
            excluded_by_whitelist=audience.excluded_by_whitelist,
        )
        return Outcome("delete", result=state.value, emails=len(sent))

    # -- exits ---------------------------------------------------------------------------------
    def _transient(
        self, m: InFlight, failure: Failure, key: DeliveryKey | None, trigger: Trigger | None
    ) -> Outcome:
        if m.receive_count >= self.config.max_receive_count:
            # SQS would move it to the DLQ on the next receive: do it now, with the reason, and record it.
            exhausted = Failure(
                "permanent",
                "retries_exhausted",
                f"{m.receive_count} attempts; last error {failure.reason}: {failure.detail}"[:500],
            )
            return self._dead_letter(m, exhausted, key, trigger)
        delay = backoff_delay(m.receive_count, self.options.backoff_base, self.options.backoff_cap)
        if failure.throttled:
            self.cooldown(m.customer, float(delay))
        if key is not None:
            self._status(
                key,
                state=DeliveryState.QUEUED,
                last_error=f"{failure.reason}: {failure.detail}",
                next_attempt_in=delay,
                unless_state=(*SETTLED, DeliveryState.FAILED),
            )
        event(
            logging.WARNING,
            "delivery.retry",
            customer=m.customer,
            change_id=key.change_id if key else None,
            version=key.version if key else None,
            event=key.event.value if key else None,
            message_id=m.message_id,
            reason=failure.reason,
            detail=failure.detail,
            retry_in=delay,
            receive_count=m.receive_count,
        )
        return Outcome("retry", delay=delay, result=f"retry:{failure.reason}", throttled=failure.throttled)

    def _dead_letter(
        self,
        m: InFlight,
        failure: Failure,
        key: DeliveryKey | None,
        trigger: Trigger | None,
        *,
        record: bool = True,
    ) -> Outcome:
        """To the customer's DLQ with reason attributes, then the original is deleted."""
        change_id = key.change_id if key else (trigger.change_id if trigger else None)
        version = key.version if key else (trigger.version if trigger else None)
        ev = key.event.value if key else (trigger.event.value if trigger and trigger.event else None)
        if change_id is not None and not CHANGE_ID_RE.match(change_id):
            change_id = None
        attrs = dead_letter_attributes(
            m.attributes,
            reason=failure.reason,
            detail=failure.detail or failure.reason,
            customer=m.customer,
            change_id=change_id,
            version=version,
            event=ev,
            failed_at=iso_utc(utcnow()),
            source_message_id=m.message_id,
            receive_count=m.receive_count,
            worker=self.worker_id,
        )
        self.queues.dead_letter(m, attrs)
        isolation = failure.reason == IsolationViolation.reason
        if record and key is not None and not isolation:
            self._status(
                key,
                state=DeliveryState.DEAD_LETTERED,
                finished_at=iso_utc(utcnow()),
                last_error=f"{failure.reason}: {failure.detail}",
                worker_id=self.worker_id,
                unless_state=SETTLED,
            )
        self.metrics.count(m.customer, "MessagesDeadLettered")
        about: dict[str, Any] = {
            "customer": m.customer,
            "change_id": change_id,
            "version": version,
            "event": ev,
            "message_id": m.message_id,
            "reason": failure.reason,
            "detail": failure.detail,
        }
        self.audit.record("message.rejected", actor=self.worker_id, **about, result="dead_lettered")
        event(logging.ERROR, "message.dead_lettered", **about)
        return Outcome("delete", result=f"dead_lettered:{failure.reason}")

    # -- helpers -----------------------------------------------------------------------------
    def _status(
        self,
        key: DeliveryKey,
        *,
        unless_state: Iterable[DeliveryState] = (),
        add_attempt: bool = False,
        **fields: Any,
    ) -> None:
        fields = {k: v for k, v in fields.items() if v is not None or k == "last_error"}
        self.status.update(key, unless_state=unless_state, add_attempt=add_attempt, **fields)

    def _release_claim(self, m: InFlight) -> None:
        if m.claim is None:
            return
        key, owner = m.claim
        try:
            self.ledger.finish_claim(key, owner, done=False)
        except Exception as exc:  # the lease expires on its own
            event(
                logging.WARNING,
                "claim.release_failed",
                customer=key.customer,
                change_id=key.change_id,
                error=f"{type(exc).__name__}",
            )
        m.claim = None

    def _delete_trigger(self, trigger: Trigger) -> None:
        if trigger.bucket is None or trigger.key is None:
            return
        if not (trigger.key.startswith("customers/") or trigger.key.startswith("payloads/")):
            return
        self.aws.client("s3").delete_object(Bucket=trigger.bucket, Key=trigger.key)


def _key_fields(key: DeliveryKey, customer: str | None = None) -> dict[str, Any]:
    """The fields naming one delivery in worker events and audit records (``customer`` overrides the
    key's, e.g. the queue's customer when the key comes from the trigger)."""
    return {
        "customer": key.customer if customer is None else customer,
        "change_id": key.change_id,
        "version": key.version,
        "event": key.event.value,
    }


def _trigger_key(trigger: Trigger) -> DeliveryKey | None:
    """The delivery a trigger names, when it names one completely."""
    if trigger.change_id is None or trigger.version is None or trigger.event is None:
        return None
    return DeliveryKey(trigger.change_id, trigger.version, trigger.event, trigger.customer)


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidChange(f"{what} is not JSON: {exc}") from None
    except RecursionError:
        raise InvalidChange(f"{what} is nested too deeply") from None
    if not isinstance(data, dict):
        raise InvalidChange(f"{what} is not a JSON object")
    return data


def _tally_text(tally: Tally) -> str:
    text = f"{tally.sent} of {tally.total} recipient(s) had been sent"
    if tally.unknown:
        text += f", {tally.unknown} unknown (maybe sent; `change resend-unknown` decides)"
    return text
