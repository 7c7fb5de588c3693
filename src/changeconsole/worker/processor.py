"""Processing one queue message: the worker's Textual-free core.

parse → isolation check → load snapshot → validate → superseded check → claim (ledger) → assume the
customer's SES role → subscribed contacts → render → send per recipient (ledger per recipient) →
delivery record → delete trigger → acknowledge. Every exit returns an ``Outcome`` the runtime applies
to the SQS message (delete, retry later, release).
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
    TOPIC_CALENDAR,
    Change,
    Config,
    CustomerMapping,
    DeliveryState,
    EmailEvent,
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
from ..services.contacts import Audience, TopicDefaultsCache, subscribed_audience
from ..services.dlq.attributes import dead_letter_attributes
from ..services.ledger import FAILED, RETRY, SENT, UNKNOWN, Ledger
from ..services.status import DeliveryKey, StatusStore
from .errors import Failure, backoff_delay, classify
from .observe import Metrics, event
from .options import WorkerOptions

MAX_SNAPSHOT_BYTES = 5 * 1024 * 1024
MAX_MESSAGE_IDS = 1000  # kept on the delivery record; every id is also in the ledger

# States a worker never overwrites with processing/queued/dead_lettered.
SETTLED = (DeliveryState.SENT, DeliveryState.PARTIAL, DeliveryState.SUPERSEDED, DeliveryState.SKIPPED)


class TriggerMissing(PermanentMessageError):
    reason = "trigger_missing"


class Interrupted(Exception):
    """Shutdown deadline reached between two recipients."""


class ClaimBusy(Exception):
    def __init__(self, retry_in: float) -> None:
        super().__init__(f"claimed by another worker; retry in {retry_in:.0f}s")
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
    change: Change
    mapping: CustomerMapping
    owner: str
    trigger: Trigger
    # Reopened by an operator (``change resend-unknown``): send only to recipients in ``retry``.
    resend_only: bool = False


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
        self.bucket = config.s3_config.bucket_name

    @property
    def worker_id(self) -> str:
        return self.options.worker_id

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
        key: DeliveryKey | None = None
        delivery: _Delivery | None = None
        try:
            mapping = self.config.customer(m.customer)
            self._check_trigger(m, trigger)
            try:
                snapshot = self._load(trigger)
            except _Gone:
                return self._trigger_gone(m, trigger)
            change, key = self._validate(m, trigger, snapshot)
            delivery = _Delivery(key, change, mapping, f"{self.worker_id}/{uuid.uuid4().hex[:12]}", trigger)
            return self._deliver(m, delivery)
        except Interrupted:
            self._release_claim(m, delivery)
            if key is not None:
                self._status(
                    key,
                    state=DeliveryState.QUEUED,
                    last_error="interrupted by worker shutdown",
                    unless_state=(*SETTLED, DeliveryState.FAILED),
                )
            return Outcome("release", result="interrupted", failure=False)
        except ClaimBusy as exc:
            # Not a failure of this message: the runtime requeues it rather than let it reach the DLQ.
            delay = int(min(self.options.backoff_cap, max(1.0, exc.retry_in)))
            return Outcome("retry", delay=delay, result="busy", failure=False)
        except Exception as exc:
            failure = exc.failure if isinstance(exc, StageFailure) else classify(exc, "central")
            self._release_claim(m, delivery)
            if key is None and trigger.customer == m.customer:
                key = _trigger_key(trigger)
            if failure.permanent:
                return self._dead_letter(m, failure, key, trigger)
            return self._transient(m, failure, key, trigger)

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

    def _load(self, trigger: Trigger) -> Any:
        if trigger.change is not None:
            return trigger.change
        assert trigger.bucket is not None and trigger.key is not None
        s3 = self.aws.client("s3")
        try:
            obj = s3.get_object(Bucket=trigger.bucket, Key=trigger.key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                raise _Gone() from None
            raise
        size = int(obj.get("ContentLength") or 0)
        if size > MAX_SNAPSHOT_BYTES:
            obj["Body"].close()
            raise InvalidChange(f"snapshot is {size} bytes (limit {MAX_SNAPSHOT_BYTES})")
        raw = obj["Body"].read()
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidChange(f"snapshot is not JSON: {exc}") from None

    def _validate(self, m: InFlight, trigger: Trigger, snapshot: Any) -> tuple[Change, DeliveryKey]:
        if not isinstance(snapshot, dict):
            raise InvalidChange("snapshot is not a JSON object", customer=m.customer)
        try:
            change = Change.model_validate(snapshot)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "$"
            raise InvalidChange(
                f"snapshot is not a valid change ({exc.error_count()} problem(s); {where}: {first['msg']})",
                customer=m.customer,
            ) from None
        if trigger.change_id is not None and change.change_id != trigger.change_id:
            raise InvalidChange(
                f"snapshot is change {change.change_id}, trigger names {trigger.change_id}",
                customer=m.customer,
            )
        version = trigger.version if trigger.version is not None else change.version
        if change.version != version:
            raise InvalidChange(
                f"snapshot is version {change.version}, trigger names version {version}", customer=m.customer
            )
        event_ = trigger.event
        if event_ is None:
            try:
                event_ = EmailEvent(change.status.value)
            except ValueError:
                raise InvalidChange(
                    f"a {change.status.value} change sends no email", customer=m.customer
                ) from None
        if m.customer not in change.customers:
            raise IsolationViolation(
                f"change {change.change_id} does not target customer {m.customer!r}", customer=m.customer
            )
        return change, DeliveryKey(change.change_id, version, event_, m.customer)

    def _trigger_gone(self, m: InFlight, trigger: Trigger) -> Outcome:
        """The trigger object is gone: the ledger decides whether this event was already handled."""
        key = _trigger_key(trigger)
        if key is None:
            return self._dead_letter(
                m,
                Failure("permanent", TriggerMissing.reason, f"{trigger.key} no longer exists"),
                None,
                trigger,
            )
        claim = self.ledger.get_claim(key) or {}
        if claim.get("state") == "done":
            return self._duplicate(m, key, m.customer)
        latest = self.ledger.latest(key.change_id, m.customer)
        if latest is not None and latest.version > key.version:
            return self._superseded(m, key, latest.version, latest.event, trigger)
        return self._dead_letter(
            m,
            Failure(
                "permanent", TriggerMissing.reason, f"{trigger.key} no longer exists and was never delivered"
            ),
            key,
            trigger,
        )

    def _duplicate(self, m: InFlight, key: DeliveryKey, customer: str | None = None) -> Outcome:
        """The ledger says this delivery is done already: log it, delete the message."""
        event(logging.INFO, "delivery.duplicate", **_key_fields(key, customer), message_id=m.message_id)
        return Outcome("delete", result="duplicate")

    def _superseded(
        self, m: InFlight, key: DeliveryKey, newer: int, newer_event: str, trigger: Trigger
    ) -> Outcome:
        now = iso_utc(utcnow())
        self._status(
            key,
            state=DeliveryState.SUPERSEDED,
            finished_at=now,
            last_error=f"superseded: version {newer} ({newer_event}) was already sent",
            unless_state=SETTLED,
        )
        self._delete_trigger(trigger)
        event(
            logging.INFO,
            "delivery.superseded",
            **_key_fields(key, m.customer),
            newer_version=newer,
        )
        return Outcome("delete", result="superseded")

    def _deliver(self, m: InFlight, d: _Delivery) -> Outcome:
        key = d.key
        latest = self.ledger.latest(key.change_id, key.customer)
        if latest is not None and latest.version > key.version:
            return self._superseded(m, key, latest.version, latest.event, d.trigger)
        claim = self.ledger.claim(key, d.owner, message_id=m.message_id)
        if claim.outcome == "done":
            self._delete_trigger(d.trigger)
            return self._duplicate(m, key)
        if not claim.acquired:
            raise ClaimBusy(max(1.0, claim.lease_until - time.time() + 1.0))
        m.claim, m.claim_lease_until = (key, d.owner), claim.lease_until
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

    def _topics(self, d: _Delivery, invite_sent: bool) -> tuple[str, list[str], str | None]:
        """(primary topic, topics whose subscribers receive it, calendar method or None)."""
        change, ev = d.change, d.key.event
        primary = topic_for(ev, ever_approved=change.ever_approved)
        scheduled = change.start_dt is not None and change.end_dt is not None
        if ev is EmailEvent.APPROVED and change.include_meeting and scheduled:
            return primary, [primary, TOPIC_CALENDAR], emails.ICS_REQUEST
        if (
            ev is EmailEvent.CANCELLED
            and change.ever_approved
            and scheduled
            and (change.include_meeting or invite_sent)
        ):
            return primary, [primary, TOPIC_CALENDAR], emails.ICS_CANCEL
        return primary, [primary], None

    def _send_all(self, m: InFlight, d: _Delivery) -> Outcome:
        key, change, mapping = d.key, d.change, d.mapping
        ses = _customer_call("assume_role", lambda: self.aws.customer_client(mapping, "sesv2"))
        # SendEmail goes through a client botocore never retries: a retried send could duplicate.
        sender_ses = _customer_call("assume_role", lambda: self.aws.customer_send_client(mapping))
        invite_sent = False
        if key.event is EmailEvent.CANCELLED and change.ever_approved:
            latest = self.ledger.latest(key.change_id, key.customer)
            invite_sent = bool(latest and latest.invite_version)
        primary, topics, ics_method = self._topics(d, invite_sent)
        list_name = self.config.contact_list_for(key.customer)
        audience: Audience = _customer_call(
            "contacts",
            lambda: subscribed_audience(ses, mapping, list_name, topics, defaults_cache=self.defaults_cache),
        )
        recipients = audience.addresses()
        sent: dict[str, str] = {}
        failed: dict[str, str] = {}
        total: int | None = None
        if d.resend_only:
            recipients, total = self._resend_scope(d, recipients, primary, sent, failed)
        if not recipients:
            return self._finish(
                m, d, audience, sent=sent, failed=failed, invites=0, topic=primary, total=total
            )
        plain = emails.render_bodies(change, key.event, mapping, self.config)
        with_ics = (
            emails.render_bodies(change, key.event, mapping, self.config, invite=ics_method)
            if ics_method
            else plain
        )
        sender = self.config.sender_for(key.customer)
        link = emails.change_link(self.config, change.change_id)
        invites = 0
        lock = threading.Lock()

        def one(address: str) -> None:
            nonlocal invites
            if self.aborting():
                raise Interrupted()
            wants_ics = ics_method is not None and audience.has_topic(address, TOPIC_CALENDAR)
            topic = primary if audience.has_topic(address, primary) else TOPIC_CALENDAR
            ics = (
                emails.calendar_invite(
                    change, method=ics_method, organizer=sender, attendee=address, link=link
                )
                if wants_ics and ics_method
                else None
            )
            msg = emails.build_message(
                with_ics if ics else plain,
                change,
                key.event,
                mapping,
                self.config,
                recipient=address,
                topic=topic,
                ics=ics,
                ics_method=ics_method,
            )
            kwargs = emails.send_kwargs(
                msg, sender=sender, recipient=address, list_name=list_name, topic=topic
            )
            # Rendered first: the window between "sending" and the SES call is only this call.
            slot = self.ledger.begin_send(key, address, d.owner)
            if slot.outcome == "sent":
                with lock:
                    sent[address] = slot.message_id or ""
                return
            if slot.outcome in ("failed", "unknown"):
                with lock:
                    failed[address] = slot.outcome
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
                    with lock:
                        failed[address] = f.reason
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
                    with lock:
                        failed[address] = "unknown"
                raise StageFailure(f) from exc
            message_id = str(resp.get("MessageId", ""))
            self.ledger.record_sent(key, address, d.owner, message_id)
            with lock:
                sent[address] = message_id
                if ics is not None and ics_method == emails.ICS_REQUEST:
                    invites += 1
            self.metrics.count(key.customer, "EmailsSent")
            self.audit.record(
                "email.sent",
                actor=self.worker_id,
                **_key_fields(key),
                recipient=address,
                topic=topic,
                message_id=message_id,
                result="sent",
                invite=ics_method if ics is not None else None,
            )

        self._fan_out(recipients, one)
        return self._finish(
            m, d, audience, sent=sent, failed=failed, invites=invites, topic=primary, total=total
        )

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
        invites: int,
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
        if sent:
            self.ledger.mark_latest(key.change_id, key.customer, key.version, key.event)
        if invites:
            self.ledger.mark_invite(key.change_id, key.customer, key.version)
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

    def _release_claim(self, m: InFlight, d: _Delivery | None) -> None:
        if d is None or m.claim is None:
            return
        try:
            self.ledger.finish_claim(d.key, d.owner, done=False)
        except Exception as exc:  # the lease expires on its own
            event(
                logging.WARNING,
                "claim.release_failed",
                customer=d.key.customer,
                change_id=d.key.change_id,
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
