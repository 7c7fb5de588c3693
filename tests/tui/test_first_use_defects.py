"""The defects a first-time operator hit (issue 16, numbered as there), each driven through the real
console as the operator did it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import DataTable, Input

from changeconsole.config import data_dir
from changeconsole.models import ChangeStatus
from changeconsole.screens.changes import ChangesScreen
from changeconsole.screens.compose import ComposeScreen
from changeconsole.screens.detail import DetailScreen
from changeconsole.screens.dlq import DlqScreen
from changeconsole.screens.modals import ConfirmModal, TypeToConfirmModal
from changeconsole.screens.progress import SubmitProgressScreen
from changeconsole.screens.status import LiveStatusScreen
from changeconsole.services.bundle import Services
from changeconsole.services.localstack import local_factory
from support.console import (
    APPROVED_ID,
    DRAFT_ID,
    NEW_ID,
    FakeServices,
    change,
    console_app,
    fake_app,
    open_compose,
    open_detail,
    screen_text,
    settle,
)
from support.waiting import wait_for

MARKUP_TITLE = "<script>x</script> [b]bold[/b] [red]red[/red]"


def table_of(app: Any) -> DataTable[Any]:
    return app.screen.query_one("#changes-table", DataTable)


async def test_2_a_title_with_markup_shows_literally_in_the_change_list(tmp_path: Path) -> None:
    services = FakeServices()
    services.changes.versions[DRAFT_ID] = [
        change(DRAFT_ID, MARKUP_TITLE, ChangeStatus.DRAFT, 1, ["hooli"], modifiedAt="2026-11-26T10:00:00Z")
    ]
    app = fake_app(tmp_path, services=services)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        assert MARKUP_TITLE in screen_text(app)


async def test_12_arrows_move_the_cursor_after_an_empty_tab(tmp_path: Path) -> None:
    services = FakeServices()
    del services.changes.versions[DRAFT_ID]  # the Drafts tab is empty
    app = fake_app(tmp_path, services=services)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, ChangesScreen) and screen.tab == "all"
        await pilot.press("right")  # wraps to Drafts: nothing to show
        await settle(pilot)
        assert screen.tab == "drafts" and table_of(app).row_count == 0
        await pilot.press("left")  # back to All
        await settle(pilot)
        assert table_of(app).row_count == 3
        await pilot.press("down", "down")
        await settle(pilot)
        assert app.focused is table_of(app)
        assert table_of(app).cursor_row == 2
        chosen = screen._cursor_key()
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, DetailScreen), what="detail")
        assert app.screen.change_id == chosen  # type: ignore[attr-defined]


async def fill_compose(
    pilot: Any, *, title: str = "Rotate keys", customers: tuple[str, ...] = ("acme",)
) -> Any:
    """Open compose from the change list (n) and fill what submitting needs."""
    compose = await open_compose(pilot)
    values = {"title": title, "start_date": "2030-03-01", "start_time": "22:00"}
    values |= {"end_date": "2030-03-02", "end_time": "01:00"}
    for key, value in values.items():
        compose.query_one(f"#f-{key}", Input).value = value
    compose.selected = set(customers)
    compose._rebuild_customers()
    await settle(pilot)
    return compose


async def test_1_changes_command_after_submit_shows_the_change_list(tmp_path: Path) -> None:
    app = fake_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        await fill_compose(pilot)
        await pilot.press("ctrl+j")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmModal), what="submit confirmation")
        await pilot.press("y")
        await wait_for(pilot, lambda: isinstance(app.screen, SubmitProgressScreen), what="progress")
        await wait_for(pilot, lambda: app.screen.result is not None, what="fan-out result")  # type: ignore[attr-defined]
        await pilot.press("l")
        await wait_for(pilot, lambda: isinstance(app.screen, LiveStatusScreen), what="live status")
        await settle(pilot)
        await pilot.press("colon", *"changes", "enter")
        await settle(pilot)
        assert isinstance(app.screen, ChangesScreen)
        assert [type(s).__name__ for s in app.screen_stack[1:]] == ["ChangesScreen"]
        assert "Rotate keys" in screen_text(app)
        # The cursor is on the change just submitted.
        assert app.screen._cursor_key() == NEW_ID


async def test_3_tab_accepts_the_time_zone_suggestion(tmp_path: Path) -> None:
    app = fake_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        zone = (await open_compose(pilot)).query_one("#f-timezone", Input)
        zone.focus()
        zone.value = ""
        await pilot.press(*"America/New_Y")
        await wait_for(pilot, lambda: zone._suggestion == "America/New_York", what="the suggestion")
        await pilot.press("tab")
        await settle(pilot)
        assert zone.value == "America/New_York"
        assert zone.has_focus  # the completion was taken; the next Tab moves on
        await pilot.press("tab")
        assert not zone.has_focus


async def test_4_space_selects_the_highlighted_customer_of_a_fresh_filter(tmp_path: Path) -> None:
    app = fake_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        compose = await open_compose(pilot)
        compose.query_one("#customer-filter", Input).focus()
        await pilot.press(*"glob")
        await settle(pilot)
        compose.query_one("#customers").focus()
        await pilot.press("space")
        await settle(pilot)
        assert compose.selected == {"globex"}


async def test_5_a_file_with_a_bad_timezone_keeps_its_window(tmp_path: Path) -> None:
    doc = {
        "changeTitle": "Rotate keys",
        "customers": ["acme"],
        "implementationStart": "2030-07-01T21:00:00Z",
        "implementationEnd": "2030-07-01T23:30:00Z",
        "timezone": "America/New_Yrok",
        "changeReason": "Expiry",
    }
    path = tmp_path / "change.json"
    path.write_text(json.dumps(doc))
    app = fake_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        compose = await open_compose(pilot)
        compose.query_one("#file-path", Input).value = str(path)
        compose.action_load_file()
        await settle(pilot)
        notes = [n.message for n in app._notifications]
        assert any("not an IANA zone: the window is kept" in n for n in notes), notes
        assert "start 2030-07-01T21:00:00Z" in screen_text(app)  # the loaded window, not dropped
        zone = compose.query_one("#f-timezone", Input)
        zone.focus()
        zone.value = ""  # cleared, then typed: on the way it is empty (UTC) and other zones
        await settle(pilot)
        await pilot.press(*"America/New_York")
        await settle(pilot)
        shown = [compose.query_one(f"#f-{k}", Input).value for k in ("start_date", "start_time", "end_time")]
        assert shown == ["2030-07-01", "17:00", "19:30"]
        built, problems = compose.build(for_submit=True)
        assert not problems and built is not None
        assert (built.implementation_start, built.implementation_end) == (
            "2030-07-01T21:00:00Z",
            "2030-07-01T23:30:00Z",
        )


async def test_7_ctrl_s_on_an_approved_change_saves_and_resubmits_as_the_footer_says(tmp_path: Path) -> None:
    app = fake_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        await open_detail(pilot, APPROVED_ID)
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, ComposeScreen), what="compose")
        await settle(pilot)
        footer = screen_text(app).splitlines()[-1]
        assert "^s Save & resubmit" in footer and "Save draft" not in footer
        compose = app.screen
        for target in ("#f-title", "#f-reason", "#customers"):  # input, text area, pick list
            compose.query_one(target).focus()
            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmModal), what="resubmit confirmation")
            assert "Save and resubmit" in screen_text(app)
            await pilot.press("n")
            await settle(pilot)


async def test_9_and_10_purge_says_e_exports_here_and_exports_go_to_an_absolute_path(
    make_stack: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = make_stack(customers=1, contacts=1)
    code = next(iter(stack.config.customer_mappings))
    monkeypatch.chdir(tmp_path)  # the working directory must stay clean (it may be a repository)
    app = console_app(Services(local_factory(stack.endpoint, max_attempts=1), stack.config), autosave=None)
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        app.open_dlq(code)
        await wait_for(pilot, lambda: isinstance(app.screen, DlqScreen) and app.screen.idle, what="DLQ")
        await settle(pilot)
        await pilot.press("P")
        await wait_for(pilot, lambda: isinstance(app.screen, TypeToConfirmModal), what="purge dialog")
        await settle(pilot)
        text = " ".join(screen_text(app).split())
        assert "e exports them first" in text and "changeconsole dlq export" not in text
        await pilot.press("escape", "e")
        await wait_for(pilot, lambda: bool(app.screen.query("#path-input")), what="export dialog")
        path = Path(app.screen.query_one("#path-input", Input).value)
        assert path.is_absolute() and path.is_relative_to(data_dir())
        await pilot.press("enter")
        await wait_for(pilot, lambda: path.is_file(), what="the export file")
    assert list(tmp_path.glob("dlq-*")) == []


@pytest.mark.parametrize("where", ["changes", "detail", "compose", "help"])
async def test_11_after_80_to_240_columns_tabs_and_footer_span_the_width(tmp_path: Path, where: str) -> None:
    """Not reproduced here (tmux and Pilot, on every screen, before and after this branch): kept as
    the check of what the operator saw go wrong, on the screen itself and back on the change list."""
    app = fake_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        if where == "detail":
            app.open_change(APPROVED_ID)
        elif where == "compose":
            app.open_compose()
        elif where == "help":
            await pilot.press("f1")
        await settle(pilot)
        await pilot.resize_terminal(240, 48)
        await settle(pilot)
        for _ in range(2):
            lines = screen_text(app).splitlines()
            assert len(lines[-1].rstrip()) >= 238  # the footer, to the right edge (palette hint)
            underlines = [line for line in lines if "━" in line]
            assert all(len(line.rstrip()) == 240 for line in underlines)
            await pilot.press("escape")
            await settle(pilot)
        assert isinstance(app.screen, ChangesScreen)
