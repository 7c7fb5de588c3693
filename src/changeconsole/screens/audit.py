"""The audit trail: ``AuditScreen(change_id=None)`` (``:audit [CHG-…]``; needs ``audit.read``).

Operator actions of the last 7 days, newest first (``services.audit.AuditReader`` in a thread worker;
reloaded every 30 s when the console is live, ``r`` at once). The pane below shows the highlighted
record as written (a refusal's reason included); ``o`` opens its change. ``/`` filters with terms, all
must match: ``operator:jane`` ``customer:acme`` ``change:CHG-…`` ``action:change.*``
``result:refused`` ``since:30d`` ``until:2026-12-01`` ``all`` (the worker's delivery events too); any
other word is text in the operator, action, change or detail.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from rich.markup import escape
from rich.syntax import Syntax
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.widgets import DataTable, Static

from ..colours import AUDIT_RESULT
from ..errors import InputError, describe
from ..services.audit import DEFAULT_SPAN, AuditEntry, AuditQuery, AuditSearchResult, parse_when
from ..widgets.filterbar import FilterBar
from ..widgets.livetable import LiveTable, cursor_key
from .base import ConsoleScreen

# (key, label, width): the customers last, taking what the others leave; the detail (e.g. why an
# action was refused) is in the record pane below.
AUDIT_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("ts", "Time (UTC)", 19),
    ("operator", "Operator", 16),
    ("action", "Action", 22),
    ("result", "Result", 8),
    ("change", "Change", 34),
    ("customers", "Customers", 12),
)
FIELDS = ("operator", "customer", "change", "action", "result", "since", "until")


@dataclass
class AuditFilter:
    """The ``/`` terms: the query's filters plus free words matched here."""

    fields: dict[str, str] = field(default_factory=dict)
    words: list[str] = field(default_factory=list)
    include_worker: bool = False

    @classmethod
    def parse(cls, text: str) -> AuditFilter:
        out = cls()
        for term in text.split():
            name, sep, value = term.partition(":")
            if sep and name.casefold() in FIELDS and value:
                out.fields[name.casefold()] = value
            elif term.casefold() == "all":
                out.include_worker = True
            else:
                out.words.append(term.casefold())
        return out

    def query(self, now: datetime, limit: int) -> AuditQuery:
        f = self.fields
        since = parse_when(f["since"], end=False, now=now) if "since" in f else now - DEFAULT_SPAN
        until = parse_when(f["until"], end=True, now=now) if "until" in f else now
        if until < since:
            raise InputError("until is before since")
        return AuditQuery(
            since=since,
            until=until,
            operator=f.get("operator"),
            customer=f.get("customer"),
            change_id=f.get("change"),
            action=f.get("action"),
            result=f.get("result"),
            include_worker=self.include_worker,
            limit=limit,
        )

    def keeps(self, entry: AuditEntry) -> bool:
        text = " ".join(
            (entry.operator or "", entry.action, entry.change_id or "", str(entry.raw.get("detail") or ""))
        ).casefold()
        return all(word in text for word in self.words)


def entry_cells(entry: AuditEntry) -> tuple[str, ...]:
    change = entry.change_id or ""
    if change and entry.version:
        change += f" v{entry.version}"
    return (
        entry.ts.strftime("%Y-%m-%d %H:%M:%S"),
        entry.operator or "—",
        entry.action,
        entry.result or "",
        change,
        ", ".join(entry.customers),
    )


def cell(column: str, value: str) -> Text:
    if column == "result":
        return Text(value, style=AUDIT_RESULT.get(value, ""))
    return Text(value)


