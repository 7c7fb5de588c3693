"""The delivery ledger (DynamoDB, conditional writes): who may send what, and what was sent.

Items (docs/architecture.md):

- ``DELIVERY#{changeId}#v{version}#{event}#{customer}`` / ``CLAIM``: one worker owns a delivery
  (``in_progress`` with a lease expiry; ``released`` = retakable at once; ``done`` = settled).
  ``takeovers`` counts the claims that found it ``in_progress`` with its lease run out: each one a
  worker that died holding the delivery (the worker's crash budget, ``max_crash_count``).
- same pk / ``RCPT#{email}``: one recipient's send (``sending`` with a lease, ``sent``, ``retry``,
  ``failed``, ``unknown``).
- ``LATEST#{changeId}#{customer}`` / ``LATEST``: the lane of one change and customer: what was sent
  (newest version, topics, invite, removal notice) and the lock that lets one delivery at a time act
  for them (``lock_owner`` with a lease, ``lock_delivery``: the delivery it is on), so a customer's
  emails of one change go out in lifecycle order (``acquire_lane`` / ``release_lane``).

At-most-once per recipient: a recipient is marked ``sending`` right before its SES call and ``sent``
right after. A ``sending`` mark whose lease expired (its worker died between the two writes) becomes
``unknown``: never sent again by a worker on its own. The mark keeps its claim token, which the send's
email tags carry: an SES event of that send confirms it ``sent`` (``confirm_sent``); with none after the
grace period the reconciler (``services.events``) reopens it once (``auto_reopen``: one transaction with
the claim and its ``RECONCILE`` item, so two reconcilers never both act).

An operator who decides to send an ``unknown`` recipient again (``services.resend``) turns it back
into ``retry`` — conditionally on it still being ``unknown`` — and reopens the settled delivery in
``resend`` mode (``reopen_for_resend``, one transaction that also writes a ``RESEND`` item under the
delivery's pk: who, when, which recipients): a worker then sends to the reopened
recipients only, never to anyone already ``sent``/``failed`` nor to a contact who subscribed since.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, model_validator

from ..errors import error_code
from ..models import RECIPIENT_TRANSITIONS, Config, EmailEvent, RecipientState, iso_utc, utcnow
from .aws import AwsFactory
from .status import DeliveryKey, from_item, readable, to_item

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

log = logging.getLogger(__name__)
T = TypeVar("T")

CLAIM_SK = "CLAIM"
RESEND_SK = "RESEND"  # present once an operator reopened the delivery (see ``reopen_for_resend``)
RECONCILE_PK = "RECONCILE"  # sk = a delivery's pk: it has ``unknown`` recipients awaiting their events
LATEST_SK = "LATEST"
RCPT_PREFIX = "RCPT#"
LOCK_ATTRIBUTES = ("lock_owner", "lock_until", "lock_delivery", "lock_at")

# Claim mode of a delivery reopened by an operator: send only to recipients in ``retry``.
RESEND_MODE = "resend"
_TXN_RECIPIENTS = 98  # a transaction holds 100 items: the claim, the RESEND marker and these

DEFAULT_TTL_DAYS = 90
LATEST_TTL_DAYS = 400
STOPPED_DURING_SEND = "worker stopped during send; outcome unknown"

# What DynamoDB answers when a write's condition (or a transaction's) did not hold.
CONDITION_FAILED_CODES = frozenset({"ConditionalCheckFailedException", "TransactionCanceledException"})


class ClaimState(StrEnum):
    """The ``CLAIM`` item of a delivery."""

    IN_PROGRESS = "in_progress"  # one worker owns it, with a lease expiry
    RELEASED = "released"  # retakable at once
    DONE = "done"  # settled


class ClaimOutcome(StrEnum):
    """What ``claim`` got."""

    ACQUIRED = "acquired"
    DONE = "done"  # settled already
    BUSY = "busy"  # another owner's lease is still valid


class SlotOutcome(StrEnum):
    """What ``begin_send`` found: ``go`` (marked sending: send now) or the recipient's settled state."""

    GO = "go"
    SENT = "sent"
    FAILED = "failed"
    UNKNOWN = "unknown"
    BUSY = "busy"  # another worker's send mark is still leased


# -- condition clauses ------------------------------------------------------------------------------
# Placeholders: ``#s`` state, ``#o`` owner; the values each clause names come with it.
ITEM_ABSENT = "attribute_not_exists(pk)"
OWNED_BY_ME = "#o = :me"  # :me = the writer's owner id
LEASE_RAN_OUT = "lease_until < :now"
CLAIMABLE = f"{ITEM_ABSENT} OR #s = :released OR (#s = :progress AND {LEASE_RAN_OUT})"
ABANDONED = f"#s = :released OR (#s = :progress AND {LEASE_RAN_OUT})"
HELD_BY_ME = f"{OWNED_BY_ME} AND #s = :progress"
LANE_FREE = "attribute_not_exists(lock_owner) OR lock_until < :now"
LANE_MINE = "lock_owner = :me"


def _claim_states(*states: ClaimState) -> dict[str, Any]:
    """The values of the claim states a clause names (``:released``, ``:progress``, ``:done``)."""
    names = {ClaimState.RELEASED: ":released", ClaimState.IN_PROGRESS: ":progress", ClaimState.DONE: ":done"}
    return {names[s]: {"S": s.value} for s in states}


