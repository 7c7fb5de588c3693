"""Preview as the customer: the email one customer's recipients would get, and a test send of it.

The email comes from ``services.preview`` (the worker's own decision and rendering): subject, text,
the HTML part as readable text (``o`` opens the HTML itself in a browser), the calendar part, the
recipients after ``restricted_recipients`` with counts per topic, and the headers. ``[``/``]`` step
through the change's customers, ``e`` through the notices; ``t`` sends a test to one address.
"""

from __future__ import annotations

import tempfile
import webbrowser
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from rich.markup import escape
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.widgets import DataTable, Static, TabbedContent, TabPane

from ..models import Change, EmailEvent, OperatorAction
from ..services.preview import Preview, TestSend, default_event
from .base import ConsoleScreen
from .modals import InputModal

EVENTS = [EmailEvent.SUBMITTED, EmailEvent.APPROVED, EmailEvent.COMPLETED, EmailEvent.CANCELLED]
TABS = ("pv-text", "pv-html", "pv-calendar", "pv-recipients", "pv-headers")


def summary_text(p: Preview) -> Text:
    out = Text()
    out.append(f"{p.customer_name} ({p.customer})", style="bold")
    out.append(f"  ·  {p.event}")
    if p.calendar_method:
        out.append(f" + calendar {p.calendar_method}")
    out.append(f"  ·  v{p.version} {p.status}")
    if p.projected:
        out.append(" (as archived when it goes out)", style="dim")
    out.append(f"\nFrom {p.sender} · list {p.contact_list} ({p.total_contacts} contacts) · ")
    out.append(f"{len(p.recipients)} recipient(s): ", style="bold")
    out.append(", ".join(f"{t} {n}" for t, n in p.per_topic.items()))
    if p.restricted:
        out.append(f" · restricted_recipients left out {p.excluded_by_whitelist}", style="yellow")
    out.append("\nSubject: ", style="bold")
    out.append(p.subject)
    return out


