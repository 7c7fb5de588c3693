"""The delivery drill-in shows recipients with an unknown outcome and resends them behind a warning."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from textual.widgets import Static

from changeconsole.models import Change, DeliveryState, EmailEvent, RecipientState, trigger_key
from changeconsole.screens.delivery import DeliveryDetailScreen
from changeconsole.screens.modals import ConfirmModal
from changeconsole.services.aws import AwsFactory
from changeconsole.services.bundle import Services
from changeconsole.services.changes import ChangeStore
from changeconsole.services.ledger import ClaimState, Ledger
from changeconsole.services.status import DeliveryKey
from support.console import console_app, show
from support.waiting import wait_for

CID = "CHG-2026-11-27T19-00-00-res123"
NOW = datetime(2026, 11, 27, 20, 0, 0, tzinfo=UTC)
SENT_TO = "alex.ng@globex.example.com"
LOST = "sam.patel@globex.example.com"


@pytest.fixture
def services(make_stack: Any, aws_factory: AwsFactory) -> Services:
    stack = make_stack(customers=2, contacts=2)
    return Services(aws_factory, stack.config)


def partial_delivery(services: Services, aws: AwsFactory) -> DeliveryKey:
    """An approved change whose globex delivery is partial: one recipient sent, one unknown."""
    change = Change.model_validate(
        {
            "changeId": CID,
            "changeTitle": "Rotate TLS certificates",
            "customers": ["acme", "globex"],
            "status": "approved",
            "version": 1,
            "implementationStart": "2030-01-31T22:00:00Z",
            "implementationEnd": "2030-02-01T00:00:00Z",
            "approvedAt": "2026-11-27T19:00:00Z",
            "approvedBy": "cab",
        }
    )
    ChangeStore(aws, services.config).create(change)
    key = DeliveryKey(CID, 1, EmailEvent.APPROVED, "globex")
    services.status.update(
        key,
        state=DeliveryState.PARTIAL,
        recipients_total=2,
        recipients_sent=1,
        recipients_failed=1,
        last_error="1 of 2 recipient(s) not confirmed sent (unknown)",
        queued_at="2026-11-27T19:58:00Z",
        finished_at="2026-11-27T19:59:00Z",
    )
    ledger = Ledger(aws, services.config)
    assert ledger.claim(key, "worker-1").acquired
    assert ledger.begin_send(key, SENT_TO, "worker-1").outcome == "go"
    ledger.record_sent(key, SENT_TO, "worker-1", "msg-0001")
    assert ledger.begin_send(key, LOST, "worker-1").outcome == "go"
    ledger.record_failure(key, LOST, "worker-1", RecipientState.UNKNOWN, "ReadTimeoutError: read timed out")
    ledger.finish_claim(key, "worker-1", done=True, result="partial")
    return key


def trigger_exists(aws: AwsFactory, services: Services) -> bool:
    key = trigger_key("globex", CID, 1, EmailEvent.APPROVED)
    resp = aws.client("s3").list_objects_v2(Bucket=services.config.s3_config.bucket_name, Prefix=key)
    return bool(resp.get("KeyCount"))


async def test_unknown_recipients_are_shown_and_resent_only_after_a_duplicate_warning(
    services: Services, aws_factory: AwsFactory
) -> None:
    key = partial_delivery(services, aws_factory)
    ledger = Ledger(aws_factory, services.config)
    record = services.status.get(key)
    assert record is not None
    screen = DeliveryDetailScreen(record)
    async with console_app(services, live=True).run_test(size=(120, 40)) as pilot:
        await show(pilot, screen)
        await wait_for(pilot, lambda: screen.detail is not None)
        assert screen.check_action("resend_unknown", ()) is True
        box = screen.query_one("#detail-unknown", Static)
        assert not box.has_class("hidden")
        shown = str(box.render())
        assert "1 recipient with UNKNOWN outcome" in shown and LOST in shown and "press u" in shown.lower()
        assert SENT_TO not in shown

        # Declined: nothing changes.
        await pilot.press("u")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, ConfirmModal))
        modal = pilot.app.screen
        assert isinstance(modal, ConfirmModal) and modal.danger
        assert "twice" in modal.body and LOST in modal.body and SENT_TO not in modal.body
        await pilot.press("n")
        await wait_for(pilot, lambda: pilot.app.screen is screen)
        assert ledger.recipients(key)[LOST].state == RecipientState.UNKNOWN
        assert ledger.get_claim(key).state == ClaimState.DONE
        assert not trigger_exists(aws_factory, services)

        # Confirmed: the recipient is reopened, the delivery re-triggered, in a thread worker.
        await pilot.press("u")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, ConfirmModal))
        await pilot.press("y")
        await wait_for(pilot, lambda: screen.last_resend is not None)
        result = screen.last_resend
        assert result is not None and result.resent == 1 and result.ok
        assert result.deliveries[0].resend == [LOST]
        assert ledger.recipients(key)[LOST].state == RecipientState.RETRY
        assert ledger.recipients(key)[SENT_TO].state == RecipientState.SENT
        assert ledger.get_claim(key).state == ClaimState.RELEASED
        assert trigger_exists(aws_factory, services)
        rec = services.status.get(key)
        assert rec is not None and rec.state is DeliveryState.QUEUED
        # The reloaded detail no longer lists the recipient as unknown.
        await wait_for(pilot, lambda: screen.detail is not None and not screen.detail.unknown)
        await wait_for(pilot, lambda: screen.query_one("#detail-unknown", Static).has_class("hidden"))

        # Nothing unknown any more: the binding is hidden from the footer and does nothing.
        assert screen.check_action("resend_unknown", ()) is False
        await pilot.press("u")
        await pilot.pause()
        assert pilot.app.screen is screen


async def test_a_read_only_console_cannot_resend(services: Services, aws_factory: AwsFactory) -> None:
    key = partial_delivery(services, aws_factory)
    services.readonly = True
    record = services.status.get(key)
    assert record is not None
    screen = DeliveryDetailScreen(record)
    async with console_app(services, live=True).run_test(size=(120, 40)) as pilot:
        await show(pilot, screen)
        await wait_for(pilot, lambda: screen.detail is not None)
        assert screen.detail is not None and len(screen.detail.unknown) == 1
        assert "press u" not in str(screen.query_one("#detail-unknown", Static).render()).lower()
        assert screen.check_action("resend_unknown", ()) is False
        await pilot.press("u")
        await pilot.pause()
        assert pilot.app.screen is screen
    assert Ledger(aws_factory, services.config).recipients(key)[LOST].state == RecipientState.UNKNOWN