@dataclass(frozen=True)
class RecipientWrite:
    """One kind of conditional write of a recipient item: from any of ``sources`` (None: no item yet)
    to one of ``targets``, each pair a row of ``models.RECIPIENT_TRANSITIONS`` (checked when defined).
    ``guard`` adds what else must hold (owner, lease)."""

    name: str
    sources: tuple[RecipientState | None, ...]
    targets: tuple[RecipientState, ...]
    guard: str = ""

    def __post_init__(self) -> None:
        bad = [(a, b) for a in self.sources for b in self.targets if b not in RECIPIENT_TRANSITIONS[a]]
        if bad:
            raise ValueError(f"{self.name}: not in RECIPIENT_TRANSITIONS: {bad}")

    @property
    def condition(self) -> str:
        states = [s for s in self.sources if s is not None]
        parts = [ITEM_ABSENT] if None in self.sources else []
        if len(states) == 1:
            parts.append(f"#s = :{states[0].value}")
        elif states:
            parts.append(f"#s IN ({', '.join(f':{s.value}' for s in states)})")
        clause = " OR ".join(parts)
        if self.guard:
            clause = f"({clause}) AND {self.guard}" if len(parts) > 1 else f"{clause} AND {self.guard}"
        return clause

    @property
    def names(self) -> dict[str, str]:
        """ExpressionAttributeNames of the condition."""
        return {"#s": "state", **({"#o": "owner"} if "#o" in self.condition else {})}

    def values(self, target: RecipientState, **extra: Any) -> dict[str, Any]:
        """ExpressionAttributeValues: the source states, and ``extra`` (placeholder name → value)."""
        if target not in self.targets:
            raise ValueError(f"{self.name} does not write {target.value}")
        out: dict[str, Any] = {f":{s.value}": {"S": s.value} for s in self.sources if s is not None}
        out.update({f":{k}": v for k, v in extra.items()})
        return out


_R = RecipientState
BEGIN_SEND = RecipientWrite("begin_send", (None, _R.RETRY), (_R.SENDING,))
SETTLE = RecipientWrite(
    "settle", (_R.SENDING, _R.UNKNOWN), (_R.SENT, _R.RETRY, _R.FAILED, _R.UNKNOWN), OWNED_BY_ME
)
# A mark whose lease ran out; or (``TAKE_OVER``) any mark of a delivery whose lane the caller holds.
MARK_UNKNOWN = RecipientWrite(
    "mark_unknown", (_R.SENDING,), (_R.UNKNOWN,), f"#o = :owner AND {LEASE_RAN_OUT}"
)
TAKE_OVER = RecipientWrite("take_over", (_R.SENDING,), (_R.UNKNOWN,), "#o = :owner")
WITHDRAW = RecipientWrite("withdraw", (_R.RETRY,), (_R.FAILED,))
REOPEN = RecipientWrite("reopen", (_R.UNKNOWN,), (_R.RETRY,))
# The SES event of this very send (same claim token) says SES accepted it.
CONFIRM = RecipientWrite("confirm", (_R.SENDING, _R.UNKNOWN, _R.RETRY), (_R.SENT,), "claim_token = :tok")
RECIPIENT_WRITES = (BEGIN_SEND, SETTLE, MARK_UNKNOWN, TAKE_OVER, WITHDRAW, REOPEN, CONFIRM)


# -- keys -------------------------------------------------------------------------------------------
def delivery_pk(key: DeliveryKey) -> str:
    return f"DELIVERY#{key.change_id}#v{key.version}#{key.event.value}#{key.customer}"


def latest_pk(change_id: str, customer: str) -> str:
    return f"LATEST#{change_id}#{customer}"


def rcpt_sk(email: str) -> str:
    return f"{RCPT_PREFIX}{email.casefold()}"


def key_of_delivery_pk(pk: str) -> DeliveryKey | None:
    """The delivery a ``DELIVERY#…`` partition key names (None when it is not one)."""
    parts = pk.split("#")
    if len(parts) != 5 or parts[0] != "DELIVERY" or not parts[2].startswith("v"):
        return None
    try:
        return DeliveryKey(parts[1], int(parts[2][1:]), EmailEvent(parts[3]), parts[4])
    except ValueError:
        return None


def _conditional_failed(exc: ClientError) -> bool:
    return error_code(exc) in CONDITION_FAILED_CODES


# -- records ----------------------------------------------------------------------------------------
def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _int(value: Any) -> int | None:
    return int(value) if value is not None else None


def _event(value: Any) -> EmailEvent | None:
    """An event the item names; None for none (or one this release does not know)."""
    try:
        return EmailEvent(value) if value else None
    except ValueError:
        log.warning("ledger item names an unknown event %r; ignored", value)
        return None


class _Item(BaseModel):
    """A ledger item as read (``model_validate`` of its plain attributes); unknown attributes ignored."""

    model_config = ConfigDict(frozen=True)


class ClaimItem(_Item):
    """The ``CLAIM`` item of a delivery."""

    state: ClaimState
    owner: str | None = None
    lease_until: float = 0.0  # epoch seconds
    message_id: str | None = None
    claimed_at: str | None = None
    finished_at: str | None = None
    result: str | None = None  # the delivery state it was settled with
    resend_id: str | None = None  # the operator's reopening (``reopen_for_resend``)
    resend_by: str | None = None
    resend_at: str | None = None
    takeovers: int = 0  # claims that found it held by a worker whose lease ran out (it died holding it)


class RecipientMark(_Item):
    """One ``RCPT#`` item: a recipient's send of one delivery."""

    address: str  # lower-cased (the sort key)
    email: str  # as the worker wrote it
    state: RecipientState
    owner: str | None = None
    lease_until: float = 0.0  # of a ``sending`` mark (epoch seconds)
    message_id: str | None = None
    error: str | None = None
    started_at: str | None = None
    settled_at: str | None = None
    resend_by: str | None = None  # the operator who reopened it (``retry``)
    resend_at: str | None = None
    claim_token: str | None = None  # of this send: its SES events carry it (``services.events``)
    auto_resends: int = 0  # times the reconciler reopened it (each after a send that left it unknown)

    @model_validator(mode="before")
    @classmethod
    def _address(cls, data: Any) -> Any:
        """``address`` from the sort key; ``email`` defaults to it."""
        if isinstance(data, dict) and "sk" in data:
            sk = str(data["sk"])
            if not sk.startswith(RCPT_PREFIX):
                raise ValueError(f"not a recipient item: {sk}")
            address = sk.removeprefix(RCPT_PREFIX)
            data = {**data, "address": address, "email": data.get("email") or address}
        return data


class ResendMarker(_Item):
    """The ``RESEND`` item of a delivery an operator reopened: who, when, which recipients."""

    resend_id: str
    resend_by: str | None = None
    resend_at: str | None = None
    recipients: tuple[str, ...] = ()


