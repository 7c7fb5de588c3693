"""Preview as the customer, templates in compose, bulk actions with one failure, my changes, search,
and the dashboard: Pilot tests over fake services and over the local stack, and snapshots."""

from __future__ import annotations

import webbrowser
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import DataTable, Input, Static, Tabs

from changeconsole.app import ChangeConsoleApp
from changeconsole.models import TOPIC_APPROVAL, Change
from changeconsole.screens.bulk import BulkResultsScreen
from changeconsole.screens.changes import ChangesScreen
from changeconsole.screens.compose import ComposeScreen
from changeconsole.screens.dashboard import DashboardScreen
from changeconsole.screens.modals import ConfirmModal, InputModal
from changeconsole.screens.preview import PreviewScreen
from changeconsole.screens.search import SearchModal
from changeconsole.screens.templates import TemplatePicker
from changeconsole.services.authz import Authorizer
from changeconsole.services.aws import AwsFactory
from changeconsole.services.bundle import Services
from changeconsole.services.preview import PreviewService
from changeconsole.services.templates import TemplateStore
from support.changes import change_data
from support.console import (
    APPROVED_ID,
    DONE_ID,
    DRAFT_ID,
    SUBMITTED_ID,
    FakeServices,
    fake_app,
    screen_text,
    settle,
)
from support.insight import FakeBulk, FakeTemplates, OfflinePreview, SeededReports
from support.mail import subscribed
from support.waiting import wait_for

SIZES = [pytest.param((120, 40), id="120x40"), pytest.param((80, 24), id="80x24")]


def services(**parts: Any) -> FakeServices:
    base = FakeServices()
    extra = {
        "preview": OfflinePreview(base.config, base.authz),
        "reports": SeededReports(base.config, base.authz),
        "templates": FakeTemplates(),
    }
    extra.update(parts)
    for name, part in extra.items():
        setattr(base, name, part)
    return base


def table_keys(app: Any, selector: str) -> list[str]:
    table = app.screen.query_one(selector, DataTable)
    return [str(k.value) for k in table.rows]


async def open_detail(pilot: Any, change_id: str) -> None:
    await settle(pilot)
    pilot.app.open_change(change_id)
    await settle(pilot)


# -- preview -----------------------------------------------------------------------------------------


async def test_preview_from_detail_steps_through_customers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = services()
    app = fake_app(tmp_path, services=fake)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_detail(pilot, SUBMITTED_ID)
        await pilot.press("p")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, PreviewScreen) and screen.preview is not None
        acme = fake.config.customer("acme")
        # Approval request: the approval topic's subscribers of acme only.
        assert table_keys(app, "#preview-recipients") == ["cab@acme.example.com", "ops@acme.example.com"]
        assert acme.customer_name in screen_text(app)
        subject = screen.preview.subject
        assert "Rotate TLS certificates on the edge load balancers" in subject
        assert subject.startswith("Approval requested") and subject.endswith(acme.customer_name)
        await pilot.press("right_square_bracket")
        await settle(pilot)
        assert screen.customer == "globex"
        assert table_keys(app, "#preview-recipients") == ["cab@globex.example.com", "ops@globex.example.com"]
        assert fake.config.customer("globex").customer_name in str(
            screen.query_one("#preview-summary", Static).content
        )
        await pilot.press("e")  # the approved notice: the announce topic, ops gets the calendar too
        await settle(pilot)
        assert screen.preview.event == "approved"
        assert table_keys(app, "#preview-recipients") == [
            "cab@globex.example.com",
            "news@globex.example.com",
            "ops@globex.example.com",
        ]
        assert screen.preview.calendar_method is None, "the approved change has no meeting"

        opened: list[str] = []
        monkeypatch.setattr(webbrowser, "open", lambda url, *a, **k: opened.append(url) or True)
        await pilot.press("o")
        await wait_for(pilot, lambda: bool(opened), what="the browser opened")
        path = Path(opened[0].removeprefix("file://"))
        assert path.read_text(encoding="utf-8") == screen.preview.html
        path.unlink()

        await pilot.press("t")
        await settle(pilot)
        assert isinstance(app.screen, InputModal)
        await pilot.press(*"me@operator.example.org", "enter")
        await settle(pilot)
        assert fake.preview.sent == [(SUBMITTED_ID, "globex", "me@operator.example.org")]
        assert app.test_address == "me@operator.example.org"


