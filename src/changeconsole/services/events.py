"""SES events: the tags every send carries, reading the events SES publishes, and what they change.

Every ``SendEmail`` names the configuration set ``events.configuration_set`` (provisioned in each
customer's account; its event destination is the central SNS topic ``events.topic_name``, subscribed
by the SQS queue ``events.queue_name``) and carries email tags naming the delivery and the recipient's
claim token (``email_tags``). The worker's event stage (``worker/events.py``) hands each queue message
to ``EventRecorder.handle``:

- the event is read in the shape AWS documents (``eventType``, ``mail.tags``, ``mail.sendingAccountId``,
  ``mail.destination``), inside its SNS envelope;
- it is refused (audited as ``ses_event.refused`` and counted, never applied) unless the customer its
  tags name is in the config, the sending account is that customer's account and the tags are whole;
- the recipient's ledger mark is confirmed ``sent`` by any event of that very send (same claim token):
  SES accepted the call, whatever happened after;
- its outcome (sent, delivered, bounced, soft-bounced, complained, rejected, delayed, rendering failed)
  is recorded once per event in the status table (``OUTCOME#…`` items) together with the customer's
  reputation counters (``CUSTOMER#{code}`` / ``REPUTATION``), in one transaction, so a duplicate event
  changes nothing;
- a hard bounce or a complaint updates the contact in the customer's own list per
  ``events.reputation_policy`` and looks the address up in the account's suppression list.

``Reconciler`` resolves ``unknown`` recipients (a worker died between its ledger mark and SES's answer)
without an operator: their Send/Delivery event confirms them (above); a delivery still holding
``unknown`` recipients ``events.unknown_grace_seconds`` after it settled is reopened for them
(``unknown_policy: resend``; once per send of theirs that ended unknown, up to
``events.max_auto_resends``), through the ledger's conditional writes, or left to an operator (``hold``).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import describe, error_code
from ..models import (
    CHANGE_ID_RE,
    MAX_VERSION,
    TOPIC_ANNOUNCE,
    Config,
    DeliveryState,
    EmailEvent,
    RecipientState,
    iso_utc,
    utcnow,
    version_tag,
)
from .audit import AuditLog
from .aws import AwsFactory
from .ledger import ClaimState, Ledger, ReconcileItem, delivery_pk
from .status import DeliveryKey, StatusStore, from_item

log = logging.getLogger(__name__)

# Email tag names (SES: names and values [A-Za-z0-9_-], at most 256 characters).
TAG_CHANGE = "cc-change"
TAG_VERSION = "cc-version"
TAG_EVENT = "cc-event"
TAG_CUSTOMER = "cc-customer"
TAG_TOKEN = "cc-claim"
TAG_TOPIC = "cc-topic"
_TAG_OK = re.compile(r"[A-Za-z0-9_-]{1,256}\Z")
_ENCODED = "b64-"  # prefix of a value that had to be encoded (urlsafe base64 without padding)

RECONCILER = "reconciler"  # who the reconciler's resends are by (ledger, audit, delivery record)
MAX_EVENT_BYTES = 256 * 1024

# SES's published warning levels (sending review above them).
BOUNCE_WARNING = 0.05
COMPLAINT_WARNING = 0.001


def encode_tag(value: str) -> str:
    """A tag value SES accepts; ``decode_tag`` gives ``value`` back."""
    if _TAG_OK.match(value) and not value.startswith(_ENCODED):
        return value
    encoded = _ENCODED + base64.urlsafe_b64encode(value.encode("utf-8")).decode("ascii").rstrip("=")
    if len(encoded) > 256:
        raise ValueError(f"tag value too long to encode ({len(value)} characters)")
    return encoded


def decode_tag(value: str) -> str:
    if not value.startswith(_ENCODED):
        return value
    data = value[len(_ENCODED) :]
    try:
        return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise EventRefused("bad_tags", f"tag value {value[:40]!r} does not decode") from None


def new_token() -> str:
    """A claim token: names one send attempt of one recipient."""
    return uuid.uuid4().hex


def email_tags(key: DeliveryKey, token: str, topic: str) -> list[dict[str, str]]:
    """``EmailTags`` of one recipient's send."""
    values = {
        TAG_CHANGE: key.change_id,
        TAG_VERSION: str(key.version),
        TAG_EVENT: key.event.value,
        TAG_CUSTOMER: key.customer,
        TAG_TOKEN: token,
        TAG_TOPIC: topic,
    }
    return [{"Name": name, "Value": encode_tag(value)} for name, value in values.items()]


