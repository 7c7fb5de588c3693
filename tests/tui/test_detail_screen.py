"""Change detail: actions allowed by state, confirmations scaled to danger, history diff, read-only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Button, Input

from changeconsole.screens.changes import ChangesScreen
from changeconsole.screens.compose import ComposeScreen
from changeconsole.screens.detail import DetailScreen
from changeconsole.screens.modals import ConfirmModal, ReasonConfirmModal, TypeToConfirmModal
from changeconsole.screens.progress import SubmitProgressScreen
from support.console import (
    APPROVED_ID,
    DONE_ID,
    DRAFT_ID,
    NEW_ID,
    SUBMITTED_ID,
    fake_app,
    open_detail,
    screen_text,
    settle,
)
from support.waiting import wait_for

SIZES = [pytest.param((120, 40), id="120x40"), pytest.param((80, 24), id="80x24")]


def record_fanouts(app: Any) -> list[tuple[str, str]]:
    calls: list[tuple[str, str]] = []

    def start_fanout(operation: str, change: Any, **_: Any) -> None:
        calls.append((operation, change if isinstance(change, str) else change.change_id))

    app.start_fanout = start_fanout
    return calls


def shown_keys(screen: DetailScreen) -> set[str]:
    return {key for key, active in screen.active_bindings.items() if active.binding.show}


@pytest.mark.parametrize(
    ("change_id", "actions", "keys"),
    [
        (SUBMITTED_ID, "Actions: a approve  ·  x cancel  ·  e edit  ·  d duplicate", {"a", "x", "e", "d"}),
        (APPROVED_ID, "Actions: c complete  ·  x cancel  ·  e edit  ·  d duplicate", {"c", "x", "e", "d"}),
        (DRAFT_ID, "Actions: e edit & submit  ·  del delete  ·  d duplicate", {"e", "delete", "d"}),
        (DONE_ID, "Actions: d duplicate", {"d"}),
    ],
)
async def test_actions_follow_the_state(tmp_path: Path, change_id: str, actions: str, keys: set[str]) -> None:
    app = fake_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_detail(pilot, change_id)
        assert actions in screen_text(app)
        mutating = {"a", "c", "x", "e", "d", "delete"}
        assert shown_keys(screen) & mutating == keys


async def test_approve_is_yes_no(tmp_path: Path) -> None:
    app = fake_app(tmp_path)
    calls = record_fanouts(app)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_detail(pilot, SUBMITTED_ID)
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmModal), what="confirmation")
        await settle(pilot)
        assert "Approved notices go to 3 customers" in screen_text(app)
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, DetailScreen), what="detail")
        assert calls == []
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmModal), what="confirmation")
        await pilot.press("y")
        await wait_for(pilot, lambda: bool(calls), what="the fan-out")
        assert calls == [("approve", SUBMITTED_ID)]


async def test_cancel_takes_a_reason_and_y_or_the_short_suffix(tmp_path: Path) -> None:
    """Issue 16: no more typing a 30-character id; the reason reaches the service (and the record)."""
    app = fake_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_detail(pilot, APPROVED_ID)
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, ReasonConfirmModal), what="cancel dialog")
        await settle(pilot)
        modal = app.screen
        text = screen_text(app)
        assert "Cancel change" in text and "Keep change (esc)" in text and "Cancel (esc)" not in text
        await pilot.press("enter")  # no reason yet: nothing happens
        await settle(pilot)
        assert "Give a reason first" in screen_text(app)
        await pilot.press(*"Vendor postponed", "enter", *"no", "enter")  # neither y nor the suffix
        await settle(pilot)
        assert modal.query_one("#confirm", Button).disabled and app.screen is modal
        modal.query_one("#confirm-text", Input).value = ""
        await pilot.press(*"apr001")  # the short suffix of the id
        assert not modal.query_one("#confirm", Button).disabled
        modal.query_one("#confirm-text", Input).value = ""
        await pilot.press("y", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, SubmitProgressScreen), what="the fan-out")
        await wait_for(pilot, lambda: app.screen.result is not None, what="its result")  # type: ignore[attr-defined]
        assert app.services.changes.calls[-1] == (
            "cancel",
            APPROVED_ID,
            {"expected_version": 3, "reason": "Vendor postponed"},
        )


async def test_cancel_dialog_esc_keeps_the_change(tmp_path: Path) -> None:
    app = fake_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_detail(pilot, APPROVED_ID)
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, ReasonConfirmModal), what="cancel dialog")
        await pilot.press(*"why", "enter", "y", "escape")
        await wait_for(pilot, lambda: isinstance(app.screen, DetailScreen), what="back on the detail")
        assert not [c for c in app.services.changes.calls if c[0] == "cancel"]


async def test_delete_draft_after_typing_its_id(tmp_path: Path) -> None:
    app = fake_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_detail(pilot, DRAFT_ID)
        await pilot.press("delete")
        await wait_for(pilot, lambda: isinstance(app.screen, TypeToConfirmModal), what="typed confirmation")
        app.screen.query_one(Input).value = DRAFT_ID
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ChangesScreen), what="back to the list")
        await settle(pilot)
        assert ("delete", DRAFT_ID) in app.services.changes.calls
        assert DRAFT_ID not in screen_text(app)


async def test_duplicate_opens_the_copy_in_compose(tmp_path: Path) -> None:
    app = fake_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_detail(pilot, DONE_ID)
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ComposeScreen), what="compose")
        await settle(pilot)
        assert app.screen.change_id == NEW_ID  # type: ignore[attr-defined]
        assert app.screen.query_one("#f-title", Input).value == "Resize the reporting database"


async def test_history_diff_of_any_two_versions(tmp_path: Path) -> None:
    app = fake_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_detail(pilot, SUBMITTED_ID)
        await pilot.press("h")
        await settle(pilot)
        text = screen_text(app)
        assert "Diff A v2 → B v3" in text
        assert "+2. Drain one AZ at a time" in text
        assert "-2. Switch listeners" in text
        await pilot.press("down", "down", "1")  # v1 as A
        await settle(pilot)
        assert (screen.pick_a, screen.pick_b) == (1, 3)
        text = screen_text(app)
        assert "Diff A v1 → B v3" in text
        assert 'status: "draft" → "submitted"' in text


async def test_readonly_hides_and_refuses_actions(tmp_path: Path) -> None:
    app = fake_app(tmp_path, readonly=True)
    calls = record_fanouts(app)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_detail(pilot, SUBMITTED_ID)
        assert "READ-ONLY" in screen_text(app)
        assert shown_keys(screen) & {"a", "c", "x", "e", "d", "delete"} == set()
        await pilot.press("a")
        await settle(pilot)
        assert calls == []
        assert isinstance(app.screen, DetailScreen)
        assert any("Read-only console" in str(n.message) for n in app._notifications)


@pytest.mark.parametrize("size", SIZES)
def test_snapshot_detail(snap_compare: Any, tmp_path: Path, size: tuple[int, int]) -> None:
    async def run_before(pilot: Any) -> None:
        await open_detail(pilot, SUBMITTED_ID)

    assert snap_compare(fake_app(tmp_path), terminal_size=size, run_before=run_before)


def test_snapshot_detail_history(snap_compare: Any, tmp_path: Path) -> None:
    async def run_before(pilot: Any) -> None:
        await open_detail(pilot, SUBMITTED_ID)
        await pilot.press("h")
        await settle(pilot)

    assert snap_compare(fake_app(tmp_path), terminal_size=(120, 40), run_before=run_before)


def test_snapshot_cancel_confirmation(snap_compare: Any, tmp_path: Path) -> None:
    async def run_before(pilot: Any) -> None:
        await open_detail(pilot, APPROVED_ID)
        await pilot.press("x")
        await settle(pilot)

    assert snap_compare(fake_app(tmp_path), terminal_size=(80, 24), run_before=run_before)


async def test_edit_submitted_change_resubmits_after_confirmation(tmp_path: Path) -> None:
    app = fake_app(tmp_path)
    calls = record_fanouts(app)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_detail(pilot, SUBMITTED_ID)
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, ComposeScreen), what="compose")
        await settle(pilot)
        compose = app.screen
        assert isinstance(compose, ComposeScreen) and compose.mode == "edit"
        text = screen_text(app)
        assert (
            "Edit CHG-2026-11-20T09-00-00-sub001 · submitted v3 — saving sends a new approval request" in text
        )
        assert "Save & resubmit (^s)" in text
        assert compose.query_one("#f-start_date", Input).value == "2026-12-01"
        assert compose.query_one("#f-start_time", Input).value == "22:00"  # Europe/London in winter
        title = compose.query_one("#f-title", Input)
        title.value = "Rotate TLS certificates (all regions)"
        await settle(pilot)
        await pilot.press("ctrl+j")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmModal), what="confirmation")
        await settle(pilot)
        assert "Save and resubmit" in screen_text(app)
        await pilot.press("y")
        await wait_for(pilot, lambda: bool(calls), what="the fan-out")
        assert calls == [("resubmit", SUBMITTED_ID)]


async def test_a_change_opened_from_another_changes_detail_stacks_a_second_detail(tmp_path: Path) -> None:
    app = fake_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_detail(pilot, SUBMITTED_ID)
        await open_detail(pilot, APPROVED_ID)  # e.g. `:open` or the audit screen's `o`
        details = [s for s in app.screen_stack if isinstance(s, DetailScreen)]
        assert [d.change_id for d in details] == [SUBMITTED_ID, APPROVED_ID]
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is details[0], what="back to the first change")
