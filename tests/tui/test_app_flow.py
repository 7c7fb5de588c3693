"""End to end against an in-process local stack and worker: compose → submit → live status `sent`,
then approve from the detail screen and watch the second round arrive."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Input

from changeconsole.app import ChangeConsoleApp
from changeconsole.models import DeliveryState, EmailEvent
from changeconsole.screens.changes import ChangesScreen
from changeconsole.screens.compose import ComposeScreen
from changeconsole.screens.detail import DetailScreen
from changeconsole.screens.modals import ConfirmModal
from changeconsole.services.autosave import AutosaveStore
from changeconsole.services.bundle import Services
from changeconsole.services.localstack import local_factory
from changeconsole.services.outbox import read_outbox
from support.console import settle
from support.waiting import wait_for

worker_module = pytest.importorskip("changeconsole.worker")


@pytest.fixture
def stack(make_stack: Any) -> Iterator[tuple[Any, Services]]:
    result = make_stack(customers=4, contacts=3)
    handle = worker_module.start_background(
        local_factory(result.endpoint), result.config, worker_id="tui-test"
    )
    try:
        yield result, Services(local_factory(result.endpoint, max_attempts=2), result.config)
    finally:
        handle.stop(timeout=10)


def round_states(services: Services, change_id: str, event: EmailEvent) -> dict[str, str]:
    return {r.customer: r.state.value for r in services.status.records(change_id) if r.event is event}


async def test_compose_submit_watch_sent_then_approve(stack: tuple[Any, Services], tmp_path: Path) -> None:
    result, services = stack
    app = ChangeConsoleApp(
        services,
        autosave=AutosaveStore(tmp_path / "autosave"),
        autosave_interval=0,
        refresh_interval=60,
        default_timezone="Europe/London",
    )
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, ChangesScreen)
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, ComposeScreen), what="compose")
        await settle(pilot)
        compose = app.screen
        assert isinstance(compose, ComposeScreen)
        compose.query_one("#f-title", Input).focus()
        await pilot.press(*"Rotate TLS certificates")
        for key, value in {
            "start_date": "2030-03-01",
            "start_time": "22:00",
            "end_date": "2030-03-02",
            "end_time": "01:00",
        }.items():
            compose.query_one(f"#f-{key}", Input).value = value
        compose.query_one("#customer-filter", Input).value = "corp"  # acme, globex, umbrella
        await settle(pilot)
        compose.query_one("#customers").focus()
        await pilot.press("a")
        await settle(pilot)
        assert compose.selected == {"acme", "globex", "umbrella"}
        await pilot.press("ctrl+j")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmModal), what="submit confirmation")
        await settle(pilot)
        change_id = compose.change_id
        await pilot.press("y")

        # The progress screen hands over to live status once every destination is done.
        await wait_for(
            pilot, lambda: type(app.screen).__name__ == "LiveStatusScreen", timeout=30, what="live status"
        )
        await wait_for(
            pilot,
            lambda: (
                round_states(services, change_id, EmailEvent.SUBMITTED)
                == dict.fromkeys(("acme", "globex", "umbrella"), DeliveryState.SENT.value)
            ),
            timeout=60,
            what="all three customers sent",
        )
        await wait_for(
            pilot,
            lambda: "sent 3" in str(app.screen.query_one("#status-counts").render()),
            timeout=15,
            what="the live status screen showing sent 3",
        )
        assert AutosaveStore(tmp_path / "autosave").list() == []

        # Back: the submitted form leaves by itself; home lists the change.
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, ChangesScreen), what="home")
        app.open_change(change_id)
        await wait_for(pilot, lambda: isinstance(app.screen, DetailScreen), what="detail")
        await settle(pilot)
        detail = app.screen
        assert isinstance(detail, DetailScreen) and detail.change is not None
        assert detail.change.status.value == "submitted"
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmModal), what="approve confirmation")
        await settle(pilot)
        await pilot.press("y")
        await wait_for(
            pilot,
            lambda: (
                round_states(services, change_id, EmailEvent.APPROVED)
                == dict.fromkeys(("acme", "globex", "umbrella"), DeliveryState.SENT.value)
            ),
            timeout=60,
            what="the approved round sent",
        )
        await wait_for(
            pilot, lambda: type(app.screen).__name__ == "LiveStatusScreen", timeout=30, what="live status"
        )
        await wait_for(
            pilot,
            lambda: (
                "approved" in str(app.screen.query_one("#status-title").render())
                and "sent 3" in str(app.screen.query_one("#status-counts").render())
            ),
            timeout=15,
            what="live status of the approved round",
        )
    mails = read_outbox(result.endpoint, change_id=change_id)
    assert {m.event for m in mails} == {"submitted", "approved"}
    assert {m.customer for m in mails} == {"acme", "globex", "umbrella"}
