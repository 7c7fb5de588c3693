"""The console by role: keys the roles do not allow are disabled and say why (on a key press and in
help), the audit screen, an operator without any role, and the real services refusing on moto."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual.widgets import DataTable, Input

from changeconsole.app import ChangeConsoleApp
from changeconsole.commands import console_commands
from changeconsole.errors import NotAuthorized
from changeconsole.models import Config
from changeconsole.screens.audit import AuditScreen
from changeconsole.screens.compose import ComposeScreen
from changeconsole.screens.detail import DetailScreen
from changeconsole.screens.help import HelpScreen
from changeconsole.screens.modals import ConfirmModal, StartupErrorScreen
from changeconsole.services.bundle import Services
from changeconsole.services.lifecycle import ChangeService
from changeconsole.services.localstack import local_factory
from support.aws import audit_events
from support.changes import make_change
from support.console import (
    SUBMITTED_ID,
    FakeServices,
    fake_app,
    open_detail,
    screen_text,
    settle,
)
from support.waiting import wait_for

ROLES: dict[str, Any] = {
    "ChangeManagers": {"principals": ["user:alice", "user:bob"]},
    "RegionalChangeManagers": {
        "principals": ["user:rita"],
        "customers": ["acme", "globex"],
        "actions": ["change.draft", "change.submit"],
    },
    "CustomerManagers": {"principals": ["user:erin"], "customers": ["acme"]},
    "Auditors": ["user:ada"],
}


def as_operator(tmp_path: Path, name: str, **kwargs: Any) -> ChangeConsoleApp:
    return fake_app(tmp_path, services=FakeServices(operator=name, operator_roles=ROLES, **kwargs))


async def test_an_auditor_reads_but_changes_nothing_and_is_told_why(tmp_path: Path) -> None:
    app = as_operator(tmp_path, "ada")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_detail(pilot, SUBMITTED_ID)
        text = screen_text(app)
        assert "operator ada · Auditors" in text
        assert "Not allowed for you: approve, cancel, edit, duplicate" in text
        assert screen.check_action("approve", ()) is None  # shown disabled, not hidden
        await pilot.press("a")
        await settle(pilot)
        assert isinstance(app.screen, DetailScreen), "no confirmation: the action never starts"
        assert any(
            "change.approve needs ChangeManagers; ada has Auditors" in n.message for n in app._notifications
        )
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), what="help")
        help_screen = app.screen
        assert isinstance(help_screen, HelpScreen) and help_screen.operator == "ada (Auditors)"
        reasons = {keys: why for keys, _what, why in help_screen.refusals}
        assert reasons["a"] == "change.approve needs ChangeManagers; ada has Auditors"
        assert set(reasons) >= {"a", "x", "e", "d"}
        names = {c.name for c in console_commands(app)}
        assert "Audit trail" in names and "New change" not in names


async def test_separation_of_duties_and_scope_in_the_console(tmp_path: Path) -> None:
    # alice submitted v3 of SUBMITTED_ID: with separation of duties she cannot approve it; bob can.
    app = as_operator(tmp_path, "alice", require_distinct_approver=True)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_detail(pilot, SUBMITTED_ID)
        decision = screen.permission("approve")
        assert decision is not None and "separation of duties: alice submitted v3" in decision.reason
        assert screen.check_action("cancel_change", ()) is True
        names = {c.name for c in console_commands(app)}
        assert "Audit trail" not in names
        app.run_command("audit")
        await settle(pilot)
        assert not isinstance(app.screen, AuditScreen)
        assert any("audit.read needs Auditors" in n.message for n in app._notifications)
    app = as_operator(tmp_path, "bob", require_distinct_approver=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_detail(pilot, SUBMITTED_ID)
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmModal), what="approve confirmation")


async def test_a_scoped_change_manager_sees_customers_outside_the_scope(tmp_path: Path) -> None:
    app = as_operator(tmp_path, "rita")
    async with app.run_test(size=(120, 40)) as pilot:
        detail = await open_detail(pilot, SUBMITTED_ID)  # acme, globex, initech
        assert detail.check_action("edit", ()) is None and "cancel" in screen_text(app)
        await pilot.press("escape")
        await settle(pilot)
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, ComposeScreen), what="compose")
        compose = app.screen
        assert isinstance(compose, ComposeScreen)
        compose.selected = {"acme", "hooli"}
        compose._rebuild_customers()
        await settle(pilot)
        assert "outside your scope: hooli" in screen_text(app)
        assert compose.check_action("submit", ()) is None
        compose.selected = {"acme"}
        compose._rebuild_customers()
        await settle(pilot)
        assert compose.check_action("submit", ()) is True


async def test_an_operator_without_any_role_is_stopped_at_startup(tmp_path: Path) -> None:
    app = as_operator(tmp_path, "nina")
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, StartupErrorScreen), what="no role screen")
        await wait_for(pilot, lambda: "No changeconsole role for nina" in screen_text(app), what="the reason")
        assert "nina has no role" in screen_text(app)


async def test_audit_screen_filters(tmp_path: Path) -> None:
    app = as_operator(tmp_path, "ada")
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        app.run_command(f"audit {SUBMITTED_ID}")
        await wait_for(pilot, lambda: isinstance(app.screen, AuditScreen), what="audit screen")
        screen = app.screen
        assert isinstance(screen, AuditScreen)
        await wait_for(pilot, lambda: screen.result is not None, what="records")
        assert screen.table.row_count == 2  # the two records of that change
        assert '"result": "refused"' in screen_text(app) or "refused" in screen_text(app)
        await pilot.press("slash")
        bar = screen.query_one("#audit-filter", Input)
        bar.value = "result:refused"
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.idle and screen.table.row_count == 2, what="refusals")
        operators = {screen.entries[str(k.value)].operator for k in screen.table.rows}
        assert operators == {"alice", "erin"}
        await pilot.press("slash")
        bar.value = "dlq"
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.idle and screen.table.row_count == 1, what="legacy dlq record")
        entry = next(iter(screen.entries.values()))
        assert (entry.action, entry.operator, entry.customers) == ("dlq.purge", "bob", ["hooli"])
        await pilot.press("slash")
        bar.value = "since:nonsense"
        await pilot.press("enter")
        await settle(pilot)
        assert "not a time: 'nonsense'" in screen_text(app)


def test_snapshot_audit_screen_as_auditor(snap_compare: Any, tmp_path: Path) -> None:
    async def run_before(pilot: Any) -> None:
        await settle(pilot)
        pilot.app.open_audit()
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, AuditScreen), what="audit")
        await settle(pilot)
        pilot.app.screen.query_one(DataTable).move_cursor(row=2)
        await settle(pilot)

    assert snap_compare(as_operator(tmp_path, "ada"), terminal_size=(120, 40), run_before=run_before)


def test_snapshot_detail_as_auditor(snap_compare: Any, tmp_path: Path) -> None:
    async def run_before(pilot: Any) -> None:
        await open_detail(pilot, SUBMITTED_ID)
        await pilot.press("question_mark")
        await settle(pilot)

    assert snap_compare(as_operator(tmp_path, "ada"), terminal_size=(120, 48), run_before=run_before)


# -- the real services on moto ------------------------------------------------------------------------------


@pytest.fixture
def roles_config(make_stack: Any) -> tuple[Config, str]:
    stack = make_stack(customers=3, contacts=0)
    data = stack.config.to_json_dict()
    data["operator_roles"] = {"ChangeManagers": ["user:carol"], "Auditors": ["user:ada"]}
    return Config.model_validate(data), stack.endpoint


async def test_the_auditor_finds_the_change_managers_actions(roles_config: tuple[Config, str]) -> None:
    config, endpoint = roles_config
    carol = ChangeService(local_factory(endpoint, max_attempts=1, acting_as="carol"), config)
    change = carol.save_draft(make_change(sorted(config.customer_mappings)[:2]))
    carol.submit(change.change_id)
    services = Services(local_factory(endpoint, max_attempts=1, acting_as="ada"), config)
    with pytest.raises(NotAuthorized, match="ada has Auditors"):
        services.changes.approve(change.change_id)
    app = ChangeConsoleApp(services, live=False, autosave_interval=0)
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_for(pilot, lambda: app.roles_known, what="roles")
        # A disabled key pressed is an attempt: refused, and recorded like any refusal.
        await open_detail(pilot, change.change_id)
        await pilot.press("x")
        await wait_for(
            pilot,
            lambda: any(
                e["action"] == "change.cancel" and e["result"] == "refused"
                for e in audit_events(services.aws, config)
            ),
            what="the console's refusal recorded",
        )
        app.open_audit(change.change_id)
        await wait_for(pilot, lambda: isinstance(app.screen, AuditScreen), what="audit screen")
        screen = app.screen
        assert isinstance(screen, AuditScreen)
        await wait_for(pilot, lambda: screen.result is not None and screen.idle, what="records")
        rows = {(e.operator, e.action, e.result) for e in screen.entries.values()}
        assert rows == {
            ("carol", "change.draft", "ok"),
            ("carol", "change.submit", "ok"),
            ("ada", "change.approve", "refused"),
            ("ada", "change.cancel", "refused"),
        }
        cancel = next(e for e in screen.entries.values() if e.action == "change.cancel")
        assert cancel.raw["via"] == "console" and cancel.customers == sorted(change.customers)
        await pilot.press("o")
        await wait_for(pilot, lambda: isinstance(app.screen, DetailScreen), what="the change")
        assert app.screen.change_shown() == change.change_id
