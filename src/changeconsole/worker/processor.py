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
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError
from pydantic import ValidationError

from ..errors import is_missing_object
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
    RecipientState,
    Trigger,
    iso_utc,
    parse_queue_message,
    topic_for,
    utcnow,
)
from ..services import emails
from ..services.audit import AuditLog
from ..services.aws import AwsFactory
from ..services.changes import ChangeStore
from ..services.contacts import Audience, ContactListResolver, TopicDefaultsCache
from ..services.dlq.attributes import dead_letter_attributes
from ..services.events import email_tags, new_token
from ..services.ledger import ClaimOutcome, Lane, LaneBusy, Ledger, SlotOutcome, Tally
from ..services.notices import Notice, PreparedNotice, Told, prepare_notice
from ..services.status import DeliveryKey, StatusStore
from .decision import Action, Decision, decide
from .errors import Failure, FailureKind, backoff_delay, classify
from .observe import Metrics, event
from .options import WorkerOptions

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sesv2 import SESV2Client

    from .runtime import Queues

MAX_MESSAGE_IDS = 1000  # kept on the delivery record; every id is also in the ledger
LANE_POLL_SECONDS = 1.5  # how long a message polls a lane another worker holds before it retries via SQS
# A delivery's record says "processing" only once it has lasted this long (the live status screen's
# refresh period): a shorter one goes from queued to its outcome in one write.
PROCESSING_AFTER = 1.0

# States a worker never overwrites with processing/queued/dead_lettered.
SETTLED = (DeliveryState.SENT, DeliveryState.PARTIAL, DeliveryState.SUPERSEDED, DeliveryState.SKIPPED)


# Why processing of one message ends early (``process`` turns each into the message's outcome):


class TriggerMissing(PermanentMessageError):
    """The trigger object is gone: dead-lettered."""

    reason = "trigger_missing"


class CrashLoop(PermanentMessageError):
    """Its delivery's claim was taken over ``max_crash_count`` times (each time from a worker that died
    holding it): dead-lettered, so a message that kills the worker cannot do so forever."""

    reason = "worker_crashes"


class ReceivesExhausted(PermanentMessageError):
    """Received ``max_receives_without_outcome`` times with no outcome (its worker died before it
    claimed the delivery, or a killed worker's long poll took it): dead-lettered, so a message that kills
    the worker before its claim cannot do so forever either."""

    reason = "receives_exhausted"


class Interrupted(Exception):
    """Shutdown deadline reached between two recipients: the message is released to another worker."""


class Busy(Exception):
    """Someone else holds the lane, the delivery's claim or a recipient's send: retried soon through SQS
    visibility, not a failure of the message."""

    def __init__(self, retry_in: float, what: str = "claimed") -> None:
        super().__init__(f"{what} by another worker; retry in {retry_in:.0f}s")
        self.retry_in = retry_in


class StageFailure(Exception):
    """An error of a call made for the customer (role, contacts, SES), classified where it happened:
    retried or dead-lettered as its ``failure`` says."""

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
    receive_count: int  # SQS's, of this copy (a retry is a fresh copy)
    sent_at: float  # epoch seconds (SentTimestamp)
    attributes: dict[str, Any] = field(default_factory=dict)
    failures: int = 0  # failed attempts of earlier copies (``cc-failures``)
    carried_unfinished: int = 0  # receives of earlier copies that ended with no outcome (``cc-crashes``)
    received_at: float = field(default_factory=time.monotonic)
    visible_until: float = 0.0  # monotonic
    started: bool = False  # a delivery thread took it (until then the heartbeat extends it longer)
    claim: tuple[DeliveryKey, str] | None = None  # renewed by the heartbeat while held
    claim_lease_until: float = 0.0  # epoch
    lane: Lane | None = None  # the (change, customer) lock, renewed by the heartbeat while held
    settled: bool = False

    @property
    def unfinished(self) -> int:
        """Receives that ended with no outcome: every earlier receive of this copy (a receive that ends
        with one deletes it or replaces it by a fresh copy), plus those of earlier copies. Not crashes:
        SQS also counts receives of a killed worker's pending long polls, which nobody saw (crashes are
        the claim's take-overs, ``Ledger.claim``)."""
        return self.carried_unfinished + self.receive_count - 1

    @property
    def attempt(self) -> int:
        """Which attempt this is, counting failed ones only (the retry budget, ``max_receive_count``)."""
        return self.failures + 1

    @property
    def receives(self) -> int:
        """Receives that failed or ended with no outcome, plus this one (``cc-receive-count``)."""
        return self.failures + self.unfinished + 1


