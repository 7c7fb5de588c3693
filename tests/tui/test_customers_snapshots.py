"""Snapshots of the customers screen and the customer detail (fixed data, frozen clock, no timers)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from textual.pilot import Pilot

from changeconsole.models import (
    TOPIC_ANNOUNCE,
    TOPIC_APPROVAL,
    TOPIC_CALENDAR,
    Config,
    DeliveryRecord,
    DeliveryState,
    EmailEvent,
)
from changeconsole.screens.customers import CustomerDetailScreen, CustomersScreen
from changeconsole.services.aws import AwsFactory, AwsSettings
from changeconsole.services.customer_admin import FAIL, OK, WARN, Check, VerifyReport
from changeconsole.services.customers import (
    ContactCounts,
    CustomerDepths,
    CustomerInfo,
    CustomerService,
    CustomerStats,
    QueueDepth,
)
from changeconsole.services.events import Reputation
from changeconsole.services.localstack import build_local_config
from support.console import FakeServices, console_app, settle, show
from support.waiting import wait_for

NOW = datetime(2026, 11, 27, 20, 0, 0, tzinfo=UTC)
SIZES = [pytest.param((120, 40), id="120x40"), pytest.param((80, 24), id="80x24")]
DEAD_ENDPOINT = "http://127.0.0.1:9"
DEFAULTS = {TOPIC_APPROVAL: "OPT_OUT", TOPIC_ANNOUNCE: "OPT_IN", TOPIC_CALENDAR: "OPT_OUT"}


def config(n: int = 10) -> Config:
    raw = build_local_config(n, endpoint=DEAD_ENDPOINT)
    raw["customer_mappings"]["initech"]["restricted_recipients"] = ["alex.ng@initech.example.com"]
    return Config.model_validate(raw)


def delivery(code: str, state: DeliveryState, updated: str, **fields: Any) -> DeliveryRecord:
    return DeliveryRecord(
        change_id="CHG-2026-11-27T19-00-00-abc123",
        version=3,
        event=EmailEvent.APPROVED,
        customer=code,
        state=state,
        queued_at=updated,
        updated_at=updated,
        **fields,
    )


class FakeCustomers:
    """CustomerService with fixed answers (same method names and types)."""

    def __init__(self, cfg: Config) -> None:
        self.config = cfg
        self.real = CustomerService(AwsFactory(AwsSettings(endpoint_url=DEAD_ENDPOINT)), cfg)
        self.deliveries = {
            "acme": [
                delivery(
                    "acme", DeliveryState.SENT, "2026-11-27T19:55:00Z", recipients_total=4, recipients_sent=4
                ),
                delivery(
                    "acme", DeliveryState.SENT, "2026-11-26T10:00:00Z", recipients_total=4, recipients_sent=4
                ),
            ],
            "globex": [
                delivery(
                    "globex",
                    DeliveryState.DEAD_LETTERED,
                    "2026-11-27T19:30:00Z",
                    last_error="isolation_violation: trigger names another customer",
                )
            ],
            "initech": [delivery("initech", DeliveryState.PARTIAL, "2026-11-27T17:00:00Z")],
            "umbrella": [delivery("umbrella", DeliveryState.PROCESSING, "2026-11-27T19:59:40Z")],
        }

    def customers(self) -> list[CustomerInfo]:
        return self.real.customers()

    def info(self, code: str) -> CustomerInfo:
        return self.real.info(code)

    def stats(self, code: str) -> CustomerStats:
        index = sorted(self.config.customer_mappings).index(code)
        queue = QueueDepth(visible=index % 3, in_flight=1 if code == "umbrella" else 0)
        dlq = QueueDepth(visible=2) if code == "globex" else QueueDepth()
        if code == "hooli":
            queue = dlq = QueueDepth(error="AccessDenied: not authorized to perform sqs:GetQueueAttributes")
        last = self.deliveries.get(code, [None])[0]
        # SES event rates: globex above both warning levels, acme below, the rest with no sends yet
        reputation = {
            "globex": Reputation("globex", sends=200, delivered=186, bounces=12, complaints=1),
            "acme": Reputation("acme", sends=400, delivered=399, bounces=1),
        }.get(code)
        return CustomerStats(code, CustomerDepths(code, queue, dlq), last, reputation=reputation)

    def all_stats(self, codes: list[str], *, on_result: Any = None, cancelled: Any = None) -> dict[str, Any]:
        out = {}
        for code in codes:
            out[code] = self.stats(code)
            if on_result is not None:
                on_result(out[code])
        return out

    def contact_counts(self, code: str) -> ContactCounts:
        if code == "hooli":
            return ContactCounts(code, "changeconsole", error="AccessDenied: sts:AssumeRole on the SES role")
        n = 5 + len(code) % 4
        subscribed = {TOPIC_APPROVAL: n - 2, TOPIC_ANNOUNCE: n - 1, TOPIC_CALENDAR: n // 3}
        deliverable = dict(subscribed)
        if code == "initech":
            deliverable = {TOPIC_APPROVAL: 1, TOPIC_ANNOUNCE: 1, TOPIC_CALENDAR: 0}
        return ContactCounts(code, "changeconsole", n, 1, subscribed, deliverable, DEFAULTS)

    def all_contact_counts(self, codes: list[str], *, on_result: Any = None) -> dict[str, ContactCounts]:
        out = {}
        for code in codes:
            out[code] = self.contact_counts(code)
            if on_result is not None:
                on_result(out[code])
        return out

    def recent_deliveries(self, code: str, limit: int = 20) -> list[DeliveryRecord]:
        return self.deliveries.get(code, [])[:limit]


class FakeVerifier:
    """``customer verify`` with fixed outcomes."""

    def verify_all(self, codes: list[str], *, on_result: Any = None) -> list[VerifyReport]:
        out = []
        for code in codes:
            status = {"globex": FAIL, "initech": WARN}.get(code, OK)
            report = VerifyReport(
                code, [Check("contact_list", status, "…")], checked_at="2026-11-27T20:00:00+00:00"
            )
            out.append(report)
            if on_result is not None:
                on_result(report)
        return out


def fake_services() -> FakeServices:
    cfg = config()
    return FakeServices(
        customers=FakeCustomers(cfg), config=cfg, verifier=FakeVerifier(), endpoint=DEAD_ENDPOINT
    )


def dead_services() -> FakeServices:
    """Every customer read fails: the endpoint does not answer."""
    cfg = config(4)
    aws = AwsFactory(AwsSettings(endpoint_url=DEAD_ENDPOINT, local=True, max_attempts=1, connect_timeout=0.5))
    return FakeServices(customers=CustomerService(aws, cfg, threads=2), config=cfg, endpoint=DEAD_ENDPOINT)


@pytest.mark.parametrize("size", SIZES)
def test_customers_with_contacts_dlq_and_errors(snap_compare: Any, size: tuple[int, int]) -> None:
    screen = CustomersScreen()

    async def loaded(pilot: Pilot[Any]) -> None:
        await show(pilot, screen)
        await wait_for(pilot, lambda: screen.idle and len(screen.stats) == 10)
        await pilot.press("c")
        await wait_for(pilot, lambda: screen.idle and len(screen.contacts) == 10)
        await pilot.press("down")
        await settle(pilot)

    assert snap_compare(console_app(fake_services()), terminal_size=size, run_before=loaded)


@pytest.mark.parametrize("size", SIZES)
def test_customers_aws_unreachable(snap_compare: Any, size: tuple[int, int]) -> None:
    screen = CustomersScreen()

    async def failed(pilot: Pilot[Any]) -> None:
        await show(pilot, screen)
        await wait_for(pilot, lambda: screen.idle and len(screen.stats) == 4 and "acme" in screen.contacts)
        await settle(pilot)

    assert snap_compare(console_app(dead_services()), terminal_size=size, run_before=failed)


@pytest.mark.parametrize("size", SIZES)
def test_customer_detail_with_whitelist_and_deliveries(snap_compare: Any, size: tuple[int, int]) -> None:
    screen = CustomerDetailScreen("initech")

    async def loaded(pilot: Pilot[Any]) -> None:
        await show(pilot, screen)
        await wait_for(pilot, lambda: screen.loaded)
        await settle(pilot)

    assert snap_compare(console_app(fake_services()), terminal_size=size, run_before=loaded)


def test_customer_detail_dead_lettered_dlq(snap_compare: Any) -> None:
    screen = CustomerDetailScreen("globex")

    async def loaded(pilot: Pilot[Any]) -> None:
        await show(pilot, screen)
        await wait_for(pilot, lambda: screen.loaded)
        await settle(pilot)

    assert snap_compare(console_app(fake_services()), terminal_size=(120, 40), run_before=loaded)


def test_customer_detail_aws_unreachable(snap_compare: Any) -> None:
    screen = CustomerDetailScreen("acme")

    async def loaded(pilot: Pilot[Any]) -> None:
        await show(pilot, screen)
        await wait_for(pilot, lambda: screen.loaded)
        await settle(pilot)

    assert snap_compare(console_app(dead_services()), terminal_size=(120, 40), run_before=loaded)


def test_customers_verified(snap_compare: Any) -> None:
    """``V`` verifies every shown customer: the Check column says ok / warn / fail."""
    screen = CustomersScreen()

    async def loaded(pilot: Pilot[Any]) -> None:
        await show(pilot, screen)
        await wait_for(pilot, lambda: screen.idle and len(screen.stats) == 10)
        await pilot.press("V")
        await wait_for(pilot, lambda: screen.idle and len(screen.checks) == 10)
        await settle(pilot)

    assert snap_compare(console_app(fake_services()), terminal_size=(120, 24), run_before=loaded)