class Outcome(StrEnum):
    """What SES says became of one recipient's email (``RANK``: which one the console shows)."""

    SENT = "sent"
    DELAYED = "delayed"
    DELIVERED = "delivered"
    SOFT_BOUNCED = "soft_bounced"
    REJECTED = "rejected"
    RENDERING_FAILED = "rendering_failed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"


RANK = {o: i for i, o in enumerate(Outcome)}

_EVENT_TYPES = {
    "Send": Outcome.SENT,
    "Delivery": Outcome.DELIVERED,
    "DeliveryDelay": Outcome.DELAYED,
    "Complaint": Outcome.COMPLAINED,
    "Reject": Outcome.REJECTED,
    "Rendering Failure": Outcome.RENDERING_FAILED,
    "RenderingFailure": Outcome.RENDERING_FAILED,
}


class EventRefused(Exception):
    """An event the worker does not apply: why (``reason`` code) and what it said."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class _Mail(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    message_id: str = Field("", alias="messageId")
    sending_account: str = Field("", alias="sendingAccountId")
    destination: list[str] = Field(default_factory=list)
    tags: dict[str, list[str]] = Field(default_factory=dict)
    timestamp: str | None = None


class SesEvent(BaseModel):
    """One SES event (the fields the worker reads), as AWS documents it."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    event_type: str = Field(alias="eventType")
    mail: _Mail
    bounce: dict[str, Any] | None = None
    complaint: dict[str, Any] | None = None
    event_id: str = ""  # the SNS message id (or one made from the mail's id and the event type)

    @property
    def outcome(self) -> Outcome:
        if self.event_type == "Bounce":
            permanent = str((self.bounce or {}).get("bounceType")) == "Permanent"
            return Outcome.BOUNCED if permanent else Outcome.SOFT_BOUNCED
        try:
            return _EVENT_TYPES[self.event_type]
        except KeyError:
            raise EventRefused("unknown_event_type", f"eventType {self.event_type!r}") from None

    def tag(self, name: str) -> str | None:
        values = self.mail.tags.get(name) or []
        return decode_tag(values[0]) if values else None


def parse_event(body: str) -> SesEvent:
    """The SES event of a queue message: its SNS envelope (``Type: Notification``) or the bare event."""
    if len(body.encode("utf-8", "surrogatepass")) > MAX_EVENT_BYTES:
        raise EventRefused("malformed", f"message is over {MAX_EVENT_BYTES} bytes")
    try:
        data = json.loads(body)
        sns_id = ""
        if isinstance(data, dict) and data.get("Type") == "Notification" and "Message" in data:
            sns_id = str(data.get("MessageId") or "")
            data = json.loads(str(data["Message"]))
        if not isinstance(data, dict):
            raise EventRefused("malformed", "event is not a JSON object")
        if "eventType" not in data and "notificationType" in data:
            data = {**data, "eventType": data["notificationType"]}  # identity notifications
        event = SesEvent.model_validate(data)
    except (ValueError, RecursionError) as exc:
        if isinstance(exc, ValidationError):
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "$"
            raise EventRefused("malformed", f"{where}: {first['msg']}") from None
        raise EventRefused("malformed", f"not JSON: {str(exc)[:200]}") from None
    event.event_id = sns_id or f"{event.mail.message_id}:{event.event_type}"
    return event