class OutcomeKind(StrEnum):
    """What the runtime does with the SQS message."""

    DELETE = "delete"
    RETRY = "retry"  # visible again after ``delay``
    RELEASE = "release"  # visible again at once


class Result(StrEnum):
    """What became of a message that did not end in a delivery state (``DeliveryState``)."""

    IGNORED = "ignored"  # needs no work (e.g. s3:TestEvent)
    DUPLICATE = "duplicate"  # the ledger says the delivery is settled already
    DEAD_LETTERED = "dead_lettered"
    RETRY = "retry"  # a transient failure
    BUSY = "busy"  # held elsewhere
    INTERRUPTED = "interrupted"  # shutdown deadline
    SHUTDOWN = "shutdown"  # released unstarted by a stopping worker
    REQUEUED = "requeued"  # a fresh copy was sent instead
    ERROR = "error"  # processing itself failed


@dataclass(frozen=True)
class Outcome:
    kind: OutcomeKind
    result: Result | DeliveryState  # what happened, for stats and logs
    reason: str = ""  # the failure's reason code (retry, dead_lettered, error)
    delay: int = 0
    emails: int = 0
    throttled: bool = False
    failure: bool = True  # False: a retry/release that must not count towards the retry budget

    @property
    def label(self) -> str:
        """``result``, or ``result:reason``: how the worker's stats count it."""
        return f"{self.result.value}:{self.reason}" if self.reason else self.result.value


@dataclass
class _Start:
    """When a claimed delivery started. Its record learns it (``started_at``, one more ``attempts``) with
    the first write for the delivery: "processing" once it lasts ``PROCESSING_AFTER``, else its
    outcome (or its retry, dead letter or release)."""

    key: DeliveryKey
    at: str  # started_at
    since: float = field(default_factory=time.monotonic)
    written: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def due(self) -> bool:
        """Lasted long enough to show "processing", and not written yet."""
        return not self.written and time.monotonic() - self.since >= PROCESSING_AFTER

    def take(self, key: DeliveryKey) -> str | None:
        """``started_at`` for the write of ``key``'s record about to be made: once, then None."""
        with self.lock:
            if self.written or key != self.key:
                return None
            self.written = True
        return self.at


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
    start: _Start | None = None  # set once claimed


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

    @property
    def start(self) -> _Start | None:
        return self.delivery.start if self.delivery is not None else None


@dataclass(frozen=True)
class _Sending:
    """What every recipient of one send pass shares (read only by ``_send_one``)."""

    delivery: _Delivery
    ses: SESV2Client  # the customer's SendEmail client (never retried by botocore)
    audience: Audience
    list_name: str
    notice: Notice  # the event's email, rendered once (``services/notices``)


@dataclass(frozen=True)
class SendResult:
    """How one recipient's turn ended (``_send_one``, or a resend pass reading the ledger)."""

    address: str
    # sent; failed (never sent); unknown (maybe sent); retry (nothing sent, the pass retries later);
    # sending (another worker's send to it is under way)
    state: RecipientState
    message_id: str = ""
    reason: str = ""  # failed/unknown: why, as the delivery record lists it
    topic: str | None = None  # set when this pass called SES for it
    invite: str | None = None  # the calendar method that went with it
    failure: Failure | None = None  # the SES call failed now: why
    retry_in: float = 0.0  # sending: when the other worker's mark runs out

    @property
    def ends_pass(self) -> bool:
        """The delivery cannot finish now: retried (or dead-lettered) as a whole."""
        return self.state is RecipientState.SENDING or (
            self.failure is not None and not self.failure.recipient_only
        )

    def stop(self) -> Exception:
        """What ends the pass (``ends_pass``), as ``process`` handles it."""
        if self.failure is not None:
            return StageFailure(self.failure)
        return Busy(self.retry_in)


