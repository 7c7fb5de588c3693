"""Live per-customer delivery status of one change.

``LiveStatusScreen(change_id, *, version=None, event=None, interval=1.0)``
    One row per customer of the change's newest round (or of ``version``/``event``): state, attempts,
    recipients sent/total, failed recipients, duration, last error. A stacked bar and counts by state
    sit above the table. The status table is queried in a thread worker every ``interval`` seconds
    (never two queries at once; ``services/live_status.LiveStatusQuery`` reads only what changed).
    Only rows whose record changed, or that are still in flight (their duration ticks), are looked
    at; of those only cells whose text changed are updated (``update_cell``), rows are added/removed
    by key (the customer code), so the cursor and the ``/`` filter survive every refresh.
    Bindings: ``p`` pause/resume, ``+``/``-`` longer/shorter interval, ``r`` refresh now, ``/`` filter,
    ``enter`` drill into a customer (``screens/delivery.DeliveryDetailScreen``), ``d`` open the
    customer's DLQ, ``escape`` back.

Durations and "updated at" follow the console's clock (``app.now``; frozen in tests).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.timer import Timer
from textual.widgets import DataTable, Static
from textual.worker import get_current_worker

from ..colours import DELIVERY_STATE
from ..errors import describe
from ..models import CustomerMapping, DeliveryRecord, DeliveryState, EmailEvent
from ..services.live_status import LiveStatusQuery
from ..widgets.filterbar import FilterBar
from ..widgets.livetable import LiveTable, SyncStats, cursor_key, sync_rows
from ..widgets.statebar import StateBar, counts_text, settled_count
from .base import ConsoleScreen
from .delivery import DeliveryDetailScreen
from .format import format_duration, one_line, record_duration

INTERVAL_STEPS: tuple[float, ...] = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)

# (key, label, width); width None = the rest of the line.
STATUS_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("customer", "Customer", 0),  # width from the longest configured code
    ("state", "State", 13),
    ("attempts", "Att", 3),
    ("recipients", "Recipients", 10),
    ("failed", "Failed", 6),
    ("duration", "Duration", 8),
    ("error", "Last error", 60),
)
COLUMN_KEYS: tuple[str, ...] = tuple(c[0] for c in STATUS_COLUMNS)


def row_cells(record: DeliveryRecord, now: datetime) -> tuple[str, ...]:
    """The plain text of every column of one record (what the diff compares)."""
    if record.recipients_total or record.is_final:
        recipients = f"{record.recipients_sent}/{record.recipients_total}"
    else:
        recipients = "-"
    removal = record.event is EmailEvent.REMOVED  # no longer targeted: its "no longer affects you" notice
    return (
        f"{record.customer} (removed)" if removal else record.customer,
        record.state.value,
        str(record.attempts),
        recipients,
        str(record.recipients_failed) if record.recipients_failed else "",
        format_duration(record_duration(record, now)),
        one_line(record.last_error),
    )


_RIGHT = frozenset({"attempts", "recipients", "duration", "failed"})


def styled_cell(column: str, value: str) -> Text:
    """The renderable of one cell. Always ``Text``: a plain ``str`` cell would be parsed as markup."""
    if column == "state":
        return Text(value, style=DELIVERY_STATE.get(value, ""))
    if column == "failed":
        return Text(value, style="bold red1", justify="right")
    if column in _RIGHT:
        return Text(value, justify="right")
    if column == "error":
        return Text(value, style="red1")
    return Text(value)


class LiveStatusScreen(ConsoleScreen[None]):
    help_title = "Live status"
    CSS_PATH = "status.tcss"
    AUTO_FOCUS = "#status-table"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("p", "toggle_pause", "Pause/resume"),
        Binding("plus,equals_sign", "slower", "+interval", key_display="+"),
        Binding("minus", "faster", "-interval", key_display="-"),
        Binding("r", "refresh", "Refresh"),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("d", "dlq", "DLQ"),
    ]

    def __init__(
        self,
        change_id: str,
        *,
        version: int | None = None,
        event: EmailEvent | str | None = None,
        interval: float = 1.0,
        name: str | None = None,
        id: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id)
        self.change_id = change_id
        self.version = version
        self.event = EmailEvent(event) if event is not None else None
        self.interval = max(0.05, float(interval))
        self.paused = False
        self.filter_text = ""
        self.records: dict[str, DeliveryRecord] = {}
        self.cells: dict[str, tuple[str, ...]] = {}  # plain cell texts of every record
        self.shown: dict[str, tuple[str, ...]] = {}
        self.last_sync = SyncStats()
        self.fetch_count = 0  # completed queries (tests wait on it)
        self.error: str | None = None
        self.title_text: str | None = None
        self.updated_at: datetime | None = None
        self._inflight = False
        self._timer: Timer | None = None
        self._loaded = False
        self._query: LiveStatusQuery | None = None

    def change_shown(self) -> str | None:
        return self.change_id

    # -- layout -----------------------------------------------------------------------
    def compose_body(self) -> ComposeResult:
        with Vertical(id="status-head"):
            yield Static(id="status-title")
            yield Static(id="status-line")
            yield StateBar(id="status-bar")
            yield Static(id="status-counts")
            yield Static(id="status-error", classes="hidden")
        yield FilterBar(
            "filter: customer, name, state or error text", table="#status-table", id="status-filter"
        )
        yield Static(id="status-empty", classes="hidden")
        yield LiveTable(
            id="status-table", cursor_type="row", zebra_stripes=True, fill_column="error", fill_min=20
        )

    def on_mount(self) -> None:
        self.title = "Live status"
        self.sub_title = self.change_id
        table = self.table
        codes = list(self.customers)
        customer_width = min(30, max([8, *(len(c) for c in codes)]))
        for key, label, width in STATUS_COLUMNS:
            table.add_column(label, key=key, width=width or customer_width)
        table.fit_fill_column()
        self._render_head()
        if self.live:
            self._timer = self.set_interval(self.interval, self._tick, pause=self.paused)
        self._start_fetch()

    @property
    def customers(self) -> dict[str, CustomerMapping]:
        """The configured customers (code → mapping)."""
        return self.services.config.customer_mappings

    @property
    def table(self) -> LiveTable:
        return self.query_one("#status-table", LiveTable)

    @property
    def refresh_timer(self) -> Timer | None:
        return self._timer

    @property
    def loaded(self) -> bool:
        """True once the first query has completed (successfully or not)."""
        return self._loaded

    # -- refresh loop --------------------------------------------------------------------
    def _tick(self) -> None:
        # Covered by another screen (drill-down, DLQ, help): no queries until it is back on top.
        if not self.paused and self.is_current:
            self._start_fetch()

    def on_screen_resume(self) -> None:
        if self._loaded and not self.paused:
            self._start_fetch()

    def _start_fetch(self) -> None:
        if self._inflight:
            return  # never stack queries when one is slower than the interval
        self._inflight = True
        self._fetch()

    @work(thread=True, group="status-refresh", exit_on_error=False)
    def _fetch(self) -> None:
        worker = get_current_worker()
        store = self.services.status
        if self._query is None or self._query.store is not store:
            self._query = LiveStatusQuery(store, self.change_id, version=self.version, event=self.event)
        try:
            result = self._query.poll()
        except Exception as exc:  # every failure is shown; the loop keeps going
            message = describe(exc)
            if not worker.is_cancelled:
                self.post_from_thread(self._fetch_failed, message)
            return
        title = self.title_text
        if not title:
            try:
                summary = store.get_summary(self.change_id)
            except Exception:  # the title is decoration: retried on the next refresh
                summary = None
            title = summary.title if summary is not None else ""
        # Cell texts are computed here, off the UI thread, for the rows that changed or are in flight
        # (their duration follows the clock); the UI thread only diffs those.
        now = self.now()
        records = result.by_customer
        previous = self.cells  # replaced (never mutated) by _fetch_done, which runs after this
        touched: set[str] | None
        if result.changed is None or not previous:
            touched = None
            cells = {code: row_cells(r, now) for code, r in records.items()}
        else:
            touched = set(result.changed)
            touched.update(code for code, r in records.items() if not r.is_final)
            cells = {code: previous[code] for code in records if code not in touched and code in previous}
            for code in records:
                if code not in cells:
                    touched.add(code)
                    cells[code] = row_cells(records[code], now)
        if not worker.is_cancelled:
            self.post_from_thread(self._fetch_done, records, cells, title, now, touched)

    def _fetch_done(
        self,
        records: dict[str, DeliveryRecord],
        cells: dict[str, tuple[str, ...]],
        title: str,
        now: datetime,
        touched: set[str] | None = None,
    ) -> None:
        self._inflight = False
        self.fetch_count += 1
        self._loaded = True
        if not self.is_attached:
            return
        self.error = None
        self.title_text = title
        self.updated_at = now
        if touched is not None:
            touched.update(code for code in self.records if code not in records)
        self.records = records
        self.cells = cells
        self.sync_table(touched)
        self._render_head()

    def _fetch_failed(self, message: str) -> None:
        self._inflight = False
        self.fetch_count += 1
        self._loaded = True
        if not self.is_attached:
            return
        self.error = message
        self._render_head()

    # -- table sync ---------------------------------------------------------------------
    def _customer_name(self, code: str) -> str:
        mapping = self.customers.get(code)
        return mapping.customer_name if mapping is not None else ""

    def matches(self, record: DeliveryRecord) -> bool:
        needle = self.filter_text.strip().casefold()
        if not needle:
            return True
        parts = (record.customer, self._customer_name(record.customer), record.state.value, record.last_error)
        hay = " ".join(p for p in parts if p).casefold()
        return needle in hay

    def sync_table(self, touched: Collection[str] | None = None) -> SyncStats:
        """Bring the table in line with ``self.records`` + filter, touching only what changed;
        ``touched``: only these customers can have changed (None: look at every row)."""
        codes = sorted(self.records) if touched is None else sorted(c for c in touched if c in self.records)
        rows = [(code, self.cells[code]) for code in codes if self.matches(self.records[code])]
        self.last_sync = sync_rows(self.table, self.shown, rows, COLUMN_KEYS, styled_cell, only=touched)
        self._render_empty()
        return self.last_sync

    # -- header ------------------------------------------------------------------------------
    def _round_label(self) -> str:
        sample = next(iter(self.records.values()), None)
        if sample is not None:
            return f"v{sample.version} · {sample.event.value}"
        if self.version is not None:
            return f"v{self.version}" + (f" · {self.event.value}" if self.event else "")
        return self.event.value if self.event else "newest round"

    def _render_head(self) -> None:
        title = Text()
        title.append(self.change_id, style="bold")
        title.append(f"  {self._round_label()}", style="bold dodger_blue1")
        if self.title_text:
            title.append("  —  ")
            title.append(self.title_text)
        self.query_one("#status-title", Static).update(title)

        line = Text()
        if self.paused:
            line.append("⏸ paused", style="bold dark_orange")
        else:
            line.append("● live", style="bold green3")
        line.append(f" · every {self.interval:g}s")
        if self.updated_at is not None:
            line.append(f" · updated {self.updated_at.strftime('%H:%M:%S')}Z")
        elif not self._loaded:
            line.append(" · loading…", style="italic")
        total = len(self.records)
        counts = {s.value: 0 for s in DeliveryState}
        for record in self.records.values():
            counts[record.state.value] += 1
        settled = settled_count(counts)
        line.append(f" · {total} customer{'s' if total != 1 else ''}")
        if total:
            line.append(f" · settled {settled}/{total} ({100 * settled // total}%)", style="bold")
        if self.filter_text.strip():
            line.append(f" · filter “{self.filter_text.strip()}”: {len(self.shown)} shown", style="italic")
        self.query_one("#status-line", Static).update(line)
        self.query_one("#status-bar", StateBar).set_counts(counts)
        self.query_one("#status-counts", Static).update(counts_text(counts))

        error = self.query_one("#status-error", Static)
        if self.error:
            error.update(
                Text(
                    f"⚠ {self.error} — showing the last known state, retrying every {self.interval:g}s",
                    style="bold",
                )
            )
            error.remove_class("hidden")
        else:
            error.add_class("hidden")
        self._render_empty()

    def _render_empty(self) -> None:
        empty = self.query_one("#status-empty", Static)
        if not self._loaded:
            empty.update(Text("Loading delivery records…", style="italic"))
            empty.remove_class("hidden")
        elif not self.records:
            if self.error:
                empty.update(Text("No delivery records could be read.", style="italic"))
            else:
                message = f"No delivery records for {self.change_id} yet (waiting for the fan-out)."
                empty.update(Text(message, style="italic"))
            empty.remove_class("hidden")
        elif not self.shown:
            empty.update(Text(f"No customer matches “{self.filter_text.strip()}”.", style="italic"))
            empty.remove_class("hidden")
        else:
            empty.add_class("hidden")

    # -- actions ------------------------------------------------------------------------------
    def action_back(self) -> None:
        if not self.query_one("#status-filter", FilterBar).cancel():
            self.back()

    def action_toggle_pause(self) -> None:
        self.paused = not self.paused
        if self._timer is not None:
            if self.paused:
                self._timer.pause()
            else:
                self._timer.resume()
        self._render_head()
        if not self.paused:
            self._start_fetch()

    def set_interval_seconds(self, seconds: float) -> None:
        self.interval = max(0.05, float(seconds))
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_interval(self.interval, self._tick, pause=self.paused)
        self._render_head()

    def _step(self, direction: int) -> float:
        steps = INTERVAL_STEPS
        if direction > 0:
            return next((s for s in steps if s > self.interval + 1e-9), steps[-1])
        return next((s for s in reversed(steps) if s < self.interval - 1e-9), steps[0])

    def action_slower(self) -> None:
        self.set_interval_seconds(self._step(+1))

    def action_faster(self) -> None:
        self.set_interval_seconds(self._step(-1))

    def action_refresh(self) -> None:
        self._start_fetch()

    def action_filter(self) -> None:
        self.query_one("#status-filter", FilterBar).open()

    @on(FilterBar.Applied, "#status-filter")
    def _filter_applied(self, event: FilterBar.Applied) -> None:
        self.filter_text = event.text
        self.sync_table()
        self._render_head()

    def highlighted(self) -> DeliveryRecord | None:
        key = cursor_key(self.table)
        return self.records.get(key) if key else None

    @on(DataTable.RowSelected, "#status-table")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        record = self.records.get(str(event.row_key.value))
        if record is not None:
            self.app.push_screen(DeliveryDetailScreen(record))

    def action_dlq(self) -> None:
        record = self.highlighted()
        if record is None:
            self.notify("No customer selected", severity="warning")
            return
        self.console.open_dlq(record.customer)
