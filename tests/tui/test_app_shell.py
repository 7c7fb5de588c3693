"""The shell: help from live bindings, palette, `:` command line, read-only, AWS call log, startup."""

from __future__ import annotations

import inspect
import json
import socket
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from textual.widgets import DataTable, Input

import changeconsole
from changeconsole.app import (
    AwsCallLog,
    ChangeConsoleApp,
    ConsoleAwsFactory,
    Startup,
    StartupFailed,
    bootstrap,
)
from changeconsole.cli.common import CliState
from changeconsole.commands import screen_commands
from changeconsole.models import Change
from changeconsole.screens.audit import AuditScreen
from changeconsole.screens.changes import ChangesScreen
from changeconsole.screens.compose import ComposeScreen
from changeconsole.screens.contacts import ContactsScreen
from changeconsole.screens.customers import CustomerDetailScreen, CustomersScreen
from changeconsole.screens.dashboard import DashboardScreen
from changeconsole.screens.delivery import DeliveryDetailScreen
from changeconsole.screens.detail import DetailScreen
from changeconsole.screens.dlq import DlqScreen
from changeconsole.screens.help import HelpScreen, group_bindings
from changeconsole.screens.modals import CommandLine, StartupErrorScreen
from changeconsole.screens.preview import PreviewScreen
from changeconsole.screens.progress import SubmitProgressScreen
from changeconsole.screens.status import LiveStatusScreen
from changeconsole.services.aws import AwsSettings
from changeconsole.services.bundle import Services
from changeconsole.services.localstack import is_listening
from support.console import DONE_ID, SUBMITTED_ID, FakeServices, fake_app, screen_text, settle
from support.waiting import wait_for, wait_until


def test_every_stylesheet_is_a_file_of_the_package_beside_its_module() -> None:
    package = Path(changeconsole.__file__).parent
    styled = [ChangeConsoleApp, LiveStatusScreen, DeliveryDetailScreen, SubmitProgressScreen]
    styled += [
        CustomersScreen,
        CustomerDetailScreen,
        DlqScreen,
        ContactsScreen,
        AuditScreen,
        PreviewScreen,
        DashboardScreen,
    ]
    for cls in styled:
        paths = cls.CSS_PATH if isinstance(cls.CSS_PATH, list) else [cls.CSS_PATH]
        for path in paths:
            sheet = Path(inspect.getfile(cls)).parent / str(path)
            assert sheet.is_file() and sheet.resolve().is_relative_to(package), (cls.__name__, path)
    assert len(list(package.rglob("*.tcss"))) == 12


async def test_help_is_built_from_the_live_bindings(tmp_path: Path) -> None:
    app = fake_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), what="help")
        await settle(pilot)
        text = screen_text(app)
        assert "Help — Changes" in text
        assert "n             New" in text and "/             Filter" in text
        groups = dict(group_bindings(app.screen.bindings_snapshot, app.get_key_display))  # type: ignore[attr-defined]
        assert ("s", "Sort by next column", True) in groups["Sort/reverse"]
        assert {d for _, d, _ in groups["Anywhere"]} >= {"Help", "Command", "AWS log", "Quit"}
        assert ("⏎", "Select", True) in groups["Focused widget"]  # the table's own keys
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, ChangesScreen), what="home")
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, ComposeScreen), what="compose")
        await settle(pilot)
        await pilot.press("f1")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), what="help")
        await settle(pilot)
        text = screen_text(app)
        assert "Help — Compose" in text
        groups = dict(group_bindings(app.screen.bindings_snapshot, app.get_key_display))  # type: ignore[attr-defined]
        mine = {d for _, d, _ in groups["This screen"]}
        assert {"Save draft", "Submit", "Jump to field", "Back"} <= mine
        assert "New" not in mine  # the list's keys are not the form's


async def test_palette_opens_new_change_and_changes_by_id(tmp_path: Path) -> None:
    app = fake_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+p")
        await settle(pilot)
        await pilot.press(*"New change")
        await settle(pilot)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ComposeScreen), what="compose")
        await settle(pilot)
        await pilot.press("escape")  # nothing typed: leaves at once
        await wait_for(pilot, lambda: isinstance(app.screen, ChangesScreen), what="home")
        await pilot.press("ctrl+p")
        await settle(pilot)
        await pilot.press(*"reporting database")
        await settle(pilot)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, DetailScreen), what="detail")
        assert app.screen.change_id == DONE_ID  # type: ignore[attr-defined]


