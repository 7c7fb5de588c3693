"""Operator action: send again to recipients whose delivery outcome is ``unknown``.

A worker killed between marking a recipient ``sending`` and recording the SES answer leaves that
recipient ``unknown`` (``services.ledger``): the worker cannot tell "SES accepted it" from "SES never got
it". Its SES event settles that (``services.events``): with none after the grace period the reconciler
sends it again (``unknown_policy: resend``; again after each resend that itself ended unknown, up to
``events.max_auto_resends``), or leaves it here (``hold``, or that many resends already).
An operator then decides that a possible duplicate is better than a possible loss. This service
(Textual-free; used by ``change resend-unknown`` and the console's delivery drill-in):

1. lists the ``unknown`` recipients of a change (every round, or one version/event; per customer);
2. for the chosen ones, in one ledger transaction per delivery, flips each ``unknown`` → ``retry``
   (only if still ``unknown``; recording who and when) and reopens the settled delivery in ``resend``
   mode, so a worker sends to those recipients only — never to anyone ``sent``/``failed``;
3. marks the delivery record ``queued`` and re-triggers the customer's delivery the way fan-out does
   (S3 trigger object or ``sqs-direct`` message carrying that version's snapshot);
4. passes the authorization point (``change.resend`` on every customer chosen) and audits the action
   (one ``change.resend-unknown`` record with each delivery's recipients and outcome).

``dry_run`` reports what would happen and writes nothing (it needs ``read`` only).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, Field

from ..errors import describe
from ..models import (
    Change,
    Config,
    DeliveryState,
    EmailEvent,
    OperatorAction,
    RecipientState,
    iso_utc,
    utcnow,
)
from .audit import OK, PARTIAL
from .authz import ActionRecord, Authorizer
from .aws import AwsFactory
from .changes import ChangeStore
from .fanout import Fanout
from .ledger import ClaimState, Ledger
from .status import DeliveryKey, StatusStore

log = logging.getLogger(__name__)

DUPLICATE_WARNING = (
    "A recipient whose outcome is unknown may already have received this email: "
    "resending may deliver it twice."
)


class UnknownRecipient(BaseModel):
    """One recipient of one delivery whose send outcome is unknown."""

    change_id: str
    version: int
    event: EmailEvent
    customer: str
    email: str
    error: str | None = None
    started_at: str | None = None  # when the send began
    marked_at: str | None = None  # when it was found unknown

    @property
    def key(self) -> DeliveryKey:
        return DeliveryKey(self.change_id, self.version, self.event, self.customer)


class DeliveryResend(BaseModel):
    """What a resend did (or would do) for one delivery."""

    change_id: str
    version: int
    event: EmailEvent
    customer: str
    resend: list[str] = Field(default_factory=list)  # reopened (dry run: would be)
    refused: dict[str, str] = Field(default_factory=dict)  # address -> why not
    triggered: bool = False
    trigger_error: str | None = None
    retriggered_pending: bool = False  # an earlier resend's recipients were still waiting

    @property
    def key(self) -> DeliveryKey:
        return DeliveryKey(self.change_id, self.version, self.event, self.customer)

    @property
    def ok(self) -> bool:
        return self.trigger_error is None


class ResendResult(BaseModel):
    change_id: str
    dry_run: bool
    operator: str
    requested_at: str
    deliveries: list[DeliveryResend] = Field(default_factory=list)
    audit_key: str | None = None

    @property
    def resent(self) -> int:
        return sum(len(d.resend) for d in self.deliveries)

    @property
    def refused(self) -> int:
        return sum(len(d.refused) for d in self.deliveries)

    @property
    def ok(self) -> bool:
        return all(d.ok for d in self.deliveries)

    def to_json(self) -> dict[str, Any]:
        return {
            "change_id": self.change_id,
            "dry_run": self.dry_run,
            "operator": self.operator,
            "requested_at": self.requested_at,
            "resent": self.resent,
            "refused": self.refused,
            "ok": self.ok,
            "audit_key": self.audit_key,
            "deliveries": [d.model_dump(mode="json") for d in self.deliveries],
        }


class ResendService:
    def __init__(
        self,
        aws: AwsFactory,
        config: Config,
        *,
        status: StatusStore | None = None,
        ledger: Ledger | None = None,
        store: ChangeStore | None = None,
        fanout: Fanout | None = None,
        authz: Authorizer | None = None,
    ) -> None:
        self.aws = aws
        self.config = config
        self.authz = authz or Authorizer(aws, config, via="api")
        self.status = status or StatusStore(aws, config)
        self.ledger = ledger or Ledger(aws, config)
        self.store = store or ChangeStore(aws, config)
        self.fanout = fanout or Fanout(aws, config, self.status, threads=1)

    # -- reading -------------------------------------------------------------------------------
    def deliveries(
        self,
        change_id: str,
        *,
        customers: Iterable[str] | None = None,
        version: int | None = None,
        event: EmailEvent | None = None,
    ) -> list[DeliveryKey]:
        """Every delivery of the change (all rounds, or one version/event), optionally per customer."""
        wanted = set(customers) if customers else None
        keys = [
            DeliveryKey.of(r)
            for r in self.status.records(change_id, version=version, event=event)
            if wanted is None or r.customer in wanted
        ]
        return sorted(keys, key=lambda k: (k.version, k.event.value, k.customer))

    def unknown(
        self,
        change_id: str,
        *,
        customers: Iterable[str] | None = None,
        version: int | None = None,
        event: EmailEvent | None = None,
    ) -> list[UnknownRecipient]:
        """The ``unknown`` recipients of a change, by delivery then address."""
        out: list[UnknownRecipient] = []
        for key in self.deliveries(change_id, customers=customers, version=version, event=event):
            out += self.unknown_of(key)
        return out

    def unknown_of(self, key: DeliveryKey) -> list[UnknownRecipient]:
        marks = self.ledger.recipients(key)
        return [
            UnknownRecipient(
                change_id=key.change_id,
                version=key.version,
                event=key.event,
                customer=key.customer,
                email=mark.email,
                error=mark.error,
                started_at=mark.started_at,
                marked_at=mark.settled_at,
            )
            for _addr, mark in sorted(marks.items())
            if mark.state is RecipientState.UNKNOWN
        ]

    def operator(self) -> str:
        return self.authz.operator.name

    # -- acting --------------------------------------------------------------------------------
    def resend(
        self,
        change_id: str,
        *,
        customers: Iterable[str] | None = None,
        version: int | None = None,
        event: EmailEvent | None = None,
        dry_run: bool = False,
    ) -> ResendResult:
        """Resend every ``unknown`` recipient of the change's chosen deliveries."""
        keys = self.deliveries(change_id, customers=customers, version=version, event=event)
        return self.resend_keys(change_id, {k: None for k in keys}, dry_run=dry_run)

    def resend_delivery(
        self, key: DeliveryKey, emails: list[str] | None = None, *, dry_run: bool = False
    ) -> ResendResult:
        """Resend the chosen (default: every) ``unknown`` recipient of one delivery."""
        return self.resend_keys(key.change_id, {key: emails}, dry_run=dry_run)

    def resend_keys(
        self, change_id: str, selection: Mapping[DeliveryKey, list[str] | None], *, dry_run: bool = False
    ) -> ResendResult:
        """Resend, per delivery, the chosen ``unknown`` recipients (None: every one of them)."""
        customers = sorted({k.customer for k in selection})
        if dry_run:
            self.authz.require(OperatorAction.READ, customers, change_id=change_id)
            return self._resend_keys(change_id, selection, dry_run=True)
        with self.authz.act(
            OperatorAction.CHANGE_RESEND, customers, name="change.resend-unknown", change_id=change_id
        ) as record:
            result = self._resend_keys(change_id, selection, dry_run=False)
            result.audit_key = self._audit(record, result)
            return result

    def _resend_keys(
        self, change_id: str, selection: Mapping[DeliveryKey, list[str] | None], *, dry_run: bool
    ) -> ResendResult:
        who = self.operator()
        result = ResendResult(
            change_id=change_id, dry_run=dry_run, operator=who, requested_at=iso_utc(utcnow())
        )
        snapshots: dict[int, Change] = {}
        for key, emails in selection.items():
            out = self._one(key, emails, who, dry_run, snapshots)
            if out.resend or out.refused or out.retriggered_pending:
                result.deliveries.append(out)
        return result

    def _one(
        self,
        key: DeliveryKey,
        emails: list[str] | None,
        who: str,
        dry_run: bool,
        snapshots: dict[int, Change],
    ) -> DeliveryResend:
        out = DeliveryResend(
            change_id=key.change_id, version=key.version, event=key.event, customer=key.customer
        )
        plan = self.ledger.plan_resend(key, emails)
        out.refused = dict(plan.refused)
        eligible = [mark.address for mark in plan.eligible]
        latest = self.ledger.latest(key.change_id, key.customer)
        if eligible and latest is not None and latest.version > key.version:
            for addr in eligible:
                out.refused[addr] = (
                    f"superseded: version {latest.version} ({latest.event or ''}) was sent since"
                )
            eligible = []
        if eligible:
            # The worker sends only what the current archive version makes due (docs/architecture.md).
            current = self.store.find(key.change_id)
            now = current.change if current is not None else None
            if now is None or now.version > key.version:
                why = f"version {now.version} ({now.status.value}) is current" if now else "archive missing"
                for addr in eligible:
                    out.refused[addr] = f"superseded: {why}; only the current version is sent"
                eligible = []
        pending = not eligible and self._pending_resend(key)
        if dry_run:
            out.resend = eligible
            out.retriggered_pending = pending
            return out
        if eligible:
            reopened = self.ledger.reopen_for_resend(key, eligible, by=who, resend_id=uuid.uuid4().hex)
            out.resend = reopened.reopened
            out.refused.update(reopened.refused)
        out.retriggered_pending = pending
        if not out.resend and not pending:
            return out
        count = len(out.resend) or "pending"
        self.status.update(
            key,
            state=DeliveryState.QUEUED,
            last_error=f"resend of {count} unknown recipient(s) requested by {who}",
            resend_requested_by=who,
            resend_requested_at=iso_utc(utcnow()),
        )
        try:
            change = snapshots.get(key.version) or self._snapshot(key)
            snapshots[key.version] = change
            started = Fanout.start(change, key.event, [key.customer], archive=False)
            done = self.fanout.run(started)
        except Exception as exc:  # reported per delivery; the ledger keeps the reopened recipients
            out.trigger_error = describe(exc)
        else:
            out.trigger_error = done.errors.get(key.customer)
        out.triggered = out.trigger_error is None
        if out.trigger_error:
            self.status.update(
                key,
                last_error=f"resend requested by {who} but the trigger failed: {out.trigger_error}; "
                "run resend-unknown again to re-trigger",
            )
        return out

    def _pending_resend(self, key: DeliveryKey) -> bool:
        """An earlier resend reopened the delivery but no worker has taken it (e.g. its trigger failed)."""
        claim = self.ledger.get_claim(key)
        if claim is None or claim.state is not ClaimState.RELEASED or self.ledger.resend_marker(key) is None:
            return False
        return any(m.state is RecipientState.RETRY for m in self.ledger.recipients(key).values())

    def _snapshot(self, key: DeliveryKey) -> Change:
        """The change exactly as it was at the delivery's version."""
        current = self.store.get(key.change_id).change
        if current.version == key.version:
            return current
        return self.store.get_version(key.change_id, key.version)

    def _audit(self, record: ActionRecord, result: ResendResult) -> str | None:
        """The action's record: per delivery what was reopened, refused and triggered."""
        deliveries = [
            {
                "customer": d.customer,
                "version": d.version,
                "event": d.event.value,
                "recipients": d.resend,
                "refused": d.refused or None,
                "retriggered_pending": d.retriggered_pending or None,
                "result": "triggered" if d.triggered else ("trigger_failed" if d.trigger_error else "none"),
                "detail": d.trigger_error,
            }
            for d in result.deliveries
        ]
        return record.finish(
            OK if result.ok else PARTIAL,
            resent=result.resent,
            refused=result.refused,
            deliveries=[{k: v for k, v in d.items() if v is not None} for d in deliveries],
        )
