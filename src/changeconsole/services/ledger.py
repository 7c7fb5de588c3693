"""The delivery ledger (DynamoDB, conditional writes): who may send what, and what was sent.

Items (docs/architecture.md):

- ``DELIVERY#{changeId}#v{version}#{event}#{customer}`` / ``CLAIM``: one worker owns a delivery
  (``in_progress`` with a lease expiry; ``released`` = retakable at once; ``done`` = settled).
- same pk / ``RCPT#{email}``: one recipient's send (``sending`` with a lease, ``sent``, ``retry``,
  ``failed``, ``unknown``).
- ``LATEST#{changeId}#{customer}`` / ``LATEST``: the lane of one change and customer: what was sent
  (newest version, topics, invite, removal notice) and the lock that lets one delivery at a time act
  for them (``lock_owner`` with a lease, ``lock_delivery``: the delivery it is on), so a customer's
  emails of one change go out in lifecycle order (``acquire_lane`` / ``release_lane``).

At-most-once per recipient: a recipient is marked ``sending`` right before its SES call and ``sent``
right after. A ``sending`` mark whose lease expired (its worker died between the two writes) becomes
``unknown`` and is never sent again, so a crash can lose at most the sends in flight at that moment
(each recorded as ``unknown``), and never duplicates one.

An operator who decides to send an ``unknown`` recipient again (``services.resend``) turns it back
into ``retry`` — conditionally on it still being ``unknown`` — and reopens the settled delivery in
``resend`` mode (``reopen_for_resend``, one transaction that also writes a ``RESEND`` item under the
delivery's pk: who, when, which recipients): a worker then sends to the reopened
recipients only, never to anyone already ``sent``/``failed`` nor to a contact who subscribed since.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from ..models import Config, EmailEvent, iso_utc, utcnow
from .aws import AwsFactory
from .status import DeliveryKey, from_item, to_item

CLAIM_SK = "CLAIM"
RESEND_SK = "RESEND"  # present once an operator reopened the delivery (see ``reopen_for_resend``)
LATEST_SK = "LATEST"
LOCK_ATTRIBUTES = ("lock_owner", "lock_until", "lock_delivery", "lock_at")

# Claim states.
IN_PROGRESS = "in_progress"
RELEASED = "released"
DONE = "done"

# Recipient states.
SENDING = "sending"
SENT = "sent"
RETRY = "retry"  # the SES call failed without sending; may be retried
FAILED = "failed"  # SES rejected this recipient permanently
UNKNOWN = "unknown"  # the worker stopped between marking and recording; never re-sent

# Claim mode of a delivery reopened by an operator: send only to recipients in ``retry``.
RESEND_MODE = "resend"
_TXN_RECIPIENTS = 98  # a transaction holds 100 items: the claim, the RESEND marker and these

DEFAULT_TTL_DAYS = 90
LATEST_TTL_DAYS = 400


def delivery_pk(key: DeliveryKey) -> str:
    return f"DELIVERY#{key.change_id}#v{key.version}#{key.event.value}#{key.customer}"


def latest_pk(change_id: str, customer: str) -> str:
    return f"LATEST#{change_id}#{customer}"


def rcpt_sk(email: str) -> str:
    return f"RCPT#{email.casefold()}"


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
    return exc.response.get("Error", {}).get("Code") in (
        "ConditionalCheckFailedException",
        "TransactionCanceledException",
    )


@dataclass
class Claim:
    """Result of ``claim``: ``acquired``, ``done`` (already settled) or ``busy`` (owned elsewhere)."""

    outcome: str
    owner: str | None = None
    lease_until: float = 0.0
    item: dict[str, Any] | None = None

    @property
    def acquired(self) -> bool:
        return self.outcome == "acquired"

    @property
    def resend_only(self) -> bool:
        """The delivery was reopened by an operator: send only to recipients in ``retry``."""
        return bool(self.item and self.item.get("mode") == RESEND_MODE)


@dataclass
class ResendPlan:
    """Which of the asked recipients of one delivery may be sent again, and why the others may not."""

    eligible: list[dict[str, Any]]  # their ledger items (state ``unknown``)
    refused: dict[str, str]  # lower-cased address -> reason
    claim_state: str | None = None


@dataclass
class Reopened:
    """Result of ``reopen_for_resend``."""

    reopened: list[str]  # lower-cased addresses now in ``retry``
    refused: dict[str, str]


@dataclass
class SendSlot:
    """Result of ``begin_send``: ``go`` (marked sending, send now) or the recipient's settled state."""

    outcome: str  # go, sent, failed, unknown, busy
    message_id: str | None = None
    lease_until: float = 0.0
    error: str | None = None


