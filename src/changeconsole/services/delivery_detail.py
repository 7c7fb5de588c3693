"""Recipient-level view of one delivery (change, version, event, customer), read from the ledger.

Textual-free. The ledger (``services.ledger``, docs/architecture.md) holds, under
``pk = DELIVERY#{changeId}#v{version}#{event}#{customer}``, one ``CLAIM`` item (the worker's lease)
and one ``RCPT#{lower-cased email}`` item per recipient send (``sending``, ``sent``, ``retry``,
``failed``, ``unknown``); the ledger reads them as typed records and skips (and logs) any item it
cannot read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from botocore.exceptions import BotoCoreError, ClientError

from ..errors import describe
from ..models import Config, DeliveryRecord, RecipientState, iso_utc
from .aws import AwsFactory
from .customers import CustomerService, QueueDepth
from .events import OutcomeStore, RecipientOutcome
from .ledger import ClaimItem, ClaimState, Ledger, RecipientMark
from .status import DeliveryKey


def _when(epoch: float) -> str | None:
    """A lease expiry (epoch seconds) as RFC 3339; None when there is none."""
    return iso_utc(datetime.fromtimestamp(epoch, UTC)) if epoch else None


@dataclass(frozen=True)
class RecipientResult:
    email: str
    state: RecipientState
    message_id: str | None = None
    error: str | None = None
    at: str | None = None  # when it was settled (or, still sending, when the send began)
    outcome: RecipientOutcome | None = None  # what SES's events said (delivered, bounced, complained…)

    @classmethod
    def from_mark(cls, mark: RecipientMark, outcome: RecipientOutcome | None = None) -> RecipientResult:
        return cls(
            email=mark.email,
            state=mark.state,
            message_id=mark.message_id,
            error=mark.error,
            at=mark.settled_at or mark.started_at,
            outcome=outcome,
        )


@dataclass(frozen=True)
class ClaimInfo:
    worker: str | None
    lease_until: str | None
    state: ClaimState | None
    finished_at: str | None = None
    result: str | None = None

    @classmethod
    def from_item(cls, claim: ClaimItem) -> ClaimInfo:
        return cls(
            worker=claim.owner,
            lease_until=_when(claim.lease_until),
            state=claim.state,
            finished_at=claim.finished_at,
            result=claim.result,
        )


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
        return [r for r in self.recipients if r.state == RecipientState.UNKNOWN]

    @property
    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.recipients:
            out[r.state] = out.get(r.state, 0) + 1
        return out

    @property
    def outcome_counts(self) -> dict[str, int]:
        """Recipients by what SES's events said last (delivered, bounced, complained, …)."""
        out: dict[str, int] = {}
        for r in self.recipients:
            if r.outcome is not None:
                out[r.outcome.outcome.value] = out.get(r.outcome.outcome.value, 0) + 1
        return out


class DeliveryDetailService:
    def __init__(self, aws: AwsFactory, config: Config, customers: CustomerService | None = None) -> None:
        self.aws = aws
        self.config = config
        self.ledger = Ledger(aws, config)
        self.outcomes = OutcomeStore(aws, config)
        self.customers = customers or CustomerService(aws, config)

    def detail(self, record: DeliveryRecord | DeliveryKey) -> DeliveryDetail:
        key = record if isinstance(record, DeliveryKey) else DeliveryKey.of(record)
        detail = DeliveryDetail(key)
        try:
            recipients = self.ledger.recipients(key)
            claim = self.ledger.get_claim(key)
            outcomes = self.outcomes.outcomes(key)
        except (ClientError, BotoCoreError) as exc:
            detail.error = describe(exc)
        else:
            detail.recipients = sorted(
                (RecipientResult.from_mark(mark, outcomes.get(addr)) for addr, mark in recipients.items()),
                key=lambda r: r.email,
            )
            if claim is not None:
                detail.claim = ClaimInfo.from_item(claim)
        detail.dlq = self.customers.dlq_depth(key.customer)
        return detail
