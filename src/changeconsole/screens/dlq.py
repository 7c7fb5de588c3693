"""The dead-letter queue screen: ``DlqScreen(customer: str | None = None)``.

Left: every customer with its DLQ depth and oldest message age (CloudWatch; refreshed in a thread
worker every ``refresh_interval`` seconds when the console is live). Right: the messages of the
selected customer (``enter`` on a customer peeks; the opening customer, or the first with messages,
is peeked at once), and a detail pane with the worker's reason, the attributes and the change JSON.

Peeking receives messages: they are invisible for a few seconds and their receive count rises (said
on screen). ``space`` marks, ``a`` marks all, ``R`` redrives the marked messages (or the highlighted
one) after a confirmation with the count, with live progress (``c``/``esc`` cancels between batches);
``e`` exports to a JSON-lines file, ``i`` imports one, ``P`` purges behind a typed confirmation (the
customer code), ``/`` filters (``cc-reason=isolation*`` or body text; the DLQ is re-scanned).
A read-only console hides and refuses redrive, import and purge; each of redrive, export, import and
purge is disabled (help says why) unless the operator's roles give it on the customer shown.

Only ``app.services.dlq`` (``services/dlq``) is called, always from thread workers.
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

from rich.console import Group, RenderableType
from rich.json import JSON
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import DataTable, Label, ProgressBar, Static
from textual.widgets.data_table import RowDoesNotExist

from ..errors import describe
from ..models import OperatorAction
from ..services.dlq import (
    DlqMessage,
    DlqService,
    DlqSummary,
    PeekResult,
    PurgeRefused,
    RedriveProgress,
    RedriveResult,
    Target,
    age_text,
    default_export_path,
    recurrence,
)
from ..widgets.filterbar import FilterBar
from ..widgets.navtable import NavTable
from .base import ConsoleScreen
from .modals import ConfirmModal, PathModal, TypeToConfirmModal

PEEK_MAX = 200
MARK = "●"
# (key, label, width): the change title last, so narrow terminals lose only its tail.
MESSAGE_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("mark", " ", 1),
    ("id", "Message", 8),
    ("reason", "Reason", 19),
    ("event", "Event", 11),
    ("rc", "RC", 2),
    ("seen", "First seen", 10),
    ("change", "Change", 19),
)


def when_text(value: datetime | None, now: datetime) -> str:
    if value is None:
        return "—"
    return f"{value.astimezone(UTC):%m-%d %H:%M} ({age_text((now - value).total_seconds())})"


def change_title(m: DlqMessage) -> str:
    """The change's title from the message body (embedded snapshot), else its id."""
    data = m.body_json()
    change = data.get("change") if isinstance(data, dict) else None
    if isinstance(change, dict) and isinstance(change.get("changeTitle"), str):
        return " ".join(change["changeTitle"].split())
    return m.change_id or "—"


def message_cells(m: DlqMessage, marked: bool, now: datetime) -> tuple[str | Text, ...]:
    event = (m.event or "—") + (f" v{m.version}" if m.version else "")
    first = m.first_seen
    seen = f"{first.astimezone(UTC):%H:%M} {age_text((now - first).total_seconds())}" if first else "—"
    return (
        Text(MARK, style="bold yellow") if marked else " ",
        m.message_id[:8],
        Text(m.reason, style="bold magenta"),
        event,
        str(m.receive_count),
        seen,
        change_title(m),
    )


