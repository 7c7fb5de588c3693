"""Compose: inline validation naming each field, local time → UTC, customer picker, load from file,
draft save (local stack), autosave and recovery, leaving with unsaved edits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from textual import events
from textual.widgets import Input, TextArea

from changeconsole.app import ChangeConsoleApp
from changeconsole.screens.changes import ChangesScreen
from changeconsole.screens.compose import ComposeScreen, parse_local
from changeconsole.screens.modals import ChoiceModal
from changeconsole.services.autosave import AutosaveStore
from changeconsole.services.bundle import Services
from changeconsole.services.localstack import local_factory
from changeconsole.widgets.inputs import PathSuggester, TimezoneSuggester
from support.console import NEW_ID, fake_app, open_compose, screen_text, settle
from support.waiting import wait_for

SIZES = [pytest.param((120, 40), id="120x40"), pytest.param((80, 24), id="80x24")]


def field(app: Any, key: str) -> Input:
    return app.screen.query_one(f"#f-{key}", Input)


async def fill_invalid(pilot: Any) -> None:
    app = pilot.app
    field(app, "start_date").value = "2026-12-01"
    field(app, "start_time").value = "22:00"
    field(app, "end_date").value = "2026-12-01"
    field(app, "end_time").value = "21:00"
    field(app, "snow_ticket").value = "CHG\x07bell"
    await pilot.press("ctrl+s")
    await settle(pilot)


def test_parse_local_converts_and_names_problems() -> None:
    utc, problem = parse_local("2026-07-01", "22:00", "Europe/London")
    assert problem is None and utc is not None and utc.isoformat() == "2026-07-01T21:00:00+00:00"
    assert parse_local("2026-13-01", "22:00", "UTC")[1] == "date '2026-13-01' is not YYYY-MM-DD"
    assert parse_local("2026-03-29", "01:30", "Europe/London")[1] == (
        "2026-03-29 01:30 does not exist in Europe/London (clocks skip it)"
    )
    assert parse_local("2026-01-01", "", "UTC")[1] == "enter both a date (YYYY-MM-DD) and a time (HH:MM)"
    assert parse_local("", "", "UTC") == (None, None)


async def test_validation_names_each_field_and_keeps_input(tmp_path: Path) -> None:
    app = fake_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_compose(pilot)
        await fill_invalid(pilot)
        text = screen_text(app)
        assert "⚠ Title: required" in text
        assert "⚠ End: must be after the start" in text
        assert "⚠ Customers: pick at least one customer" in text
        assert "⚠ ServiceNow ticket: ticket must be a single line without" in text
        assert screen.problems["snow_ticket"] == "ticket must be a single line without control characters"
        assert "problems to fix: Title, End, Customers, ServiceNow ticket" in text
        assert app.services.changes.calls == []  # nothing saved
        # Nothing typed was dropped.
        assert field(app, "end_time").value == "21:00"
        assert field(app, "snow_ticket").value == "CHG\x07bell"
        # Fixing a field clears its message.
        field(app, "end_time").value = "23:30"
        field(app, "timezone").value = "Mars/Olympus"
        await settle(pilot)
        assert "End:" not in screen_text(app)
        assert "⚠ Timezone: unknown IANA timezone 'Mars/Olympus'" in screen_text(app)
        assert screen.problems["timezone"].startswith("unknown IANA timezone")


async def test_utc_preview_and_submit_needs_a_window(tmp_path: Path) -> None:
    app = fake_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_compose(pilot)
        app.screen.query_one("#f-title", Input).focus()
        await pilot.press(*"Patch VPN")
        field(app, "start_date").value = "2026-07-01"
        field(app, "start_time").value = "22:00"
        field(app, "end_date").value = "2026-07-02"
        field(app, "end_time").value = "01:00"
        await settle(pilot)
        assert "UTC: start 2026-07-01T21:00:00Z · end 2026-07-02T00:00:00Z · 3h 00m" in screen_text(app)
        field(app, "end_date").value = ""
        field(app, "end_time").value = ""
        app.screen.action_select_all_customers()
        await pilot.press("ctrl+j")
        await settle(pilot)
        assert "⚠ End: required to submit" in screen_text(app)
        assert isinstance(app.screen, ComposeScreen)


async def test_customer_picker_filter_all_clear(tmp_path: Path) -> None:
    app = fake_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_compose(pilot)
        app.screen.query_one("#customer-filter", Input).value = "corp"
        await settle(pilot)
        assert "0 of 6 selected · 3 shown" in screen_text(app)
        screen.query_one("#customers").focus()
        await pilot.press("a")
        await settle(pilot)
        assert screen.selected == {"acme", "globex", "umbrella"}
        app.screen.query_one("#customer-filter", Input).value = ""
        await settle(pilot)
        assert "3 of 6 selected" in screen_text(app)
        screen.query_one("#customers").focus()
        await pilot.press("home", "down", "space")  # globex off
        await settle(pilot)
        assert screen.selected == {"acme", "umbrella"}
        await pilot.press("c")
        await settle(pilot)
        assert screen.selected == set()
        assert "⚠ Customers: pick at least one customer" in screen_text(app)


async def test_load_from_json_file(tmp_path: Path) -> None:
    good = tmp_path / "change.json"
    good.write_text(
        json.dumps(
            {
                "changeTitle": "Rotate keys",
                "customers": ["acme", "initech"],
                "implementationStart": "2026-12-01T22:00:00Z",
                "implementationEnd": "2026-12-02T02:00:00Z",
                "timezone": "America/New_York",
                "implementationPlan": "step 1\nstep 2",
                "x_custom": {"kept": True},
            }
        )
    )
    bad = tmp_path / "broken.json"
    bad.write_text("{not json")
    app = fake_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_compose(pilot)
        field(app, "title").value = "typed before"
        path = app.screen.query_one("#file-path", Input)
        path.focus()
        path.value = str(bad)
        await pilot.press("enter")
        await settle(pilot)
        assert "⚠ Load from file: " in screen_text(app)
        assert f"{bad} is not JSON: Expecting property name" in str(screen.query_one("#e-file").content)
        assert field(app, "title").value == "typed before"
        path.value = str(good)
        await pilot.press("enter")
        await settle(pilot)
        assert field(app, "title").value == "Rotate keys"
        assert field(app, "start_date").value == "2026-12-01"
        assert field(app, "start_time").value == "17:00"  # New York
        assert screen.query_one("#f-implementation_plan", TextArea).text == "step 1\nstep 2"
        assert screen.selected == {"acme", "initech"}
        change, problems = screen.build(for_submit=True)
        assert problems == {} and change is not None
        assert change.model_extra == {"x_custom": {"kept": True}}
        assert change.change_id == NEW_ID


async def test_path_and_timezone_completion(tmp_path: Path) -> None:
    (tmp_path / "changes").mkdir()
    (tmp_path / "changes" / "rotate.json").write_text("{}")
    (tmp_path / "changes" / "notes.txt").write_text("")
    suggester = PathSuggester()
    assert await suggester.get_suggestion(str(tmp_path / "cha")) == str(tmp_path / "changes") + "/"
    assert await suggester.get_suggestion(str(tmp_path / "changes") + "/") == str(
        tmp_path / "changes" / "rotate.json"
    )
    assert await suggester.get_suggestion(str(tmp_path / "changes" / "no")) is None
    assert await TimezoneSuggester().get_suggestion("europe/lon") == "Europe/London"


async def test_tab_takes_the_path_completion_in_the_file_input(tmp_path: Path) -> None:
    (tmp_path / "rotate.json").write_text("{}")
    app = fake_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_compose(pilot)
        path = app.screen.query_one("#file-path", Input)
        path.focus()
        await pilot.press(*str(tmp_path / "rot"))
        await wait_for(pilot, lambda: path._suggestion.endswith("rotate.json"), what="suggestion")
        await pilot.press("tab")
        assert path.value == str(tmp_path / "rotate.json") and app.focused is path
        await pilot.press("tab")  # nothing more to complete: Tab moves on
        assert app.focused is not path


async def test_keys_typed_ahead_after_tab_land_in_the_next_field(tmp_path: Path) -> None:
    app = fake_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_compose(pilot)
        app.screen.query_one("#f-title", Input).focus()
        await settle(pilot)
        # Posted in one burst, as a fast typist (or a paste over a slow link) delivers them.
        keys = [("a", "a"), ("b", "b"), ("tab", None), ("2", "2"), ("0", "0"), ("tab", None), ("tab", None)]
        keys += [("shift+tab", None), ("9", "9")]
        for key, char in keys:
            app.post_message(events.Key(key, char))
        await settle(pilot)
        assert field(app, "title").value == "ab"
        assert field(app, "start_date").value == "20"
        assert field(app, "start_time").value == "9"


async def test_autosave_and_recovery(tmp_path: Path) -> None:
    app = fake_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_compose(pilot)
        screen.query_one("#f-title", Input).focus()
        await pilot.press(*"Half-written notice")
        field(app, "start_date").value = "2026-12-01"
        await settle(pilot)
        assert await screen.autosave_now()
        assert "autosaved 20:00:00Z" in screen_text(app)
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceModal), what="unsaved-edits question")
        await settle(pilot)
        assert "has edits that are not saved" in screen_text(app)
        await pilot.click("#choice-keep")
        await wait_for(pilot, lambda: isinstance(app.screen, ChangesScreen), what="back home")
    saved = AutosaveStore(tmp_path / "autosave").load_sync("new-" + NEW_ID)
    assert saved is not None and saved["title"] == "Half-written notice"

    app = fake_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceModal), what="restore offer")
        await settle(pilot)
        assert "Unsaved edits of Half-written notice" in screen_text(app)
        await pilot.click("#choice-restore")
        await wait_for(pilot, lambda: isinstance(app.screen, ComposeScreen), what="compose")
        await settle(pilot)
        assert field(app, "title").value == "Half-written notice"
        assert field(app, "start_date").value == "2026-12-01"
        assert "⚠ Start: enter both a date (YYYY-MM-DD) and a time (HH:MM)" in screen_text(app)


async def test_quitting_keeps_an_autosave(tmp_path: Path) -> None:
    app = fake_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_compose(pilot)
        screen.query_one("#f-title", Input).focus()
        await pilot.press(*"Typed then quit")
        await settle(pilot)
        await pilot.press("ctrl+q")
    saved = AutosaveStore(tmp_path / "autosave").load_sync("new-" + NEW_ID)
    assert saved is not None and saved["title"] == "Typed then quit"


async def test_discard_asks_then_deletes_autosave(tmp_path: Path) -> None:
    app = fake_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_compose(pilot)
        screen.query_one("#f-title", Input).focus()
        await pilot.press(*"Throwaway")
        await settle(pilot)
        await screen.autosave_now()
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceModal), what="question")
        await pilot.press("escape")  # = keep editing
        await wait_for(pilot, lambda: isinstance(app.screen, ComposeScreen), what="back to the form")
        assert field(app, "title").value == "Throwaway"
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceModal), what="question")
        await pilot.click("#choice-discard")
        await wait_for(pilot, lambda: isinstance(app.screen, ChangesScreen), what="home")
    assert AutosaveStore(tmp_path / "autosave").list() == []


async def test_save_draft_on_local_stack(make_stack: Any, tmp_path: Path) -> None:
    stack = make_stack(customers=4, contacts=2)
    services = Services(local_factory(stack.endpoint, max_attempts=2, acting_as="carol"), stack.config)
    app = ChangeConsoleApp(
        services, live=False, autosave_interval=0, autosave=AutosaveStore(tmp_path / "autosave")
    )
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_compose(pilot)
        screen.query_one("#f-title", Input).focus()
        await pilot.press(*"Replace the NAT gateways")
        screen.selected = {"acme", "globex"}
        screen._rebuild_customers()
        await settle(pilot)
        await pilot.press("ctrl+s")
        await wait_for(
            pilot, lambda: "saved" in str(screen.query_one("#autosave-status").content), what="save"
        )
        change_id = screen.change_id
        stored = services.changes.load(change_id)
        assert stored.title == "Replace the NAT gateways"
        assert stored.customers == ["acme", "globex"]
        assert stored.status.value == "draft"
        assert stored.created_by == "carol"  # --as on the local stack
        await pilot.press("escape")  # nothing unsaved: leaves at once
        await wait_for(pilot, lambda: isinstance(app.screen, ChangesScreen), what="home")
        await wait_for(pilot, lambda: change_id in screen_text(app), what="the draft in the list")
        # Open it again: detail → edit loads every field.
        await pilot.press("1", "enter")
        await wait_for(pilot, lambda: "Replace the NAT gateways" in screen_text(app), what="detail")
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, ComposeScreen), what="compose")
        await settle(pilot)
        assert field(app, "title").value == "Replace the NAT gateways"
        assert app.screen.selected == {"acme", "globex"}  # type: ignore[attr-defined]


@pytest.mark.parametrize("size", SIZES)
def test_snapshot_compose_new(snap_compare: Any, tmp_path: Path, size: tuple[int, int]) -> None:
    async def run_before(pilot: Any) -> None:
        await open_compose(pilot)

    assert snap_compare(fake_app(tmp_path), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_snapshot_compose_invalid(snap_compare: Any, tmp_path: Path, size: tuple[int, int]) -> None:
    async def run_before(pilot: Any) -> None:
        await open_compose(pilot)
        await fill_invalid(pilot)

    assert snap_compare(fake_app(tmp_path), terminal_size=size, run_before=run_before)