@dataclass(frozen=True)
class Tagged:
    """What a checked event is about."""

    key: DeliveryKey
    token: str
    recipient: str  # lower-cased
    topic: str | None
    outcome: Outcome


def check(event: SesEvent, config: Config) -> Tagged:
    """The delivery and recipient an event names, once it is shown to belong to that customer."""
    outcome = event.outcome
    customer = event.tag(TAG_CUSTOMER)
    if not customer:
        raise EventRefused("untagged", "the event carries no customer tag (not one of our sends)")
    mapping = config.customer_mappings.get(customer)
    if mapping is None:
        raise EventRefused("unknown_customer", f"customer {customer!r} is not in the config")
    account = event.mail.sending_account
    if account != mapping.account_id:
        raise EventRefused(
            "wrong_account",
            f"sent from account {account or '?'}, but {customer}'s account is {mapping.account_id}",
        )
    change_id, version, ev, token = (event.tag(t) for t in (TAG_CHANGE, TAG_VERSION, TAG_EVENT, TAG_TOKEN))
    if not change_id or not CHANGE_ID_RE.match(change_id):
        raise EventRefused("bad_tags", f"change tag {change_id!r} is not a change id")
    if not version or not version.isdigit() or not 1 <= int(version) <= MAX_VERSION:
        raise EventRefused("bad_tags", f"version tag {version!r} is not a version")
    try:
        email_event = EmailEvent(ev or "")
    except ValueError:
        raise EventRefused("bad_tags", f"event tag {ev!r} is not an event") from None
    if not token or not re.fullmatch(r"[0-9a-f]{32}", token):
        raise EventRefused("bad_tags", "claim token tag missing or malformed")
    if len(event.mail.destination) != 1:
        raise EventRefused("bad_tags", f"{len(event.mail.destination)} destinations; every send has one")
    recipient = event.mail.destination[0].strip().casefold()
    return Tagged(
        DeliveryKey(change_id, int(version), email_event, customer),
        token,
        recipient,
        event.tag(TAG_TOPIC),
        outcome,
    )


# -- per-recipient outcomes in the status table ----------------------------------------------------
def outcome_sk(key: DeliveryKey, address: str) -> str:
    return f"OUTCOME#{version_tag(key.version)}#{key.event.value}#{key.customer}#{address.casefold()}"


REPUTATION_SK = "REPUTATION"


@dataclass(frozen=True)
class RecipientOutcome:
    """What SES's events said about one recipient of one delivery."""

    address: str
    outcome: Outcome  # the highest-ranked one seen
    seen: tuple[Outcome, ...]
    detail: str | None = None
    suppressed: str | None = None  # the account suppression list's answer, after a bounce/complaint


@dataclass(frozen=True)
class Reputation:
    """One customer's event counts and rates (over every event recorded)."""

    customer: str
    sends: int = 0
    delivered: int = 0
    bounces: int = 0  # hard bounces
    complaints: int = 0

    @property
    def bounce_rate(self) -> float | None:
        return self.bounces / self.sends if self.sends else None

    @property
    def complaint_rate(self) -> float | None:
        return self.complaints / self.sends if self.sends else None

    @property
    def warning(self) -> list[str]:
        """The SES warning levels this customer is at or above."""
        out = []
        if (self.bounce_rate or 0) >= BOUNCE_WARNING:
            out.append("bounce")
        if (self.complaint_rate or 0) >= COMPLAINT_WARNING:
            out.append("complaint")
        return out


_COUNTER = {
    Outcome.SENT: "sends",
    Outcome.DELIVERED: "delivered",
    Outcome.BOUNCED: "bounces",
    Outcome.COMPLAINED: "complaints",
}