async def test_command_line(tmp_path: Path) -> None:
    app = fake_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("colon")
        await wait_for(pilot, lambda: isinstance(app.screen, CommandLine), what="command line")
        await pilot.press(*"open CHG-2026-11-20", "tab")  # completes the id
        await settle(pilot)
        assert app.screen.query_one(Input).value == f"open {SUBMITTED_ID}"
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, DetailScreen), what="detail")
        app.run_command("bogus")
        await settle(pilot)
        assert any("Unknown command :bogus" in str(n.message) for n in app._notifications)
        app.run_command("changes")
        await wait_for(pilot, lambda: isinstance(app.screen, ChangesScreen), what="home")
        await pilot.press("colon", *"q", "enter")
        await wait_for(pilot, lambda: app.return_code is not None, what="exit")
    assert app.return_code == 0


async def test_readonly_console(tmp_path: Path) -> None:
    app = fake_app(tmp_path, readonly=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        text = screen_text(app)
        assert "READ-ONLY" in text
        assert " n New " not in text
        await pilot.press("n")
        await settle(pilot)
        assert isinstance(app.screen, ChangesScreen)
        app.run_command("new")
        await settle(pilot)
        assert isinstance(app.screen, ChangesScreen)
        messages = [str(n.message) for n in app._notifications]
        assert any("Read-only console: composing" in m for m in messages)
        await pilot.press("ctrl+p")
        await settle(pilot)
        await pilot.press(*"New change")
        await settle(pilot)
        assert "Compose a new change notice" not in screen_text(app)


async def test_aws_call_log_pane(make_stack: Any, tmp_path: Path) -> None:
    stack = make_stack(customers=2, contacts=1)
    log = AwsCallLog()
    # Not --local: the operator is who STS says, so GetCallerIdentity is among the calls.
    aws = ConsoleAwsFactory(AwsSettings(region="us-east-1", endpoint_url=stack.endpoint), log)
    services = Services(aws, stack.config)
    app = ChangeConsoleApp(services, live=False, call_log=log, autosave_interval=0)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        assert not app.screen.query_one("#call-log").display
        await pilot.press("ctrl+l")
        await settle(pilot)
        pane = app.screen.query_one("#call-log")
        assert pane.display
        rows = [
            [str(c) for c in row]
            for row in (
                pane.query_one(DataTable).get_row_at(i) for i in range(pane.query_one(DataTable).row_count)
            )
        ]
        operations = {(r[1], r[2], r[3]) for r in rows}
        assert ("sts", "GetCallerIdentity", "200") in operations
        assert ("dynamodb", "Query", "200") in operations
        assert all(r[4].isdigit() for r in rows)  # a duration in ms, never a payload
        await pilot.press("ctrl+l")
        await settle(pilot)
        assert not app.screen.query_one("#call-log").display


# -- startup -------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_missing_config_is_an_error_screen_not_a_traceback(tmp_path: Path) -> None:
    state = CliState(config_flag=str(tmp_path / "nope.json"))
    app = ChangeConsoleApp(bootstrap=lambda progress: bootstrap(state, AwsCallLog(), progress), live=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, StartupErrorScreen), what="error screen")
        await settle(pilot)
        text = screen_text(app)
        assert f"No config file (--config): {tmp_path / 'nope.json'}" in text
        assert "changeconsole --local" in text
        assert "Traceback" not in text
        await pilot.press("q")
        await wait_for(pilot, lambda: app.return_code is not None, what="exit")
    assert app.return_code == 1


def test_invalid_config_names_each_problem(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"aws_region": "moon-1", "customer_mappings": {}}))
    with pytest.raises(StartupFailed) as info:
        bootstrap(CliState(config_flag=str(path)), AwsCallLog(), lambda _: None)
    assert info.value.title == f"Invalid config (--config): {path}"
    assert any(p.startswith("aws_region:") for p in info.value.problems)
    assert any(p.startswith("s3_config:") for p in info.value.problems)


def test_local_reuses_a_running_stack(make_stack: Any, tmp_path: Path) -> None:
    stack = make_stack(customers=2, contacts=1)
    state = CliState(local=True, endpoint_url=stack.endpoint, config_flag=str(stack.config_path))
    lines: list[str] = []
    startup = bootstrap(state, AwsCallLog(), lines.append)
    try:
        assert len(startup.cleanup) == 1  # only our in-process worker; the stack is not ours to stop
        assert any("in-process worker started" in line for line in lines)
        assert startup.services.config.customer_mappings.keys() == stack.config.customer_mappings.keys()
        assert startup.services.aws.settings.endpoint_url == stack.endpoint
        assert "already running" in startup.notes[0]
    finally:
        for step in startup.cleanup:
            step()
    assert is_listening(urlsplit(stack.endpoint).hostname or "", urlsplit(stack.endpoint).port or 0)