async def test_preview_from_compose_renders_the_form(tmp_path: Path) -> None:
    app = fake_app(tmp_path, services=services())
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        app.open_compose(Change.model_validate({**change_data(["initech"]), "changeTitle": "From the form"}))
        await settle(pilot)
        await pilot.press("ctrl+r")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, PreviewScreen) and screen.preview is not None
        assert screen.preview.subject.startswith("Approval requested: From the form [")
        assert screen.preview.projected
        assert table_keys(app, "#preview-recipients") == [
            "cab@initech.example.com",
            "ops@initech.example.com",
        ]


async def test_preview_on_the_local_stack_uses_the_workers_rendering(
    make_stack: Any, aws_factory: AwsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHANGECONSOLE_OPERATOR", "alice")
    stack = make_stack(customers=3, contacts=5)
    codes = sorted(stack.config.customer_mappings)
    change = Change.model_validate({**change_data(codes[:2]), "changeId": "CHG-2026-03-01T10-00-00-abc123"})
    app = ChangeConsoleApp(Services(aws_factory, stack.config), live=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        app.open_preview(change)
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, PreviewScreen)
        await wait_for(pilot, lambda: screen.preview is not None, what="the preview")
        for code in codes[:2]:
            if screen.customer != code:
                await pilot.press("right_square_bracket")
                await wait_for(
                    pilot, lambda c=code: screen.preview is not None and screen.preview.customer == c
                )
            assert screen.preview is not None
            shown = {k.lower() for k in table_keys(app, "#preview-recipients")}
            assert shown == subscribed(code, 5, TOPIC_APPROVAL)
            # The same text the service renders through the worker's prepare_notice.
            direct = PreviewService(aws_factory, stack.config).preview(change, code)
            assert screen.preview.text == direct.text and screen.preview.html == direct.html


# -- templates ---------------------------------------------------------------------------------------


async def test_template_round_trip_in_compose(
    tmp_path: Path, make_stack: Any, aws_factory: AwsFactory
) -> None:
    stack = make_stack(customers=3, contacts=0)
    codes = sorted(stack.config.customer_mappings)
    app = ChangeConsoleApp(Services(aws_factory, stack.config), live=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        app.open_compose(
            Change.model_validate(
                {**change_data(codes[:2]), "changeTitle": "Monthly kernel patching", "status": "draft"}
            )
        )
        await settle(pilot)
        await pilot.press("ctrl+t")
        await settle(pilot)
        assert isinstance(app.screen, TemplatePicker)
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, InputModal)
        await pilot.press(*"kernel", "enter")
        store = TemplateStore(
            aws_factory, stack.config, authz=Authorizer(aws_factory, stack.config, operator="x")
        )
        await wait_for(pilot, lambda: store.names() == ["kernel"], what="the template saved")
        await pilot.press("escape")  # close the picker
        await settle(pilot)
        await pilot.press("escape")  # leave the compose screen (discard its edits)
        await settle(pilot)
        if not isinstance(app.screen, ChangesScreen):
            await pilot.click("#choice-discard")
            await settle(pilot)
        app.open_compose()
        await settle(pilot)
        compose = app.screen
        assert isinstance(compose, ComposeScreen)
        await pilot.press("ctrl+t")
        await settle(pilot)
        picker = app.screen
        assert isinstance(picker, TemplatePicker)
        await wait_for(pilot, lambda: bool(picker.templates), what="templates listed")
        await pilot.press(*"kern", "enter")
        await settle(pilot)
        assert app.screen is compose
        assert compose.query_one("#f-title", Input).value == "Monthly kernel patching"
        assert compose.selected == set(codes[:2])
        assert compose.query_one("#f-start_date", Input).value == "", "a template has no window"


# -- bulk --------------------------------------------------------------------------------------------


async def test_bulk_approve_with_one_failure_and_retry(tmp_path: Path) -> None:
    fake = services()
    fake.bulk = FakeBulk(fake.changes, fail={SUBMITTED_ID})
    app = fake_app(tmp_path, services=fake)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, ChangesScreen)
        keys = table_keys(app, "#changes-table")
        for change_id in (SUBMITTED_ID, APPROVED_ID, DRAFT_ID):
            screen.query_one(DataTable).move_cursor(row=keys.index(change_id))
            await pilot.press("space")
        await settle(pilot)
        assert screen.marked == {SUBMITTED_ID, APPROVED_ID, DRAFT_ID}
        await pilot.press("a")
        await settle(pilot)
        modal = app.screen
        assert isinstance(modal, ConfirmModal)
        text = screen_text(app)
        assert SUBMITTED_ID in text and "Left out" in text and DRAFT_ID in text  # one confirmation for all
        await pilot.press("y")
        await settle(pilot)
        results = app.screen
        assert isinstance(results, BulkResultsScreen)
        await wait_for(pilot, lambda: results.run_state is not None, what="the bulk run")
        assert [i.change_id for i in results.run_state.failed] == [SUBMITTED_ID]  # type: ignore[union-attr]
        assert "1 of 1 did not succeed" in screen_text(app)
        await pilot.press("r")
        await wait_for(pilot, lambda: results.run_state is not None and results.run_state.ok, what="retry")
        # Only the one that failed was tried again, pinned to the version the list showed.
        assert fake.bulk.calls == [("approve", SUBMITTED_ID, 3), ("approve", SUBMITTED_ID, 3)]
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen is screen and screen.marked == {APPROVED_ID, DRAFT_ID}