class ReconcileItem(_Item):
    """A delivery settled with ``unknown`` recipients: due for the reconciler at ``due_at``."""

    sk: str  # the delivery's pk
    customer: str
    due_at: float
    rev: int = 0  # +1 on every reconciler write (two reconcilers never both act)
    resent: frozenset[str] = frozenset()  # lower-cased addresses the reconciler sent again already

    @property
    def key(self) -> DeliveryKey | None:
        return key_of_delivery_pk(self.sk)


@dataclass(frozen=True)
class Claim:
    """Result of ``claim``."""

    outcome: ClaimOutcome
    owner: str | None = None
    lease_until: float = 0.0
    resend_only: bool = False  # reopened by an operator: send only to recipients in ``retry``
    takeovers: int = 0  # of this claim, this one included (``ClaimItem.takeovers``)

    @property
    def acquired(self) -> bool:
        return self.outcome is ClaimOutcome.ACQUIRED


@dataclass
class ResendPlan:
    """Which of the asked recipients of one delivery may be sent again, and why the others may not."""

    eligible: list[RecipientMark]  # state ``unknown``
    refused: dict[str, str]  # lower-cased address -> reason
    claim_state: ClaimState | None = None


@dataclass
class Reopened:
    """Result of ``reopen_for_resend``."""

    reopened: list[str]  # lower-cased addresses now in ``retry``
    refused: dict[str, str]


@dataclass(frozen=True)
class SendSlot:
    """Result of ``begin_send``."""

    outcome: SlotOutcome
    message_id: str | None = None
    lease_until: float = 0.0
    error: str | None = None


@dataclass(frozen=True)
class Latest:
    """The newest notice of a change sent to a customer (the lane's facts)."""

    version: int
    event: EmailEvent | None
    invite_version: int | None = None
    topics: frozenset[str] = frozenset()  # SES topics of the notices sent


@dataclass
class Tally:
    """What the recipient items of one delivery say was sent (``reconcile``)."""

    total: int = 0
    sent: int = 0
    unknown: int = 0  # maybe sent: a send cut off by a crash, or one still in flight elsewhere
    failed: int = 0  # not sent (rejected, or waiting for a retry)
    message_ids: list[str] = field(default_factory=list)

    @property
    def maybe_sent(self) -> bool:
        return bool(self.sent or self.unknown)


@dataclass
class Lane:
    """One change and one customer, held by one delivery at a time (the ``LATEST`` item).

    ``sent_version`` … ``topics`` are what the item said when the lock was taken, updated in memory by
    the holder as it sends; ``release_lane`` writes them back. ``stolen`` is the delivery a holder whose
    lease ran out left unfinished: the new holder reconciles it (what it sent counts as notified).
    """

    change_id: str
    customer: str
    owner: str
    lease_until: float
    sent_version: int | None = None  # newest version sent to the customer (item attribute ``version``)
    sent_event: EmailEvent | None = None
    invite_version: int | None = None  # newest version whose calendar invite went out
    removed_version: int | None = None  # version of the last "no longer affects you" notice
    topics: set[str] = field(default_factory=set)  # SES topics of the notices sent
    stolen: DeliveryKey | None = None

    @property
    def notified(self) -> bool:
        """Something of this change may have reached the customer."""
        return self.sent_version is not None

    def removal_due(self, version: int) -> bool:
        """Notified since its last removal notice (or this version's removal notice is the one due)."""
        if not self.notified:
            return False
        removed = self.removed_version
        return removed is None or removed == version or removed < (self.sent_version or 0)

    def note_sent(self, version: int, event: EmailEvent, topic: str | None) -> None:
        if event is EmailEvent.REMOVED:
            self.removed_version = max(version, self.removed_version or 0)
            return
        if self.sent_version is None or version >= self.sent_version:
            self.sent_version, self.sent_event = version, event
        if topic:
            self.topics.add(topic)

    def note_invite(self, version: int) -> None:
        self.invite_version = max(version, self.invite_version or 0)


@dataclass(frozen=True)
class LaneBusy:
    """Result of ``acquire_lane`` when another holder's lease is still valid."""

    owner: str | None
    lease_until: float