class OutcomeStore:
    """``OUTCOME#`` items and ``REPUTATION`` counters in the status table."""

    def __init__(self, aws: AwsFactory, config: Config) -> None:
        self.aws = aws
        self.table = config.status_table_name

    @property
    def _ddb(self) -> Any:
        return self.aws.client("dynamodb")

    def record(self, tagged: Tagged, event_id: str, detail: str | None) -> bool:
        """Record one event once (False: seen before), with the customer's counter in the same
        transaction."""
        key = tagged.key
        at = iso_utc(utcnow())
        name = f"at_{tagged.outcome.value}"
        values: dict[str, Any] = {
            ":id": {"SS": [event_id]},
            ":idv": {"S": event_id},
            ":at": {"S": at},
            ":c": {"S": key.customer},
            ":ch": {"S": key.change_id},
            ":v": {"N": str(key.version)},
            ":e": {"S": key.event.value},
            ":a": {"S": tagged.recipient},
        }
        expr = (
            f"SET {name} = if_not_exists({name}, :at), customer = :c, change_id = :ch, version = :v, "
            "#ev = :e, address = :a, updated_at = :at"
        )
        if detail:
            values[":d"] = {"S": detail[:500]}
            expr += ", detail = :d"
        ops: list[dict[str, Any]] = [
            {
                "Update": {
                    "TableName": self.table,
                    "Key": {"pk": {"S": key.pk}, "sk": {"S": outcome_sk(key, tagged.recipient)}},
                    "UpdateExpression": expr + " ADD seen :id",
                    "ConditionExpression": "attribute_not_exists(seen) OR NOT contains(seen, :idv)",
                    "ExpressionAttributeNames": {"#ev": "event"},
                    "ExpressionAttributeValues": values,
                }
            }
        ]
        counter = _COUNTER.get(tagged.outcome)
        if counter:
            ops.append(
                {
                    "Update": {
                        "TableName": self.table,
                        "Key": {"pk": {"S": f"CUSTOMER#{key.customer}"}, "sk": {"S": REPUTATION_SK}},
                        "UpdateExpression": f"ADD {counter} :one SET updated_at = :at",
                        "ExpressionAttributeValues": {":one": {"N": "1"}, ":at": {"S": at}},
                    }
                }
            )
        try:
            self._ddb.transact_write_items(TransactItems=ops)
        except ClientError as exc:
            if error_code(exc) in ("TransactionCanceledException", "ConditionalCheckFailedException"):
                return False
            raise
        return True

    def note_suppression(self, key: DeliveryKey, address: str, answer: str) -> None:
        self._ddb.update_item(
            TableName=self.table,
            Key={"pk": {"S": key.pk}, "sk": {"S": outcome_sk(key, address)}},
            UpdateExpression="SET suppressed = :s",
            ExpressionAttributeValues={":s": {"S": answer}},
        )

    def outcomes(self, key: DeliveryKey) -> dict[str, RecipientOutcome]:
        """Every recipient of a delivery SES's events spoke about, by lower-cased address."""
        prefix = f"OUTCOME#{version_tag(key.version)}#{key.event.value}#{key.customer}#"
        pages = self._ddb.get_paginator("query").paginate(
            TableName=self.table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :sk)",
            ExpressionAttributeValues={":pk": {"S": key.pk}, ":sk": {"S": prefix}},
        )
        out: dict[str, RecipientOutcome] = {}
        for page in pages:
            for item in page.get("Items", []):
                data = from_item(item)
                address = str(data.get("sk", "")).removeprefix(prefix)
                seen = tuple(sorted((o for o in Outcome if f"at_{o.value}" in data), key=RANK.__getitem__))
                if not address or not seen:
                    continue
                out[address] = RecipientOutcome(
                    address,
                    seen[-1],
                    seen,
                    detail=data.get("detail"),
                    suppressed=data.get("suppressed"),
                )
        return out

    def reputation(self, customer: str) -> Reputation:
        resp = self._ddb.get_item(
            TableName=self.table, Key={"pk": {"S": f"CUSTOMER#{customer}"}, "sk": {"S": REPUTATION_SK}}
        )
        data = from_item(resp.get("Item") or {})
        counts = {k: int(data.get(k) or 0) for k in ("sends", "delivered", "bounces", "complaints")}
        return Reputation(customer, **counts)


