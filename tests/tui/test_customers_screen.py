"""Pilot tests of the customers screen and the customer detail (against the moto server)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from textual.widgets import DataTable, Static

from changeconsole.models import DeliveryState, EmailEvent
from changeconsole.screens.customers import CUSTOMER_COLUMNS, CustomerDetailScreen, CustomersScreen, rate_text
from changeconsole.screens.delivery import DeliveryDetailScreen
from changeconsole.screens.format import age
from changeconsole.services.aws import AwsFactory
from changeconsole.services.bundle import Services
from changeconsole.services.customers import CustomerDepths, CustomerStats, QueueDepth
from changeconsole.services.events import Reputation
from changeconsole.services.status import DeliveryKey
from support.console import console_app, show
from support.waiting import wait_for

CID = "CHG-2026-11-27T19-00-00-abc123"
NOW = datetime(2026, 11, 27, 20, 0, 0, tzinfo=UTC)


@pytest.fixture
def services(make_stack: Any, aws_factory: AwsFactory) -> Services:
    stack = make_stack(customers=4, contacts=5)
    svc = Services(aws_factory, stack.config)
    sqs = aws_factory.client("sqs")
    for code in stack.config.customer_mappings:
        sqs.purge_queue(
            QueueUrl=sqs.get_queue_url(QueueName=stack.config.customer(code).queue_name)["QueueUrl"]
        )
    dlq = sqs.get_queue_url(QueueName=stack.config.customer("globex").dlq_name)["QueueUrl"]
    sqs.send_message(QueueUrl=dlq, MessageBody="{}")
    sqs.send_message(QueueUrl=dlq, MessageBody="{}")
    svc.status.update(
        DeliveryKey(CID, 2, EmailEvent.APPROVED, "acme"),
        state=DeliveryState.SENT,
        recipients_total=4,
        recipients_sent=4,
        queued_at="2026-11-27T19:54:00Z",
        updated_at="2026-11-27T19:55:00Z",
    )
    return svc


def cell(screen: CustomersScreen, code: str, column: str) -> str:
    return str(screen.table.get_cell(code, column)).strip()


def test_age() -> None:
    assert age("2026-11-27T19:59:30Z", NOW) == "30s ago"
    assert age("2026-11-27T19:55:00Z", NOW) == "5m ago"
    assert age("2026-11-27T17:00:00Z", NOW) == "3h ago"
    assert age("2026-11-20T20:00:00Z", NOW) == "7d ago"
    assert age(None, NOW) == ""


async def test_customers_load_depths_lazily_count_contacts_and_filter(services: Services) -> None:
    screen = CustomersScreen()
    async with console_app(services, live=True).run_test(size=(120, 40)) as pilot:
        await show(pilot, screen)
        assert screen.table.row_count == 4  # config rows at once
        await wait_for(pilot, lambda: screen.idle and len(screen.stats) == 4 and "acme" in screen.contacts)
        assert cell(screen, "acme", "account") == services.config.customer("acme").account_id
        assert cell(screen, "acme", "env") == "production"
        assert cell(screen, "globex", "dlq") == "2"
        assert cell(screen, "acme", "queue") == "0"
        assert cell(screen, "acme", "last") == "sent 5m ago"
        assert cell(screen, "globex", "last") == "never"
        # Contacts are counted only for the highlighted row (they assume the customer's role).
        assert set(screen.contacts) == {"acme"}
        assert [cell(screen, "acme", k) for k in ("approval", "announce", "calendar", "contacts")] == [
            "3",
            "3",
            "2",
            "5",
        ]
        assert cell(screen, "globex", "approval") == "·"
        await pilot.press("down")  # globex: loaded on highlight
        await wait_for(pilot, lambda: "globex" in screen.contacts and screen.idle)
        assert cell(screen, "globex", "contacts") == "5"
        await pilot.press("c")  # every shown row
        await wait_for(pilot, lambda: len(screen.contacts) == 4 and screen.idle)
        summary = str(screen.query_one("#customers-summary", Static).render())
        assert "4 customers" in summary and "2 messages in 1 customer" in summary

        # Filter by name; the cursor stays on its customer; refresh keeps the filter.
        await pilot.press("slash", *"initech", "enter")
        await wait_for(pilot, lambda: screen.table.row_count == 1)
        await pilot.press("r")
        await wait_for(pilot, lambda: screen.idle)
        assert screen.table.row_count == 1 and screen.filter_text == "initech"
        await pilot.press("escape")  # the table has focus: escape leaves the screen
        await wait_for(pilot, lambda: not isinstance(pilot.app.screen, CustomersScreen))


async def test_enter_opens_customer_detail_and_d_opens_its_dlq(services: Services) -> None:
    screen = CustomersScreen()
    app = console_app(services, live=True)
    dlq_opened: list[str | None] = []
    app.open_dlq = dlq_opened.append  # type: ignore[method-assign]
    async with app.run_test(size=(120, 40)) as pilot:
        await show(pilot, screen)
        await wait_for(pilot, lambda: screen.idle and len(screen.stats) == 4)
        await pilot.press("down", "d")
        assert dlq_opened == ["globex"]
        await pilot.press("up", "enter")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, CustomerDetailScreen))
        detail = pilot.app.screen
        assert isinstance(detail, CustomerDetailScreen)
        await wait_for(pilot, lambda: detail.loaded)
        topics = detail.query_one("#customer-topics", DataTable)
        assert [str(topics.get_cell(t, "subscribed")).strip() for t in ("aws-approval", "aws-announce")] == [
            "3",
            "3",
        ]
        deliveries = detail.query_one("#customer-deliveries", DataTable)
        assert deliveries.row_count == 1
        summary = str(detail.query_one("#customer-summary", Static).render())
        assert "acme" in summary and "last delivery" in summary
        await pilot.press("enter")  # the delivery drill-down
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, DeliveryDetailScreen))
        await pilot.press("escape")
        await wait_for(pilot, lambda: pilot.app.screen is detail)
        await pilot.press("d")
        assert dlq_opened == ["globex", "acme"]


async def test_unreachable_aws_shows_errors_per_cell_and_a_banner(make_stack: Any) -> None:
    stack = make_stack(customers=2, contacts=1)
    from changeconsole.services.aws import AwsSettings

    dead = AwsFactory(
        AwsSettings(endpoint_url="http://127.0.0.1:9", local=True, max_attempts=1, connect_timeout=0.5)
    )
    screen = CustomersScreen()
    async with console_app(Services(dead, stack.config), live=True).run_test(size=(120, 40)) as pilot:
        await show(pilot, screen)
        await wait_for(pilot, lambda: screen.idle and len(screen.stats) == 2 and "acme" in screen.contacts)
        assert cell(screen, "acme", "queue") == "err"
        assert cell(screen, "acme", "approval") == "err"
        banner = screen.query_one("#customers-error", Static)
        assert not banner.has_class("hidden")
        assert "AWS unreachable" in str(banner.render())


@pytest.mark.parametrize(
    ("sends", "bounces", "complaints", "bounce", "complaint"),
    [
        (0, 0, 0, "-", "-"),  # no send event yet
        (1000, 10, 0, "1.0", "0.00"),
        (1000, 50, 1, "5.0!", "0.10!"),  # at SES's warning levels
        (5, 1, 1, "20!", "20!"),  # wide rates still fit the column
    ],
)
def test_rates_against_ses_warning_levels(
    sends: int, bounces: int, complaints: int, bounce: str, complaint: str
) -> None:
    rep = Reputation("acme", sends=sends, bounces=bounces, complaints=complaints)
    stats = CustomerStats("acme", CustomerDepths("acme", QueueDepth(), QueueDepth()), None, reputation=rep)
    assert (rate_text(stats, "bounce"), rate_text(stats, "complaint")) == (bounce, complaint)
    widths = {k: w for k, _label, w in CUSTOMER_COLUMNS}
    assert len(bounce) <= widths["bounce"] and len(complaint) <= widths["complaint"]


async def test_narrow_terminal_cuts_names_not_the_checks_or_last_delivery(services: Services) -> None:
    screen = CustomersScreen()
    async with console_app(services, live=False).run_test(size=(120, 40)) as pilot:
        await show(pilot, screen)
        table = screen.table

        def fits() -> bool:
            return table.virtual_size.width <= table.size.width

        await wait_for(pilot, fits)
        widths = {str(k.value): c.width for k, c in table.columns.items()}
        assert widths["name"] < 16 and widths["last"] >= 14  # name gave up width, Last delivery kept it
        assert widths["check"] == 5 and widths["bounce"] == 5
        await pilot.resize_terminal(170, 40)
        await wait_for(
            pilot, lambda: table.columns[next(k for k in table.columns if k.value == "name")].width == 16
        )
        assert fits()