@dataclass
class Latest:
    version: int
    event: str
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
    sent_event: str | None = None
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
            self.sent_version, self.sent_event = version, event.value
        if topic:
            self.topics.add(topic)

    def note_invite(self, version: int) -> None:
        self.invite_version = max(version, self.invite_version or 0)


@dataclass
class LaneBusy:
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
    def _ddb(self) -> Any:
        return self.aws.client("dynamodb")

    def _expires(self, days: int | None = None) -> int:
        return int(time.time()) + 86400 * (days or self.ttl_days)

    def _get(self, pk: str, sk: str) -> dict[str, Any] | None:
        resp = self._ddb.get_item(
            TableName=self.table, Key={"pk": {"S": pk}, "sk": {"S": sk}}, ConsistentRead=True
        )
        item = resp.get("Item")
        return from_item(item) if item else None

    # -- claims ------------------------------------------------------------------------
    def _update_if(self, pk: str, sk: str, **kwargs: Any) -> bool:
        """One conditional ``update_item``; False when its condition did not hold."""
        try:
            self._ddb.update_item(TableName=self.table, Key={"pk": {"S": pk}, "sk": {"S": sk}}, **kwargs)
        except ClientError as exc:
            if _conditional_failed(exc):
                return False
            raise
        return True

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
            "state": IN_PROGRESS,
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
                ConditionExpression=(
                    "attribute_not_exists(pk) OR #s = :released OR (#s = :progress AND lease_until < :now)"
                ),
                ExpressionAttributeNames={"#s": "state"},
                ExpressionAttributeValues={
                    ":released": {"S": RELEASED},
                    ":progress": {"S": IN_PROGRESS},
                    ":now": {"N": repr(now)},
                },
                ReturnValues="ALL_OLD",
            )
        except ClientError as exc:
            if not _conditional_failed(exc):
                raise
        else:
            # A first claim (no old item: the common case) was never reopened: no extra read.
            if resp.get("Attributes") and self.resend_marker(key) is not None:
                data["mode"] = RESEND_MODE
            return Claim("acquired", owner, lease_until, data)
        item = self.get_claim(key) or {}
        if item.get("state") == DONE:
            return Claim("done", item.get("owner"), 0.0, item)
        return Claim("busy", item.get("owner"), float(item.get("lease_until", 0.0)), item)

    def resend_marker(self, key: DeliveryKey) -> dict[str, Any] | None:
        """The ``RESEND`` item of a delivery an operator reopened (who, when, which recipients)."""
        return self._get(delivery_pk(key), RESEND_SK)

    def get_claim(self, key: DeliveryKey) -> dict[str, Any] | None:
        return self._get(delivery_pk(key), CLAIM_SK)

    def renew_claim(self, key: DeliveryKey, owner: str) -> float | None:
        """Extend our lease; None when we no longer own the claim."""
        lease_until = time.time() + self.claim_lease
        ok = self._update_if(
            delivery_pk(key),
            CLAIM_SK,
            UpdateExpression="SET lease_until = :l",
            ConditionExpression="#o = :me AND #s = :progress",
            ExpressionAttributeNames={"#o": "owner", "#s": "state"},
            ExpressionAttributeValues={
                ":l": {"N": repr(lease_until)},
                ":me": {"S": owner},
                ":progress": {"S": IN_PROGRESS},
            },
        )
        return lease_until if ok else None

    def finish_claim(self, key: DeliveryKey, owner: str, *, done: bool, result: str | None = None) -> bool:
        """``done`` settles the delivery; otherwise release it so any worker may retake it at once."""
        names = {"#o": "owner", "#s": "state"}
        values: dict[str, Any] = {
            ":me": {"S": owner},
            ":state": {"S": DONE if done else RELEASED},
            ":l": {"N": "0"},
            ":t": {"S": iso_utc(utcnow())},
        }
        expr = "SET #s = :state, lease_until = :l, finished_at = :t"
        if result:
            names["#r"] = "result"
            values[":r"] = {"S": result}
            expr += ", #r = :r"
        return self._update_if(
            delivery_pk(key),
            CLAIM_SK,
            UpdateExpression=expr,
            ConditionExpression="#o = :me",
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
            ConditionExpression="#s = :released OR (#s = :progress AND lease_until < :now)",
            ExpressionAttributeNames={"#s": "state", "#r": "result"},
            ExpressionAttributeValues={
                ":done": {"S": DONE},
                ":released": {"S": RELEASED},
                ":progress": {"S": IN_PROGRESS},
                ":zero": {"N": "0"},
                ":now": {"N": repr(time.time())},
                ":t": {"S": iso_utc(utcnow())},
                ":r": {"S": result},
            },
        )

    # -- recipients -------------------------------------------------------------------
    def recipients(self, key: DeliveryKey) -> dict[str, dict[str, Any]]:
        """Every recipient item of a delivery, by lower-cased address (all pages)."""
        out: dict[str, dict[str, Any]] = {}
        paginator = self._ddb.get_paginator("query")
        for page in paginator.paginate(
            TableName=self.table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :r)",
            ExpressionAttributeValues={":pk": {"S": delivery_pk(key)}, ":r": {"S": "RCPT#"}},
            ConsistentRead=True,
        ):
            for item in page.get("Items", []):
                data = from_item(item)
                out[data["sk"].removeprefix("RCPT#")] = data
        return out

    def begin_send(self, key: DeliveryKey, email: str, owner: str) -> SendSlot:
        """Mark a recipient ``sending`` unless it was ever sent, rejected or left ambiguous."""
        now = time.time()
        lease_until = now + self.send_lease
        data = {
            "pk": delivery_pk(key),
            "sk": rcpt_sk(email),
            "state": SENDING,
            "owner": owner,
            "email": email,
            "lease_until": lease_until,
            "started_at": iso_utc(utcnow()),
            "expires_at": self._expires(),
        }
        try:
            self._ddb.put_item(
                TableName=self.table,
                Item=to_item(data),
                ConditionExpression="attribute_not_exists(pk) OR #s = :retry",
                ExpressionAttributeNames={"#s": "state"},
                ExpressionAttributeValues={":retry": {"S": RETRY}},
            )
            return SendSlot("go", lease_until=lease_until)
        except ClientError as exc:
            if not _conditional_failed(exc):
                raise
        item = self._get(delivery_pk(key), rcpt_sk(email)) or {}
        return self._settled_slot(key, email, item, now)

    def _settled_slot(self, key: DeliveryKey, email: str, item: dict[str, Any], now: float) -> SendSlot:
        state = item.get("state")
        if state == SENT:
            return SendSlot("sent", message_id=item.get("message_id"))
        if state == FAILED:
            return SendSlot("failed", error=item.get("error"))
        if state == UNKNOWN:
            return SendSlot("unknown", error=item.get("error"))
        if state == SENDING:
            lease = float(item.get("lease_until", 0.0))
            if lease >= now:
                return SendSlot("busy", lease_until=lease)
            if self._mark_unknown(key, email, item):
                return SendSlot("unknown", error="worker stopped during send; outcome unknown")
            # Someone settled it meanwhile: read again.
            again = self._get(delivery_pk(key), rcpt_sk(email)) or {}
            if again.get("state") != SENDING:
                return self._settled_slot(key, email, again, now)
        return SendSlot("busy")

    def _mark_unknown(
        self, key: DeliveryKey, email: str, item: dict[str, Any], *, leased: bool = False
    ) -> bool:
        """``sending`` → ``unknown`` once its lease ran out (``leased``: even before; the sender, if still
        alive, records what happened over it — ``unknown`` never blocks the truth)."""
        condition = "#s = :sending AND #o = :owner"
        values = {
            ":unknown": {"S": UNKNOWN},
            ":sending": {"S": SENDING},
            ":owner": {"S": str(item.get("owner", ""))},
            ":err": {"S": "worker stopped during send; outcome unknown"},
            ":t": {"S": iso_utc(utcnow())},
        }
        if not leased:
            condition += " AND lease_until < :now"
            values[":now"] = {"N": repr(time.time())}
        return self._update_if(
            delivery_pk(key),
            rcpt_sk(email),
            UpdateExpression="SET #s = :unknown, #e = :err, settled_at = :t",
            ConditionExpression=condition,
            ExpressionAttributeNames={"#s": "state", "#e": "error", "#o": "owner"},
            ExpressionAttributeValues=values,
        )

    def record_sent(self, key: DeliveryKey, email: str, owner: str, message_id: str) -> None:
        """Record a send. Overwrites an ``unknown`` mark of ours (we know better now)."""
        self._settle(key, email, owner, SENT, message_id=message_id)

    def record_failure(self, key: DeliveryKey, email: str, owner: str, state: str, error: str) -> None:
        """``retry`` (nothing was sent), ``failed`` (rejected) or ``unknown`` (maybe sent)."""
        self._settle(key, email, owner, state, error=error[:500])

    def _settle(
        self,
        key: DeliveryKey,
        email: str,
        owner: str,
        state: str,
        *,
        message_id: str | None = None,
        error: str | None = None,
    ) -> None:
        data = {
            "pk": delivery_pk(key),
            "sk": rcpt_sk(email),
            "state": state,
            "owner": owner,
            "email": email,
            "message_id": message_id,
            "error": error,
            "settled_at": iso_utc(utcnow()),
            "expires_at": self._expires(),
        }
        try:
            self._ddb.put_item(
                TableName=self.table,
                Item=to_item(data),
                ConditionExpression="#o = :me AND #s IN (:sending, :unknown)",
                ExpressionAttributeNames={"#o": "owner", "#s": "state"},
                ExpressionAttributeValues={
                    ":me": {"S": owner},
                    ":sending": {"S": SENDING},
                    ":unknown": {"S": UNKNOWN},
                },
            )
        except ClientError as exc:
            if not _conditional_failed(exc):
                raise
            # Not ours any more (already settled by us or taken over): keep what is there.

    def withdraw(self, key: DeliveryKey, email: str, error: str) -> bool:
        """Settle a ``retry`` recipient as ``failed`` without sending (e.g. unsubscribed since)."""
        return self._update_if(
            delivery_pk(key),
            rcpt_sk(email),
            UpdateExpression="SET #s = :failed, #e = :err, settled_at = :t",
            ConditionExpression="#s = :retry",
            ExpressionAttributeNames={"#s": "state", "#e": "error"},
            ExpressionAttributeValues={
                ":failed": {"S": FAILED},
                ":retry": {"S": RETRY},
                ":err": {"S": error[:500]},
                ":t": {"S": iso_utc(utcnow())},
            },
        )

    # -- operator resend of unknown recipients ------------------------------------------------
    def plan_resend(self, key: DeliveryKey, emails: list[str] | None = None) -> ResendPlan:
        """Which recipients (default: every ``unknown`` one) may be reopened; nothing is written.

        Only an ``unknown`` recipient of a settled (``done``) delivery qualifies: while a worker still
        owns the delivery it settles its recipients itself, and anyone ``sent``/``failed`` is final.
        """
        claim = self.get_claim(key) or {}
        items = self.recipients(key)
        wanted = (
            [e.casefold() for e in emails]
            if emails is not None
            else sorted(a for a, it in items.items() if it.get("state") == UNKNOWN)
        )
        plan = ResendPlan([], {}, claim.get("state"))
        for addr in dict.fromkeys(wanted):
            item = items.get(addr)
            if item is None:
                plan.refused[addr] = "not a recipient of this delivery"
            elif item.get("state") != UNKNOWN:
                plan.refused[addr] = f"is {item.get('state')}, not unknown"
            elif claim.get("state") != DONE:
                plan.refused[addr] = (
                    f"delivery not settled yet (claim {claim.get('state') or 'missing'}); "
                    "a worker is still on it"
                )
            else:
                plan.eligible.append(item)
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
                ops = [self._reopen_claim_op(key, by, at, resend_id, todo, first)]
                if first:
                    ops.append(self._resend_marker_op(key, by, at, resend_id, todo))
                self._ddb.transact_write_items(
                    TransactItems=ops + [self._reopen_rcpt_op(key, addr, by, at) for addr in batch]
                )
            except ClientError as exc:
                if not _conditional_failed(exc):
                    raise
                claim = self.get_claim(key) or {}
                claim_ok = (
                    claim.get("state") == DONE
                    if first
                    else claim.get("state") == RELEASED and claim.get("resend_id") == resend_id
                )
                if not claim_ok:
                    for addr in todo:
                        out.refused[addr] = (
                            f"delivery changed meanwhile (claim {claim.get('state') or 'missing'})"
                        )
                    return out
                items = self.recipients(key)
                for addr in batch:
                    state = (items.get(addr) or {}).get("state")
                    if state != UNKNOWN:
                        out.refused[addr] = f"is {state or 'missing'}, not unknown"
                todo = [a for a in todo if a not in out.refused]
                continue
            out.reopened += batch
            todo = todo[len(batch) :]
            first = False
        for addr in todo:
            out.refused[addr] = "the ledger kept changing; try again"
        return out

    def _reopen_claim_op(
        self, key: DeliveryKey, by: str, at: str, resend_id: str, todo: list[str], first: bool
    ) -> dict[str, Any]:
        claim_key = {"pk": {"S": delivery_pk(key)}, "sk": {"S": CLAIM_SK}}
        if not first:
            return {
                "ConditionCheck": {
                    "TableName": self.table,
                    "Key": claim_key,
                    "ConditionExpression": "#s = :released AND resend_id = :rid",
                    "ExpressionAttributeNames": {"#s": "state"},
                    "ExpressionAttributeValues": {":released": {"S": RELEASED}, ":rid": {"S": resend_id}},
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
                    ":released": {"S": RELEASED},
                    ":done": {"S": DONE},
                    ":zero": {"N": "0"},
                    ":rid": {"S": resend_id},
                    ":by": {"S": by},
                    ":at": {"S": at},
                },
            }
        }

    def _resend_marker_op(
        self, key: DeliveryKey, by: str, at: str, resend_id: str, todo: list[str]
    ) -> dict[str, Any]:
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

    def _reopen_rcpt_op(self, key: DeliveryKey, addr: str, by: str, at: str) -> dict[str, Any]:
        return {
            "Update": {
                "TableName": self.table,
                "Key": {"pk": {"S": delivery_pk(key)}, "sk": {"S": rcpt_sk(addr)}},
                "UpdateExpression": "SET #s = :retry, resend_by = :by, resend_at = :at",
                "ConditionExpression": "#s = :unknown",
                "ExpressionAttributeNames": {"#s": "state"},
                "ExpressionAttributeValues": {
                    ":retry": {"S": RETRY},
                    ":unknown": {"S": UNKNOWN},
                    ":by": {"S": by},
                    ":at": {"S": at},
                },
            }
        }

    # -- reconciling a delivery that did not finish ----------------------------------------------
    def reconcile(self, key: DeliveryKey) -> Tally:
        """Count the recipient items of a delivery its caller took over (holding its lane): ``sent``
        stays sent; a ``sending`` mark becomes ``unknown`` (maybe sent, never re-sent automatically,
        surfaced for ``change resend-unknown``) unless its sender records the outcome first."""
        tally = Tally()
        for addr, item in self.recipients(key).items():
            state = item.get("state")
            if state == SENDING:
                # Whoever marked it lost the delivery (the caller holds its lane): maybe sent.
                self._mark_unknown(key, addr, item, leased=True)
                item = self._get(delivery_pk(key), rcpt_sk(addr)) or item
                state = item.get("state")
                state = UNKNOWN if state == SENDING else state
            tally.total += 1
            if state == SENT:
                tally.sent += 1
                if item.get("message_id"):
                    tally.message_ids.append(str(item["message_id"]))
            elif state == UNKNOWN:
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
                ConditionExpression="attribute_not_exists(lock_owner) OR lock_until < :now",
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
                held = self._get(latest_pk(change_id, customer), LATEST_SK) or {}
            return LaneBusy(held.get("lock_owner"), float(held.get("lock_until", now + 1.0)))
        old = from_item(resp.get("Attributes") or {})
        stolen = key_of_delivery_pk(str(old.get("lock_delivery", ""))) if old.get("lock_owner") else None
        return Lane(
            change_id,
            customer,
            owner,
            lease_until,
            sent_version=_int(old.get("version")),
            sent_event=old.get("event"),
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
            ConditionExpression="lock_owner = :me",
            ExpressionAttributeValues={":d": {"S": delivery_pk(delivery)}, ":me": {"S": lane.owner}},
        )

    def renew_lane(self, change_id: str, customer: str, owner: str) -> float | None:
        """Extend our lease; None when we no longer hold the lane."""
        lease_until = time.time() + self.claim_lease
        ok = self._update_if(
            latest_pk(change_id, customer),
            LATEST_SK,
            UpdateExpression="SET lock_until = :l",
            ConditionExpression="lock_owner = :me",
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
                    ":e": {"S": str(lane.sent_event or "")},
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
            "ConditionExpression": "lock_owner = :me",
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
        if lane.sent_version is not None and lane.sent_event:
            self.mark_latest(lane.change_id, lane.customer, lane.sent_version, EmailEvent(lane.sent_event))
        if lane.invite_version is not None:
            self.mark_invite(lane.change_id, lane.customer, lane.invite_version)
        pk = latest_pk(lane.change_id, lane.customer)
        if lane.removed_version is not None:
            self._update_if(
                pk,
                LATEST_SK,
                UpdateExpression="SET removed_version = :r",
                ConditionExpression="attribute_not_exists(removed_version) OR removed_version < :r",
                ExpressionAttributeValues={":r": {"N": str(lane.removed_version)}},
            )
        if lane.topics:
            self._ddb.update_item(
                TableName=self.table,
                Key={"pk": {"S": pk}, "sk": {"S": LATEST_SK}},
                UpdateExpression="ADD topics :t",
                ExpressionAttributeValues={":t": {"SS": sorted(lane.topics)}},
            )

    # -- newest version sent (superseded check) ------------------------------------------------
    def latest(self, change_id: str, customer: str) -> Latest | None:
        item = self._get(latest_pk(change_id, customer), LATEST_SK)
        if not item or "version" not in item:
            return None
        inv = item.get("invite_version")
        topics = frozenset(str(t) for t in item.get("topics") or ())
        return Latest(int(item["version"]), str(item.get("event", "")), int(inv) if inv else None, topics)

    def mark_latest(self, change_id: str, customer: str, version: int, event: EmailEvent) -> bool:
        """Record ``version`` as the newest sent unless a newer one already is."""
        return self._update_if(
            latest_pk(change_id, customer),
            LATEST_SK,
            UpdateExpression="SET #v = :v, #e = :e, updated_at = :t, expires_at = :x",
            ConditionExpression="attribute_not_exists(#v) OR #v < :v",
            ExpressionAttributeNames={"#v": "version", "#e": "event"},
            ExpressionAttributeValues={
                ":v": {"N": str(version)},
                ":e": {"S": event.value},
                ":t": {"S": iso_utc(utcnow())},
                ":x": {"N": str(self._expires(LATEST_TTL_DAYS))},
            },
        )

    def mark_invite(self, change_id: str, customer: str, version: int) -> None:
        """Remember that a calendar invite went out (a later cancellation then sends a CANCEL)."""
        try:
            self._ddb.update_item(
                TableName=self.table,
                Key={"pk": {"S": latest_pk(change_id, customer)}, "sk": {"S": LATEST_SK}},
                UpdateExpression="SET invite_version = :v",
                ConditionExpression="attribute_not_exists(invite_version) OR invite_version < :v",
                ExpressionAttributeValues={":v": {"N": str(version)}},
            )
        except ClientError as exc:
            if not _conditional_failed(exc):
                raise


def _int(value: Any) -> int | None:
    return int(value) if value is not None else None
