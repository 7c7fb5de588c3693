"""Recipient-level view of one delivery (change, version, event, customer), read from the ledger.

Textual-free. The ledger (docs/architecture.md) holds, under
``pk = DELIVERY#{changeId}#v{version}#{event}#{customer}``, one ``CLAIM`` item (the worker's lease)
and one ``RCPT#{lower-cased email}`` item per recipient send. Attribute names of those items are
read leniently (the worker owns them), so an older or newer worker's items still show.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..models import DeliveryRecord
from .aws import AwsFactory
from .customers import CustomerService, QueueDepth, describe_error
from .status import DeliveryKey, from_item

RCPT_PREFIX = "RCPT#"


def ledger_pk(key: DeliveryKey) -> str:
    return f"DELIVERY#{key.change_id}#v{key.version}#{key.event.value}#{key.customer}"


def _first(data: dict[str, Any], *names: str) -> Any:
    for name in names:
        value = data.get(name)
        if value not in (None, ""):
            return value
    return None


@dataclass(frozen=True)
class RecipientResult:
    email: str
    state: str
    message_id: str | None = None
    error: str | None = None
    at: str | None = None
    attempts: int | None = None

    @classmethod
    def from_ledger(cls, data: dict[str, Any]) -> RecipientResult:
        email = _first(data, "email", "recipient", "address")
        email = email or str(data.get("sk", "")).removeprefix(RCPT_PREFIX)
        state = _first(data, "state", "status", "result") or ("sent" if data.get("message_id") else "unknown")
        attempts = _first(data, "attempts", "tries")
        return cls(
            email=str(email),
            state=str(state),
            message_id=_first(data, "message_id", "ses_message_id", "MessageId"),
            error=_first(data, "error", "last_error", "reason"),
            at=_first(data, "sent_at", "failed_at", "updated_at", "at", "claimed_at"),
            attempts=int(attempts) if isinstance(attempts, int | float) else None,
        )


@dataclass(frozen=True)
class ClaimInfo:
    worker: str | None
    lease_until: str | None
    state: str | None


@dataclass
class DeliveryDetail:
    """Everything the drill-down shows beyond the delivery record itself."""

    key: DeliveryKey
    recipients: list[RecipientResult] = field(default_factory=list)
    claim: ClaimInfo | None = None
    dlq: QueueDepth | None = None
    error: str | None = None  # reading the ledger failed

    @property
    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.recipients:
            out[r.state] = out.get(r.state, 0) + 1
        return out


class DeliveryDetailService:
    def __init__(self, aws: AwsFactory, config: Any, customers: CustomerService | None = None) -> None:
        self.aws = aws
        self.config = config
        self.customers = customers or CustomerService(aws, config)

    def ledger_items(self, key: DeliveryKey) -> list[dict[str, Any]]:
        ddb = self.aws.client("dynamodb")
        paginator = ddb.get_paginator("query")
        items: list[dict[str, Any]] = []
        for page in paginator.paginate(
            TableName=self.config.ledger_table_name,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": ledger_pk(key)}},
            ConsistentRead=True,
        ):
            items.extend(from_item(item) for item in page.get("Items", []))
        return items

    def detail(self, record: DeliveryRecord | DeliveryKey) -> DeliveryDetail:
        key = record if isinstance(record, DeliveryKey) else DeliveryKey.of(record)
        detail = DeliveryDetail(key)
        try:
            items = self.ledger_items(key)
        except (ClientError, BotoCoreError) as exc:
            detail.error = describe_error(exc)
            items = []
        for data in items:
            sk = str(data.get("sk", ""))
            if sk.startswith(RCPT_PREFIX):
                detail.recipients.append(RecipientResult.from_ledger(data))
            elif sk == "CLAIM":
                detail.claim = ClaimInfo(
                    worker=_first(data, "worker_id", "worker", "owner"),
                    lease_until=_first(data, "lease_until", "lease_expires_at", "expires"),
                    state=_first(data, "state", "status"),
                )
        detail.recipients.sort(key=lambda r: r.email)
        detail.dlq = self.customers.dlq_depth(key.customer)
        return detail