def tally_record(ledger: Ledger, key: DeliveryKey) -> dict[str, Any] | None:
    """The delivery record fields the ledger's marks say now, for a delivery whose claim is settled
    (None while a worker still owns it: that worker books it)."""
    claim = ledger.get_claim(key)
    if claim is None or claim.state is not ClaimState.DONE:
        return None
    marks = ledger.recipients(key)
    sent = {a: m for a, m in marks.items() if m.state is RecipientState.SENT}
    unknown = [a for a, m in marks.items() if m.state is RecipientState.UNKNOWN]
    failed = len(marks) - len(sent)
    if not marks:
        return None
    if not failed:
        state, last_error = DeliveryState.SENT, None
    else:
        state = DeliveryState.PARTIAL if sent or unknown else DeliveryState.FAILED
        last_error = f"{failed} of {len(marks)} recipient(s) not confirmed sent"
    return {
        "state": state,
        "recipients_total": len(marks),
        "recipients_sent": len(sent),
        "recipients_failed": failed,
        "message_ids": [m.message_id for m in sent.values() if m.message_id][:1000],
        "last_error": last_error,
    }


def refresh_record(ledger: Ledger, status: StatusStore, key: DeliveryKey) -> None:
    """Bring a settled delivery's record in line with its ledger marks (an event confirmed one)."""
    fields = tally_record(ledger, key)
    if fields is not None:
        status.update(key, unless_state=(DeliveryState.SUPERSEDED, DeliveryState.SKIPPED), **fields)


@dataclass(frozen=True)
class Handled:
    """What ``EventRecorder.handle`` did: ``applied``, ``duplicate`` or ``refused:<reason>``."""

    result: str
    customer: str | None = None
    outcome: Outcome | None = None

    @property
    def refused(self) -> bool:
        return self.result.startswith("refused")