class AuditScreen(ConsoleScreen[None]):
    help_title = "Audit trail"
    CSS_PATH = "audit.tcss"
    AUTO_FOCUS = "#audit-table"
    LIMIT = 2000

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("r", "refresh", "Reload"),
        Binding("o", "open_change", "Open change"),
    ]

    def __init__(self, *, change_id: str | None = None, refresh_interval: float = 30.0) -> None:
        super().__init__()
        self.refresh_interval = refresh_interval
        self.filter_text = f"change:{change_id}" if change_id else ""
        self.filter = AuditFilter.parse(self.filter_text)
        self.result: AuditSearchResult | None = None
        self.searched: AuditQuery | None = None  # the query of the search shown
        self.entries: dict[str, AuditEntry] = {}
        self.loading = False
        self.error: str | None = None

    def compose_body(self) -> ComposeResult:
        with Vertical(id="audit-head"):
            yield Static(id="audit-summary")
            yield Static(id="audit-error", classes="hidden")
        yield FilterBar(
            "filter: operator:jane customer:acme change:CHG-… action:change.* result:refused since:30d "
            "until:2026-12-01 all · words (enter applies, esc closes)",
            table="#audit-table",
            live=False,
            id="audit-filter",
        )
        yield LiveTable(
            id="audit-table", cursor_type="row", zebra_stripes=True, fill_column="customers", fill_min=9
        )
        with VerticalScroll(id="audit-detail"):
            yield Static(id="audit-record")

    def on_mount(self) -> None:
        self.title = "Audit trail"
        table = self.table
        for key, label, width in AUDIT_COLUMNS:
            table.add_column(label, key=key, width=width)
        table.fit_fill_column()
        if self.filter_text:
            bar = self.query_one("#audit-filter", FilterBar)
            bar.value = bar.applied = self.filter_text
            bar.remove_class("hidden")
        self.render_summary()
        self.load()
        if self.live and self.refresh_interval:
            self.set_interval(self.refresh_interval, self.load, name="audit-refresh")

    @property
    def table(self) -> LiveTable:
        return self.query_one("#audit-table", LiveTable)

    @property
    def idle(self) -> bool:
        return not self.loading

    def change_shown(self) -> str | None:
        key = cursor_key(self.table) if self.is_mounted else None
        entry = self.entries.get(key) if key else None
        return entry.change_id if entry else None

    # -- loading ---------------------------------------------------------------------------------
    def load(self) -> None:
        try:
            query = self.filter.query(self.now(), self.LIMIT)
        except InputError as exc:
            self.show_error(str(exc))
            return
        self.loading = True
        self.render_summary()
        self.call_service(
            lambda: self.services.audit.search(query),
            done=lambda result: self._loaded(query, result),
            failed=self._failed,
            group="audit",
            exclusive=True,
        )

    def action_refresh(self) -> None:
        self.load()

    def _loaded(self, query: AuditQuery, result: AuditSearchResult) -> None:
        self.loading = False
        self.searched, self.result = query, result
        self.error = "; ".join(result.errors[:3]) or None
        kept = [e for e in result.entries if self.filter.keeps(e)]
        before = cursor_key(self.table)
        self.entries = {f"{e.key}#{i}": e for i, e in enumerate(kept)}
        table = self.table
        with table.coalesced():
            table.clear()
            for key, entry in self.entries.items():
                cells = entry_cells(entry)
                table.add_row(
                    *(cell(c, v) for (c, _, _), v in zip(AUDIT_COLUMNS, cells, strict=True)), key=key
                )
        if before in self.entries:
            table.move_cursor(row=table.get_row_index(before), animate=False)
        self.show_record()
        self.render_summary()

    def _failed(self, exc: BaseException) -> None:
        self.loading = False
        self.show_error(describe(exc))
        self.render_summary()

    def show_error(self, message: str) -> None:
        self.error = message
        box = self.query_one("#audit-error", Static)
        box.update(f"⚠ {escape(message)}  [dim](r retries)[/]")
        box.remove_class("hidden")

    def render_summary(self) -> None:
        if self.error is None:
            self.query_one("#audit-error", Static).add_class("hidden")
        result = self.result
        text = Text()
        if result is None or self.searched is None:
            text.append("loading the audit trail…", style="italic")
        else:
            query = self.searched
            shown = len(self.entries)
            text.append(f"{shown} record{'s' if shown != 1 else ''}", style="bold")
            if result.truncated:
                text.append(f" (newest {len(result.entries)} of {result.matched})", style="italic")
            text.append(f" · {query.since:%Y-%m-%d %H:%M} .. {query.until:%Y-%m-%d %H:%M} UTC")
            text.append(f" · {result.objects_read} object(s) over {result.days} day(s)", style="grey50")
            if self.loading:
                text.append(" · reloading…", style="italic")
        if self.filter_text.strip():
            text.append(f"\nfilter: {self.filter_text.strip()}", style="italic")
        else:
            text.append("\n/ filters (operator:, customer:, change:, action:, result:, since:, until:)")
        self.query_one("#audit-summary", Static).update(text)

    # -- the highlighted record ------------------------------------------------------------------------
    @on(DataTable.RowHighlighted, "#audit-table")
    def _highlighted(self, _event: DataTable.RowHighlighted) -> None:
        self.show_record()

    def show_record(self) -> None:
        key = cursor_key(self.table)
        entry = self.entries.get(key) if key else None
        box = self.query_one("#audit-record", Static)
        if entry is None:
            box.update("No record matches." if self.result is not None else "")
            return
        raw: dict[str, Any] = dict(entry.raw)
        box.update(Syntax(json.dumps(raw, indent=2, ensure_ascii=False), "json", word_wrap=True))

    # -- actions --------------------------------------------------------------------------------------
    def action_filter(self) -> None:
        self.query_one("#audit-filter", FilterBar).open()

    @on(FilterBar.Applied, "#audit-filter")
    def _filter_applied(self, event: FilterBar.Applied) -> None:
        self.filter_text = event.text
        self.filter = AuditFilter.parse(event.text)
        self.error = None
        self.load()

    def action_back(self) -> None:
        if not self.query_one("#audit-filter", FilterBar).cancel():
            self.back()

    def action_open_change(self) -> None:
        change_id = self.change_shown()
        if change_id is None:
            self.notify("This record is about no change.", severity="warning")
            return
        self.console.open_change(change_id)
