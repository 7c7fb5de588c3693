"""Search the change list: operator, ticket, date range, window, mine; and saved filters.

``SearchModal`` answers the ``ChangeQuery`` to apply (the text filter of the list stays the list's
``/``). Saved filters live in the operator's config directory (``services.search.SavedFilters``):
pick one to fill the form, save the form under a name, or delete the picked one.
"""

from __future__ import annotations

from rich.markup import escape
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Select, Static

from ..errors import InputError
from ..services.search import ChangeQuery, SavedFilters, parse_date
from ..widgets.inputs import FormInput

FIELDS = (
    ("operator", "Operator", "created, submitted, approved or changed by"),
    ("ticket", "Ticket", "ServiceNow or Jira (part)"),
    ("since", "Active since", "YYYY-MM-DD"),
    ("until", "Active until", "YYYY-MM-DD"),
    ("start_from", "Window from", "YYYY-MM-DD"),
    ("start_to", "Window to", "YYYY-MM-DD"),
)
DATES = {"since": False, "until": True, "start_from": False, "start_to": True}  # field -> end of day


class SearchModal(ModalScreen[ChangeQuery | None]):
    DEFAULT_CSS = """
    SearchModal { align: center middle; background: $background 60%; }
    SearchModal > Vertical {
        width: 96; max-width: 98%; height: auto; max-height: 95%; padding: 1 2;
        border: round $accent; background: $surface;
    }
    SearchModal #search-title { text-style: bold; height: 1; }
    SearchModal Grid { grid-size: 2; grid-columns: 16 1fr; grid-rows: 1; grid-gutter: 0 1; height: auto; }
    SearchModal Grid Input { border: none; height: 1; }
    SearchModal #search-saved-row { height: 3; margin-top: 1; }
    SearchModal #search-saved { width: 1fr; }
    SearchModal #search-error { height: auto; color: $text-error; }
    SearchModal .dialog-buttons { height: 1; margin-top: 1; align-horizontal: right; }
    SearchModal .dialog-buttons Button { margin-left: 2; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("ctrl+s", "save", "Save as…", priority=True)]

    def __init__(self, query: ChangeQuery, saved: SavedFilters | None = None) -> None:
        super().__init__()
        self.query_in = query
        self.saved = saved or SavedFilters()

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("Search changes", id="search-title")
            with Grid():
                for key, label, hint in FIELDS:
                    yield Label(label)
                    yield FormInput(
                        value=_shown(getattr(self.query_in, key)), placeholder=hint, id=f"q-{key}"
                    )
            yield Checkbox("Mine only (created, submitted, approved by me, or mine to act on)", id="q-mine")
            with Horizontal(id="search-saved-row"):
                yield Select[str]([], prompt="saved filters", id="search-saved")
                yield FormInput(placeholder="save as (name)", id="search-name")
            yield Static("", id="search-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Apply (enter)", id="apply", variant="primary", compact=True)
                yield Button("Save (^s)", id="save", compact=True)
                yield Button("Delete saved", id="delete", compact=True)
                yield Button("Clear", id="clear", compact=True)
                yield Button("Cancel (esc)", id="cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one("#q-mine", Checkbox).value = self.query_in.mine
        self._fill_saved()
        self.query_one("#q-operator", Input).focus()

    def _fill_saved(self) -> None:
        try:
            names = list(self.saved.all())
        except InputError as exc:
            names = []
            self._error(str(exc))
        self.query_one("#search-saved", Select).set_options((n, n) for n in names)

    def _error(self, text: str) -> None:
        self.query_one("#search-error", Static).update(f"⚠ {escape(text)}" if text else "")

    def form_query(self) -> ChangeQuery:
        values: dict[str, str | None] = {}
        for key, _label, _hint in FIELDS:
            raw = self.query_one(f"#q-{key}", Input).value.strip()
            values[key] = parse_date(raw, end=DATES[key]) if key in DATES else (raw or None)
        return ChangeQuery(
            text=self.query_in.text,
            status=self.query_in.status,
            customer=self.query_in.customer,
            mine=self.query_one("#q-mine", Checkbox).value,
            **values,
        )

    def _fill(self, query: ChangeQuery) -> None:
        for key, _label, _hint in FIELDS:
            self.query_one(f"#q-{key}", Input).value = _shown(getattr(query, key))
        self.query_one("#q-mine", Checkbox).value = query.mine

    def action_apply(self) -> None:
        try:
            self.dismiss(self.form_query())
        except InputError as exc:
            self._error(str(exc))

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "search-name":
            self.action_save()
        else:
            self.action_apply()

    @on(Select.Changed, "#search-saved")
    def _picked(self, event: Select.Changed) -> None:
        if isinstance(event.value, str):
            try:
                self._fill(self.saved.get(event.value))
            except InputError as exc:
                self._error(str(exc))
            self.query_one("#search-name", Input).value = event.value

    def action_save(self) -> None:
        name = self.query_one("#search-name", Input).value.strip()
        if not name:
            self._error("name the filter first")
            self.query_one("#search-name", Input).focus()
            return
        try:
            self.saved.save(name, self.form_query())
        except InputError as exc:
            self._error(str(exc))
            return
        self._error("")
        self._fill_saved()
        self.notify(f"Filter {escape(name)} saved in {escape(str(self.saved.path))}", title="Saved filters")

    def _delete(self) -> None:
        picked = self.query_one("#search-saved", Select).value
        if not isinstance(picked, str):
            self._error("pick a saved filter to delete")
            return
        try:
            self.saved.delete(picked)
        except InputError as exc:
            self._error(str(exc))
            return
        self._fill_saved()
        self.notify(f"Filter {escape(picked)} deleted.", title="Saved filters")

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        button = event.button.id
        if button == "apply":
            self.action_apply()
        elif button == "save":
            self.action_save()
        elif button == "delete":
            self._delete()
        elif button == "clear":
            self._fill(ChangeQuery())
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)


def _shown(value: str | None) -> str:
    """A stored RFC 3339 bound as the day the operator typed (``YYYY-MM-DD``)."""
    if not value:
        return ""
    return value[:10] if value.endswith(("T00:00:00Z", "T23:59:59Z")) else value
