"""One customer's contacts by topic, managed in the customer's own SES account.

``ContactsScreen(code)``
    A row per contact, a column per topic of the customer's contact list. A topic cell shows whether
    the contact receives it and why: ``● in`` / ``● out`` an explicit preference, ``○ in`` / ``○ out``
    no preference (the topic default applies), ``unsub`` unsubscribed from everything.
    Bindings: ``/`` filter, ``space`` toggle the topic under the cursor (an explicit preference),
    ``a`` add, ``e`` edit, ``x`` remove, ``i`` import a CSV (a dry run first, then confirm), ``o``
    export a CSV, ``r`` reload, ``escape`` back. Confirmations are scaled to danger: a toggle is
    immediate (and reversible), removing a contact asks, an import shows what it will do and asks
    (typing the customer code when it changes many contacts). ``--readonly`` hides and refuses every
    change.

Every AWS call runs in a thread worker (``call_service``) through ``services/contact_admin.ContactBook``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

from rich.markup import escape
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, DataTable, Input, Label, ProgressBar, Select, Static

from ..errors import describe
from ..models import OperatorAction
from ..services.contact_admin import ContactBook, ContactView, ImportReport, TopicInfo
from ..services.contacts import OPT_IN, OPT_OUT, Contact, is_subscribed
from ..widgets.filterbar import FilterBar
from ..widgets.navtable import NavTable
from .base import ConsoleScreen
from .modals import ConfirmModal, PathModal, TypeToConfirmModal

# An import changing more contacts than this asks for the customer code to be typed.
TYPE_TO_CONFIRM = 50
DEFAULT = "default"
LOADING = "loading contacts"


def topic_cell(view: ContactView, topic: str) -> Text:
    if view.unsubscribe_all:
        return Text("unsub", style="grey50")
    receives = view.subscribed.get(topic, False)
    word = "in" if receives else "out"
    if topic in view.preferences:
        return Text(f"● {word}", style="bold green3" if receives else "bold red1")
    return Text(f"○ {word}", style="green4" if receives else "grey50")


def view_of(contact: Contact, topics: list[TopicInfo]) -> ContactView:
    defaults = {t.name: t.default for t in topics}
    return ContactView(
        contact.email,
        contact.unsubscribe_all,
        dict(contact.preferences),
        {t.name: is_subscribed(contact, t.name, defaults) for t in topics},
    )


def import_summary(report: ImportReport) -> str:
    counts = report.counts()
    parts = [f"{counts[k]} {k}" for k in ("created", "updated", "unchanged", "invalid") if counts[k]]
    return ", ".join(parts) or "no rows"


class ContactFormModal(ModalScreen[tuple[str, dict[str, str | None], bool] | None]):
    """Add or edit one contact: address, a choice per topic (default / OPT_IN / OPT_OUT), unsubscribe all."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, code: str, topics: list[TopicInfo], contact: ContactView | None = None) -> None:
        super().__init__(classes="dialog-screen")
        self.code, self.topics, self.contact = code, topics, contact

    def compose(self) -> ComposeResult:
        title = f"Edit {self.contact.email}" if self.contact else f"Add a contact to {self.code}"
        with Vertical(classes="dialog", id="contact-form"):
            yield Static(escape(title), classes="dialog-title")
            yield Input(
                value=self.contact.email if self.contact else "",
                placeholder="name@example.com",
                id="contact-email",
                disabled=self.contact is not None,
            )
            yield Static("", id="contact-email-error", classes="field-error")
            with VerticalScroll(id="contact-topics"):
                for topic in self.topics:
                    current = (self.contact.preferences.get(topic.name) if self.contact else None) or DEFAULT
                    with Horizontal(classes="contact-topic"):
                        yield Label(f"{topic.name} ", classes="contact-topic-name")
                        yield Select(
                            [(f"default ({topic.default})", DEFAULT), (OPT_IN, OPT_IN), (OPT_OUT, OPT_OUT)],
                            value=current,
                            allow_blank=False,
                            id=f"topic-{topic.name}",
                            compact=True,
                        )
            yield Checkbox(
                "Unsubscribed from everything",
                value=bool(self.contact and self.contact.unsubscribe_all),
                id="contact-unsub",
                compact=True,
            )
            with Horizontal(classes="dialog-buttons"):
                yield Button("Save (enter)", id="save", variant="primary", compact=True)
                yield Button("Cancel (esc)", id="cancel", compact=True)

    def on_mount(self) -> None:
        if self.contact is None:
            self.query_one("#contact-email", Input).focus()
        else:
            self.query_one(Select).focus()

    def _result(self) -> tuple[str, dict[str, str | None], bool] | None:
        email = self.query_one("#contact-email", Input).value.strip()
        if not email:
            self.query_one("#contact-email-error", Static).update("an email address is required")
            return None
        prefs: dict[str, str | None] = {}
        for topic in self.topics:
            value = str(self.query_one(f"#topic-{topic.name}", Select).value)
            prefs[topic.name] = None if value == DEFAULT else value
        return email, prefs, self.query_one("#contact-unsub", Checkbox).value

    @on(Input.Submitted)
    def _submitted(self) -> None:
        result = self._result()
        if result is not None:
            self.dismiss(result)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "cancel":
            self.dismiss(None)
            return
        result = self._result()
        if result is not None:
            self.dismiss(result)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ContactsScreen(ConsoleScreen[None]):
    help_title = "Contacts"
    ARMED = True
    CSS_PATH = "contacts.tcss"
    AUTO_FOCUS = "#contacts-table"
    MUTATING: ClassVar[frozenset[str]] = frozenset({"toggle_topic", "add", "edit", "remove", "import_file"})
    REQUIRES: ClassVar[Mapping[str, OperatorAction]] = dict.fromkeys(MUTATING, OperatorAction.CONTACTS_EDIT)

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("space", "toggle_topic", "Toggle topic"),
        Binding("a", "add", "Add"),
        Binding("e", "edit", "Edit"),
        Binding("x", "remove", "Remove"),
        Binding("i", "import_file", "Import"),
        Binding("o", "export_file", "Export"),
        Binding("r", "refresh", "Reload"),
    ]

    def __init__(self, code: str, *, name: str | None = None) -> None:
        super().__init__(name=name)
        self.code = code
        self.book: ContactBook | None = None
        self.topics: list[TopicInfo] = []
        self.views: dict[str, ContactView] = {}
        self.filter_text = ""
        self.error: str | None = None
        self.busy = 0
        self.last_import: ImportReport | None = None
        self._described: tuple[str, int] | None = None  # the cell the status line last explained

    # -- helpers -----------------------------------------------------------------------------
    @property
    def idle(self) -> bool:
        """Nothing loading or running (tests wait on it)."""
        return self.busy == 0

    @property
    def table(self) -> DataTable[Any]:
        return self.query_one("#contacts-table", DataTable)

    def _background(self, what: str, fn: Callable[[], Any], done: Callable[[Any], None]) -> None:
        """``fn`` in a thread worker; ``done(result)`` on the UI thread, or the error shown."""
        self.busy += 1
        self.set_status(f"{escape(what)}…")
        self.call_service(
            fn,
            done=lambda result: self._finished(done, result),
            failed=lambda exc: self._failed(what, exc),
            group="contacts",
            description=what,
        )

    def _finished(self, done: Callable[[Any], None], result: Any) -> None:
        self.busy -= 1
        if self.is_attached:
            done(result)

    def _failed(self, what: str, exc: BaseException) -> None:
        self.busy -= 1
        self._hide_progress()
        message = describe(exc)
        if not self.is_attached:
            return
        self.set_status(f"[red]{escape(what)} failed:[/] {escape(message)}")
        self.notify(escape(message), title=f"{what} failed", severity="error", timeout=10)
        if what == LOADING:
            self.error = message
            banner = self.query_one("#contacts-error", Static)
            banner.update(Text(f"⚠ {message}  (r retries)", style="bold"))
            banner.remove_class("hidden")
            self.render_summary()

    def set_status(self, markup: str) -> None:
        self.query_one("#contacts-status", Static).update(markup)

    # -- layout ------------------------------------------------------------------------------
    def compose_body(self) -> ComposeResult:
        with Vertical(id="contacts-head"):
            yield Static(id="contacts-summary")
            yield Static(id="contacts-error", classes="hidden")
        yield FilterBar("filter: part of an address", table="#contacts-table", id="contacts-filter")
        yield NavTable(id="contacts-table", cursor_type="cell", zebra_stripes=True)
        with Horizontal(id="contacts-progress", classes="hidden"):
            yield Label("Import", id="contacts-progress-label")
            yield ProgressBar(id="contacts-progress-bar", show_eta=False)
        yield Static(id="contacts-status")

    def on_mount(self) -> None:
        self.title = "Contacts"
        self.sub_title = self.code
        self.render_summary()
        self.load()

    def action_customers(self, action: str) -> list[str]:
        return [self.code]

    def _refuse(self, action: str, what: str) -> bool:
        if self.refuse(action, what):
            return True
        if self.book is None or not self.topics:
            self.notify("The contact list is not loaded yet", severity="warning")
            return True
        return False

    # -- loading -----------------------------------------------------------------------------
    def load(self, status: str | None = None) -> None:
        """(Re)read the list in a worker; ``status`` replaces the "loaded" line when it is done."""
        services = self.services

        def fetch() -> tuple[ContactBook, list[TopicInfo], list[ContactView]]:
            book = services.contact_book(self.code)
            topics, views = book.views()
            return book, topics, views

        self._background(LOADING, fetch, lambda result: self._loaded(result, status))

    def _loaded(
        self, result: tuple[ContactBook, list[TopicInfo], list[ContactView]], status: str | None = None
    ) -> None:
        self.book, topics, views = result
        self.error = None
        self.query_one("#contacts-error", Static).add_class("hidden")
        if [t.name for t in topics] != [t.name for t in self.topics]:
            self.topics = topics
            self._columns()
        self.topics = topics
        self.views = {v.email.casefold(): v for v in views}
        self.sync_table()
        self.render_summary()
        self.set_status(status or f"{len(views)} contact(s) loaded")

    def _columns(self) -> None:
        table = self.table
        table.clear(columns=True)
        table.add_column("Email", key="email", width=34)
        for topic in self.topics:
            label = topic.name.removeprefix("aws-")
            table.add_column(label, key=topic.name, width=max(6, len(label)))

    def shown(self) -> list[ContactView]:
        needle = self.filter_text.strip().casefold()
        return [v for key, v in sorted(self.views.items()) if not needle or needle in key]

    def sync_table(self) -> None:
        table = self.table
        where = self._cursor()
        table.clear()
        for view in self.shown():
            table.add_row(
                Text(view.email), *(topic_cell(view, t.name) for t in self.topics), key=view.email.casefold()
            )
        if where is not None and where[0] in self.views:
            self._described = where
            self._move_to(*where)

    def _cursor(self) -> tuple[str, int] | None:
        table = self.table
        if not table.row_count:
            return None
        cell = table.coordinate_to_cell_key(table.cursor_coordinate)
        return str(cell.row_key.value), table.cursor_coordinate.column

    def _move_to(self, key: str, column: int) -> None:
        table = self.table
        try:
            row = table.get_row_index(key)
        except Exception:  # filtered out
            return
        table.move_cursor(row=row, column=column)

    def update_contact(self, contact: Contact) -> None:
        view = view_of(contact, self.topics)
        key = view.email.casefold()
        self.views[key] = view
        table = self.table
        if key in {str(k.value) for k in table.rows}:
            for topic in self.topics:
                table.update_cell(key, topic.name, topic_cell(view, topic.name))
        else:
            self.sync_table()
        self.render_summary()

    def render_summary(self) -> None:
        text = Text()
        text.append(self.code, style="bold")
        try:
            info = self.services.config.customer(self.code)
        except KeyError:  # a code no longer in the config: the screen still renders
            info = None
        if info is not None:
            text.append(f"  {info.customer_name}  account {info.account_id}")
        if self.book is not None:
            choice = self.book.choice
            text.append(f"\ncontact list {choice.name} ({choice.reason})")
            n = len(self.views)
            shown = len(self.shown())
            text.append(f" · {n} contact{'s' if n != 1 else ''}")
            if self.filter_text.strip():
                text.append(f" ({shown} match “{self.filter_text.strip()}”)", style="italic")
            receiving = ", ".join(
                f"{t.name} {sum(1 for v in self.views.values() if v.subscribed.get(t.name))}"
                for t in self.topics
            )
            if receiving:
                text.append(f"\nreceiving: {receiving}")
        elif self.busy:
            text.append("\nloading…", style="italic")
        text.append("\n● explicit preference  ○ topic default", style="grey50")
        if self.readonly:
            text.append("  · read-only: changes are disabled", style="bold")
        else:
            text.append("  · space toggles the topic under the cursor", style="grey50")
        self.query_one("#contacts-summary", Static).update(text)

    # -- navigation ----------------------------------------------------------------------------
    def action_back(self) -> None:
        if not self.query_one("#contacts-filter", FilterBar).cancel():
            self.back()

    def action_filter(self) -> None:
        self.query_one("#contacts-filter", FilterBar).open()

    @on(FilterBar.Applied, "#contacts-filter")
    def _filter_applied(self, event: FilterBar.Applied) -> None:
        self.filter_text = event.text
        self.sync_table()
        self.render_summary()

    def action_refresh(self) -> None:
        self.load()

    def _selected(self) -> ContactView | None:
        where = self._cursor()
        return self.views.get(where[0]) if where else None

    def _selected_or_warn(self) -> ContactView | None:
        view = self._selected()
        if view is None:
            self.notify("No contact selected", severity="warning")
        return view

    # -- changes -------------------------------------------------------------------------------
    def action_toggle_topic(self) -> None:
        if self._refuse("toggle_topic", "changing contacts"):
            return
        view = self._selected_or_warn()
        column = self.table.cursor_coordinate.column
        if view is None:
            return
        if column == 0:
            self.notify("Move to a topic column to toggle it (← →)", severity="warning")
            return
        topic = self.topics[column - 1].name
        book = self.book
        assert book is not None

        def done(result: tuple[Contact, Contact, list[str]]) -> None:
            _before, after, changes = result
            self.update_contact(after)
            self.set_status(f"{escape(after.email)}: {escape('; '.join(changes))}")

        self._background(f"toggling {topic}", lambda: book.toggle(view.email, topic), done)

    def action_add(self) -> None:
        if self._refuse("add", "adding contacts"):
            return
        book = self.book
        assert book is not None

        def answered(result: tuple[str, dict[str, str | None], bool] | None) -> None:
            if result is None:
                return
            email, prefs, unsub = result

            def done(contact: Contact) -> None:
                self.update_contact(contact)
                self._move_to(contact.email.casefold(), 0)
                self.set_status(f"added {escape(contact.email)}")

            self._background("adding a contact", lambda: book.add(email, prefs, unsubscribe_all=unsub), done)

        self.app.push_screen(ContactFormModal(self.code, self.topics), answered)

    def action_edit(self) -> None:
        if self._refuse("edit", "editing contacts"):
            return
        view = self._selected_or_warn()
        if view is None:
            return
        book = self.book
        assert book is not None

        def answered(result: tuple[str, dict[str, str | None], bool] | None) -> None:
            if result is None:
                return
            _email, prefs, unsub = result

            def done(outcome: tuple[Contact, Contact, list[str]]) -> None:
                _before, after, changes = outcome
                self.update_contact(after)
                summary = "; ".join(changes) if changes else "nothing changed"
                self.set_status(f"{escape(after.email)}: {escape(summary)}")

            self._background(
                "saving the contact", lambda: book.update(view.email, prefs, unsubscribe_all=unsub), done
            )

        self.app.push_screen(ContactFormModal(self.code, self.topics, view), answered)

    def action_remove(self) -> None:
        if self._refuse("remove", "removing contacts"):
            return
        view = self._selected_or_warn()
        if view is None:
            return
        book = self.book
        assert book is not None
        receives = [t for t, on_ in view.subscribed.items() if on_]
        body = (
            f"{escape(view.email)} leaves {escape(self.code)}'s contact list with its preferences; "
            f"it stops receiving {escape(', '.join(receives)) if receives else 'anything'}."
        )

        def confirmed(yes: bool | None) -> None:
            if not yes:
                return

            def done(removed: Contact) -> None:
                self.views.pop(removed.email.casefold(), None)
                self.sync_table()
                self.render_summary()
                self.set_status(f"removed {escape(removed.email)}")

            self._background("removing the contact", lambda: book.remove(view.email), done)

        self.app.push_screen(
            ConfirmModal(f"Remove {view.email}?", body, yes="Remove", danger=True), confirmed
        )

    # -- files ---------------------------------------------------------------------------------
    def action_import_file(self) -> None:
        if self._refuse("import_file", "importing contacts"):
            return
        book = self.book
        assert book is not None
        body = (
            "A CSV with the header email[,unsubscribe_all][,topic…]; topic cells OPT_IN, OPT_OUT or empty "
            "for the default. Nothing is written before you confirm what it will do."
        )

        def chosen(answer: tuple[str, str] | None) -> None:
            if not answer:
                return
            path = Path(answer[0]).expanduser()

            def dry_run() -> ImportReport:
                return book.import_csv(path.read_text(encoding="utf-8"), dry_run=True)

            self._background("checking the file", dry_run, lambda report: self._confirm_import(path, report))

        self.app.push_screen(
            PathModal(f"Import contacts into {self.code}", body, f"contacts-{self.code}.csv"), chosen
        )

    def _confirm_import(self, path: Path, report: ImportReport) -> None:
        counts = report.counts()
        changes = counts["created"] + counts["updated"]
        invalid = [r for r in report.rows if r.result == "invalid"]
        lines = [f"{escape(str(path))}: {import_summary(report)}."]
        for row in invalid[:5]:
            lines.append(f"[red]line {row.line}[/] {escape(row.email)}: {escape(row.detail)}")
        if len(invalid) > 5:
            lines.append(f"… and {len(invalid) - 5} more invalid rows (skipped)")
        self.last_import = report
        self.set_status(f"checked {escape(str(path))}: {import_summary(report)}")
        if not changes:
            self.set_status(f"import of {escape(str(path))}: nothing to change ({import_summary(report)})")
            self.notify("Nothing to change", severity="warning" if invalid else "information")
            return
        body = (
            "\n".join(lines) + f"\n\nWrite {changes} contact change(s) to {escape(self.code)}'s SES account?"
        )

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._run_import(path)

        if changes > TYPE_TO_CONFIRM:
            self.app.push_screen(
                TypeToConfirmModal(f"Import into {self.code}?", body, self.code, action_label="Import"),
                confirmed,
            )
        else:
            self.app.push_screen(
                ConfirmModal(f"Import into {self.code}?", body, yes="Import", danger=counts["updated"] > 0),
                confirmed,
            )

    def _run_import(self, path: Path) -> None:
        book = self.book
        assert book is not None
        self._show_progress()

        def progress(done: int, total: int) -> None:
            self.post_from_thread(self._progress, done, total)

        def run() -> ImportReport:
            return book.import_csv(path.read_text(encoding="utf-8"), progress=progress)

        self._background("importing", run, self._imported)

    def _show_progress(self) -> None:
        self.query_one("#contacts-progress").remove_class("hidden")
        self.query_one("#contacts-progress-bar", ProgressBar).update(total=None, progress=0)

    def _hide_progress(self) -> None:
        if self.is_attached:
            self.query_one("#contacts-progress").add_class("hidden")

    def _progress(self, done: int, total: int) -> None:
        if self.is_attached:
            self.query_one("#contacts-progress-bar", ProgressBar).update(total=total, progress=done)

    def _imported(self, report: ImportReport) -> None:
        self._hide_progress()
        self.last_import = report
        text = f"imported: {import_summary(report)}; {report.applied} written"
        if report.error:
            text += f" — [red]stopped at {escape(report.error)}[/]; rows after it were not attempted"
            self.notify(escape(report.error), title="Import stopped", severity="error", timeout=12)
        self.load(status=text)

    def action_export_file(self) -> None:
        if self.book is None:
            self.notify("The contact list is not loaded yet", severity="warning")
            return
        book = self.book

        def chosen(answer: tuple[str, str] | None) -> None:
            if not answer:
                return
            path = Path(answer[0]).expanduser()

            def write() -> int:
                text, count = book.export_csv()
                path.write_text(text, encoding="utf-8")
                return count

            def go(yes: bool | None = True) -> None:
                if yes:
                    self._background(
                        "exporting",
                        write,
                        lambda n: self.set_status(f"wrote {n} contact(s) to {escape(str(path))}"),
                    )

            if path.exists():
                self.app.push_screen(ConfirmModal(f"Overwrite {path}?", yes="Overwrite"), go)
            else:
                go()

        self.app.push_screen(
            PathModal(
                f"Export {self.code}'s contacts", "A CSV in the import format.", f"contacts-{self.code}.csv"
            ),
            chosen,
        )

    # -- what the cell under the cursor means ---------------------------------------------------------
    @on(DataTable.CellHighlighted, "#contacts-table")
    def _highlighted(self, event: DataTable.CellHighlighted) -> None:
        """Explain the topic cell the operator moved to (not the one a reload puts the cursor back on: the
        status line keeps what the last action reported)."""
        column = event.coordinate.column
        cell = (str(event.cell_key.row_key.value), column)
        if not column or column > len(self.topics) or cell == self._described:
            return
        self._described = cell
        topic = self.topics[column - 1]
        view = self._selected()
        if view is not None:
            explicit = view.preferences.get(topic.name)
            why = f"explicit {explicit}" if explicit else f"no preference: default {topic.default}"
            self.set_status(f"{escape(view.email)} · {escape(topic.name)}: {why}")
