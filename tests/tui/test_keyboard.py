"""Keyboard speed (issue 16): vim motions in every table, the compose field palette, Tab completes
everywhere, and where esc from compose lands."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual import events
from textual.widgets import DataTable, Input, SelectionList

from changeconsole.screens.changes import ChangesScreen
from changeconsole.screens.compose import JUMPS, ComposeScreen
from changeconsole.screens.customers import CustomersScreen
from changeconsole.screens.detail import DetailScreen
from changeconsole.screens.modals import CommandLine, JumpPalette
from changeconsole.screens.status import LiveStatusScreen
from changeconsole.widgets.navtable import NavSelectionList, NavTable
from support.console import APPROVED_ID, DONE_ID, SUBMITTED_ID, fake_app, open_compose, open_detail, settle
from support.waiting import wait_for


def cursor(app: Any) -> int:
    return app.screen.query_one("#changes-table", DataTable).cursor_row


async def test_j_k_g_G_move_the_cursor_of_the_change_list(tmp_path: Path) -> None:
    app = fake_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        assert cursor(app) == 0
        await pilot.press("j", "j")
        assert cursor(app) == 2
        await pilot.press("k")
        assert cursor(app) == 1
        await pilot.press("G")
        assert cursor(app) == 3
        await pilot.press("g")
        assert cursor(app) == 0
        await pilot.press("G", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, DetailScreen), what="detail")
        assert app.screen.change_id == app.services.changes.list()[-1].change_id  # type: ignore[attr-defined]


@pytest.mark.parametrize("where", ["changes", "detail", "status", "dlq", "customers", "contacts", "compose"])
async def test_every_table_and_pick_list_has_the_motions(tmp_path: Path, where: str) -> None:
    """One binding set for all: every table of every screen is a NavTable, every pick list a
    NavSelectionList (a new screen with a plain DataTable fails here)."""
    app = fake_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        opened = {
            "detail": lambda: app.open_change(SUBMITTED_ID),
            "status": lambda: app.open_status(SUBMITTED_ID),
            "dlq": lambda: app.open_dlq("acme"),
            "customers": app.open_customers,
            "contacts": lambda: app.open_contacts("acme"),
            "compose": app.open_compose,
        }
        if where in opened:
            opened[where]()
        await settle(pilot)
        tables = list(app.screen.query(DataTable))
        assert tables and all(isinstance(t, NavTable) for t in tables), [type(t) for t in tables]
        assert all(isinstance(s, NavSelectionList) for s in app.screen.query(SelectionList))


async def test_history_table_takes_j_k_too(tmp_path: Path) -> None:
    app = fake_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_detail(pilot, SUBMITTED_ID)
        await pilot.press("h")
        await settle(pilot)
        table = app.screen.query_one("#versions-table", DataTable)
        assert table.has_focus and table.cursor_row == 0
        await pilot.press("j", "j")
        assert table.cursor_row == 2
        await pilot.press("g")
        assert table.cursor_row == 0


async def test_every_compose_field_is_two_keys_away(tmp_path: Path) -> None:
    app = fake_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        compose = await open_compose(pilot)
        focusable = {w.id for w in compose.query("#form *") if w.can_focus and w.id}
        assert focusable - {"load-file"} <= {target for *_, target in JUMPS}  # nothing left out
        for _section, key, _label, target in JUMPS:
            await pilot.press("ctrl+o")
            await wait_for(pilot, lambda: isinstance(app.screen, JumpPalette), what="the field palette")
            await pilot.press(key)
            await wait_for(pilot, lambda: app.screen is compose, what="back on the form")
            assert app.focused is not None and app.focused.id == target, (key, target)
        await pilot.press("ctrl+o", "escape")
        await settle(pilot)
        assert app.screen is compose and app.focused is not None and app.focused.id == JUMPS[-1][3]


async def test_tab_takes_the_completion_of_the_command_line(tmp_path: Path) -> None:
    app = fake_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("colon", *"cust")
        line = app.screen.query_one(Input)
        assert isinstance(app.screen, CommandLine)
        await wait_for(pilot, lambda: line._suggestion == "customers", what="the suggestion")
        await pilot.press("tab")
        assert line.value == "customers"


async def test_a_command_typed_in_one_burst_after_the_colon_is_not_lost(tmp_path: Path) -> None:
    """As a terminal delivers ``:customers⏎`` pasted or typed fast: every key queued before any is
    handled. None may reach the change list's own bindings (``s`` sorts, ``r`` refreshes)."""
    app = fake_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        for key, char in [("colon", ":"), *((c, c) for c in "customers"), ("enter", "\r")]:
            app.post_message(events.Key(key, char))
        await wait_for(pilot, lambda: isinstance(app.screen, CustomersScreen), what="the customers screen")
        assert [type(s).__name__ for s in app.screen_stack[1:]] == ["ChangesScreen", "CustomersScreen"]


async def test_a_colon_typed_into_a_field_is_text(tmp_path: Path) -> None:
    app = fake_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("slash", *"a:b")
        assert not isinstance(app.screen, CommandLine)
        assert isinstance(app.focused, Input) and app.focused.value == "a:b"


async def leave_compose(pilot: Any) -> None:
    app = pilot.app
    await wait_for(pilot, lambda: isinstance(app.screen, ComposeScreen), what="compose")
    await settle(pilot)
    await pilot.press("escape")
    await wait_for(pilot, lambda: not isinstance(app.screen, ComposeScreen), what="compose left")
    await settle(pilot)


async def test_esc_from_compose_returns_to_the_list_it_was_opened_from(tmp_path: Path) -> None:
    app = fake_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("j")
        await pilot.press("n")
        await leave_compose(pilot)
        assert isinstance(app.screen, ChangesScreen) and cursor(app) == 1


async def test_esc_from_compose_never_lands_on_another_changes_armed_detail(tmp_path: Path) -> None:
    """Opened with :new from an approved change's detail (one key from completing it), esc goes to
    the change list instead."""
    app = fake_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_detail(pilot, APPROVED_ID)
        await pilot.press("colon", *"new", "enter")
        await leave_compose(pilot)
        assert isinstance(app.screen, ChangesScreen)
        assert [type(s).__name__ for s in app.screen_stack[1:]] == ["ChangesScreen"]


async def test_esc_from_an_edit_lands_on_the_list_with_the_cursor_on_that_change(tmp_path: Path) -> None:
    app = fake_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        assert app.screen._cursor_key() == DONE_ID  # type: ignore[attr-defined]
        app.open_change(SUBMITTED_ID)
        await wait_for(pilot, lambda: isinstance(app.screen, DetailScreen), what="detail")
        await settle(pilot)
        await pilot.press("e")
        await leave_compose(pilot)
        assert isinstance(app.screen, ChangesScreen)
        assert app.screen._cursor_key() == SUBMITTED_ID


async def test_esc_from_compose_opened_on_live_status_returns_there(tmp_path: Path) -> None:
    app = fake_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        app.open_status(SUBMITTED_ID)
        await wait_for(pilot, lambda: isinstance(app.screen, LiveStatusScreen), what="status")
        await settle(pilot)
        await pilot.press("colon", *"new", "enter")
        await leave_compose(pilot)
        assert isinstance(app.screen, LiveStatusScreen)
