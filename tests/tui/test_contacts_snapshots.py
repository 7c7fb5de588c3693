"""Snapshots of the contacts view (fixed data, no timers)."""

from __future__ import annotations

from typing import Any

from textual.pilot import Pilot

from changeconsole.screens.contacts import ContactsScreen
from changeconsole.services.contact_admin import ContactView, TopicInfo
from changeconsole.services.contacts import ContactListChoice
from support.console import FakeServices, console_app, settle, show
from support.waiting import wait_for

TOPICS = [
    TopicInfo("aws-approval", "Change Approval Requests", "OPT_OUT"),
    TopicInfo("aws-announce", "Change Announcements", "OPT_IN"),
    TopicInfo("aws-calendar", "Change Calendar Invites", "OPT_OUT"),
    TopicInfo("finops-announce", "FinOps Announcements", "OPT_OUT"),
]


def view(email: str, prefs: dict[str, str], unsub: bool = False) -> ContactView:
    defaults = {t.name: t.default for t in TOPICS}
    subscribed = {t: not unsub and prefs.get(t, defaults[t]) == "OPT_IN" for t in defaults}
    return ContactView(email, unsub, prefs, subscribed)


class FakeBook:
    choice = ContactListChoice("ccoe-customer-contacts", "the account's only contact list", True, ("x",))

    def views(self) -> tuple[list[TopicInfo], list[ContactView]]:
        return TOPICS, [
            view("ana.silva@acme.example.com", {"aws-approval": "OPT_IN", "aws-calendar": "OPT_IN"}),
            view("ben.okafor@acme.example.com", {}),
            view("cara.lind@acme.example.com", {"aws-announce": "OPT_OUT", "finops-announce": "OPT_IN"}),
            view("dev.null@acme.example.com", {"aws-approval": "OPT_IN"}, unsub=True),
        ]


def services(readonly: bool = False) -> FakeServices:
    return FakeServices(readonly=readonly, contact_book=lambda code: FakeBook())


def test_contacts_view(snap_compare: Any) -> None:
    screen = ContactsScreen("acme")

    async def loaded(pilot: Pilot[Any]) -> None:
        await show(pilot, screen)
        await wait_for(pilot, lambda: screen.idle and screen.book is not None)
        await pilot.press("down", "down", "right", "right")
        await settle(pilot)

    assert snap_compare(console_app(services()), terminal_size=(120, 24), run_before=loaded)


def test_contacts_view_readonly(snap_compare: Any) -> None:
    screen = ContactsScreen("acme")

    async def loaded(pilot: Pilot[Any]) -> None:
        await show(pilot, screen)
        await wait_for(pilot, lambda: screen.idle and screen.book is not None)
        await settle(pilot)

    assert snap_compare(console_app(services(readonly=True)), terminal_size=(120, 24), run_before=loaded)
