"""The change list (home): tabs with counts, filter that survives refreshes, sorting, open, errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual.widgets import DataTable, Tabs

from changeconsole.screens.changes import ChangesScreen
from changeconsole.screens.detail import DetailScreen
from support.console import APPROVED_ID, DONE_ID, DRAFT_ID, SUBMITTED_ID, fake_app, screen_text, settle
from support.waiting import wait_for

SIZES = [pytest.param((120, 40), id="120x40"), pytest.param((80, 24), id="80x24")]


def rows(app: Any) -> list[str]:
    table = app.screen.query_one("#changes-table", DataTable)
    return [str(key.value) for key in table.rows]


async def test_tabs_count_and_filter(tmp_path: Path) -> None:
    app = fake_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, ChangesScreen)
        labels = [str(tab.label) for tab in app.screen.query_one(Tabs).query("Tab")]
        assert labels == [
            "Drafts 1",
            "Submitted 1",
            "Approved 1",
            "Completed 1",
            "Cancelled 0",
            "Mine 4",
            "All 4",
        ]
        assert rows(app)[0] == DONE_ID  # newest modified first
        await pilot.press("1")
        await settle(pilot)
        assert rows(app) == [DRAFT_ID]
        await pilot.press("4")
        await settle(pilot)
        assert rows(app) == [DONE_ID]
        await pilot.press("0", "slash", *"vpn")
        await settle(pilot)
        assert rows(app) == [APPROVED_ID]
        labels = [str(tab.label) for tab in app.screen.query_one(Tabs).query("Tab")]
        assert labels == [
            "Drafts 0",
            "Submitted 0",
            "Approved 1",
            "Completed 0",
            "Cancelled 0",
            "Mine 1",
            "All 1",
        ]
        # A refresh keeps the filter.
        app.screen.load()
        await settle(pilot)
        assert rows(app) == [APPROVED_ID]
        assert "filter “vpn”" in screen_text(app)
        await pilot.press("escape")
        await settle(pilot)
        assert len(rows(app)) == 4


async def test_sort_cycles_and_cursor_follows_row(tmp_path: Path) -> None:
    app = fake_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("down")  # cursor on the second row
        screen = app.screen
        assert isinstance(screen, ChangesScreen)
        before = screen._cursor_key()
        await pilot.press("s")  # by id, ascending
        await settle(pilot)
        assert rows(app) == sorted([SUBMITTED_ID, DRAFT_ID, APPROVED_ID, DONE_ID])
        assert screen._cursor_key() == before
        await pilot.press("S")
        await settle(pilot)
        assert rows(app) == sorted([SUBMITTED_ID, DRAFT_ID, APPROVED_ID, DONE_ID], reverse=True)
        await pilot.click("#changes-table", offset=(40, 0))  # the Title header
        await settle(pilot)
        assert screen.sort_key == "title"


async def test_enter_opens_detail(tmp_path: Path) -> None:
    app = fake_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, DetailScreen), what="detail screen")
        assert app.screen.change_id == DONE_ID  # type: ignore[attr-defined]
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, ChangesScreen)


async def test_unreachable_aws_shows_the_cause(tmp_path: Path) -> None:
    app = fake_app(tmp_path, fail=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        text = screen_text(app)
        assert "Cannot load changes: AWS unreachable: cannot connect to http://127.0.0.1:4566" in text
        assert "operator unknown (AWS unreachable)" in text
        assert "Traceback" not in text


@pytest.mark.parametrize("size", SIZES)
def test_snapshot_changes(snap_compare: Any, tmp_path: Path, size: tuple[int, int]) -> None:
    assert snap_compare(fake_app(tmp_path), terminal_size=size, run_before=settle)


@pytest.mark.parametrize("size", SIZES)
def test_snapshot_changes_unreachable(snap_compare: Any, tmp_path: Path, size: tuple[int, int]) -> None:
    assert snap_compare(fake_app(tmp_path, fail=True), terminal_size=size, run_before=settle)
