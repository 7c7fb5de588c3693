"""Recipient-level view of one delivery (change, version, event, customer), read from the ledger.

Textual-free. The ledger (``services.ledger``, docs/architecture.md) holds, under
``pk = DELIVERY#{changeId}#v{version}#{event}#{customer}``, one ``CLAIM`` item (the worker's lease)
and one ``RCPT#{lower-cased email}`` item per recipient send (``sending``, ``sent``, ``retry``,
``failed``, ``unknown``). Attribute names are read leniently so older or newer items still show.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..errors import describe
from ..models import Config, DeliveryRecord, iso_utc
from .aws import AwsFactory
from .customers import CustomerService, QueueDepth
from .ledger import UNKNOWN, Ledger
from .status import DeliveryKey

RCPT_PREFIX = "RCPT#"


def _when(value: Any) -> str | None:
    """A ledger time: RFC 3339 text as is, epoch seconds (leases) as RFC 3339."""
    if value in (None, "", 0, 0.0):
        return None
    if isinstance(value, int | float):
        return iso_utc(datetime.fromtimestamp(float(value), UTC))
    return str(value)


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
            at=_when(_first(data, "settled_at", "sent_at", "updated_at", "started_at", "at")),
            attempts=int(attempts) if isinstance(attempts, int | float) else None,
        )


@dataclass(frozen=True)
class ClaimInfo:
    worker: str | None
    lease_until: str | None
    state: str | None
    finished_at: str | None = None
    result: str | None = None


@dataclass
class DeliveryDetail:
    """Everything the drill-down shows beyond the delivery record itself."""

    key: DeliveryKey
    recipients: list[RecipientResult] = field(default_factory=list)
    claim: ClaimInfo | None = None
    dlq: QueueDepth | None = None
    error: str | None = None  # reading the ledger failed

    @property
    def unknown(self) -> list[RecipientResult]:
        """Recipients whose send outcome is unknown (a worker stopped mid-send): maybe sent, maybe not.

        Never re-sent automatically; an operator may resend them (``services.resend``)."""
        return [r for r in self.recipients if r.state == UNKNOWN]

    @property
    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.recipients:
            out[r.state] = out.get(r.state, 0) + 1
        return out


class DeliveryDetailService:
    def __init__(self, aws: AwsFactory, config: Config, customers: CustomerService | None = None) -> None:
        self.aws = aws
        self.config = config
        self.ledger = Ledger(aws, config)
        self.customers = customers or CustomerService(aws, config)

    def detail(self, record: DeliveryRecord | DeliveryKey) -> DeliveryDetail:
        key = record if isinstance(record, DeliveryKey) else DeliveryKey.of(record)
        detail = DeliveryDetail(key)
        try:
            recipients = self.ledger.recipients(key)
            claim = self.ledger.get_claim(key)
        except (ClientError, BotoCoreError) as exc:
            detail.error = describe(exc)
        else:
            detail.recipients = sorted(
                (RecipientResult.from_ledger(data) for data in recipients.values()), key=lambda r: r.email
            )
            if claim:
                detail.claim = ClaimInfo(
                    worker=_first(claim, "owner", "worker_id", "worker"),
                    lease_until=_when(_first(claim, "lease_until", "lease_expires_at")),
                    state=_first(claim, "state", "status"),
                    finished_at=_when(claim.get("finished_at")),
                    result=_first(claim, "result"),
                )
        detail.dlq = self.customers.dlq_depth(key.customer)
        return detail
