"""Pilot tests of the contacts view (one customer's contacts by topic) against the moto server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual.widgets import DataTable, Input, Select, Static

from changeconsole.models import TOPIC_ANNOUNCE, TOPIC_APPROVAL
from changeconsole.screens.contacts import ContactFormModal, ContactsScreen
from changeconsole.screens.customers import CustomerDetailScreen, CustomersScreen
from changeconsole.screens.modals import ConfirmModal, PathModal
from changeconsole.services.aws import AwsFactory
from changeconsole.services.bundle import Services
from changeconsole.services.contact_admin import ContactBook
from changeconsole.services.localstack import contact_address
from support.console import console_app, settle, show
from support.waiting import wait_for


@pytest.fixture
def services(make_stack: Any, aws_factory: AwsFactory) -> Services:
    stack = make_stack(customers=2, contacts=5)
    return Services(aws_factory, stack.config)


def book(services: Services, code: str = "acme") -> ContactBook:
    return ContactBook(services.aws, services.config, code, operator="test", rate=None)


def rows(screen: ContactsScreen) -> list[str]:
    table = screen.query_one("#contacts-table", DataTable)
    return [str(k.value) for k in table.rows]


def status(screen: ContactsScreen) -> str:
    return str(screen.query_one("#contacts-status", Static).render())


async def loaded(pilot: Any, screen: ContactsScreen) -> None:
    await wait_for(pilot, lambda: screen.idle and screen.book is not None, what="contacts loaded")


async def test_toggle_filter_add_edit_remove(services: Services) -> None:
    screen = ContactsScreen("acme")
    app = console_app(services)
    async with app.run_test(size=(140, 40)) as pilot:
        await show(pilot, screen)
        await loaded(pilot, screen)
        assert len(rows(screen)) == 5
        assert [t.name for t in screen.topics] == ["aws-approval", "aws-announce", "aws-calendar"]
        summary = str(screen.query_one("#contacts-summary", Static).render())
        assert "changeconsole (the account's only contact list) · 5 contacts" in summary

        # Filter, then back to every row.
        await pilot.press("slash", *"jordan", "enter")
        assert rows(screen) == [contact_address("acme", 2).casefold()]
        await pilot.press("slash", "escape")  # escape in the filter clears it
        assert len(rows(screen)) == 5

        # Toggle: sam (no preference: announce by default) on the announce column.
        sam = contact_address("acme", 1)
        # The cursor stayed on jordan through the filter; walk to sam's row.
        assert screen.table.cursor_coordinate == (
            rows(screen).index(contact_address("acme", 2).casefold()),
            0,
        )
        steps = rows(screen).index(sam.casefold()) - screen.table.cursor_coordinate.row
        await pilot.press(*(["down"] * steps if steps > 0 else ["up"] * -steps), "right", "right")
        assert screen._selected() is not None and screen._selected().email == sam  # type: ignore[union-attr]
        await pilot.press("space")
        await wait_for(pilot, lambda: screen.idle and TOPIC_ANNOUNCE in screen.views[sam].preferences)
        found = book(services).find(sam)
        assert found is not None and found.preferences == {TOPIC_ANNOUNCE: "OPT_OUT"}
        assert "aws-announce: default → OPT_OUT" in status(screen)
        cell = str(screen.query_one("#contacts-table", DataTable).get_cell(sam.casefold(), TOPIC_ANNOUNCE))
        assert cell == "● out"

        # Add: the form's defaults are "no preference".
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, ContactFormModal))
        await pilot.press(*"new.person@acme.example.com", "enter")
        await wait_for(pilot, lambda: screen.idle and "new.person@acme.example.com" in screen.views)
        added = book(services).find("new.person@acme.example.com")
        assert added is not None and added.preferences == {}

        # Edit: approval becomes an explicit OPT_IN.
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, ContactFormModal))
        app.screen.query_one(f"#topic-{TOPIC_APPROVAL}", Select).value = "OPT_IN"
        await pilot.click("#save")
        await wait_for(pilot, lambda: screen.idle and screen.views["new.person@acme.example.com"].preferences)
        edited = book(services).find("new.person@acme.example.com")
        assert edited is not None and edited.preferences == {TOPIC_APPROVAL: "OPT_IN"}

        # Remove asks first (danger): n keeps it, y removes it.
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmModal))
        assert app.screen.danger
        await pilot.press("n")
        await wait_for(pilot, lambda: app.screen is screen)
        assert book(services).find("new.person@acme.example.com") is not None
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmModal))
        await pilot.press("y")
        await wait_for(pilot, lambda: screen.idle and "new.person@acme.example.com" not in screen.views)
        assert book(services).find("new.person@acme.example.com") is None
        # Nothing reached the other customer's account.
        assert all(c.email.endswith("@globex.example.com") for c in book(services, "globex").contacts())


async def test_import_with_dry_run_and_confirmation_then_export(services: Services, tmp_path: Path) -> None:
    source = tmp_path / "contacts.csv"
    source.write_text(
        "email,aws-approval,aws-calendar\n"
        "imported.one@acme.example.com,OPT_IN,\n"
        f"{contact_address('acme', 0)},OPT_OUT,\n"
        "broken,,\n"
    )
    screen = ContactsScreen("acme")
    app = console_app(services)
    async with app.run_test(size=(140, 40)) as pilot:
        await show(pilot, screen)
        await loaded(pilot, screen)
        await pilot.press("right")  # the status line explains the approval cell under the cursor
        await wait_for(pilot, lambda: "aws-approval:" in status(screen))
        await pilot.press("i")
        await wait_for(pilot, lambda: isinstance(app.screen, PathModal))
        app.screen.query_one(Input).value = str(source)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmModal))
        body = app.screen.body
        assert "1 created, 1 updated, 1 invalid" in body and "line 4" in body
        assert app.screen.danger  # it changes existing contacts
        assert book(services).find("imported.one@acme.example.com") is None  # the dry run wrote nothing
        await pilot.press("y")
        await wait_for(pilot, lambda: screen.idle and "imported.one@acme.example.com" in screen.views)
        assert screen.last_import is not None and screen.last_import.applied == 2
        await settle(pilot)  # the reload puts the cursor back: the import result stays on the status line
        assert "imported: 1 created, 1 updated, 1 invalid; 2 written" in status(screen)
        first = book(services).find(contact_address("acme", 0))
        assert first is not None and first.preferences[TOPIC_APPROVAL] == "OPT_OUT"

        target = tmp_path / "out.csv"
        await pilot.press("o")
        await wait_for(pilot, lambda: isinstance(app.screen, PathModal))
        app.screen.query_one(Input).value = str(target)
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.idle and target.exists())
        assert target.read_text().count("\n") == 7  # header + 6 contacts
        assert "wrote 6 contact(s)" in status(screen)


async def test_readonly_hides_and_refuses_every_change(make_stack: Any, aws_factory: AwsFactory) -> None:
    stack = make_stack(customers=1, contacts=2)
    services = Services(aws_factory, stack.config, readonly=True)
    screen = ContactsScreen("acme")
    app = console_app(services)
    async with app.run_test(size=(140, 40)) as pilot:
        await show(pilot, screen)
        await loaded(pilot, screen)
        for action in ("toggle_topic", "add", "edit", "remove", "import_file"):
            assert screen.check_action(action, ()) is False
        assert screen.check_action("export_file", ()) is True
        await pilot.press("right", "space", "a", "x", "i")
        await pilot.pause()
        assert app.screen is screen
        assert all(not v.preferences or v.email != contact_address("acme", 1) for v in screen.views.values())
        screen.action_add()  # even called directly
        await pilot.pause()
        assert app.screen is screen
        assert "read-only: changes are disabled" in str(
            screen.query_one("#contacts-summary", Static).render()
        )


async def test_customers_screen_verifies_and_opens_contacts(services: Services) -> None:
    screen = CustomersScreen()
    app = console_app(services)
    async with app.run_test(size=(140, 40)) as pilot:
        await show(pilot, screen)
        await wait_for(pilot, lambda: screen.idle and len(screen.stats) == 2)
        await pilot.press("v")
        await wait_for(pilot, lambda: screen.idle and "acme" in screen.checks)
        assert str(screen.table.get_cell("acme", "check")).strip() == screen.checks["acme"].status == "warn"
        await pilot.press("V")
        await wait_for(pilot, lambda: screen.idle and len(screen.checks) == 2)
        await pilot.press("C")
        await wait_for(pilot, lambda: isinstance(app.screen, ContactsScreen))
        contacts = app.screen
        assert isinstance(contacts, ContactsScreen) and contacts.code == "acme"
        await loaded(pilot, contacts)
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, CustomerDetailScreen))
        detail = app.screen
        assert isinstance(detail, CustomerDetailScreen)
        await pilot.press("v")
        await wait_for(pilot, lambda: not detail.checking and detail.check is not None)
        title = str(detail.query_one("#customer-checks-title", Static).render())
        assert title.startswith("Checks  warn")
        checks = detail.query_one("#customer-checks", DataTable)
        assert checks.row_count == 10 and str(checks.get_cell("contact_list", "status")) == "ok"
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, ContactsScreen))