class Ledger:
    def __init__(
        self,
        aws: AwsFactory,
        config: Config,
        *,
        claim_lease: float = 300.0,
        send_lease: float = 120.0,
        ttl_days: int = DEFAULT_TTL_DAYS,
    ) -> None:
        self.aws = aws
        self.table = config.ledger_table_name
        self.claim_lease = claim_lease
        self.send_lease = send_lease
        self.ttl_days = ttl_days

    @property
    def _ddb(self) -> DynamoDBClient:
        client: DynamoDBClient = self.aws.client("dynamodb")
        return client

    def _expires(self, days: int | None = None) -> int:
        return int(time.time()) + 86400 * (days or self.ttl_days)

    def _read(self, pk: str, sk: str, parse: Callable[[dict[str, Any]], T]) -> T | None:
        """One item, consistently read and parsed from its plain attributes (``parse``: a model's
        ``model_validate``, or ``dict``); None when it is missing or unreadable (logged)."""
        resp = self._ddb.get_item(
            TableName=self.table, Key={"pk": {"S": pk}, "sk": {"S": sk}}, ConsistentRead=True
        )
        item: dict[str, Any] | None = resp.get("Item")
        if not item:
            return None
        return next(_readable([item], parse), None)

    def _update_if(self, pk: str, sk: str, **kwargs: Any) -> bool:
        """One conditional ``update_item``; False when its condition did not hold."""
        try:
            self._ddb.update_item(TableName=self.table, Key={"pk": {"S": pk}, "sk": {"S": sk}}, **kwargs)
        except ClientError as exc:
            if _conditional_failed(exc):
                return False
            raise
        return True

    def _put_if(self, data: dict[str, Any], **kwargs: Any) -> bool:
        """One conditional ``put_item`` of ``data``; False when its condition did not hold."""
        try:
            self._ddb.put_item(TableName=self.table, Item=to_item(data), **kwargs)
        except ClientError as exc:
            if _conditional_failed(exc):
                return False
            raise
        return True

    # -- claims ------------------------------------------------------------------------
    def claim(self, key: DeliveryKey, owner: str, *, message_id: str | None = None) -> Claim:
        """Take the delivery unless it is settled or another owner's lease is still valid.

        A delivery claimed before (retaken after a release or an expired lease) may have been
        reopened by an operator: then the claim says ``resend_only`` (read from the ``RESEND`` item,
        so a worker that dies during a resend pass hands the same pass to the next one).
        """
        now = time.time()
        lease_until = now + self.claim_lease
        data = {
            "pk": delivery_pk(key),
            "sk": CLAIM_SK,
            "state": ClaimState.IN_PROGRESS.value,
            "owner": owner,
            "lease_until": lease_until,
            "message_id": message_id,
            "claimed_at": iso_utc(utcnow()),
            "expires_at": self._expires(),
        }
        try:
            resp = self._ddb.put_item(
                TableName=self.table,
                Item=to_item(data),
                ConditionExpression=CLAIMABLE,
                ExpressionAttributeNames={"#s": "state"},
                ExpressionAttributeValues={
                    **_claim_states(ClaimState.RELEASED, ClaimState.IN_PROGRESS),
                    ":now": {"N": repr(now)},
                },
                ReturnValues="ALL_OLD",
            )
        except ClientError as exc:
            if not _conditional_failed(exc):
                raise
        else:
            # A first claim (no old item: the common case) was never reopened nor taken over: no extra call.
            old = from_item(dict(resp.get("Attributes") or {}))
            reopened = bool(old) and self.resend_marker(key) is not None
            takeovers = self._count_takeover(key, owner, old)
            return Claim(ClaimOutcome.ACQUIRED, owner, lease_until, resend_only=reopened, takeovers=takeovers)
        item = self.get_claim(key)
        if item is not None and item.state is ClaimState.DONE:
            return Claim(ClaimOutcome.DONE, item.owner)
        return Claim(ClaimOutcome.BUSY, item.owner if item else None, item.lease_until if item else 0.0)

    def _count_takeover(self, key: DeliveryKey, owner: str, old: dict[str, Any]) -> int:
        """The take-overs of a claim just acquired over ``old`` (its replaced item): one more when the
        previous holder died holding it (``in_progress``: the claim's condition let it through only with
        its lease run out). The put replaced the item, so a count is written back (owner's only)."""
        takeovers = int(old.get("takeovers") or 0) + (old.get("state") == ClaimState.IN_PROGRESS.value)
        if takeovers:
            self._update_if(
                delivery_pk(key),
                CLAIM_SK,
                UpdateExpression="SET takeovers = :n",
                ConditionExpression=OWNED_BY_ME,
                ExpressionAttributeNames={"#o": "owner"},
                ExpressionAttributeValues={":n": {"N": str(takeovers)}, ":me": {"S": owner}},
            )
        return takeovers

    def resend_marker(self, key: DeliveryKey) -> ResendMarker | None:
        """The ``RESEND`` item of a delivery an operator reopened (who, when, which recipients)."""
        return self._read(delivery_pk(key), RESEND_SK, ResendMarker.model_validate)

    def get_claim(self, key: DeliveryKey) -> ClaimItem | None:
        return self._read(delivery_pk(key), CLAIM_SK, ClaimItem.model_validate)

    def renew_claim(self, key: DeliveryKey, owner: str) -> float | None:
        """Extend our lease; None when we no longer own the claim."""
        lease_until = time.time() + self.claim_lease
        ok = self._update_if(
            delivery_pk(key),
            CLAIM_SK,
            UpdateExpression="SET lease_until = :l",
            ConditionExpression=HELD_BY_ME,
            ExpressionAttributeNames={"#o": "owner", "#s": "state"},
            ExpressionAttributeValues={
                ":l": {"N": repr(lease_until)},
                ":me": {"S": owner},
                **_claim_states(ClaimState.IN_PROGRESS),
            },
        )
        return lease_until if ok else None

    def finish_claim(
        self, key: DeliveryKey, owner: str, *, done: bool, result: str | None = None, forget: bool = False
    ) -> bool:
        """``done`` settles the delivery (``result``: its delivery state); otherwise release it so any
        worker may retake it at once. Settling it, or ``forget``, drops its count of take-overs (a
        delivery dead-lettered for them starts with a full budget when redriven)."""
        names = {"#o": "owner", "#s": "state"}
        values: dict[str, Any] = {
            ":me": {"S": owner},
            ":state": {"S": (ClaimState.DONE if done else ClaimState.RELEASED).value},
            ":l": {"N": "0"},
            ":t": {"S": iso_utc(utcnow())},
        }
        expr = "SET #s = :state, lease_until = :l, finished_at = :t"
        if result:
            names["#r"] = "result"
            values[":r"] = {"S": str(result)}
            expr += ", #r = :r"
        if done or forget:
            expr += " REMOVE takeovers"
        return self._update_if(
            delivery_pk(key),
            CLAIM_SK,
            UpdateExpression=expr,
            ConditionExpression=OWNED_BY_ME,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    def settle_abandoned(self, key: DeliveryKey, result: str) -> bool:
        """Mark done a claim its worker left (lease run out, or released): the delivery is settled
        without it (e.g. superseded), so nothing reads it as still under way."""
        return self._update_if(
            delivery_pk(key),
            CLAIM_SK,
            UpdateExpression="SET #s = :done, lease_until = :zero, finished_at = :t, #r = :r",
            ConditionExpression=ABANDONED,
            ExpressionAttributeNames={"#s": "state", "#r": "result"},
            ExpressionAttributeValues={
                **_claim_states(ClaimState.DONE, ClaimState.RELEASED, ClaimState.IN_PROGRESS),
                ":zero": {"N": "0"},
                ":now": {"N": repr(time.time())},
                ":t": {"S": iso_utc(utcnow())},
                ":r": {"S": str(result)},
            },
        )

    # -- recipients -------------------------------------------------------------------
    def recipients(self, key: DeliveryKey) -> dict[str, RecipientMark]:
        """Every readable recipient item of a delivery, by lower-cased address (all pages)."""
        paginator = self._ddb.get_paginator("query")
        pages = paginator.paginate(
            TableName=self.table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :r)",
            ExpressionAttributeValues={":pk": {"S": delivery_pk(key)}, ":r": {"S": RCPT_PREFIX}},
            ConsistentRead=True,
        )
        items: Iterable[dict[str, Any]] = (item for page in pages for item in page.get("Items", []))
        return {mark.address: mark for mark in _readable(items, RecipientMark.model_validate)}

    def recipient(self, key: DeliveryKey, email: str) -> RecipientMark | None:
        return self._read(delivery_pk(key), rcpt_sk(email), RecipientMark.model_validate)

    def begin_send(self, key: DeliveryKey, email: str, owner: str, *, token: str | None = None) -> SendSlot:
        """Mark a recipient ``sending`` unless it was ever sent, rejected or left ambiguous (``token``: the
        claim token the send's email tags carry)."""
        now = time.time()
        lease_until = now + self.send_lease
        fields = {"lease_until": lease_until, "started_at": iso_utc(utcnow()), "claim_token": token}
        if self._put_mark(BEGIN_SEND, key, email, owner, RecipientState.SENDING, fields):
            return SendSlot(SlotOutcome.GO, lease_until=lease_until)
        return self._settled_slot(key, email, self.recipient(key, email), now)

    def _settled_slot(self, key: DeliveryKey, email: str, mark: RecipientMark | None, now: float) -> SendSlot:
        state = mark.state if mark is not None else None
        if mark is None or state is None:
            return SendSlot(SlotOutcome.BUSY)  # seen mid-write (or unreadable): ask again later
        if state is RecipientState.SENT:
            return SendSlot(SlotOutcome.SENT, message_id=mark.message_id)
        if state is RecipientState.FAILED:
            return SendSlot(SlotOutcome.FAILED, error=mark.error)
        if state is RecipientState.UNKNOWN:
            return SendSlot(SlotOutcome.UNKNOWN, error=mark.error)
        if state is RecipientState.SENDING:
            if mark.lease_until >= now:
                return SendSlot(SlotOutcome.BUSY, lease_until=mark.lease_until)
            if self._mark_unknown(key, mark):
                return SendSlot(SlotOutcome.UNKNOWN, error=STOPPED_DURING_SEND)
            # Someone settled it meanwhile: read again.
            again = self.recipient(key, email)
            if again is not None and again.state is not RecipientState.SENDING:
                return self._settled_slot(key, email, again, now)
        return SendSlot(SlotOutcome.BUSY)

    def _mark_unknown(self, key: DeliveryKey, mark: RecipientMark, *, leased: bool = False) -> bool:
        """``sending`` → ``unknown`` once its lease ran out (``leased``: even before; the sender, if still
        alive, records what happened over it — ``unknown`` never blocks the truth)."""
        write = TAKE_OVER if leased else MARK_UNKNOWN
        extra: dict[str, Any] = {"owner": {"S": mark.owner or ""}}
        if not leased:
            extra["now"] = {"N": repr(time.time())}
        target = RecipientState.UNKNOWN
        return self._update_if(
            delivery_pk(key),
            rcpt_sk(mark.address),
            UpdateExpression="SET #s = :to, #e = :err, settled_at = :t",
            ConditionExpression=write.condition,
            ExpressionAttributeNames={**write.names, "#e": "error"},
            ExpressionAttributeValues=write.values(
                target,
                to={"S": target.value},
                err={"S": STOPPED_DURING_SEND},
                t={"S": iso_utc(utcnow())},
                **extra,
            ),
        )

    def record_sent(
        self, key: DeliveryKey, email: str, owner: str, message_id: str, *, token: str | None = None
    ) -> None:
        """Record a send. Overwrites an ``unknown`` mark of ours (we know better now)."""
        self._settle(key, email, owner, RecipientState.SENT, message_id=message_id, token=token)

    def record_failure(
        self,
        key: DeliveryKey,
        email: str,
        owner: str,
        state: RecipientState,
        error: str,
        *,
        token: str | None = None,
    ) -> None:
        """``retry`` (nothing was sent), ``failed`` (rejected) or ``unknown`` (maybe sent)."""
        self._settle(key, email, owner, RecipientState(state), error=error[:500], token=token)

    def _settle(
        self,
        key: DeliveryKey,
        email: str,
        owner: str,
        state: RecipientState,
        *,
        message_id: str | None = None,
        error: str | None = None,
        token: str | None = None,
    ) -> None:
        # False: not ours any more (already settled by us, or taken over): keep what is there.
        # ``token`` stays on the item: a later SES event of this send still finds it.
        fields = {
            "message_id": message_id,
            "error": error,
            "settled_at": iso_utc(utcnow()),
            "claim_token": token,
        }
        self._put_mark(SETTLE, key, email, owner, state, fields, me={"S": owner})

    def _put_mark(
        self,
        write: RecipientWrite,
        key: DeliveryKey,
        email: str,
        owner: str,
        state: RecipientState,
        fields: dict[str, Any],
        **values: Any,
    ) -> bool:
        """A whole recipient item in ``state``, if ``write``'s condition holds (``values``: its other
        placeholders); False when it did not."""
        item = {"pk": delivery_pk(key), "sk": rcpt_sk(email), "state": state.value, "owner": owner}
        return self._put_if(
            {**item, "email": email, **fields, "expires_at": self._expires()},
            ConditionExpression=write.condition,
            ExpressionAttributeNames=write.names,
            ExpressionAttributeValues=write.values(state, **values),
        )

    def confirm_sent(self, key: DeliveryKey, email: str, token: str, message_id: str) -> bool:
        """SES's event of the send holding ``token`` says it was accepted: ``sending``/``unknown`` (or
        ``retry``, reopened but not sent again yet) becomes ``sent``. False when the mark is another
        send's, or settled already."""
        target = RecipientState.SENT
        return self._update_if(
            delivery_pk(key),
            rcpt_sk(email),
            UpdateExpression="SET #s = :to, message_id = :mid, settled_at = :t, confirmed_by = :by",
            ConditionExpression=CONFIRM.condition,
            ExpressionAttributeNames=CONFIRM.names,
            ExpressionAttributeValues=CONFIRM.values(
                target,
                to={"S": target.value},
                mid={"S": message_id or "-"},
                t={"S": iso_utc(utcnow())},
                by={"S": "ses-event"},
                tok={"S": token},
            ),
        )

    def withdraw(self, key: DeliveryKey, email: str, error: str) -> bool:
        """Settle a ``retry`` recipient as ``failed`` without sending (e.g. unsubscribed since)."""
        target = RecipientState.FAILED
        return self._update_if(
            delivery_pk(key),
            rcpt_sk(email),
            UpdateExpression="SET #s = :to, #e = :err, settled_at = :t",
            ConditionExpression=WITHDRAW.condition,
            ExpressionAttributeNames={**WITHDRAW.names, "#e": "error"},
            ExpressionAttributeValues=WITHDRAW.values(
                target, to={"S": target.value}, err={"S": error[:500]}, t={"S": iso_utc(utcnow())}
            ),
        )

    # -- operator resend of unknown recipients ------------------------------------------------
    def plan_resend(self, key: DeliveryKey, emails: list[str] | None = None) -> ResendPlan:
        """Which recipients (default: every ``unknown`` one) may be reopened; nothing is written.

        Only an ``unknown`` recipient of a settled (``done``) delivery qualifies: while a worker still
        owns the delivery it settles its recipients itself, and anyone ``sent``/``failed`` is final.
        """
        claim = self.get_claim(key)
        claim_state = claim.state if claim is not None else None
        marks = self.recipients(key)
        wanted = (
            [e.casefold() for e in emails]
            if emails is not None
            else sorted(a for a, m in marks.items() if m.state is RecipientState.UNKNOWN)
        )
        plan = ResendPlan([], {}, claim_state)
        for addr in dict.fromkeys(wanted):
            mark = marks.get(addr)
            if mark is None:
                plan.refused[addr] = "not a recipient of this delivery"
            elif mark.state is not RecipientState.UNKNOWN:
                plan.refused[addr] = f"is {mark.state.value}, not unknown"
            elif claim_state is not ClaimState.DONE:
                plan.refused[addr] = (
                    f"delivery not settled yet (claim {claim_state.value if claim_state else 'missing'}); "
                    "a worker is still on it"
                )
            else:
                plan.eligible.append(mark)
        return plan

    def reopen_for_resend(self, key: DeliveryKey, emails: list[str], *, by: str, resend_id: str) -> Reopened:
        """Turn ``unknown`` recipients into ``retry`` and reopen the delivery in ``resend`` mode.

        Each recipient flips only if still ``unknown``, and the claim only if still ``done``, in one
        transaction per 98 recipients (later batches require the claim to be still this reopening's).
        Recipients that changed meanwhile are refused and the rest retried.
        """
        at = iso_utc(utcnow())
        todo = list(dict.fromkeys(e.casefold() for e in emails))
        out = Reopened([], {})
        first = True
        attempts = 0
        while todo and attempts < 5:
            attempts += 1
            batch = todo[:_TXN_RECIPIENTS]
            try:
                ops = [self._reopen_claim_op(key, by, at, resend_id, first)]
                if first:
                    ops.append(self._resend_marker_op(key, by, at, resend_id, todo))
                self._ddb.transact_write_items(
                    TransactItems=ops + [self._reopen_rcpt_op(key, addr, by, at) for addr in batch]
                )
            except ClientError as exc:
                if not _conditional_failed(exc):
                    raise
                claim = self.get_claim(key)
                claim_ok = claim is not None and (
                    claim.state is ClaimState.DONE
                    if first
                    else claim.state is ClaimState.RELEASED and claim.resend_id == resend_id
                )
                if not claim_ok:
                    now = claim.state.value if claim is not None else "missing"
                    for addr in todo:
                        out.refused[addr] = f"delivery changed meanwhile (claim {now})"
                    return out
                marks = self.recipients(key)
                for addr in batch:
                    mark = marks.get(addr)
                    if mark is None or mark.state is not RecipientState.UNKNOWN:
                        out.refused[addr] = f"is {mark.state.value if mark else 'missing'}, not unknown"
                todo = [a for a in todo if a not in out.refused]
                continue
            out.reopened += batch
            todo = todo[len(batch) :]
            first = False
        for addr in todo:
            out.refused[addr] = "the ledger kept changing; try again"
        return out

    def _reopen_claim_op(self, key: DeliveryKey, by: str, at: str, resend_id: str, first: bool) -> Any:
        claim_key = {"pk": {"S": delivery_pk(key)}, "sk": {"S": CLAIM_SK}}
        if not first:
            return {
                "ConditionCheck": {
                    "TableName": self.table,
                    "Key": claim_key,
                    "ConditionExpression": "#s = :released AND resend_id = :rid",
                    "ExpressionAttributeNames": {"#s": "state"},
                    "ExpressionAttributeValues": {
                        **_claim_states(ClaimState.RELEASED),
                        ":rid": {"S": resend_id},
                    },
                }
            }
        return {
            "Update": {
                "TableName": self.table,
                "Key": claim_key,
                "UpdateExpression": (
                    "SET #s = :released, lease_until = :zero, "
                    "resend_id = :rid, resend_by = :by, resend_at = :at"
                ),
                "ConditionExpression": "#s = :done",
                "ExpressionAttributeNames": {"#s": "state"},
                "ExpressionAttributeValues": {
                    **_claim_states(ClaimState.RELEASED, ClaimState.DONE),
                    ":zero": {"N": "0"},
                    ":rid": {"S": resend_id},
                    ":by": {"S": by},
                    ":at": {"S": at},
                },
            }
        }

    def _resend_marker_op(self, key: DeliveryKey, by: str, at: str, resend_id: str, todo: list[str]) -> Any:
        data = {
            "pk": delivery_pk(key),
            "sk": RESEND_SK,
            "mode": RESEND_MODE,
            "resend_id": resend_id,
            "resend_by": by,
            "resend_at": at,
            "recipients": todo[:1000],
            "expires_at": self._expires(),
        }
        return {"Put": {"TableName": self.table, "Item": to_item(data)}}

    def _reopen_rcpt_op(self, key: DeliveryKey, addr: str, by: str, at: str, *, auto: bool = False) -> Any:
        target = RecipientState.RETRY
        extra = {"one": {"N": "1"}} if auto else {}
        return {
            "Update": {
                "TableName": self.table,
                "Key": {"pk": {"S": delivery_pk(key)}, "sk": {"S": rcpt_sk(addr)}},
                "UpdateExpression": "SET #s = :to, resend_by = :by, resend_at = :at"
                + (" ADD auto_resends :one" if auto else ""),
                "ConditionExpression": REOPEN.condition,
                "ExpressionAttributeNames": REOPEN.names,
                "ExpressionAttributeValues": REOPEN.values(
                    target, to={"S": target.value}, by={"S": by}, at={"S": at}, **extra
                ),
            }
        }

    # -- automatic reconciliation of unknown recipients (``services.events.Reconciler``) ---------------
    def note_unknown(self, key: DeliveryKey, due_at: float) -> None:
        """The delivery settled with ``unknown`` recipients: the reconciler looks at it at ``due_at``."""
        self._ddb.update_item(
            TableName=self.table,
            Key={"pk": {"S": RECONCILE_PK}, "sk": {"S": delivery_pk(key)}},
            UpdateExpression="SET due_at = :d, customer = :c, rev = if_not_exists(rev, :zero) + :one, "
            "expires_at = :x",
            ExpressionAttributeValues={
                ":d": {"N": repr(due_at)},
                ":c": {"S": key.customer},
                ":zero": {"N": "0"},
                ":one": {"N": "1"},
                ":x": {"N": str(self._expires())},
            },
        )

    def reconciles(self) -> list[ReconcileItem]:
        """Every delivery awaiting the reconciler (all pages)."""
        pages = self._ddb.get_paginator("query").paginate(
            TableName=self.table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": RECONCILE_PK}},
            ConsistentRead=True,
        )
        items = (item for page in pages for item in page.get("Items", []))
        return list(_readable(items, ReconcileItem.model_validate))

    def drop_reconcile(self, item: ReconcileItem) -> bool:
        """Nothing is left to reconcile (unless someone wrote the item since ``item`` was read)."""
        try:
            self._ddb.delete_item(
                TableName=self.table,
                Key={"pk": {"S": RECONCILE_PK}, "sk": {"S": item.sk}},
                ConditionExpression="rev = :rev",
                ExpressionAttributeValues={":rev": {"N": str(item.rev)}},
            )
        except ClientError as exc:
            if _conditional_failed(exc):
                return False
            raise
        return True

    def auto_reopen(
        self,
        item: ReconcileItem,
        key: DeliveryKey,
        emails: list[str],
        *,
        by: str,
        resend_id: str,
        next_due: float,
    ) -> bool:
        """The reconciler's resend: in one transaction, each ``unknown`` recipient → ``retry``, the settled
        claim reopened in ``resend`` mode, and the reconcile item notes them as resent (only if its
        ``rev`` is still the one read: of two reconcilers only one acts). False when anything changed."""
        at = iso_utc(utcnow())
        todo = list(dict.fromkeys(e.casefold() for e in emails))[: _TXN_RECIPIENTS - 1]
        ops = [
            self._reopen_claim_op(key, by, at, resend_id, True),
            self._resend_marker_op(key, by, at, resend_id, todo),
            {
                "Update": {
                    "TableName": self.table,
                    "Key": {"pk": {"S": RECONCILE_PK}, "sk": {"S": item.sk}},
                    "UpdateExpression": "SET rev = rev + :one, due_at = :d ADD resent :a",
                    "ConditionExpression": "rev = :rev",
                    "ExpressionAttributeValues": {
                        ":one": {"N": "1"},
                        ":d": {"N": repr(next_due)},
                        ":a": {"SS": todo},
                        ":rev": {"N": str(item.rev)},
                    },
                }
            },
            *(self._reopen_rcpt_op(key, addr, by, at, auto=True) for addr in todo),
        ]
        try:
            self._ddb.transact_write_items(TransactItems=ops)
        except ClientError as exc:
            if _conditional_failed(exc):
                return False
            raise
        return True

    # -- reconciling a delivery that did not finish ----------------------------------------------
    def reconcile(self, key: DeliveryKey) -> Tally:
        """Count the recipient items of a delivery its caller took over (holding its lane): ``sent``
        stays sent; a ``sending`` mark becomes ``unknown`` (maybe sent: its SES event or the reconciler
        settles it) unless its sender records the outcome first."""
        tally = Tally()
        for addr, mark in self.recipients(key).items():
            state = mark.state
            if state is RecipientState.SENDING:
                # Whoever marked it lost the delivery (the caller holds its lane): maybe sent.
                self._mark_unknown(key, mark, leased=True)
                mark = self.recipient(key, addr) or mark
                state = RecipientState.UNKNOWN if mark.state is RecipientState.SENDING else mark.state
            tally.total += 1
            if state is RecipientState.SENT:
                tally.sent += 1
                if mark.message_id:
                    tally.message_ids.append(mark.message_id)
            elif state is RecipientState.UNKNOWN:
                tally.unknown += 1
            else:
                tally.failed += 1
        return tally

    # -- lanes: one delivery at a time per change and customer -----------------------------------
    def acquire_lane(
        self, change_id: str, customer: str, owner: str, *, delivery: DeliveryKey | None = None
    ) -> Lane | LaneBusy:
        """Lock the lane unless another holder's lease is still valid; returns what the item knows.

        ``delivery``: the delivery about to be worked on (kept as ``lock_delivery`` for a successor
        should this holder die; ``mark_lane_delivery`` changes it)."""
        now = time.time()
        lease_until = now + self.claim_lease
        values: dict[str, Any] = {
            ":me": {"S": owner},
            ":l": {"N": repr(lease_until)},
            ":now": {"N": repr(now)},
            ":t": {"S": iso_utc(utcnow())},
            ":x": {"N": str(self._expires(LATEST_TTL_DAYS))},
        }
        expr = "SET lock_owner = :me, lock_until = :l, lock_at = :t, expires_at = :x"
        if delivery is not None:
            values[":d"] = {"S": delivery_pk(delivery)}
            expr += ", lock_delivery = :d"
        else:
            expr += " REMOVE lock_delivery"
        try:
            resp = self._ddb.update_item(
                TableName=self.table,
                Key={"pk": {"S": latest_pk(change_id, customer)}, "sk": {"S": LATEST_SK}},
                UpdateExpression=expr,
                ConditionExpression=LANE_FREE,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_OLD",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if not _conditional_failed(exc):
                raise
            item: dict[str, Any] = exc.response.get("Item") or {}  # type: ignore[assignment]
            held = from_item(item)
            if not held:  # no ALL_OLD on the failure (older services): read it
                held = self._read(latest_pk(change_id, customer), LATEST_SK, dict) or {}
            return LaneBusy(_text(held.get("lock_owner")), float(held.get("lock_until", now + 1.0)))
        old = from_item(dict(resp.get("Attributes") or {}))
        stolen = key_of_delivery_pk(str(old.get("lock_delivery", ""))) if old.get("lock_owner") else None
        return Lane(
            change_id,
            customer,
            owner,
            lease_until,
            sent_version=_int(old.get("version")),
            sent_event=_event(old.get("event")),
            invite_version=_int(old.get("invite_version")),
            removed_version=_int(old.get("removed_version")),
            topics=set(old.get("topics") or ()),
            stolen=stolen,
        )

    def mark_lane_delivery(self, lane: Lane, delivery: DeliveryKey) -> bool:
        """Name the delivery the holder now works on (what a successor reconciles if it dies)."""
        return self._update_if(
            latest_pk(lane.change_id, lane.customer),
            LATEST_SK,
            UpdateExpression="SET lock_delivery = :d",
            ConditionExpression=LANE_MINE,
            ExpressionAttributeValues={":d": {"S": delivery_pk(delivery)}, ":me": {"S": lane.owner}},
        )

    def renew_lane(self, change_id: str, customer: str, owner: str) -> float | None:
        """Extend our lease; None when we no longer hold the lane."""
        lease_until = time.time() + self.claim_lease
        ok = self._update_if(
            latest_pk(change_id, customer),
            LATEST_SK,
            UpdateExpression="SET lock_until = :l",
            ConditionExpression=LANE_MINE,
            ExpressionAttributeValues={":l": {"N": repr(lease_until)}, ":me": {"S": owner}},
        )
        return lease_until if ok else None

    def release_lane(self, lane: Lane) -> bool:
        """Write back what the holder learned and unlock, in one conditional update. When the lock was
        lost meanwhile, record the facts on their own (never lowering a newer holder's) and return False."""
        sets = ["expires_at = :x"]
        values: dict[str, Any] = {
            ":me": {"S": lane.owner},
            ":x": {"N": str(self._expires(LATEST_TTL_DAYS))},
        }
        names: dict[str, str] = {}
        if lane.sent_version is not None:
            sets.append("#v = :v, #e = :e, updated_at = :t")
            names.update({"#v": "version", "#e": "event"})
            values.update(
                {
                    ":v": {"N": str(lane.sent_version)},
                    ":e": {"S": lane.sent_event.value if lane.sent_event else ""},
                    ":t": {"S": iso_utc(utcnow())},
                }
            )
        for attr, value in (
            ("invite_version", lane.invite_version),
            ("removed_version", lane.removed_version),
        ):
            if value is not None:
                sets.append(f"{attr} = :{attr}")
                values[f":{attr}"] = {"N": str(value)}
        if lane.topics:
            sets.append("topics = :topics")
            values[":topics"] = {"SS": sorted(lane.topics)}
        kwargs: dict[str, Any] = {
            "UpdateExpression": f"SET {', '.join(sets)} REMOVE {', '.join(LOCK_ATTRIBUTES)}",
            "ConditionExpression": LANE_MINE,
            "ExpressionAttributeValues": values,
        }
        if names:
            kwargs["ExpressionAttributeNames"] = names
        if self._update_if(latest_pk(lane.change_id, lane.customer), LATEST_SK, **kwargs):
            return True
        self._record_lane_facts(lane)
        return False

    def _record_lane_facts(self, lane: Lane) -> None:
        """What a holder that lost its lock learned, each fact only where it is newer."""
        pk = latest_pk(lane.change_id, lane.customer)
        if lane.sent_version is not None and lane.sent_event is not None:
            self._update_if(
                pk,
                LATEST_SK,
                UpdateExpression="SET #v = :v, #e = :e, updated_at = :t, expires_at = :x",
                ConditionExpression=_newer("#v", ":v"),
                ExpressionAttributeNames={"#v": "version", "#e": "event"},
                ExpressionAttributeValues={
                    ":v": {"N": str(lane.sent_version)},
                    ":e": {"S": lane.sent_event.value},
                    ":t": {"S": iso_utc(utcnow())},
                    ":x": {"N": str(self._expires(LATEST_TTL_DAYS))},
                },
            )
        for attr, value in (
            ("invite_version", lane.invite_version),
            ("removed_version", lane.removed_version),
        ):
            if value is not None:
                self._update_if(
                    pk,
                    LATEST_SK,
                    UpdateExpression=f"SET {attr} = :n",
                    ConditionExpression=_newer(attr, ":n"),
                    ExpressionAttributeValues={":n": {"N": str(value)}},
                )
        if lane.topics:
            self._ddb.update_item(
                TableName=self.table,
                Key={"pk": {"S": pk}, "sk": {"S": LATEST_SK}},
                UpdateExpression="ADD topics :t",
                ExpressionAttributeValues={":t": {"SS": sorted(lane.topics)}},
            )

    def latest(self, change_id: str, customer: str) -> Latest | None:
        """The newest notice of the change sent to the customer (None: nothing yet)."""
        item = self._read(latest_pk(change_id, customer), LATEST_SK, dict)
        if not item or "version" not in item:
            return None
        inv = item.get("invite_version")
        topics = frozenset(str(t) for t in item.get("topics") or ())
        return Latest(int(item["version"]), _event(item.get("event")), int(inv) if inv else None, topics)


def _readable(items: Iterable[dict[str, Any]], parse: Callable[[dict[str, Any]], T]) -> Iterator[T]:
    """``parse`` of the plain attributes of every item it can read; the others are logged and skipped."""
    return readable(items, lambda raw: parse(from_item(raw)), what="ledger", logger=log)


def _newer(attr: str, value: str) -> str:
    """Condition: ``attr`` is absent or below the ``value`` placeholder (never lower a newer fact)."""
    return f"attribute_not_exists({attr}) OR {attr} < {value}"