# -- my changes and search ----------------------------------------------------------------------------


async def test_mine_tab_and_search(tmp_path: Path) -> None:
    fake = services()
    app = fake_app(tmp_path, services=fake)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await wait_for(pilot, lambda: app.identity == "alice", what="the operator known")
        screen = app.screen
        assert isinstance(screen, ChangesScreen)
        await pilot.press("m")
        await settle(pilot)
        assert screen.tab == "mine"
        assert set(table_keys(app, "#changes-table")) == {SUBMITTED_ID, DRAFT_ID, APPROVED_ID, DONE_ID}
        app.identity = "bob"  # bob created nothing here; alice's submitted change is his to approve
        screen.render_rows()
        await settle(pilot)
        assert table_keys(app, "#changes-table") == [SUBMITTED_ID]
        assert "Mine 1" in [str(t.label) for t in screen.query_one(Tabs).query("Tab")]
        await pilot.press("0")  # the All tab
        await settle(pilot)
        await pilot.press("f")
        await settle(pilot)
        assert isinstance(app.screen, SearchModal)
        await pilot.press(*"bob")  # operator
        await pilot.press("enter")
        await settle(pilot)
        assert screen.search_query.operator == "bob" and screen.tab == "all"
        assert set(table_keys(app, "#changes-table")) == {SUBMITTED_ID, APPROVED_ID, DONE_ID}
        assert "operator bob" in screen_text(app)


# -- snapshots ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
def test_snapshot_preview(snap_compare: Any, tmp_path: Path, size: tuple[int, int]) -> None:
    async def run_before(pilot: Any) -> None:
        await open_detail(pilot, APPROVED_ID)
        await pilot.press("p")
        await settle(pilot)

    assert snap_compare(fake_app(tmp_path, services=services()), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_snapshot_dashboard(snap_compare: Any, tmp_path: Path, size: tuple[int, int]) -> None:
    async def run_before(pilot: Any) -> None:
        await settle(pilot)
        pilot.app.open_dashboard()
        await settle(pilot)
        screen = pilot.app.screen
        assert isinstance(screen, DashboardScreen) and screen.report is not None

    assert snap_compare(fake_app(tmp_path, services=services()), terminal_size=size, run_before=run_before)