class PreviewScreen(ConsoleScreen[None]):
    help_title = "Preview as the customer"
    CSS_PATH = "preview.tcss"
    MUTATING: ClassVar[frozenset[str]] = frozenset({"test_send"})
    REQUIRES: ClassVar[Mapping[str, OperatorAction]] = {"test_send": OperatorAction.CHANGE_TEST_SEND}
    BINDINGS = [
        Binding("left_square_bracket", "customer(-1)", "Previous customer", key_display="["),
        Binding("right_square_bracket", "customer(1)", "Next customer", key_display="]"),
        Binding("e", "next_event", "Next notice"),
        Binding("o", "open_html", "Open HTML"),
        Binding("t", "test_send", "Test send"),
        Binding("r", "refresh", "Reload"),
        *(Binding(str(i + 1), f"show_tab('{tab}')", show=False) for i, tab in enumerate(TABS)),
    ]

    def __init__(
        self, change: Change, *, customer: str | None = None, event: EmailEvent | None = None
    ) -> None:
        super().__init__(id="preview")
        self.change = change
        self.customers = list(change.customers)
        self.customer = (
            customer if customer in self.customers else (self.customers[0] if self.customers else "")
        )
        self.event = event or default_event(change)
        self.preview: Preview | None = None
        self.error: str | None = None

    def change_shown(self) -> str | None:
        return self.change.change_id

    def action_customers(self, action: str) -> list[str] | None:
        return [self.customer] if self.customer else None

    def compose_body(self) -> ComposeResult:
        with Vertical(id="preview-body"):
            yield Static("", id="preview-title")
            yield Static("Rendering…", id="preview-summary")
            with TabbedContent(initial="pv-text", id="preview-tabs"):
                with TabPane("1 Text", id="pv-text"), VerticalScroll():
                    yield Static("", id="preview-text", markup=False)
                with TabPane("2 HTML", id="pv-html"), VerticalScroll():
                    yield Static("", id="preview-html", markup=False)
                with TabPane("3 Calendar", id="pv-calendar"), VerticalScroll():
                    yield Static("", id="preview-calendar", markup=False)
                with TabPane("4 Recipients", id="pv-recipients"):
                    table: DataTable[Any] = DataTable(cursor_type="row", id="preview-recipients")
                    table.add_columns("recipient", "topics", "calendar")
                    yield table
                with TabPane("5 Headers", id="pv-headers"), VerticalScroll():
                    yield Static("", id="preview-headers", markup=False)

    def on_mount(self) -> None:
        self.load()

    def _title(self) -> None:
        position = (
            f"{self.customers.index(self.customer) + 1}/{len(self.customers)}" if self.customer else "0/0"
        )
        self.query_one("#preview-title", Static).update(
            f"[b]Preview[/] {escape(self.change.change_id)} · {escape(self.event.value)} as "
            f"[b]{escape(self.customer)}[/] ({position})"
        )

    def load(self) -> None:
        self._title()
        change, customer, event = self.change, self.customer, self.event
        self.call_service(
            lambda: self.services.preview.preview(change, customer, event),
            done=self._shown,
            failed=self._failed,
            group="preview",
            exclusive=True,
            description="render the preview",
        )

    def action_refresh(self) -> None:
        self.load()

    def _failed(self, exc: BaseException) -> None:
        from ..errors import describe

        self.preview, self.error = None, describe(exc)
        self.query_one("#preview-summary", Static).update(f"[red]✖ Cannot preview: {escape(self.error)}[/]")
        for box in ("#preview-text", "#preview-html", "#preview-calendar", "#preview-headers"):
            self.query_one(box, Static).update("")
        self.query_one("#preview-recipients", DataTable).clear()

    def _shown(self, p: Preview) -> None:
        if (p.customer, p.event) != (self.customer, self.event.value):
            return  # an older answer
        self.preview, self.error = p, None
        self.query_one("#preview-summary", Static).update(summary_text(p))
        self.query_one("#preview-text", Static).update(p.text)
        self.query_one("#preview-html", Static).update(p.html_text)
        self.query_one("#preview-calendar", Static).update(
            p.calendar or "No calendar part: this notice goes without one."
        )
        self.query_one("#preview-headers", Static).update(
            "\n".join(f"{k}: {v}" for k, v in p.headers.items()) + f"\n\n(the copy of {p.sample_to})"
        )
        table = self.query_one("#preview-recipients", DataTable)
        table.clear()
        for r in p.recipients:
            table.add_row(r.address, ", ".join(r.topics), "yes" if r.calendar else "", key=r.address)
        if not p.recipients:
            table.add_row(Text("nobody is subscribed", style="yellow"), "", "")

    # -- actions ------------------------------------------------------------------------------------
    def action_customer(self, step: int) -> None:
        if len(self.customers) < 2:
            return
        index = (self.customers.index(self.customer) + step) % len(self.customers)
        self.customer = self.customers[index]
        self.refresh_bindings()  # test send is decided per customer
        self.load()

    def action_next_event(self) -> None:
        self.event = (
            EVENTS[(EVENTS.index(self.event) + 1) % len(EVENTS)] if self.event in EVENTS else EVENTS[0]
        )
        self.load()

    def action_show_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab

    def action_open_html(self) -> None:
        p = self.preview
        if p is None:
            self.notify("Nothing rendered yet.", severity="warning")
            return
        html = p.html
        name = f"{p.change_id}-{p.customer}-{p.event}-"

        def open_it() -> Path:
            with tempfile.NamedTemporaryFile(
                "w", encoding="utf-8", prefix=name, suffix=".html", delete=False
            ) as fh:
                fh.write(html)
            webbrowser.open(Path(fh.name).as_uri())
            return Path(fh.name)

        self.call_service(
            open_it,
            done=lambda path: self.notify(f"Opened {escape(str(path))}", title="HTML part"),
            group="open-html",
        )

    def action_test_send(self) -> None:
        if self.refuse("test_send", "test send") or not self.customer:
            return
        change, customer, event = self.change, self.customer, self.event

        def send(address: str | None) -> None:
            if not address:
                return
            self.console.test_address = address
            self.call_service(
                lambda: self.services.preview.test_send(change, customer, address, event),
                done=self._sent,
                group="test-send",
                description="test send",
            )

        self.app.push_screen(
            InputModal(
                f"Send a test of {change.change_id} ({event.value}) as {customer}",
                "Through the customer's own SES account, to this one address only, marked [TEST]. "
                "It is not a delivery and is audited.",
                value=self.console.test_address or "",
                placeholder="you@example.com",
            ),
            send,
        )

    def _sent(self, sent: TestSend) -> None:
        note = " (not in the customer's restricted_recipients)" if sent.outside_whitelist else ""
        self.notify(
            f"Test sent to {escape(sent.to)}{escape(note)}: {escape(sent.subject)}",
            title="Test sent",
            timeout=8,
        )
