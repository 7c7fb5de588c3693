"""Snapshots of the live status screen and the delivery drill-down (frozen clock, fixed data, no timers)."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from textual.pilot import Pilot

from changeconsole.models import Config, DeliveryRecord, DeliveryState, EmailEvent
from changeconsole.screens.delivery import DeliveryDetailScreen
from changeconsole.screens.status import LiveStatusScreen
from changeconsole.services.aws import AwsFactory, AwsSettings
from changeconsole.services.customers import CustomerService, QueueDepth
from changeconsole.services.delivery_detail import (
    ClaimInfo,
    DeliveryDetail,
    DeliveryDetailService,
    RecipientResult,
)
from changeconsole.services.localstack import build_local_config
from changeconsole.services.status import DeliveryKey, StatusStore
from support.console import FakeServices, console_app, settle, show
from support.waiting import wait_for

CID = "CHG-2026-11-27T19-00-00-abc123"
NOW = datetime(2026, 11, 27, 20, 0, 0, tzinfo=UTC)
SIZES = [pytest.param((120, 40), id="120x40"), pytest.param((80, 24), id="80x24")]
DEAD_ENDPOINT = "http://127.0.0.1:9"
NOT_VERIFIED = (
    "MessageRejected: Email address is not verified. The following identities failed the check in region "
    "US-EAST-1: change-notices@notices.msp.example.com"
)


def config(n: int = 14) -> Config:
    return Config.model_validate(build_local_config(n, endpoint=DEAD_ENDPOINT))


def rec(customer: str, state: DeliveryState, **fields: Any) -> DeliveryRecord:
    base: dict[str, Any] = {
        "change_id": CID,
        "version": 3,
        "event": EmailEvent.APPROVED,
        "customer": customer,
        "state": state,
        "attempts": 1,
        "queued_at": "2026-11-27T19:58:00Z",
        "updated_at": "2026-11-27T19:58:30Z",
    }
    if state not in (DeliveryState.QUEUED, DeliveryState.PROCESSING):
        base["finished_at"] = "2026-11-27T19:58:12Z"
    base.update(fields)
    return DeliveryRecord.model_validate(base)


RECORDS = [
    rec("acme", DeliveryState.SENT, recipients_total=5, recipients_sent=5),
    rec(
        "globex",
        DeliveryState.DEAD_LETTERED,
        attempts=3,
        last_error="isolation_violation: trigger key customers/globex/… names change for customer acme",
    ),
    rec(
        "initech",
        DeliveryState.FAILED,
        attempts=3,
        recipients_total=4,
        recipients_sent=1,
        recipients_failed=3,
        last_error=NOT_VERIFIED,
    ),
    rec(
        "umbrella",
        DeliveryState.PROCESSING,
        recipients_total=5,
        recipients_sent=2,
        queued_at="2026-11-27T19:59:20Z",
    ),
    rec("hooli", DeliveryState.QUEUED, attempts=0, queued_at="2026-11-27T19:59:55Z"),
    rec(
        "stark-industries",
        DeliveryState.PARTIAL,
        attempts=2,
        recipients_total=5,
        recipients_sent=4,
        recipients_failed=1,
        last_error="MessageRejected: 1 recipient rejected (mailbox unavailable)",
    ),
    rec("wayne-enterprises", DeliveryState.SENT, recipients_total=3, recipients_sent=3),
    rec("cyberdyne", DeliveryState.SUPERSEDED, last_error="v4 submitted already sent to cyberdyne"),
    rec("soylent", DeliveryState.SKIPPED, last_error="no contact subscribed to aws-announce"),
    rec("tyrell", DeliveryState.SENT, recipients_total=8, recipients_sent=8),
    rec(
        "wonka",
        DeliveryState.PROCESSING,
        attempts=2,
        recipients_total=6,
        last_error="Throttling: Maximum sending rate exceeded (retrying)",
        queued_at="2026-11-27T19:57:30Z",
    ),
    rec("massive-dynamic", DeliveryState.QUEUED, attempts=0, queued_at="2026-11-27T19:59:58Z"),
]


class FakeStore:
    def __init__(self, records: list[DeliveryRecord]) -> None:
        self._records = records

    def latest_round(self, change_id: str) -> list[DeliveryRecord]:
        return list(self._records)

    def records(self, change_id: str, **kwargs: Any) -> list[DeliveryRecord]:
        return list(self._records)

    def get_summary(self, change_id: str) -> Any:
        return SimpleNamespace(title="Rotate TLS certificates on the edge load balancers")

    def get(self, key: DeliveryKey, **kwargs: Any) -> DeliveryRecord | None:
        return next((r for r in self._records if DeliveryKey.of(r) == key), None)


def fake_services(records: list[DeliveryRecord] = RECORDS, **parts: Any) -> FakeServices:
    return FakeServices(status=FakeStore(records), config=config(), endpoint=DEAD_ENDPOINT, **parts)


def dead_services() -> FakeServices:
    """Every read of the status store fails: its endpoint does not answer."""
    aws = AwsFactory(AwsSettings(endpoint_url=DEAD_ENDPOINT, local=True, max_attempts=1, connect_timeout=0.5))
    cfg = config(3)
    customers = CustomerService(aws, cfg)
    return FakeServices(
        status=StatusStore(aws, cfg),
        config=cfg,
        endpoint=DEAD_ENDPOINT,
        customers=customers,
        delivery_detail=DeliveryDetailService(aws, cfg, customers),
    )


@pytest.mark.parametrize("size", SIZES)
def test_live_status_mixed_states(snap_compare: Any, size: tuple[int, int]) -> None:
    screen = LiveStatusScreen(CID)

    async def loaded(pilot: Pilot[Any]) -> None:
        await show(pilot, screen)
        await wait_for(pilot, lambda: screen.loaded and screen.table.row_count == len(RECORDS))
        await pilot.press("down", "down")  # the cursor on initech
        await settle(pilot)

    assert snap_compare(console_app(fake_services()), terminal_size=size, run_before=loaded)


def test_live_status_filtered_and_paused(snap_compare: Any) -> None:
    screen = LiveStatusScreen(CID)

    async def filtered(pilot: Pilot[Any]) -> None:
        await show(pilot, screen)
        await wait_for(pilot, lambda: screen.loaded)
        await pilot.press("slash", *"reject", "enter", "p")
        await wait_for(pilot, lambda: screen.table.row_count == 2)
        await settle(pilot)

    assert snap_compare(console_app(fake_services()), terminal_size=(120, 40), run_before=filtered)


@pytest.mark.parametrize("size", SIZES)
def test_live_status_aws_unreachable(snap_compare: Any, size: tuple[int, int]) -> None:
    screen = LiveStatusScreen(CID)

    async def failed(pilot: Pilot[Any]) -> None:
        await show(pilot, screen)
        await wait_for(pilot, lambda: screen.loaded and screen.error is not None)
        await settle(pilot)

    assert snap_compare(console_app(dead_services()), terminal_size=size, run_before=failed)


class FakeDetail:
    def __init__(self, detail: DeliveryDetail) -> None:
        self._detail = detail

    def detail(self, record: DeliveryRecord) -> DeliveryDetail:
        return self._detail


def dead_lettered_detail() -> tuple[DeliveryRecord, FakeDetail]:
    record = rec(
        "initech",
        DeliveryState.DEAD_LETTERED,
        attempts=3,
        recipients_total=3,
        recipients_sent=1,
        recipients_failed=2,
        worker_id="worker-7f3a",
        started_at="2026-11-27T19:58:02Z",
        last_error=NOT_VERIFIED,
    )
    detail = DeliveryDetail(
        DeliveryKey.of(record),
        recipients=[
            RecipientResult(
                "alex.ng@initech.example.com", "sent", "0100018c-msg-0001", None, "2026-11-27T19:58:05Z"
            ),
            RecipientResult(
                "jordan.garcia@initech.example.com",
                "failed",
                None,
                "MessageRejected: Email address is not verified.",
                "2026-11-27T19:58:06Z",
            ),
            RecipientResult(
                "sam.patel@initech.example.com",
                "unknown",
                None,
                "worker stopped during send; outcome unknown",
                "2026-11-27T19:58:07Z",
            ),
        ],
        claim=ClaimInfo("worker-7f3a", None, "done", "2026-11-27T19:58:12Z", "dead_lettered"),
        dlq=QueueDepth(visible=1),
    )
    return record, FakeDetail(detail)


@pytest.mark.parametrize("size", SIZES)
def test_delivery_detail_dead_lettered_with_dlq(snap_compare: Any, size: tuple[int, int]) -> None:
    record, service = dead_lettered_detail()
    screen = DeliveryDetailScreen(record)

    async def loaded(pilot: Pilot[Any]) -> None:
        await show(pilot, screen)
        await wait_for(pilot, lambda: screen.loaded)
        await settle(pilot)

    services = fake_services([record], delivery_detail=service)
    assert snap_compare(console_app(services), terminal_size=size, run_before=loaded)


def test_delivery_detail_aws_unreachable(snap_compare: Any) -> None:
    record = RECORDS[0]
    screen = DeliveryDetailScreen(record)

    async def loaded(pilot: Pilot[Any]) -> None:
        await show(pilot, screen)
        await wait_for(pilot, lambda: screen.loaded)
        await settle(pilot)

    assert snap_compare(console_app(dead_services()), terminal_size=(120, 40), run_before=loaded)