@dataclass
class _Booked:
    """One delivery's recipients as booked by ``_record`` (only in the delivering thread)."""

    topic: str  # the email's own topic (the lane notes it)
    total: int  # recipients of the delivery
    sent: dict[str, str] = field(default_factory=dict)  # address -> SES message id
    failed: dict[str, str] = field(default_factory=dict)  # address -> reason


class Processor:
    def __init__(
        self,
        aws: AwsFactory,
        config: Config,
        options: WorkerOptions,
        *,
        queues: Queues,
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
            return Outcome(OutcomeKind.DELETE, Result.IGNORED)
        job = _Job(trigger, _trigger_key(trigger) if trigger.customer == m.customer else None)
        try:
            mapping = self.config.customer(m.customer)
            self._check_trigger(m, trigger)
            if m.unfinished >= self.config.max_receives_without_outcome:
                raise ReceivesExhausted(
                    f"received {m.unfinished} time(s) without an outcome: by a worker that died before it "
                    "claimed the delivery, or by a killed worker's pending long poll "
                    f"(max_receives_without_outcome {self.config.max_receives_without_outcome})",
                    customer=m.customer,
                )
            change_id = trigger.change_id or self._trigger_change_id(trigger)
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
                    start=job.start,
                )
            return Outcome(OutcomeKind.RELEASE, Result.INTERRUPTED, failure=False)
        except Busy as exc:
            # Not a failure of this message: the runtime requeues it rather than let it reach the DLQ.
            self._release_claim(m)
            delay = int(min(self.options.backoff_cap, self.options.busy_retry, max(1.0, exc.retry_in)))
            return Outcome(OutcomeKind.RETRY, Result.BUSY, delay=max(1, delay), failure=False)
        except Exception as exc:
            failure = exc.failure if isinstance(exc, StageFailure) else classify(exc, "central")
            self._release_claim(m)
            if failure.permanent:
                return self._dead_letter(m, failure, job.working, trigger, start=job.start)
            return self._transient(m, failure, job.working, trigger, start=job.start)

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
        raw = self._get_object(trigger.bucket, trigger.key)
        if raw is None:
            raise TriggerMissing(f"{trigger.key} no longer exists", customer=trigger.customer)
        data = _json_object(raw, "trigger")
        change_id = data.get("changeId")
        if not isinstance(change_id, str) or not CHANGE_ID_RE.match(change_id):
            raise InvalidChange(f"trigger {trigger.key} names no valid changeId", customer=trigger.customer)
        return change_id

    @property
    def _s3(self) -> S3Client:
        client: S3Client = self.aws.client("s3")
        return client

    def _get_object(self, bucket: str, key: str) -> bytes | None:
        """The object's bytes; None when it does not exist."""
        try:
            obj = self._s3.get_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if is_missing_object(exc):
                return None
            raise
        size = int(obj.get("ContentLength") or 0)
        if size > MAX_CHANGE_BYTES:
            obj["Body"].close()
            raise InvalidChange(f"{key} is {size} bytes (limit {MAX_CHANGE_BYTES})")
        return bytes(obj["Body"].read())

    def _read_archive(self, change_id: str, customer: str) -> Change | None:
        """The change's current archive record; None when there is none."""
        key = ChangeStore.archive_key(change_id)
        raw = self._get_object(self.bucket, key)
        if raw is None:
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
                raise Busy(self.options.busy_retry, f"{change_id} for {m.customer} held here")
            self._held.add(lane_id)
        try:
            got = self._acquire_lane(change_id, m.customer, key)
        except BaseException:
            self._unhold(lane_id)
            raise
        if isinstance(got, LaneBusy):
            self._unhold(lane_id)
            raise Busy(max(1.0, got.lease_until - time.time() + 1.0), f"{change_id} for {m.customer} held")
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
            if not waited:
                event(logging.INFO, "lane.waiting", customer=customer, change_id=change_id, holder=got.owner)
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
        return Outcome(OutcomeKind.DELETE, state)

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
        return Outcome(OutcomeKind.DELETE, Result.DUPLICATE)

    def _deliver(self, m: InFlight, d: _Delivery) -> Outcome:
        key = d.key
        claim = self.ledger.claim(key, d.owner, message_id=m.message_id)
        if claim.outcome is ClaimOutcome.DONE:
            self._delete_trigger(d.trigger)
            return self._duplicate(m, key)
        if not claim.acquired:
            raise Busy(max(1.0, claim.lease_until - time.time() + 1.0))
        m.claim, m.claim_lease_until = (key, d.owner), claim.lease_until
        if claim.takeovers >= self.config.max_crash_count:
            self._release_claim(m, forget=True)  # a redrive starts with a full budget
            raise CrashLoop(
                f"{claim.takeovers} take-overs of a worker that died holding it "
                f"(max_crash_count {self.config.max_crash_count})",
                customer=m.customer,
            )
        if d.retargeted:  # what a successor reconciles, should this worker die while sending
            self.ledger.mark_lane_delivery(d.lane, key)
        d.resend_only = claim.resend_only
        d.start = _Start(key, iso_utc(utcnow()))
        event(
            logging.INFO,
            "delivery.started",
            **_key_fields(key),
            message_id=m.message_id,
            receive_count=m.receive_count,
            takeovers=claim.takeovers or None,
            resend_only=d.resend_only or None,
        )
        return self._send_all(m, d)

    def _still_processing(self, d: _Delivery) -> None:
        """Write "processing" once the delivery has lasted ``PROCESSING_AFTER`` (checked between steps,
        by whichever thread gets there first)."""
        started = d.start.take(d.key) if d.start is not None and d.start.due else None
        if started is None:
            return
        self.status.update(
            d.key,
            unless_state=SETTLED,
            add_attempt=True,
            state=DeliveryState.PROCESSING,
            started_at=started,
            worker_id=self.worker_id,
            last_error=None,
        )

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
        audience = prepared.audience
        recipients = audience.addresses()
        self._still_processing(d)
        booked = _Booked(topic=prepared.plan.topic, total=len(audience.recipients))
        if d.resend_only:
            recipients, booked.total, known = self._resend_scope(d, recipients, booked.topic)
            for result in known:
                self._record(d, booked, result)
        if recipients:
            sending = _Sending(
                delivery=d,
                ses=sender_ses,
                audience=audience,
                list_name=prepared.list_name,
                notice=prepared.notice,
            )
            done = self._send_each(sending, recipients)
            for each in done:
                if isinstance(each, SendResult):
                    self._record(d, booked, each)
            _raise_first_stop(done)
        return self._finish(m, d, audience, booked)

    def _send_one(self, s: _Sending, address: str) -> SendResult:
        """One recipient: mark it in the ledger, send, record SES's answer; what happened is returned
        (``_record`` books it), never kept here."""
        if self.aborting():
            raise Interrupted()
        d = s.delivery
        self._still_processing(d)
        key = d.key
        addressed = s.notice.addressed(address, s.audience.recipients[address])
        topic = addressed.topic
        token = new_token()
        kwargs = s.notice.send_kwargs(
            addressed,
            address,
            s.list_name,
            configuration_set=self.config.events.configuration_set,
            tags=email_tags(key, token, topic),
        )
        # Rendered first: the window between "sending" and the SES call is only this call.
        slot = self.ledger.begin_send(key, address, d.owner, token=token)
        if slot.outcome is SlotOutcome.BUSY:
            return SendResult(
                address, RecipientState.SENDING, retry_in=max(1.0, slot.lease_until - time.time() + 1.0)
            )
        if slot.outcome is not SlotOutcome.GO:  # settled before: sent, failed or unknown
            state = RecipientState(slot.outcome.value)
            return SendResult(address, state, message_id=slot.message_id or "", reason=state.value)
        try:
            resp = s.ses.send_email(**kwargs)
        except Exception as exc:
            f = classify(exc, "send")
            state = f.recipient_state
            self.ledger.record_failure(key, address, d.owner, state, f.detail, token=token)
            reason = f.reason if f.recipient_only else state.value
            return SendResult(address, state, reason=reason, topic=topic, failure=f)
        message_id = str(resp.get("MessageId", ""))
        self.ledger.record_sent(key, address, d.owner, message_id, token=token)
        invite = s.notice.plan.ics_method if addressed.ics is not None else None
        return SendResult(address, RecipientState.SENT, message_id, topic=topic, invite=invite)

    def _record(self, d: _Delivery, booked: _Booked, r: SendResult) -> None:
        """Book one recipient's result: the one place an outcome counts (the delivery's sent and not-sent
        lists, the lane: what may have reached the customer, metrics and audit of sends made now)."""
        key = d.key
        if r.state is RecipientState.SENT:
            booked.sent[r.address] = r.message_id
        elif r.state in (RecipientState.FAILED, RecipientState.UNKNOWN):
            booked.failed[r.address] = r.reason
        if r.state in (RecipientState.SENT, RecipientState.UNKNOWN):
            d.lane.note_sent(key.version, key.event, booked.topic)
        if r.state is RecipientState.SENT and r.invite == emails.ICS_REQUEST:
            d.lane.note_invite(key.version)
        if r.topic is None:  # not sent by this pass: audited when it was
            return
        if r.state is RecipientState.SENT:
            self.metrics.count(key.customer, "EmailsSent")
            self.audit.record(
                "email.sent",
                actor=self.worker_id,
                **_key_fields(key),
                recipient=r.address,
                topic=r.topic,
                message_id=r.message_id,
                result="sent",
                invite=r.invite,
            )
        elif r.state is RecipientState.FAILED and r.failure is not None:
            self.audit.record(
                "email.failed",
                actor=self.worker_id,
                **_key_fields(key),
                recipient=r.address,
                topic=r.topic,
                result=r.failure.reason,
                detail=r.failure.detail,
            )

    def _resend_scope(
        self, d: _Delivery, audience: list[str], topic: str
    ) -> tuple[list[str], int, list[SendResult]]:
        """A resend pass: (addresses to send, the delivery's recipient total, what the others are).

        The delivery's recipients are its ledger items (every recipient of the settled round has
        one). Only those an operator put back to ``retry`` are sent, and only if still subscribed;
        the others keep their state (``sent``/``failed``/``unknown``) and nobody new is added.
        """
        marks = self.ledger.recipients(d.key)
        subscribed = {a.casefold(): a for a in audience}
        todo: list[str] = []
        known: list[SendResult] = []
        for addr, mark in sorted(marks.items()):
            state = mark.state
            if state is RecipientState.RETRY:
                if addr in subscribed:
                    todo.append(subscribed[addr])
                    continue
                reason = f"no longer subscribed to {topic} when resent; not sent"
                if self.ledger.withdraw(d.key, addr, reason):
                    known.append(SendResult(addr, RecipientState.FAILED, reason="unsubscribed"))
                    continue
                now = self.ledger.recipient(d.key, addr)
                state = now.state if now is not None else state
            if state is RecipientState.SENT:
                known.append(SendResult(addr, state, message_id=mark.message_id or ""))
            elif state in (RecipientState.FAILED, RecipientState.UNKNOWN):
                known.append(SendResult(addr, state, reason=state.value))
            elif addr in subscribed:  # sending (a dead pass's mark): the ledger decides in the send loop
                todo.append(subscribed[addr])
            else:  # an unsubscribed recipient's dead mark: maybe sent
                known.append(SendResult(addr, RecipientState.UNKNOWN, reason=RecipientState.UNKNOWN.value))
        event(
            logging.INFO,
            "delivery.resend_pass",
            **_key_fields(d.key),
            resend=len(todo),
            recipients=len(marks),
        )
        return todo, len(marks), known

    def _send_each(self, s: _Sending, addresses: list[str]) -> list[SendResult | BaseException]:
        """``_send_one`` per address, ``send_parallelism`` at a time. No new send starts after a result
        that ends the pass or an error. Returns each started one's result or error, in address order."""
        limit = max(1, self.options.send_parallelism)
        out: list[SendResult | BaseException] = []
        if self.send_pool is None or limit == 1:
            for address in addresses:
                try:
                    result = self._send_one(s, address)
                except Exception as exc:
                    out.append(exc)
                    break
                out.append(result)
                if result.ends_pass:
                    break
            return out
        gate = threading.Semaphore(limit)
        stop = threading.Event()
        futures: list[Future[SendResult | None]] = []

        def run(address: str) -> SendResult | None:
            try:
                if stop.is_set():
                    return None
                result = self._send_one(s, address)
                if result.ends_pass:
                    stop.set()
                return result
            except BaseException:
                stop.set()
                raise
            finally:
                gate.release()

        for address in addresses:
            gate.acquire()
            if stop.is_set():
                gate.release()
                break
            futures.append(self.send_pool.submit(run, address))
        for future in futures:
            error = future.exception()
            if error is not None:
                out.append(error)
            elif (started := future.result()) is not None:
                out.append(started)
        return out

    def _finish(self, m: InFlight, d: _Delivery, audience: Audience, booked: _Booked) -> Outcome:
        key, sent, failed, total = d.key, booked.sent, booked.failed, booked.total
        if total == 0:
            state = DeliveryState.SKIPPED
            last_error: str | None = f"no subscribed recipients for {booked.topic}"
        elif not failed:
            state, last_error = DeliveryState.SENT, None
        else:
            # "failed" only when every recipient was definitely not sent; an unknown outcome (a send
            # cut off by a crash) may have gone out, so it makes the delivery partial.
            unknown = sum(1 for reason in failed.values() if reason == RecipientState.UNKNOWN.value)
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
            topic=booked.topic,
            start=d.start,
        )
        if any(reason == RecipientState.UNKNOWN.value for reason in failed.values()):
            # Their SES events confirm them; with none by then the reconciler decides (services.events).
            self.ledger.note_unknown(key, time.time() + self.config.events.unknown_grace_seconds)
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
        return Outcome(OutcomeKind.DELETE, state, emails=len(sent))

    # -- exits ---------------------------------------------------------------------------------
    def _transient(
        self,
        m: InFlight,
        failure: Failure,
        key: DeliveryKey | None,
        trigger: Trigger | None,
        *,
        start: _Start | None = None,
    ) -> Outcome:
        if m.attempt >= self.config.max_receive_count:
            # The retry budget is used up: to the DLQ now, with the reason, and recorded.
            exhausted = Failure(
                FailureKind.PERMANENT,
                "retries_exhausted",
                f"{m.attempt} attempts; last error {failure.reason}: {failure.detail}"[:500],
            )
            return self._dead_letter(m, exhausted, key, trigger, start=start)
        delay = backoff_delay(m.attempt, self.options.backoff_base, self.options.backoff_cap)
        if failure.throttled:
            self.cooldown(m.customer, float(delay))
        if key is not None:
            self._status(
                key,
                state=DeliveryState.QUEUED,
                last_error=f"{failure.reason}: {failure.detail}",
                next_attempt_in=delay,
                unless_state=(*SETTLED, DeliveryState.FAILED),
                start=start,
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
            attempt=m.attempt,
        )
        return Outcome(
            OutcomeKind.RETRY, Result.RETRY, failure.reason, delay=delay, throttled=failure.throttled
        )

    def _dead_letter(
        self,
        m: InFlight,
        failure: Failure,
        key: DeliveryKey | None,
        trigger: Trigger | None,
        *,
        record: bool = True,
        start: _Start | None = None,
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
            receive_count=m.receives,
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
                start=start,
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
        return Outcome(OutcomeKind.DELETE, Result.DEAD_LETTERED, failure.reason)

    # -- helpers -----------------------------------------------------------------------------
    def _status(
        self,
        key: DeliveryKey,
        *,
        unless_state: Iterable[DeliveryState] = (),
        start: _Start | None = None,
        **fields: Any,
    ) -> None:
        """Write ``key``'s record; with the delivery's start if it has not been written yet."""
        fields = {k: v for k, v in fields.items() if v is not None or k == "last_error"}
        started = start.take(key) if start is not None else None
        if started is not None:
            fields["started_at"] = started
        self.status.update(key, unless_state=unless_state, add_attempt=started is not None, **fields)

    def _release_claim(self, m: InFlight, *, forget: bool = False) -> None:
        if m.claim is None:
            return
        key, owner = m.claim
        try:
            self.ledger.finish_claim(key, owner, done=False, forget=forget)
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
        self._s3.delete_object(Bucket=trigger.bucket, Key=trigger.key)


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


def _raise_first_stop(done: list[SendResult | BaseException]) -> None:
    """Raise what ended a send pass, if anything did: a permanent failure says the most about the
    delivery, so it goes first; otherwise the first (in address order)."""
    stops: list[BaseException] = [
        x if isinstance(x, BaseException) else x.stop()
        for x in done
        if isinstance(x, BaseException) or x.ends_pass
    ]
    if not stops:
        return
    for exc in stops:
        if isinstance(exc, StageFailure) and exc.failure.permanent:
            raise exc
    raise stops[0]