def detail_renderable(m: DlqMessage, customer: str, now: datetime) -> RenderableType:
    head = Text()
    head.append("Reason  ", style="dim")
    head.append(m.reason, style="bold magenta")
    if m.detail:
        head.append(f" — {m.detail}")
    head.append("\nMessage ", style="dim")
    head.append(m.message_id)
    head.append("\nCounts  ", style="dim")
    src = m.source_receive_count
    head.append(
        f"received {m.receive_count} time(s) in the DLQ"
        + (f", {src} in {customer}'s queue" if src is not None else "")
        + (f", redriven {m.redrive_count} time(s)" if m.redrive_count else "")
    )
    head.append("\nSeen    ", style="dim")
    head.append(f"sent {when_text(m.sent_at, now)} · first received {when_text(m.first_received_at, now)}")
    attrs = Table.grid(padding=(0, 2))
    attrs.add_column(style="cyan", no_wrap=True)
    attrs.add_column()
    for name, value in m.attrs.items():
        attrs.add_row(name, escape(value))
    data = m.body_json()
    body: RenderableType
    if data is None:
        body = Text(m.body)
    else:
        change = data.get("change") if isinstance(data, dict) else None
        body = JSON.from_data(change if isinstance(change, dict) else data, indent=2)
    parts: list[RenderableType] = [head, Text("\nAttributes", style="bold"), attrs]
    label = "Change" if isinstance(data, dict) and isinstance(data.get("change"), dict) else "Body"
    parts += [Text(f"\n{label}", style="bold"), body]
    return Group(*parts)


# -- the screen ---------------------------------------------------------------------------------------