class EventRecorder:
    """Applies SES events (module docstring); ``count(customer, metric)`` counts what happened."""

    def __init__(
        self,
        aws: AwsFactory,
        config: Config,
        *,
        ledger: Ledger,
        status: StatusStore,
        audit: AuditLog,
        count: Callable[[str, str], None] = lambda _c, _m: None,
        actor: str = "worker",
    ) -> None:
        self.aws = aws
        self.config = config
        self.ledger = ledger
        self.status = status
        self.audit = audit
        self.outcomes = OutcomeStore(aws, config)
        self.count = count
        self.actor = actor

    def handle(self, body: str) -> Handled:
        """Apply one queue message's event."""
        try:
            event = parse_event(body)
            tagged = check(event, self.config)
        except EventRefused as exc:
            self._refused(exc, body)
            return Handled(f"refused:{exc.reason}")
        return Handled(self.apply(event, tagged), tagged.key.customer, tagged.outcome)

    def _refused(self, exc: EventRefused, body: str) -> None:
        about: dict[str, Any] = {"reason": exc.reason, "detail": exc.detail}
        try:
            event = parse_event(body)
        except EventRefused:
            event = None
        if event is not None:
            about.update(
                event_type=event.event_type,
                sending_account=event.mail.sending_account,
                customer_tag=event.tag(TAG_CUSTOMER) if exc.reason != "bad_tags" else None,
                ses_message_id=event.mail.message_id,
            )
        self.audit.record("ses_event.refused", actor=self.actor, result="refused", **about)
        self.count(str(about.get("customer_tag") or "-"), "EventsRefused")
        log.warning("SES event refused: %s (%s)", exc.reason, exc.detail)

    def apply(self, event: SesEvent, tagged: Tagged) -> str:
        key = tagged.key
        confirmed = self.ledger.confirm_sent(key, tagged.recipient, tagged.token, event.mail.message_id)
        if confirmed:
            refresh_record(self.ledger, self.status, key)
        detail = _detail(event)
        if not self.outcomes.record(tagged, event.event_id, detail):
            return "duplicate"
        self.count(key.customer, f"Events{tagged.outcome.value.title().replace('_', '')}")
        self.audit.record(
            "ses_event.applied",
            actor=self.actor,
            customer=key.customer,
            change_id=key.change_id,
            version=key.version,
            event=key.event.value,
            recipient=tagged.recipient,
            outcome=tagged.outcome.value,
            confirmed=confirmed or None,
            detail=detail,
        )
        if tagged.outcome in (Outcome.BOUNCED, Outcome.COMPLAINED):
            self._reputation(tagged)
        return "applied"

    def _reputation(self, tagged: Tagged) -> None:
        """A hard bounce or complaint: the contact per policy; the suppression list looked up."""
        from .contact_admin import OPT_OUT, ContactBook, ContactNotFound

        key = tagged.key
        book = ContactBook(self.aws, self.config, key.customer, operator="ses-events", rate=None)
        policy = self.config.events.reputation_policy
        try:
            if policy == "unsubscribe_all":
                book.update(tagged.recipient, unsubscribe_all=True)
            else:
                book.update(tagged.recipient, {tagged.topic or TOPIC_ANNOUNCE: OPT_OUT})
            action: str = policy
        except ContactNotFound:
            action = "not_a_contact"
        except Exception as exc:  # recorded; the event itself is applied
            action = f"failed: {describe(exc)}"[:300]
        answer = suppression_state(
            self.aws.customer_client(self.config.customer(key.customer), "sesv2"), tagged.recipient
        )
        self.outcomes.note_suppression(key, tagged.recipient, answer)
        self.audit.record(
            "contact.reputation",
            actor=self.actor,
            customer=key.customer,
            change_id=key.change_id,
            recipient=tagged.recipient,
            outcome=tagged.outcome.value,
            action=action,
            suppression=answer,
        )


def suppression_state(ses: Any, address: str) -> str:
    """``listed (REASON)``, ``not listed``, or ``unavailable`` (the account-level list cannot be read,
    e.g. on the local stack)."""
    try:
        resp = ses.get_suppressed_destination(EmailAddress=address)
    except ClientError as exc:
        if error_code(exc) == "NotFoundException":
            return "not listed"
        return "unavailable"
    except Exception:
        return "unavailable"
    reason = (resp.get("SuppressedDestination") or {}).get("Reason") or "?"
    return f"listed ({reason})"


def _detail(event: SesEvent) -> str | None:
    if event.bounce:
        return f"{event.bounce.get('bounceType')}/{event.bounce.get('bounceSubType')}"
    if event.complaint:
        return str(event.complaint.get("complaintFeedbackType") or "complaint")
    return None


# -- reconciliation -------------------------------------------------------------------------------
@dataclass
class ReconcileReport:
    confirmed: int = 0  # deliveries whose unknown recipients all turned out sent
    resent: list[str] = field(default_factory=list)  # "delivery pk: address"
    held: list[str] = field(default_factory=list)
    retriggered: int = 0


