"""The delivery ledger (DynamoDB, conditional writes): who may send what, and what was sent.

Items (docs/architecture.md):

- ``DELIVERY#{changeId}#v{version}#{event}#{customer}`` / ``CLAIM``: one worker owns a delivery
  (``in_progress`` with a lease expiry; ``released`` = retakable at once; ``done`` = settled).
- same pk / ``RCPT#{email}``: one recipient's send (``sending`` with a lease, ``sent``, ``retry``,
  ``failed``, ``unknown``).
- ``LATEST#{changeId}#{customer}`` / ``LATEST``: the newest version sent (superseded check).

At-most-once per recipient: a recipient is marked ``sending`` right before its SES call and ``sent``
right after. A ``sending`` mark whose lease expired (its worker died between the two writes) becomes
``unknown`` and is never sent again, so a crash can lose at most the sends in flight at that moment
(each recorded as ``unknown``), and never duplicates one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from ..models import Config, EmailEvent, iso_utc, utcnow
from .aws import AwsFactory
from .status import DeliveryKey, from_item, to_item

CLAIM_SK = "CLAIM"
LATEST_SK = "LATEST"

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

DEFAULT_TTL_DAYS = 90
LATEST_TTL_DAYS = 400


def delivery_pk(key: DeliveryKey) -> str:
    return f"DELIVERY#{key.change_id}#v{key.version}#{key.event.value}#{key.customer}"


def latest_pk(change_id: str, customer: str) -> str:
    return f"LATEST#{change_id}#{customer}"


def rcpt_sk(email: str) -> str:
    return f"RCPT#{email.casefold()}"


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
    def claim(self, key: DeliveryKey, owner: str, *, message_id: str | None = None) -> Claim:
        """Take the delivery unless it is settled or another owner's lease is still valid."""
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
            self._ddb.put_item(
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
            )
            return Claim("acquired", owner, lease_until)
        except ClientError as exc:
            if not _conditional_failed(exc):
                raise
        item = self.get_claim(key) or {}
        if item.get("state") == DONE:
            return Claim("done", item.get("owner"), 0.0, item)
        return Claim("busy", item.get("owner"), float(item.get("lease_until", 0.0)), item)

    def get_claim(self, key: DeliveryKey) -> dict[str, Any] | None:
        return self._get(delivery_pk(key), CLAIM_SK)

    def renew_claim(self, key: DeliveryKey, owner: str) -> float | None:
        """Extend our lease; None when we no longer own the claim."""
        lease_until = time.time() + self.claim_lease
        try:
            self._ddb.update_item(
                TableName=self.table,
                Key={"pk": {"S": delivery_pk(key)}, "sk": {"S": CLAIM_SK}},
                UpdateExpression="SET lease_until = :l",
                ConditionExpression="#o = :me AND #s = :progress",
                ExpressionAttributeNames={"#o": "owner", "#s": "state"},
                ExpressionAttributeValues={
                    ":l": {"N": repr(lease_until)},
                    ":me": {"S": owner},
                    ":progress": {"S": IN_PROGRESS},
                },
            )
        except ClientError as exc:
            if _conditional_failed(exc):
                return None
            raise
        return lease_until

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
        try:
            self._ddb.update_item(
                TableName=self.table,
                Key={"pk": {"S": delivery_pk(key)}, "sk": {"S": CLAIM_SK}},
                UpdateExpression=expr,
                ConditionExpression="#o = :me",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if _conditional_failed(exc):
                return False
            raise
        return True

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

    def _mark_unknown(self, key: DeliveryKey, email: str, item: dict[str, Any]) -> bool:
        try:
            self._ddb.update_item(
                TableName=self.table,
                Key={"pk": {"S": delivery_pk(key)}, "sk": {"S": rcpt_sk(email)}},
                UpdateExpression="SET #s = :unknown, #e = :err, settled_at = :t",
                ConditionExpression="#s = :sending AND #o = :owner AND lease_until < :now",
                ExpressionAttributeNames={"#s": "state", "#e": "error", "#o": "owner"},
                ExpressionAttributeValues={
                    ":unknown": {"S": UNKNOWN},
                    ":sending": {"S": SENDING},
                    ":owner": {"S": str(item.get("owner", ""))},
                    ":now": {"N": repr(time.time())},
                    ":err": {"S": "worker stopped during send; outcome unknown"},
                    ":t": {"S": iso_utc(utcnow())},
                },
            )
        except ClientError as exc:
            if _conditional_failed(exc):
                return False
            raise
        return True

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

    # -- newest version sent (superseded check) ------------------------------------------------
    def latest(self, change_id: str, customer: str) -> Latest | None:
        item = self._get(latest_pk(change_id, customer), LATEST_SK)
        if not item or "version" not in item:
            return None
        inv = item.get("invite_version")
        return Latest(int(item["version"]), str(item.get("event", "")), int(inv) if inv else None)

    def mark_latest(self, change_id: str, customer: str, version: int, event: EmailEvent) -> bool:
        """Record ``version`` as the newest sent unless a newer one already is."""
        try:
            self._ddb.update_item(
                TableName=self.table,
                Key={"pk": {"S": latest_pk(change_id, customer)}, "sk": {"S": LATEST_SK}},
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
        except ClientError as exc:
            if _conditional_failed(exc):
                return False
            raise
        return True

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