class DlqScreen(ConsoleScreen[None]):
    help_title = "Dead-letter queues"
    ARMED = True
    CSS_PATH = "dlq.tcss"
    MUTATING: ClassVar[frozenset[str]] = frozenset({"redrive", "purge", "import_file"})
    REQUIRES: ClassVar[Mapping[str, OperatorAction]] = {
        "redrive": OperatorAction.DLQ_REDRIVE,
        "export": OperatorAction.DLQ_EXPORT,
        "import_file": OperatorAction.DLQ_IMPORT,
        "purge": OperatorAction.DLQ_PURGE,
    }
    AUTO_FOCUS = "#dlq-customers"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("space", "mark", "Mark"),
        Binding("a", "mark_all", "Mark all"),
        Binding("R", "redrive", "Redrive", key_display="R"),
        Binding("e", "export", "Export"),
        Binding("i", "import_file", "Import"),
        Binding("P", "purge", "Purge", key_display="P"),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("r", "refresh", "Refresh"),
        Binding("c", "cancel", "Cancel redrive"),
    ]

    def __init__(
        self,
        customer: str | None = None,
        *,
        refresh_interval: float | None = 15.0,
        name: str | None = None,
        id: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id)
        self.initial_customer = customer
        self.refresh_interval = refresh_interval
        self.customer: str | None = None
        self.summaries: dict[str, DlqSummary] = {}
        self.peek_result: PeekResult | None = None
        self.messages: list[DlqMessage] = []
        self.marked: set[str] = set()
        self.filter_text = ""
        self.cancel_event: threading.Event | None = None
        self.last_result: RedriveResult | None = None
        self._loading: Counter[str] = Counter()

    # -- helpers -------------------------------------------------------------------------------
    @property
    def dlq(self) -> DlqService:
        return self.services.dlq

    @property
    def idle(self) -> bool:
        """Nothing loading or running (tests wait on it)."""
        return not +self._loading and self.cancel_event is None

    @property
    def running(self) -> bool:
        return self.cancel_event is not None

    def _background(
        self,
        what: str,
        fn: Callable[[], Any],
        done: Callable[[Any], None],
        *,
        exclusive: bool = False,
    ) -> None:
        """Run ``fn`` in a thread worker; ``done(result)`` or an error notice on the UI thread."""
        self._loading[what] += 1
        self.call_service(
            fn,
            done=lambda result: self._finished(what, done, result),
            failed=lambda exc: self._failed(what, exc),
            group=f"dlq-{what}",
            exclusive=exclusive,
        )

    def _finished(self, what: str, done: Callable[[Any], None], result: Any) -> None:
        self._loading[what] -= 1
        done(result)

    def _failed(self, what: str, exc: BaseException) -> None:
        self._loading[what] -= 1
        if what == "redrive":
            self._redrive_over()
        self.set_status(f"[red]{escape(what)} failed:[/] {escape(describe(exc))}")
        self.notify(escape(describe(exc)), title=f"DLQ {what} failed", severity="error", timeout=10)

    # -- layout ----------------------------------------------------------------------------------
    def compose_body(self) -> ComposeResult:
        with Horizontal(id="dlq-body"):
            with Vertical(id="dlq-left"):
                yield Static("Customers · DLQ depth", classes="dlq-pane-title")
                yield NavTable(id="dlq-customers", cursor_type="row", zebra_stripes=True)
            with Vertical(id="dlq-right"):
                yield Static(id="dlq-title", classes="dlq-pane-title")
                yield FilterBar(
                    "filter: cc-reason=isolation* · text in the body (enter applies, esc closes)",
                    table="#dlq-messages",
                    live=False,
                    id="dlq-filter",
                )
                yield NavTable(id="dlq-messages", cursor_type="row", zebra_stripes=True)
                with VerticalScroll(id="dlq-detail"):
                    yield Static(id="dlq-detail-body")
        with Horizontal(id="dlq-progress", classes="hidden"):
            yield Label("Redrive", id="dlq-progress-label")
            yield ProgressBar(id="dlq-progress-bar", show_eta=False)
            yield Label("c / esc: cancel", id="dlq-progress-hint")
        yield Static(id="dlq-status")

    def on_mount(self) -> None:
        self.title = "Dead-letter queues"
        customers = self.query_one("#dlq-customers", DataTable)
        customers.add_column("Customer", key="customer", width=16)
        customers.add_column("DLQ", key="depth", width=4)
        customers.add_column("Age", key="age", width=5)
        messages = self.query_one("#dlq-messages", DataTable)
        for key, label, width in MESSAGE_COLUMNS:
            messages.add_column(label, key=key, width=width)
        self.render_title()
        self.set_status(
            "Peeking receives messages: they are invisible for a few seconds and their receive count rises."
        )
        self.load_summaries(first=True)
        if self.live and self.refresh_interval:
            self.set_interval(self.refresh_interval, self.load_summaries, name="dlq-refresh")

    def on_resize(self) -> None:
        self.set_class(self.size.width < 100, "narrow")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "cancel":
            return self.running
        return super().check_action(action, parameters)

    def set_status(self, markup: str) -> None:
        self.query_one("#dlq-status", Static).update(markup)

    # -- customers ---------------------------------------------------------------------------------
    def load_summaries(self, first: bool = False) -> None:
        if self._loading["summaries"] > 0:
            return
        self._background(
            "summaries",
            lambda: self.dlq.summaries(),
            lambda rows: self._summaries_arrived(rows, first),
            exclusive=True,
        )

    def _summaries_arrived(self, rows: list[DlqSummary], first: bool) -> None:
        self.summaries = {r.customer: r for r in rows}
        table = self.query_one("#dlq-customers", DataTable)
        for r in rows:
            depth: str | Text = "?" if r.depth is None else str(r.depth)
            if r.error:
                depth = Text("err", style="bold red")
            elif r.depth:
                depth = Text(str(r.depth), style="bold magenta")
            age = self._age_of(r)
            if r.customer in table.rows:
                table.update_cell(r.customer, "depth", depth)
                table.update_cell(r.customer, "age", age)
            else:
                table.add_row(r.customer, depth, age, key=r.customer)
        if first:
            start = self.initial_customer
            if start not in self.summaries:
                if start:
                    self.notify(f"No customer {start!r} in the config.", severity="warning")
                start = next((r.customer for r in rows if r.depth), rows[0].customer if rows else None)
            if start is not None:
                with contextlib.suppress(RowDoesNotExist):
                    table.move_cursor(row=table.get_row_index(start))
                self.select_customer(start)
        self.render_title()

    def _age_of(self, r: DlqSummary) -> str:
        if self.peek_result is not None and self.peek_result.customer == r.customer:
            return age_text(self.peek_result.oldest_age_seconds)
        return age_text(r.oldest_age_seconds)

    @on(DataTable.RowSelected, "#dlq-customers")
    def _customer_selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value is not None:
            self.select_customer(str(event.row_key.value))
            self.query_one("#dlq-messages", DataTable).focus()

    def select_customer(self, code: str) -> None:
        if code != self.customer:
            self.marked.clear()
        self.customer = code
        self.refresh_bindings()  # what the operator may do depends on the customer
        self.peek()

    # -- messages ------------------------------------------------------------------------------
    def peek(self) -> None:
        code = self.customer
        if code is None:
            return
        flt = self.filter_text or None
        self.render_title(loading=True)
        self._background(
            "peek",
            lambda: self.dlq.peek(code, max_messages=PEEK_MAX, filter=flt),
            self._peeked,
            exclusive=True,
        )

    def _peeked(self, result: PeekResult) -> None:
        if result.customer != self.customer:
            return
        self.peek_result = result
        self.messages = list(result.messages)
        ids = {m.message_id for m in self.messages}
        self.marked &= ids
        table = self.query_one("#dlq-messages", DataTable)
        current = self._cursor_message()
        table.clear()
        now = self.now()
        for m in self.messages:
            table.add_row(*message_cells(m, m.message_id in self.marked, now), key=m.message_id)
        if current is not None and current.message_id in ids:
            table.move_cursor(row=table.get_row_index(current.message_id))
        customers = self.query_one("#dlq-customers", DataTable)
        if result.customer in customers.rows:
            customers.update_cell(result.customer, "age", age_text(result.oldest_age_seconds))
        self.render_title()
        self.render_detail()

    def render_title(self, loading: bool = False) -> None:
        title = self.query_one("#dlq-title", Static)
        code = self.customer
        if code is None:
            title.update("No customer selected")
            return
        s = self.summaries.get(code)
        text = Text()
        text.append(code, style="bold")
        if s is not None:
            text.append(f" {s.name} · {s.queue}")
            if s.error:
                text.append(f" · {s.error}", style="red")
        p = self.peek_result if self.peek_result and self.peek_result.customer == code else None
        if loading:
            text.append(" · peeking…", style="dim")
        elif p is not None:
            text.append(f" · {len(p.messages)} shown of {p.depth}")
            if p.filter:
                text.append(f" matching {p.filter!r}", style="yellow")
            text.append(f" · oldest {age_text(p.oldest_age_seconds)} (peek)")
        if self.marked:
            text.append(f" · {len(self.marked)} marked", style="bold yellow")
        title.update(text)

    def _cursor_message(self) -> DlqMessage | None:
        table = self.query_one("#dlq-messages", DataTable)
        if not self.messages or table.row_count == 0:
            return None
        try:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        except (RowDoesNotExist, Exception):
            return None
        return next((m for m in self.messages if m.message_id == key), None)

    @on(DataTable.RowHighlighted, "#dlq-messages")
    def _message_highlighted(self) -> None:
        self.render_detail()

    def render_detail(self) -> None:
        body = self.query_one("#dlq-detail-body", Static)
        m = self._cursor_message()
        if m is None:
            empty = "The DLQ is empty." if self.peek_result and not self.peek_result.depth else "No message."
            body.update(Text(empty, style="dim"))
            return
        body.update(detail_renderable(m, self.customer or "", self.now()))

    def _redraw_marks(self) -> None:
        table = self.query_one("#dlq-messages", DataTable)
        for m in self.messages:
            mark: str | Text = Text(MARK, style="bold yellow") if m.message_id in self.marked else " "
            with contextlib.suppress(Exception):
                table.update_cell(m.message_id, "mark", mark)
        self.render_title()

    def action_mark(self) -> None:
        m = self._cursor_message()
        if m is None:
            return
        self.marked ^= {m.message_id}
        self._redraw_marks()
        table = self.query_one("#dlq-messages", DataTable)
        if table.cursor_row < table.row_count - 1:
            table.move_cursor(row=table.cursor_row + 1)

    def action_mark_all(self) -> None:
        ids = {m.message_id for m in self.messages}
        self.marked = set() if ids and ids <= self.marked else ids
        self._redraw_marks()

    # -- filter -----------------------------------------------------------------------------------
    def action_filter(self) -> None:
        self.query_one("#dlq-filter", FilterBar).open()

    @on(FilterBar.Applied, "#dlq-filter")
    def _filter_applied(self, event: FilterBar.Applied) -> None:
        self.filter_text = event.text
        self.peek()

    # -- redrive -----------------------------------------------------------------------------------
    def _selection(self) -> list[str]:
        if self.marked:
            return [m.message_id for m in self.messages if m.message_id in self.marked]
        m = self._cursor_message()
        return [m.message_id] if m is not None else []

    def action_customers(self, action: str) -> list[str] | None:
        return [self.customer] if self.customer else None

    def _refuse(self, action: str, what: str) -> bool:
        if self.refuse(action, what):
            return True
        if self.running:
            self.notify("A redrive is running; cancel it (c) or wait.", severity="warning")
            return True
        return False

    def action_redrive(self) -> None:
        if self._refuse("redrive", "redrive") or self.customer is None:
            return
        ids = self._selection()
        if not ids:
            self.notify("Nothing to redrive: the DLQ shows no message.", severity="warning")
            return
        code = self.customer
        s = self.summaries.get(code)
        source = s.queue.removesuffix("-dlq") if s else "the source queue"
        n = len(ids)
        body = (
            f"Move [b]{n}[/b] message{'s' if n != 1 else ''} from [b]{escape(s.queue if s else code)}[/b] "
            f"back to [b]{escape(source)}[/b] for the worker.\n"
            "Each is sent first and deleted from the DLQ after; the worker's ledger makes a repeat "
            "harmless, so no recipient gets an email twice."
        )
        chosen = set(ids)
        recurring = Counter(
            m.reason for m in self.messages if m.message_id in chosen and recurrence(m.reason)
        )
        for reason, count in sorted(recurring.items()):
            why = recurrence(reason) or ""
            body += (
                f"\n[b red]⚠ {count} of them[/] dead-lettered for [b]{escape(reason)}[/]: {escape(why)}."
                if n > 1
                else f"\n[b red]⚠ Dead-lettered for [b]{escape(reason)}[/b][/]: {escape(why)}."
            )
        self.app.push_screen(
            ConfirmModal(
                f"Redrive {n} message{'s' if n != 1 else ''} of {code}?",
                body,
                yes="Redrive anyway" if recurring else "Redrive",
                danger=bool(recurring),
            ),
            lambda ok: self._start_redrive(code, ids) if ok else None,
        )

    def _start_redrive(self, code: str, ids: list[str]) -> None:
        cancel = threading.Event()
        self.cancel_event = cancel
        bar = self.query_one("#dlq-progress-bar", ProgressBar)
        bar.update(total=len(ids), progress=0)
        self.query_one("#dlq-progress-label", Label).update(f"Redrive {code}")
        self.query_one("#dlq-progress").remove_class("hidden")
        self.refresh_bindings()

        def progress(p: RedriveProgress) -> None:
            self.post_from_thread(self._progress, p)

        self._background(
            "redrive",
            lambda: self.dlq.redrive(code, message_ids=ids, progress=progress, cancel=cancel),
            self._redriven,
        )

    def _progress(self, p: RedriveProgress) -> None:
        bar = self.query_one("#dlq-progress-bar", ProgressBar)
        bar.update(total=p.total, progress=p.moved)
        label = f"Redrive: {p.moved}/{p.total if p.total is not None else '?'} moved"
        if p.failed:
            label += f", {p.failed} failed"
        if self.cancel_event is not None and self.cancel_event.is_set():
            label += " · cancelling…"
        self.query_one("#dlq-progress-label", Label).update(label)

    def _redrive_over(self) -> None:
        self.cancel_event = None
        self.query_one("#dlq-progress").add_class("hidden")
        self.refresh_bindings()

    def _redriven(self, result: RedriveResult) -> None:
        self._redrive_over()
        self.last_result = result
        self.marked -= set(result.moved)
        parts = [f"Redrove {result.moved_count} message{'s' if result.moved_count != 1 else ''}"]
        parts.append(f"of {result.customer} to {result.source_queue}")
        if result.cancelled:
            parts.append("· [yellow]cancelled[/]: the rest stay in the DLQ")
        if result.not_found:
            parts.append(f"· [yellow]{len(result.not_found)} no longer in the DLQ[/]")
        if result.failed:
            parts.append(f"· [red]{len(result.failed)} failed[/] ({escape(result.failed[0].error)})")
        self.set_status(" ".join(parts))
        self.notify(" ".join(parts), title="Redrive", severity="warning" if not result.ok else "information")
        self.load_summaries()
        self.peek()

    def action_cancel(self) -> None:
        if self.cancel_event is not None:
            self.cancel_event.set()
            self.query_one("#dlq-progress-label", Label).update("Cancelling after the current batch…")

    def action_back(self) -> None:
        if self.running:
            self.action_cancel()
        elif not self.query_one("#dlq-filter", FilterBar).cancel():
            self.back()

    # -- export / import / purge ------------------------------------------------------------------
    def action_export(self) -> None:
        if self.customer is None or self.refuse("export", "export"):
            return
        code = self.customer
        default = str(default_export_path(code, self.now()))
        body = (
            "Every message of the DLQ (the filter applies) as JSON lines, re-importable exactly. "
            "The export is recorded: a purge then deletes exactly these messages."
        )
        flt = self.filter_text or None
        self.app.push_screen(
            PathModal(f"Export {code}'s DLQ", body, default),
            lambda answer: (
                self._background(
                    "export",
                    lambda: self.dlq.export_jsonl(code, answer[0], filter=flt),
                    lambda r: self._notice(
                        f"Exported {r.count} message{'s' if r.count != 1 else ''} to {escape(r.path)}"
                        + ("" if r.recorded else " [yellow](not recorded: purge will need the typed code)[/]")
                    ),
                )
                if answer
                else None
            ),
        )

    def action_import_file(self) -> None:
        if self._refuse("import_file", "import") or self.customer is None:
            return
        code = self.customer
        body = "An export file of this customer. Every line is checked before anything is sent."

        def go(answer: tuple[str, str] | None) -> None:
            if not answer:
                return
            path, target = answer
            to: Target = "source" if target == "source" else "dlq"
            self._background(
                "import",
                lambda: self.dlq.import_jsonl(code, path, to=to),
                lambda r: self._imported(r),
            )

        self.app.push_screen(PathModal(f"Import into {code}", body, "", choose_target=True), go)

    def _imported(self, r: Any) -> None:
        text = f"Imported {len(r.sent)} of {r.read} message(s) to {escape(r.queue)}"
        if r.skipped_present:
            text += f"; {len(r.skipped_present)} already there"
        if r.failed:
            text += f"; [red]{len(r.failed)} failed[/]"
        self._notice(text)

    def _notice(self, markup: str) -> None:
        self.set_status(markup)
        self.notify(markup, title="DLQ")
        self.load_summaries()
        self.peek()

    def action_purge(self) -> None:
        if self._refuse("purge", "purge") or self.customer is None:
            return
        code = self.customer
        self._background(
            "purge-check", lambda: self._export_state(code), lambda st: self._confirm_purge(code, st)
        )

    def _export_state(self, code: str) -> tuple[dict[str, Any] | None, str]:
        try:
            return self.dlq.check_export(code), ""
        except PurgeRefused as exc:
            return None, str(exc)

    def _confirm_purge(self, code: str, state: tuple[dict[str, Any] | None, str]) -> None:
        record, why = state
        s = self.summaries.get(code)
        depth = s.depth if s and s.depth is not None else "?"
        if record is not None:
            body = (
                f"An export of {record.get('count')} message(s) is recorded ({escape(str(record.get('at')))} "
                f"by {escape(str(record.get('by')))}, {escape(str(record.get('path')))}).\n"
                "Only those messages are deleted; anything that arrived since stays."
            )
        else:
            body = (
                f"[b red]No usable export[/]: {escape(why)}.\n"
                f"ALL {depth} message(s) now in the DLQ will be deleted permanently.\n"
                "[dim]esc, then [b]e[/b] exports them first: the purge then deletes exactly those.[/]"
            )
        self.app.push_screen(
            TypeToConfirmModal(
                f"Purge {code}'s DLQ?", body, code, action_label="Purge", keep_label="Keep messages"
            ),
            lambda ok: (
                self._background(
                    "purge",
                    lambda: self.dlq.purge(code, yes=record is None),
                    lambda r: self._notice(
                        f"Purged {len(r.deleted)} message(s) from {escape(r.queue)}"
                        + (f"; kept {len(r.kept)} not in the export" if r.kept else "")
                    ),
                )
                if ok
                else None
            ),
        )

    def action_refresh(self) -> None:
        self.load_summaries()
        self.peek()
