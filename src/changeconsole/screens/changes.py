"""The home screen: every change, by tab (Drafts / Submitted / Approved / All), filterable and sortable.

Rows come from the change index (``services.changes.list()``; ``services.status.list_changes()`` when
the lifecycle service is not available) in a thread worker, every few seconds. Refreshes reconcile the
table by row key (the change id), so the cursor, the ``/`` filter and the sort survive them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from rich.markup import escape
from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Input, Static, Tab, Tabs
from textual.widgets.data_table import RowDoesNotExist

from ..colours import CHANGE_STATUS
from ..errors import describe
from ..models import ChangeStatus, OperatorAction
from ..services.search import ChangeQuery, my_relation, text_matches
from ..services.status import ChangeSummary
from ..widgets.inputs import FormInput
from ..widgets.navtable import NavTable
from .base import SORTING, ConsoleScreen


@dataclass(frozen=True)
class TabSpec:
    id: str
    label: str
    statuses: frozenset[ChangeStatus] | None  # None: every status
    mine: bool = False  # only the operator's (services.search.my_relation)


# Keys 1-5 pick a status tab, 0 all of them (k9s: 0 is "all namespaces"); m the operator's own.
TABS: tuple[TabSpec, ...] = (
    TabSpec("drafts", "Drafts", frozenset({ChangeStatus.DRAFT})),
    TabSpec("submitted", "Submitted", frozenset({ChangeStatus.SUBMITTED})),
    TabSpec("approved", "Approved", frozenset({ChangeStatus.APPROVED})),
    TabSpec("completed", "Completed", frozenset({ChangeStatus.COMPLETED})),
    TabSpec("cancelled", "Cancelled", frozenset({ChangeStatus.CANCELLED})),
    TabSpec("mine", "Mine", None, mine=True),
    TabSpec("all", "All", None),
)
TAB_KEYS = {"drafts": "1", "submitted": "2", "approved": "3", "completed": "4", "cancelled": "5", "all": "0"}


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    sort: Callable[[ChangeSummary], Any]
    width: int | None = None  # None: takes what the others leave (the title)


COLUMNS: tuple[Column, ...] = (
    Column("mark", "✓", lambda s: s.change_id, 1),  # marked for a bulk action (Space)
    Column("id", "ID", lambda s: s.change_id, 30),
    Column("title", "Title", lambda s: s.title.casefold()),
    Column("status", "Status", lambda s: s.status.value, 9),
    Column("customers", "Customers", lambda s: len(s.customers), 14),
    Column("window", "Window (UTC)", lambda s: s.implementation_start or "", 17),
    Column("modified", "Modified", lambda s: s.modified_at or "", 18),
)
COLUMN_KEYS = [c.key for c in COLUMNS]
MIN_TITLE = 20


def column_widths(total: int) -> dict[str, int]:
    """Fixed widths for all but the title, which takes the rest (at least MIN_TITLE)."""
    fixed = sum(c.width or 0 for c in COLUMNS)
    padding = 2 * len(COLUMNS) + 2  # cell padding + scrollbar
    return {c.key: c.width or max(MIN_TITLE, total - fixed - padding) for c in COLUMNS}


def customers_text(codes: list[str]) -> str:
    if not codes:
        return "—"
    more = f" +{len(codes) - 1}" if len(codes) > 1 else ""
    return f"{codes[0]}{more}"


def compact_window(start: str | None, end: str | None) -> str:
    """``12-01 22:00 3h30m``: start (UTC, month-day) and duration."""
    if not start:
        return "—"
    try:
        begin = datetime.fromisoformat(start).astimezone(UTC)
    except ValueError:
        return start
    text = begin.strftime("%m-%d %H:%M")
    if end:
        try:
            minutes = int((datetime.fromisoformat(end) - begin).total_seconds() // 60)
        except ValueError:
            return text
        days, rest = divmod(max(minutes, 0), 24 * 60)
        hours, mins = divmod(rest, 60)
        text += " " + (f"{days}d{hours}h" if days else f"{hours}h{mins:02d}" if hours else f"{mins}m")
    return text


def compact_time(value: str | None) -> str:
    if not value:
        return "—"
    try:
        return datetime.fromisoformat(value).astimezone(UTC).strftime("%m-%d %H:%M")
    except ValueError:
        return value


def row_cells(summary: ChangeSummary, marked: bool = False) -> list[Any]:
    who = summary.modified_by or summary.created_by or "—"
    return [
        Text("✓", style="bold green") if marked else "",
        summary.change_id,
        Text(summary.title),  # a plain str cell would be parsed as Rich markup
        Text(summary.status.value, style=CHANGE_STATUS.get(summary.status, "")),
        customers_text(summary.customers),
        compact_window(summary.implementation_start, summary.implementation_end),
        f"{compact_time(summary.modified_at)} {who}",
    ]


def matches(summary: ChangeSummary, text: str) -> bool:
    """Every word of the filter appears in the id, title, status, customers or indexed search text."""
    return not text.strip() or text_matches(summary, text)


BULK_ACTIONS: Mapping[str, OperatorAction] = {
    "bulk_approve": OperatorAction.CHANGE_APPROVE,
    "bulk_complete": OperatorAction.CHANGE_COMPLETE,
    "bulk_cancel": OperatorAction.CHANGE_CANCEL,
}


class ChangesScreen(ConsoleScreen[None]):
    help_title = "Changes"
    MUTATING: ClassVar[frozenset[str]] = frozenset({"new_change", *BULK_ACTIONS})
    # A bulk key needs the action on some customer: a marked change outside the operator's scope
    # is refused on its own (a failure in the results), the others go on.
    REQUIRES: ClassVar[Mapping[str, OperatorAction]] = {
        "new_change": OperatorAction.CHANGE_DRAFT,
        **BULK_ACTIONS,
    }
    BINDINGS = [
        Binding("n", "new_change", "New"),
        Binding("enter", "open", "Open", show=False),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("s", "cycle_sort", "Sort by next column", group=SORTING),
        Binding("S", "reverse_sort", "Reverse sort", group=SORTING),
        Binding("space", "mark", "Mark", key_display="space"),
        Binding("l", "live_status", "Live status"),
        Binding("a", "bulk_approve", "Approve marked", show=False),
        Binding("c", "bulk_complete", "Complete marked", show=False),
        Binding("x", "bulk_cancel", "Cancel marked", show=False),
        Binding("f", "search", "Search"),
        Binding("m", "show_tab('mine')", "Mine", show=False),
        Binding("D", "dashboard", "Dashboard", show=False),
        Binding("r", "refresh", "Refresh"),
        Binding("left", "tab(-1)", "Previous tab", show=False),
        Binding("right", "tab(1)", "Next tab", show=False),
        *(
            Binding(TAB_KEYS[t.id], f"show_tab('{t.id}')", t.label, show=False)
            for t in TABS
            if t.id in TAB_KEYS
        ),
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]

    def __init__(self) -> None:
        super().__init__(id="changes")
        self.summaries: list[ChangeSummary] = []
        self.filter_text = ""
        self.sort_key = "modified"
        self.sort_reverse = True
        self.tab = "all"
        self.loaded = False
        self.error: str | None = None
        self._shown: list[str] = []
        self.marked: set[str] = set()
        self.search_query = ChangeQuery()
        self._cursor_wanted: str | None = None  # put the cursor on this change once it is listed

    def compose_body(self) -> ComposeResult:
        with Vertical(id="changes-body"):
            yield Tabs(*(Tab(spec.label, id=spec.id) for spec in TABS), active="all", id="change-tabs")
            with Horizontal(id="filter-bar"):
                yield Static("/", id="filter-label")
                yield FormInput(placeholder="filter: words in id, title, tickets, customers…", id="filter")
            yield Static("", id="changes-error")
            yield NavTable(cursor_type="row", zebra_stripes=True, id="changes-table")
            yield Static("Loading changes…", id="changes-empty")
            yield Static("", id="changes-status")

    def on_mount(self) -> None:
        self._fit_columns(self.app.size.width)
        self.query_one("#filter-bar").display = False
        self.query_one("#changes-error").display = False
        self.query_one(DataTable).focus()
        self.load()
        if self.console.live:
            self.set_interval(self.console.refresh_interval, self.load, name="changes-refresh")

    def on_screen_resume(self) -> None:
        if self.loaded:
            self.load()

    def on_resize(self, event: events.Resize) -> None:
        self._fit_columns(event.size.width)

    def _fit_columns(self, total: int) -> None:
        widths = column_widths(total)
        if widths == getattr(self, "_widths", None):
            return
        self._widths = widths
        table = self.query_one(DataTable)
        table.clear(columns=True)
        for column in COLUMNS:
            table.add_column(column.label, key=column.key, width=widths[column.key])
        self._shown = []
        if self.loaded:
            self.render_rows()

    # -- data ----------------------------------------------------------------------------------------
    def _list(self) -> list[ChangeSummary]:
        return list(self.services.changes.list())

    def load(self) -> None:
        self.call_service(
            self._list,
            done=self._loaded,
            failed=self._failed,
            group="changes-list",
            exclusive=True,
            description="list changes",
        )

    def action_refresh(self) -> None:
        self.load()

    def _loaded(self, summaries: list[ChangeSummary]) -> None:
        first_error_cleared = self.error is not None
        self.summaries = summaries
        self.console.known_changes = summaries
        self.loaded = True
        self.error = None
        self.query_one("#changes-error").display = False
        if first_error_cleared:
            self.notify("Connected again: the change list is up to date.", title="Changes")
        self.render_rows()
        self._place_wanted_cursor()

    def _failed(self, exc: BaseException) -> None:
        message = describe(exc)
        repeated = self.error == message
        self.error = message
        box = self.query_one("#changes-error", Static)
        box.update(f"✖ Cannot load changes: {escape(message)}  [dim](r retries)[/]")
        box.display = True
        if not repeated:
            self.notify(escape(message), title="Cannot load changes", severity="error", timeout=10)
        self.render_rows()

    # -- rendering ----------------------------------------------------------------------------------------
    def visible_rows(self) -> list[ChangeSummary]:
        spec = next(t for t in TABS if t.id == self.tab)
        rows = self._filtered()
        if spec.statuses is not None:
            rows = [s for s in rows if s.status in spec.statuses]
        if spec.mine:
            rows = [s for s in rows if self._mine(s)]
        column = next(c for c in COLUMNS if c.key == self.sort_key)
        rows.sort(key=lambda s: s.change_id, reverse=self.sort_reverse)
        rows.sort(key=column.sort, reverse=self.sort_reverse)
        return rows

    def _filtered(self) -> list[ChangeSummary]:
        """The rows the ``/`` filter and the search let through (before the tab)."""
        me, now = self.console.identity, self.now()
        return [
            s
            for s in self.summaries
            if matches(s, self.filter_text) and self.search_query.matches(s, me=me, now=now)
        ]

    def _mine(self, summary: ChangeSummary) -> bool:
        me = self.console.identity
        return me is not None and my_relation(summary, me, self.now()) is not None

    def render_rows(self) -> None:
        table = self.query_one(DataTable)
        rows = self.visible_rows()
        keys = [s.change_id for s in rows]
        cursor_key = self._cursor_key()
        if keys == self._shown:
            for summary in rows:
                cells = row_cells(summary, summary.change_id in self.marked)
                for column_key, value in zip(COLUMN_KEYS, cells, strict=True):
                    if str(table.get_cell(summary.change_id, column_key)) != str(value):
                        table.update_cell(summary.change_id, column_key, value)
        else:
            table.clear()
            for summary in rows:
                table.add_row(*row_cells(summary, summary.change_id in self.marked), key=summary.change_id)
            self._shown = keys
            if cursor_key in keys:
                table.move_cursor(row=keys.index(cursor_key), animate=False)
        self._update_labels()

    def show_change(self, change_id: str) -> None:
        """After the next load, put the cursor on ``change_id`` if it is listed (switching to the All
        tab, without filter, when the current view does not show it)."""
        self._cursor_wanted = change_id
        if self.loaded:
            self.load()

    def _place_wanted_cursor(self) -> None:
        wanted, self._cursor_wanted = self._cursor_wanted, None
        if wanted is None or not any(s.change_id == wanted for s in self.summaries):
            return
        if wanted not in self._shown:
            self.filter_text = ""
            self.query_one("#filter", Input).value = ""
            self.query_one("#filter-bar").display = False
            self.tab = "all"
            self.query_one(Tabs).active = "all"
            self.render_rows()
        if wanted in self._shown:
            self.query_one(DataTable).move_cursor(row=self._shown.index(wanted), animate=False)

    def _cursor_key(self) -> str | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        try:
            row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        except RowDoesNotExist:
            return None
        return str(row_key.value) if row_key.value is not None else None

    def _update_labels(self) -> None:
        filtered = self._filtered()
        tabs = self.query_one(Tabs)
        for spec in TABS:
            if spec.mine:
                count = sum(self._mine(s) for s in filtered)
            elif spec.statuses is None:
                count = len(filtered)
            else:
                count = sum(s.status in spec.statuses for s in filtered)
            tabs.query_one(f"#{spec.id}", Tab).label = f"{spec.label} {count}"
        shown = len(self._shown)
        empty = self.query_one("#changes-empty", Static)
        if not self.loaded:
            empty.update("Loading changes…" if self.error is None else "Nothing loaded yet.")
        elif not self.summaries:
            empty.update(
                "No changes yet. Press [b]n[/] to compose one." if not self.readonly else "No changes."
            )
        elif not shown:
            empty.update(
                "Nothing matches: esc clears the filter." if self.filter_text else "None in this tab."
            )
        empty.display = shown == 0 and bool(empty.content)
        # The table is never hidden: a hidden table loses the focus, and arrows would then move
        # nothing until Tab (an empty table keeps it, and shows its header above the message).
        self.query_one(DataTable).set_class(shown == 0, "-empty")
        column = next(c for c in COLUMNS if c.key == self.sort_key)
        arrow = "↓" if self.sort_reverse else "↑"
        parts = [f"{shown} shown", f"sorted by {column.label.lower()} {arrow}"]
        if self.filter_text:
            parts.append(f"filter “{escape(self.filter_text)}”")
        if not self.search_query.empty:
            parts.append(f"search {escape(self.search_query.describe())} (f changes it)")
        if self.marked:
            parts.append(f"[b]{len(self.marked)} marked[/] (a/c/x act on them)")
        if self.tab == "mine" and self.console.identity is None:
            parts.append("[yellow]operator unknown: Mine shows nothing[/]")
        if self.console.local_data is not None:
            parts.append(f"local data kept in {escape(str(self.console.local_data))}")
        self.query_one("#changes-status", Static).update(" · ".join(parts))

    # -- events and actions ---------------------------------------------------------------------------
    @on(Tabs.TabActivated)
    def _tab(self, event: Tabs.TabActivated) -> None:
        if event.tab.id and event.tab.id != self.tab:
            self.tab = event.tab.id
            self.render_rows()

    def action_tab(self, step: int) -> None:
        ids = [t.id for t in TABS]
        self.action_show_tab(ids[(ids.index(self.tab) + step) % len(ids)])

    def action_show_tab(self, tab_id: str) -> None:
        self.query_one(Tabs).active = tab_id

    @on(DataTable.RowSelected)
    def _selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value:
            self.console.open_change(str(event.row_key.value))

    @on(DataTable.HeaderSelected)
    def _header(self, event: DataTable.HeaderSelected) -> None:
        key = str(event.column_key.value)
        if key == self.sort_key:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_key, self.sort_reverse = key, key == "modified"
        self.render_rows()

    def action_open(self) -> None:
        key = self._cursor_key()
        if key:
            self.console.open_change(key)

    def action_live_status(self) -> None:
        key = self._cursor_key()
        if key:
            self.console.open_status(key)

    def action_mark(self) -> None:
        key = self._cursor_key()
        if key is None:
            return
        self.marked ^= {key}
        self.render_rows()
        table = self.query_one(DataTable)
        if table.cursor_row < table.row_count - 1:
            table.move_cursor(row=table.cursor_row + 1, animate=False)

    def action_bulk_approve(self) -> None:
        self._bulk("approve")

    def action_bulk_complete(self) -> None:
        self._bulk("complete")

    def action_bulk_cancel(self) -> None:
        self._bulk("cancel")

    def _bulk(self, operation: str) -> None:
        if self.refuse(f"bulk_{operation}", f"{operation} of several changes"):
            return
        from .bulk import BulkResultsScreen, bulk_confirmation

        ids = self.marked or ({self._cursor_key()} - {None})
        chosen = [s for s in self.summaries if s.change_id in ids]
        if not chosen:
            self.notify("Mark changes with Space first.", severity="warning")
            return
        modal, able = bulk_confirmation(operation, chosen)
        if not able:
            self.notify(f"None of the marked changes can be {operation}d.", severity="warning")
            return

        def answered(answer: bool | str | None) -> None:
            if answer:
                self.marked -= {s.change_id for s in able}
                reason = answer if isinstance(answer, str) else None
                self.app.push_screen(BulkResultsScreen(operation, able, reason=reason))

        self.app.push_screen(modal, answered)

    def action_search(self) -> None:
        from .search import SearchModal

        def chosen(query: ChangeQuery | None) -> None:
            if query is not None:
                self.search_query = query
                self.render_rows()

        self.app.push_screen(SearchModal(self.search_query), chosen)

    def action_dashboard(self) -> None:
        self.console.open_dashboard()

    def action_new_change(self) -> None:
        if self.refuse("new_change", "composing a change"):
            return
        self.console.open_compose()

    def action_cycle_sort(self) -> None:
        index = COLUMN_KEYS.index(self.sort_key)
        self.sort_key = COLUMN_KEYS[(index + 1) % len(COLUMN_KEYS)]
        self.sort_reverse = self.sort_key == "modified"
        self.render_rows()
        column = next(c for c in COLUMNS if c.key == self.sort_key)
        self.notify(f"Sorted by {column.label.lower()}", timeout=2)

    def action_reverse_sort(self) -> None:
        self.sort_reverse = not self.sort_reverse
        self.render_rows()

    def action_filter(self) -> None:
        bar = self.query_one("#filter-bar")
        bar.display = True
        self.query_one("#filter", Input).focus()

    def action_clear_filter(self) -> None:
        field = self.query_one("#filter", Input)
        if self.filter_text or field.has_focus:
            field.value = ""
            self.filter_text = ""
            self.query_one("#filter-bar").display = False
            self.query_one(DataTable).focus()
            self.render_rows()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value.strip()
        self.render_rows()

    @on(Input.Submitted, "#filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        if not self.filter_text:
            self.query_one("#filter-bar").display = False
        self.query_one(DataTable).focus()