class Reconciler:
    """Resolves deliveries left with ``unknown`` recipients once their grace period is over."""

    def __init__(
        self,
        aws: AwsFactory,
        config: Config,
        *,
        ledger: Ledger,
        status: StatusStore,
        audit: AuditLog,
        send_trigger: Callable[[DeliveryKey], None],
        customers: Iterable[str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.aws = aws
        self.config = config
        self.ledger = ledger
        self.status = status
        self.audit = audit
        self.customers = set(customers) if customers is not None else None
        self.send_trigger = send_trigger  # rings the customer's queue (a direct trigger)
        self.clock = clock

    @property
    def grace(self) -> float:
        return self.config.events.unknown_grace_seconds

    def run_once(self) -> ReconcileReport:
        report = ReconcileReport()
        now = self.clock()
        for item in self.ledger.reconciles():
            if item.due_at > now or (self.customers is not None and item.customer not in self.customers):
                continue
            key = item.key
            if key is None:
                self.ledger.drop_reconcile(item)
                continue
            self._one(item, key, now, report)
        return report

    def _one(self, item: ReconcileItem, key: DeliveryKey, now: float, report: ReconcileReport) -> None:
        claim = self.ledger.get_claim(key)
        marks = self.ledger.recipients(key)
        if claim is None:
            self.ledger.drop_reconcile(item)
            return
        if claim.state is not ClaimState.DONE:
            retry = [a for a, m in marks.items() if m.state is RecipientState.RETRY]
            if claim.state is ClaimState.RELEASED and retry and claim.resend_by == RECONCILER:
                self._trigger(key, report)  # reopened, but its trigger did not get through
                self.ledger.note_unknown(key, now + self.grace)
            return  # a worker is on it: it books the outcome
        unknown = sorted(a for a, m in marks.items() if m.state is RecipientState.UNKNOWN)
        if not unknown:
            refresh_record(self.ledger, self.status, key)
            if self.ledger.drop_reconcile(item):
                report.confirmed += 1
            return
        limit = self.config.events.max_auto_resends
        fresh = [a for a in unknown if marks[a].auto_resends < limit]
        why = self._hold_reason(key, fresh)
        if why is not None:
            self._hold(item, key, unknown, why, report)
            return
        resend_id = uuid.uuid4().hex
        if not self.ledger.auto_reopen(
            item, key, fresh, by=RECONCILER, resend_id=resend_id, next_due=now + self.grace
        ):
            return  # someone else acted (another reconciler, an event, an operator): next pass
        self.status.update(
            key,
            state=DeliveryState.QUEUED,
            last_error=f"{len(fresh)} recipient(s) unknown with no SES event after {self.grace:.0f}s: "
            "sent again",
            resend_requested_by=RECONCILER,
            resend_requested_at=iso_utc(utcnow()),
        )
        self.audit.record(
            "delivery.auto_resend",
            actor=RECONCILER,
            customer=key.customer,
            change_id=key.change_id,
            version=key.version,
            event=key.event.value,
            recipients=fresh,
            grace_seconds=self.grace,
        )
        report.resent += [f"{delivery_pk(key)}: {a}" for a in fresh]
        self._trigger(key, report)

    def _hold_reason(self, key: DeliveryKey, fresh: list[str]) -> str | None:
        if self.config.events.unknown_policy == "hold":
            return "unknown_policy is hold"
        if not fresh:
            n = self.config.events.max_auto_resends
            return f"sent again {n} time(s) already, each ending unknown with no SES event"
        latest = self.ledger.latest(key.change_id, key.customer)
        if latest is not None and latest.version > key.version:
            return f"superseded: version {latest.version} was sent since"
        return None

    def _hold(
        self, item: ReconcileItem, key: DeliveryKey, unknown: list[str], why: str, report: ReconcileReport
    ) -> None:
        if not self.ledger.drop_reconcile(item):
            return
        self.status.update(
            key,
            last_error=f"{len(unknown)} recipient(s) unknown with no SES event ({why}): "
            "`change resend-unknown` decides",
        )
        self.audit.record(
            "delivery.unknown_held",
            actor=RECONCILER,
            customer=key.customer,
            change_id=key.change_id,
            version=key.version,
            event=key.event.value,
            recipients=unknown,
            detail=why,
        )
        report.held += [f"{delivery_pk(key)}: {a}" for a in unknown]

    def _trigger(self, key: DeliveryKey, report: ReconcileReport) -> None:
        try:
            self.send_trigger(key)
        except Exception as exc:  # the next pass re-triggers (claim released, recipients in retry)
            log.warning("reconciler: trigger for %s failed: %s", delivery_pk(key), describe(exc))
            return
        report.retriggered += 1