def test_local_starts_provisions_and_stops_a_stack(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    port = _free_port()
    monkeypatch.setenv("CHANGECONSOLE_LOCAL_CUSTOMERS", "2")
    mine = tmp_path / "mine.json"
    mine.write_text('{"operator": "file"}')
    lines: list[str] = []
    state = CliState(
        local=True, endpoint_url=f"http://127.0.0.1:{port}", readonly=True, config_flag=str(mine)
    )
    startup = bootstrap(state, AwsCallLog(), lines.append)
    assert mine.read_text() == '{"operator": "file"}'  # never overwritten
    assert any("uses its own config" in note for note in startup.notes)
    try:
        assert is_listening("127.0.0.1", port)
        assert len(startup.services.config.customer_mappings) == 2
        assert startup.services.readonly
        # Defect 6 (issue 16): a read-only console runs no worker (it would consume queues and send).
        assert not any("worker" in line for line in lines)
        assert any("no worker runs" in note for note in startup.notes)
        assert startup.services.changes.list() == []  # the console's clients reach it
        assert any("no saved local data yet: it is kept in" in line for line in lines)
        draft = Change.model_validate(
            {"changeId": "CHG-2030-01-01T00-00-00-keep01", "changeTitle": "Kept", "customers": ["acme"]}
        )
        startup.services.changes.save_draft(draft)
    finally:
        for step in startup.cleanup:
            step()
    assert not is_listening("127.0.0.1", port)
    assert startup.local_data is not None and startup.local_data.is_file()

    # Started again: the data is back (issue 16: quitting no longer loses every change).
    lines.clear()
    again = bootstrap(state, AwsCallLog(), lines.append)
    try:
        assert [s.change_id for s in again.services.changes.list()] == [draft.change_id]
        assert any(line.startswith(f"local data restored from {again.local_data}") for line in lines)
        assert any(f"data is kept in {again.local_data}" in note for note in again.notes)
    finally:
        for step in again.cleanup:
            step()


def test_snapshot_help(snap_compare: Any, tmp_path: Path) -> None:
    async def run_before(pilot: Any) -> None:
        await settle(pilot)
        await pilot.press("f1")
        await settle(pilot)

    assert snap_compare(fake_app(tmp_path), terminal_size=(120, 40), run_before=run_before)


def test_snapshot_readonly(snap_compare: Any, tmp_path: Path) -> None:
    assert snap_compare(fake_app(tmp_path, readonly=True), terminal_size=(80, 24), run_before=settle)


@pytest.mark.parametrize("size", [pytest.param((120, 40), id="120x40"), pytest.param((80, 24), id="80x24")])
def test_snapshot_startup_error(snap_compare: Any, tmp_path: Path, size: tuple[int, int]) -> None:
    def failing(_: Any) -> Any:
        raise StartupFailed(
            "Invalid config (--config): /etc/changeconsole/config.json",
            [
                "aws_region: String should match pattern '^[a-z]{2}(-[a-z]+)+-\\d$'",
                "s3_config: Field required",
            ],
            "Fix each problem above (check with: changeconsole config validate), then press r to retry.",
        )

    async def run_before(pilot: Any) -> None:
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, StartupErrorScreen), what="error screen")
        await settle(pilot)

    app = ChangeConsoleApp(bootstrap=failing, live=False)
    assert snap_compare(app, terminal_size=size, run_before=run_before)


async def test_palette_offers_the_actions_of_the_screen(tmp_path: Path) -> None:
    from changeconsole.screens.modals import ConfirmModal

    app = fake_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        app.open_change(SUBMITTED_ID)
        await wait_for(pilot, lambda: isinstance(app.screen, DetailScreen), what="detail")
        await settle(pilot)
        names = {c.name for c in screen_commands(app.screen)}
        assert {"Approve", "Cancel change", "Edit", "Duplicate", "Live status"} <= names
        assert "Complete" not in names  # not allowed for a submitted change
        await pilot.press("ctrl+p")
        await settle(pilot)
        await pilot.press(*"Approve")
        await settle(pilot)
        assert "a on this screen" in screen_text(app)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmModal), what="approve confirmation")


async def test_quit_closes_the_ui_first_and_stops_the_stack_behind_it(tmp_path: Path) -> None:
    release, stopped = threading.Event(), []

    def slow_stop() -> None:  # a worker draining, a stack saving its data
        release.wait(10)
        stopped.append(True)

    startup = Startup(FakeServices(), [slow_stop])  # type: ignore[arg-type]
    app = ChangeConsoleApp(bootstrap=lambda _: startup, live=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ChangesScreen), what="home")
        await pilot.press("ctrl+q")
    assert stopped == []  # the UI is gone; nothing waited for the stop
    notices: list[str] = []
    behind = threading.Thread(target=app.run_cleanup, kwargs={"notice": notices.append, "after": 0.05})
    behind.start()
    wait_until(lambda: notices, 10, "the terminal told why it waits")
    assert notices[0].startswith("changeconsole: stopping the in-process worker and the local stack")
    release.set()
    behind.join(10)
    assert stopped == [True]
