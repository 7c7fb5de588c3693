"""Live per-customer delivery status of one change, and the drill-down into one delivery.

``LiveStatusScreen(change_id, *, version=None, event=None, interval=1.0, clock=None)``
    One row per customer of the change's newest round (or of ``version``/``event``): state, attempts,
    recipients sent/total, failed recipients, duration, last error. A stacked bar and counts by state
    sit above the table. The status table is queried in a thread worker every ``interval`` seconds
    (never two queries at once; ``services/live_status.LiveStatusQuery`` reads only what changed).
    Only rows whose record changed, or that are still in flight (their duration ticks), are looked
    at; of those only cells whose text changed are updated (``update_cell``), rows are added/removed
    by key (the customer code), so the cursor and the ``/`` filter survive every refresh.
    Bindings: ``p`` pause/resume, ``+``/``-`` longer/shorter interval, ``r`` refresh now, ``/`` filter,
    ``enter`` drill into a customer, ``d`` open the customer's DLQ, ``escape`` back.

``DeliveryDetailScreen(record, *, clock=None, detail_service=None)``
    One delivery: the record's fields, its full error, the worker's claim, recipient-level results
    from the ledger and the depth of the customer's DLQ. ``d`` opens ``DlqScreen(customer)``,
    ``r`` reloads, ``escape`` goes back. Recipients whose outcome is ``unknown`` (a worker stopped
    mid-send) are called out; ``u`` resends them after a confirmation that says they may get the
    email twice (``services.resend``, in a thread worker).

``clock`` is a zero-argument callable returning an aware ``datetime`` (durations and "updated at");
tests inject a frozen one. Screens reach AWS only through ``app.services`` (``status``, ``customers``).
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Self

from rich.markup import escape
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.coordinate import Coordinate
from textual.geometry import Region
from textual.screen import Screen
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import DataTable, Footer, Header, Input, Static
from textual.widgets.data_table import CellDoesNotExist, ColumnKey, RowDoesNotExist
from textual.worker import get_current_worker

from ..errors import describe
from ..models import DeliveryRecord, DeliveryState, EmailEvent, utcnow
from ..services.delivery_detail import DeliveryDetail, DeliveryDetailService
from ..services.live_status import LiveStatusQuery
from ..services.resend import DUPLICATE_WARNING, ResendResult, ResendService
from ..services.status import DeliveryKey
from .modals import ConfirmModal

Clock = Callable[[], datetime]


def style_path(name: str) -> str:
    """Absolute path of a shipped stylesheet: ``changeconsole/styles`` in the wheel, ``styles/`` in a
    source checkout."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "styles" / name, here.parent.parent / "styles" / name):
        if candidate.exists():
            return str(candidate)
    return str(here / "styles" / name)


# -- presentation helpers (pure) --------------------------------------------------------------

STATE_STYLES: dict[str, str] = {
    DeliveryState.QUEUED.value: "grey62",
    DeliveryState.PROCESSING.value: "bold dodger_blue1",
    DeliveryState.SENT.value: "green3",
    DeliveryState.PARTIAL.value: "bold dark_orange",
    DeliveryState.FAILED.value: "bold red1",
    DeliveryState.DEAD_LETTERED.value: "bold magenta",
    DeliveryState.SUPERSEDED.value: "grey50",
    DeliveryState.SKIPPED.value: "grey50",
}
# Order of segments in the stacked bar and of the counts line: settled-good first, trouble last.
BAR_ORDER: tuple[str, ...] = (
    DeliveryState.SENT.value,
    DeliveryState.PARTIAL.value,
    DeliveryState.SKIPPED.value,
    DeliveryState.SUPERSEDED.value,
    DeliveryState.PROCESSING.value,
    DeliveryState.QUEUED.value,
    DeliveryState.FAILED.value,
    DeliveryState.DEAD_LETTERED.value,
)
TROUBLE = frozenset(
    {DeliveryState.FAILED.value, DeliveryState.DEAD_LETTERED.value, DeliveryState.PARTIAL.value}
)
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


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    total = int(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def parse_ts(ts: str | None) -> datetime | None:
    """An RFC 3339 timestamp (``Z`` or offset) as an aware datetime; None when missing or malformed."""
    if not ts:
        return None
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return None


def record_duration(record: DeliveryRecord, now: datetime) -> float | None:
    """Seconds from queued (or started) to finished, or to ``now`` while still in flight."""
    start = parse_ts(record.queued_at) or parse_ts(record.started_at)
    if start is None:
        return None
    end = parse_ts(record.finished_at) if record.is_final else None
    if end is None:
        end = parse_ts(record.updated_at) if record.is_final else now
    if end is None:
        return None
    return max(0.0, (end - start).total_seconds())


def one_line(text: str | None, limit: int = 300) -> str:
    if not text:
        return ""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def row_cells(record: DeliveryRecord, now: datetime) -> tuple[str, ...]:
    """The plain text of every column of one record (what the diff compares)."""
    if record.recipients_total or record.is_final:
        recipients = f"{record.recipients_sent}/{record.recipients_total}"
    else:
        recipients = "-"
    return (
        record.customer,
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
        return Text(value, style=STATE_STYLES.get(value, ""))
    if column == "failed":
        return Text(value, style="bold red1", justify="right")
    if column in _RIGHT:
        return Text(value, justify="right")
    if column == "error":
        return Text(value, style="red1")
    return Text(value)


def counts_text(counts: dict[str, int]) -> Text:
    """``■ sent 3  ■ failed 0 …``: every state present (sent and failed always), coloured like the bar."""
    text = Text()
    for state in BAR_ORDER:
        n = counts.get(state, 0)
        if not n and state not in (DeliveryState.SENT.value, DeliveryState.FAILED.value):
            continue
        if text:
            text.append("  ")
        text.append("■ ", style=STATE_STYLES[state])
        text.append(f"{state} ", style="bold" if state in TROUBLE and n else "")
        text.append(str(n), style=STATE_STYLES[state] if n else "dim")
    return text


def settled_count(counts: dict[str, int]) -> int:
    in_flight = counts.get(DeliveryState.QUEUED.value, 0) + counts.get(DeliveryState.PROCESSING.value, 0)
    return sum(counts.values()) - in_flight


def allocate(counts: Sequence[int], width: int) -> list[int]:
    """Split ``width`` cells proportionally (largest remainder); any non-zero count gets ≥ 1 cell
    when there is room."""
    total = sum(counts)
    if total <= 0 or width <= 0:
        return [0] * len(counts)
    exact = [c * width / total for c in counts]
    cells = [int(x) for x in exact]
    for i, c in enumerate(counts):
        if c and not cells[i]:
            cells[i] = 1
    while sum(cells) > width:
        i = max(range(len(cells)), key=lambda j: (cells[j] - exact[j], cells[j]))
        if cells[i] <= 1:
            break
        cells[i] -= 1
    order = sorted(range(len(counts)), key=lambda j: exact[j] - cells[j], reverse=True)
    k = 0
    while sum(cells) < width and counts:
        j = order[k % len(order)]
        if counts[j]:
            cells[j] += 1
        k += 1
        if k > 4 * len(order) + width:
            break
    return cells


class StateBar(Widget):
    """A one-line stacked bar of delivery states."""

    DEFAULT_CSS = """
    StateBar { height: 1; width: 1fr; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.counts: dict[str, int] = {}

    def set_counts(self, counts: dict[str, int]) -> None:
        if counts != self.counts:
            self.counts = dict(counts)
            self.refresh()

    def render(self) -> Text:
        width = self.size.width
        values = [self.counts.get(s, 0) for s in BAR_ORDER]
        if not sum(values):
            return Text("─" * width, style="grey37")
        text = Text()
        for state, cells in zip(BAR_ORDER, allocate(values, width), strict=True):
            if cells:
                text.append("█" * cells, style=STATE_STYLES[state].replace("bold ", ""))
        return text


def app_clock(screen: Screen[Any], clock: Clock | None) -> Clock:
    """The injected clock, else the console's (``app.now``), else the wall clock."""
    if clock is not None:
        return clock
    now = getattr(screen.app, "now", None)
    return now if callable(now) else utcnow


def post_from_thread(screen: Screen[Any], callback: Callable[..., None], *args: Any) -> None:
    """From a thread worker, run ``callback(*args)`` on the UI thread (dropped while the app shuts
    down)."""
    with contextlib.suppress(RuntimeError):
        screen.app.call_from_thread(callback, *args)


def app_is_live(screen: Screen[Any]) -> bool:
    """False when the console runs without timers (deterministic snapshots: ``App(live=False)``)."""
    return bool(getattr(screen.app, "live", True))


def chrome_top(screen: Screen[Any]) -> Iterator[Widget]:
    """The console's environment header line (``screens/widgets.EnvHeader``) inside the console app,
    Textual's ``Header`` anywhere else (tests, other apps)."""
    if hasattr(screen.app, "header_text"):
        try:
            from .widgets import EnvHeader
        except ImportError:
            pass
        else:
            yield EnvHeader(id="env-header")
            return
    yield Header()


def chrome_bottom(screen: Screen[Any]) -> Iterator[Widget]:
    """The console's AWS call log pane (ctrl+l) when running in the console, then the footer."""
    if hasattr(screen.app, "show_log") and hasattr(screen.app, "call_log"):
        try:
            from .widgets import CallLogPane
        except ImportError:
            pass
        else:
            yield CallLogPane(id="call-log")
    yield Footer()


def open_dlq(screen: Screen[Any], customer: str) -> None:
    """Push the DLQ screen of one customer (through the console when it offers ``open_dlq``, else
    imported lazily: the screen belongs to the DLQ module)."""
    opener = getattr(screen.app, "open_dlq", None)
    if callable(opener):
        opener(customer)
        return
    try:
        module = importlib.import_module("changeconsole.screens.dlq")
        dlq_screen = module.DlqScreen(customer=customer)
    except (ImportError, AttributeError) as exc:
        screen.notify(f"DLQ screen not available: {exc}", severity="warning")
        return
    screen.app.push_screen(dlq_screen)


@dataclass
class SyncStats:
    """What the last table sync touched (tests and the bench read it)."""

    added: int = 0
    removed: int = 0
    cells: int = 0
    sorted: bool = False
    visited: int = 0  # rows compared (every row unless ``only`` was given)


class LiveTable(DataTable[Any]):
    """A DataTable for tables refreshed in place.

    - ``update_cell`` asks for a full repaint each time; inside ``coalesced()`` those plain repaint
      requests are coalesced into one at the end (layout refreshes still go through at once).
    - ``fill_column``: that column's width takes whatever the other (fixed-width) columns leave, so
      the table never scrolls sideways when the terminal is wide enough (re-fit on every resize).
    """

    _batching = False
    _pending_repaint = False

    def __init__(self, *, fill_column: str | None = None, fill_min: int = 16, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fill_column = fill_column
        self.fill_min = fill_min

    def fit_fill_column(self) -> None:
        if self.fill_column is None:
            return
        key = ColumnKey(self.fill_column)
        column = self.columns.get(key)
        if column is None or not self.size.width:
            return
        others = sum(c.get_render_width(self) for k, c in self.columns.items() if k != key)
        # Always leave room for the vertical scrollbar, so rows arriving later never cause a
        # horizontal one.
        avail = self.size.width - self.styles.scrollbar_size_vertical - others - 2 * self.cell_padding
        width = max(self.fill_min, avail)
        if width == column.width:
            return
        column.width = width
        if self.row_count:
            # The public way to have the table re-measure itself (virtual size, render caches).
            row_key = self.ordered_rows[0].key
            self.update_cell(row_key, key, self.get_cell(row_key, key), update_width=True)
        else:
            self.refresh(layout=True)

    def on_resize(self) -> None:
        self.fit_fill_column()

    def refresh(
        self, *regions: Region, repaint: bool = True, layout: bool = False, recompose: bool = False
    ) -> Self:
        if self._batching and not regions and not layout and not recompose:
            self._pending_repaint = True
            return self
        return super().refresh(*regions, repaint=repaint, layout=layout, recompose=recompose)

    @contextlib.contextmanager
    def coalesced(self) -> Iterator[None]:
        if self._batching:
            yield
            return
        self._batching = True
        try:
            yield
        finally:
            self._batching = False
            if self._pending_repaint:
                self._pending_repaint = False
                self.refresh()


def cursor_key(table: DataTable[Any]) -> str | None:
    """Key of the row under the cursor (None when the table is empty)."""
    if not table.row_count:
        return None
    try:
        row_key = table.coordinate_to_cell_key(Coordinate(table.cursor_row, 0)).row_key
    except CellDoesNotExist:
        return None
    return str(row_key.value) if row_key.value is not None else None


def open_filter(filt: Input) -> None:
    """Show a table's ``/`` filter input and focus it."""
    filt.remove_class("hidden")
    filt.focus()


def close_filter(filt: Input, table: DataTable[Any]) -> None:
    """Give the focus back to the table; an empty filter input hides again."""
    if not filt.value.strip():
        filt.add_class("hidden")
    table.focus()


def back_or_clear_filter(screen: Screen[Any], filt: Input, table: DataTable[Any]) -> None:
    """``escape``: clear and close a focused filter, else go back a screen (never past the first)."""
    if filt.has_focus:
        filt.value = ""
        close_filter(filt, table)
        return
    if len(screen.app.screen_stack) > 1:
        screen.app.pop_screen()


def sync_rows(
    table: DataTable[Any],
    shown: dict[str, tuple[str, ...]],
    rows: Sequence[tuple[str, tuple[str, ...]]],
    column_keys: Sequence[str],
    style: Callable[[str, str], Text],
    *,
    sort_column: str | None = None,
    only: Collection[str] | None = None,
) -> SyncStats:
    """Make ``table`` show exactly ``rows`` (key, plain cells), in key order, touching only what changed.

    ``shown`` maps each row key in the table to the plain cells it displays and is kept up to date.
    Rows are added/removed by key, changed cells updated with ``update_cell`` (column widths are fixed,
    so no re-measure), and the cursor stays on the same row key when rows move. The first column (or
    ``sort_column``) must hold the row key as a plain string: rows appended out of order are re-sorted
    by it.

    ``only``: the keys that may have changed; ``rows`` then holds the wanted rows among them and every
    other shown row is left as it is, unvisited (a refresh where a few rows changed costs that few).
    """
    if isinstance(table, LiveTable):
        with table.coalesced():
            return _sync_rows(table, shown, rows, column_keys, style, sort_column, only)
    return _sync_rows(table, shown, rows, column_keys, style, sort_column, only)


def _sync_rows(
    table: DataTable[Any],
    shown: dict[str, tuple[str, ...]],
    rows: Sequence[tuple[str, tuple[str, ...]]],
    column_keys: Sequence[str],
    style: Callable[[str, str], Text],
    sort_column: str | None,
    only: Collection[str] | None = None,
) -> SyncStats:
    stats = SyncStats()
    before_key = cursor_key(table)
    before_index = table.cursor_row
    wanted = {key for key, _ in rows}
    candidates = shown if only is None else [k for k in only if k in shown]
    for key in [k for k in candidates if k not in wanted]:
        with contextlib.suppress(RowDoesNotExist):
            table.remove_row(key)
        del shown[key]
        stats.removed += 1
    out_of_order = False
    last: str | None = None  # the greatest key shown, computed when a row is added
    for key, cells in rows:
        stats.visited += 1
        old = shown.get(key)
        if old is None:
            if last is None:
                last = max(shown) if shown else ""
            table.add_row(*(style(c, v) for c, v in zip(column_keys, cells, strict=True)), key=key)
            stats.added += 1
            if key < last:
                out_of_order = True
            last = max(last, key)
        elif old != cells:
            for column, new, prev in zip(column_keys, cells, old, strict=True):
                if new != prev:
                    table.update_cell(key, column, style(column, new))
                    stats.cells += 1
        shown[key] = cells
    if out_of_order:
        table.sort(sort_column or column_keys[0], key=str)  # cells are Text: order by their plain text
        stats.sorted = True
    if (stats.added or stats.removed or stats.sorted) and table.row_count:
        if before_key is not None and before_key in shown:
            target = table.get_row_index(before_key)
        else:
            target = min(max(before_index, 0), table.row_count - 1)
        if target != table.cursor_row:
            table.move_cursor(row=target, animate=False)
    return stats


# -- live status ----------------------------------------------------------------------------------


class LiveStatusScreen(Screen[None]):
    help_title = "Live status"
    CSS_PATH = style_path("status.tcss")
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
        clock: Clock | None = None,
        name: str | None = None,
        id: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id)
        self.change_id = change_id
        self.version = version
        self.event = EmailEvent(event) if event is not None else None
        self.interval = max(0.05, float(interval))
        self._clock = clock
        self.clock: Clock = clock or utcnow  # resolved on mount (the console's clock when none given)
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

    # -- layout -----------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield from chrome_top(self)
        with Vertical(id="status-head"):
            yield Static(id="status-title")
            yield Static(id="status-line")
            yield StateBar(id="status-bar")
            yield Static(id="status-counts")
            yield Static(id="status-error", classes="hidden")
        yield Input(
            placeholder="filter: customer, name, state or error text", id="status-filter", classes="hidden"
        )
        yield Static(id="status-empty", classes="hidden")
        yield LiveTable(
            id="status-table", cursor_type="row", zebra_stripes=True, fill_column="error", fill_min=20
        )
        yield from chrome_bottom(self)

    def on_mount(self) -> None:
        self.title = "Live status"
        self.sub_title = self.change_id
        table = self.table
        codes = list(self.app_config_codes())
        customer_width = min(30, max([8, *(len(c) for c in codes)]))
        for key, label, width in STATUS_COLUMNS:
            table.add_column(label, key=key, width=width or customer_width)
        table.fit_fill_column()
        self.clock = app_clock(self, self._clock)
        self._render_head()
        if app_is_live(self):
            self._timer = self.set_interval(self.interval, self._tick, pause=self.paused)
        self._start_fetch()

    def app_config_codes(self) -> Iterable[str]:
        services = getattr(self.app, "services", None)
        config = getattr(services, "config", None)
        return getattr(config, "customer_mappings", {}) or {}

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
        store = self.app.services.status  # type: ignore[attr-defined]
        if self._query is None or self._query.store is not store:
            self._query = LiveStatusQuery(store, self.change_id, version=self.version, event=self.event)
        try:
            result = self._query.poll()
        except Exception as exc:  # every failure is shown; the loop keeps going
            message = describe(exc)
            if not worker.is_cancelled:
                self._post(self._fetch_failed, message)
            return
        title = self.title_text
        if not title:
            try:
                summary = store.get_summary(self.change_id)
            except Exception:  # the title is decoration: retried on the next refresh
                summary = None
            title = getattr(summary, "title", "") if summary is not None else ""
        # Cell texts are computed here, off the UI thread, for the rows that changed or are in flight
        # (their duration follows the clock); the UI thread only diffs those.
        now = self.clock()
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
            self._post(self._fetch_done, records, cells, title, now, touched)

    def _post(self, callback: Callable[..., None], *args: Any) -> None:
        post_from_thread(self, callback, *args)

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
        mapping = self.app_config_codes()
        m = mapping.get(code) if isinstance(mapping, dict) else None
        return str(getattr(m, "customer_name", "") or "")

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
        back_or_clear_filter(self, self.query_one("#status-filter", Input), self.table)

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
        open_filter(self.query_one("#status-filter", Input))

    def _close_filter(self) -> None:
        close_filter(self.query_one("#status-filter", Input), self.table)

    @on(Input.Changed, "#status-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value
        self.sync_table()
        self._render_head()

    @on(Input.Submitted, "#status-filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        self._close_filter()

    def highlighted(self) -> DeliveryRecord | None:
        key = cursor_key(self.table)
        return self.records.get(key) if key else None

    @on(DataTable.RowSelected, "#status-table")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        record = self.records.get(str(event.row_key.value))
        if record is not None:
            self.app.push_screen(DeliveryDetailScreen(record, clock=self.clock))

    def action_dlq(self) -> None:
        record = self.highlighted()
        if record is None:
            self.notify("No customer selected", severity="warning")
            return
        open_dlq(self, record.customer)


# -- delivery detail ---------------------------------------------------------------------------

RECIPIENT_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("email", "Recipient", 30),
    ("state", "Result", 8),
    ("at", "At", 20),
    ("message_id", "Message id", 18),
    ("error", "Error", 30),
)
RECIPIENT_STYLES = {
    "sent": "green3",
    "sending": "bold dodger_blue1",
    "retry": "dark_orange",
    "failed": "bold red1",
    "unknown": "bold magenta",
}


class DeliveryDetailScreen(Screen[None]):
    help_title = "Delivery detail"
    CSS_PATH = style_path("status.tcss")
    AUTO_FOCUS = "#detail-recipients"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("r", "reload", "Reload"),
        Binding("d", "dlq", "Open DLQ"),
        Binding("u", "resend_unknown", "Resend unknown"),
    ]

    def __init__(
        self,
        record: DeliveryRecord,
        *,
        clock: Clock | None = None,
        detail_service: DeliveryDetailService | None = None,
        resend_service: ResendService | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        self.record = record
        self._detail_service = detail_service
        self._resend_service = resend_service
        self.resending = False
        self.last_resend: ResendResult | None = None
        self._clock = clock
        self.clock: Clock = clock or utcnow
        self.detail: DeliveryDetail | None = None
        self.error: str | None = None  # reading the ledger (or everything) failed
        self.record_error: str | None = None  # refreshing the delivery record failed
        self.loaded = False

    def compose(self) -> ComposeResult:
        yield from chrome_top(self)
        with Vertical(id="detail-head"):
            yield Static(id="detail-summary")
            yield Static(id="detail-error", classes="hidden")
            yield Static(id="detail-unknown", classes="hidden")
            yield Static(id="detail-dlq")
        yield Static("Recipients", id="detail-recipients-title")
        yield LiveTable(id="detail-recipients", cursor_type="row", zebra_stripes=True, fill_column="error")
        yield from chrome_bottom(self)

    def on_mount(self) -> None:
        self.title = "Delivery"
        self.sub_title = f"{self.record.customer} · {self.record.change_id}"
        self.clock = app_clock(self, self._clock)
        table = self.query_one("#detail-recipients", LiveTable)
        for key, label, width in RECIPIENT_COLUMNS:
            table.add_column(label, key=key, width=width)
        table.fit_fill_column()
        self.render_detail()
        self._load()

    @work(thread=True, exclusive=True, group="delivery-detail", exit_on_error=False)
    def _load(self) -> None:
        services = self.app.services  # type: ignore[attr-defined]
        key = DeliveryKey.of(self.record)
        try:
            record, record_error = services.status.get(key) or self.record, None
        except Exception as exc:  # keep showing the record we have
            record, record_error = self.record, describe(exc)
        try:
            detail_service = self._detail_service or DeliveryDetailService(
                services.aws, services.config, services.customers
            )
            detail = detail_service.detail(record)
        except Exception as exc:
            self._post(self._failed, describe(exc))
            return
        self._post(self._loaded_ok, record, detail, record_error)

    def _post(self, callback: Callable[..., None], *args: Any) -> None:
        post_from_thread(self, callback, *args)

    def _loaded_ok(self, record: DeliveryRecord, detail: DeliveryDetail, record_error: str | None) -> None:
        self.loaded = True
        self.record, self.detail = record, detail
        self.record_error, self.error = record_error, detail.error
        if self.is_attached:
            self.render_detail()

    def _failed(self, message: str) -> None:
        self.loaded = True
        self.error = message
        if self.is_attached:
            self.render_detail()

    def _customer_name(self) -> str:
        config = getattr(getattr(self.app, "services", None), "config", None)
        mapping = getattr(config, "customer_mappings", {}).get(self.record.customer)
        return str(getattr(mapping, "customer_name", "") or "")

    def render_detail(self) -> None:
        r = self.record
        summary = Text()
        summary.append(f"{r.customer}", style="bold")
        name = self._customer_name()
        if name:
            summary.append(f"  {name}")
        summary.append(f"\n{r.change_id}  v{r.version} · {r.event.value}\n")
        summary.append("state ")
        summary.append(r.state.value, style=STATE_STYLES.get(r.state.value, ""))
        summary.append(f"   attempts {r.attempts}")
        summary.append(f"   recipients {r.recipients_sent}/{r.recipients_total} sent")
        if r.recipients_failed:
            summary.append(f", {r.recipients_failed} failed", style="bold red1")
        summary.append(f"   duration {format_duration(record_duration(r, self.clock()))}")
        summary.append(f"\nqueued {r.queued_at or '-'}   started {r.started_at or '-'}")
        summary.append(f"   finished {r.finished_at or '-'}")
        summary.append(f"\nworker {r.worker_id or '-'}")
        if self.detail is not None and self.detail.claim is not None:
            claim = self.detail.claim
            summary.append(f"   ledger claim {claim.state or 'held'} by {claim.worker or '?'}")
            if claim.state == "in_progress" and claim.lease_until:
                summary.append(f" until {claim.lease_until}")
            elif claim.finished_at:
                summary.append(f" at {claim.finished_at}")
            if claim.result:
                summary.append(f" ({claim.result})")
        self.query_one("#detail-summary", Static).update(summary)

        err = self.query_one("#detail-error", Static)
        lines: list[tuple[str, str]] = []
        if r.last_error:
            lines.append(("Last error: ", r.last_error))
        if self.record_error:
            lines.append(("Could not refresh the delivery record: ", self.record_error))
        if self.error:
            what = "Could not read the ledger: " if self.detail is not None else "Could not load the detail: "
            lines.append((what, self.error))
        if lines:
            text = Text()
            for i, (label, message) in enumerate(lines):
                if i:
                    text.append("\n")
                text.append(label, style="bold")
                text.append(message)
            err.update(text)
            err.remove_class("hidden")
        else:
            err.add_class("hidden")

        self._render_unknown()

        dlq = self.query_one("#detail-dlq", Static)
        depth = self.detail.dlq if self.detail is not None else None
        line = Text("DLQ  ", style="bold")
        if not self.loaded:
            line.append("checking…", style="italic")
        elif depth is None:
            line.append("unknown", style="italic")
        elif depth.error:
            line.append(f"cannot read: {depth.error}", style="red1")
        elif depth.total:
            line.append(
                f"{depth.total} message{'s' if depth.total != 1 else ''} in {r.customer}'s DLQ",
                style="bold magenta",
            )
            line.append(" — press d to inspect or redrive")
        else:
            line.append("empty", style="green3")
            if r.state is DeliveryState.DEAD_LETTERED:
                line.append(" (the dead-lettered message was redriven or purged)", style="italic")
        dlq.update(line)

        table = self.query_one("#detail-recipients", DataTable)
        table.clear()
        title = self.query_one("#detail-recipients-title", Static)
        if self.detail is None:
            title.update(Text("Recipients  loading…" if not self.loaded else "Recipients  unavailable"))
            return
        counts = self.detail.counts
        head = Text("Recipients  ", style="bold")
        by_state = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        head.append(by_state or "none recorded in the ledger yet")
        title.update(head)
        for rr in self.detail.recipients:
            table.add_row(
                Text(rr.email),
                Text(rr.state, style=RECIPIENT_STYLES.get(rr.state, "")),
                Text(rr.at or ""),
                Text(rr.message_id or ""),
                Text(one_line(rr.error), style="red1"),
                key=rr.email,
            )

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 1:
            self.app.pop_screen()

    def action_reload(self) -> None:
        self._load()

    def action_dlq(self) -> None:
        open_dlq(self, self.record.customer)

    # -- unknown recipients ---------------------------------------------------------------------
    @property
    def readonly(self) -> bool:
        services = getattr(self.app, "services", None)
        return bool(getattr(self.app, "readonly", False) or getattr(services, "readonly", False))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action != "resend_unknown":
            return True
        # Shown (in the footer) only when there is something to resend and the console may act.
        return not self.readonly and self.detail is not None and bool(self.detail.unknown)

    def _render_unknown(self) -> None:
        self.refresh_bindings()
        box = self.query_one("#detail-unknown", Static)
        unknown = self.detail.unknown if self.detail is not None else []
        if not unknown:
            box.add_class("hidden")
            return
        text = Text()
        text.append(
            f"{len(unknown)} recipient{'s' if len(unknown) != 1 else ''} with UNKNOWN outcome",
            style="bold magenta",
        )
        text.append(
            ": a worker stopped mid-send, so they may or may not have this email. They are never resent"
            " automatically."
        )
        if self.resending:
            text.append("  Resending…", style="italic")
        elif not self.readonly:
            text.append("  Press u to resend them (they may get it twice).", style="bold")
        for rr in unknown[:5]:
            text.append(f"\n  {rr.email}", style="magenta")
            if rr.at:
                text.append(f"  since {rr.at}")
        if len(unknown) > 5:
            text.append(f"\n  … and {len(unknown) - 5} more (see the table)")
        box.update(text)
        box.remove_class("hidden")

    def action_resend_unknown(self) -> None:
        if self.readonly:
            self.notify("Read-only console: resending is disabled.", title="Read-only", severity="warning")
            return
        unknown = self.detail.unknown if self.detail is not None else []
        if not unknown:
            self.notify("No recipient of this delivery has an unknown outcome.", severity="information")
            return
        if self.resending:
            self.notify("A resend is already running.", severity="warning")
            return
        emails = [rr.email for rr in unknown]
        r = self.record
        listed = "\n".join(f"  • {escape(e)}" for e in emails[:15])
        more = f"\n  … and {len(emails) - 15} more" if len(emails) > 15 else ""
        body = (
            f"[b]These recipients may get the email twice.[/b] {escape(DUPLICATE_WARNING)}\n\n"
            f"{escape(r.change_id)} v{r.version} · {r.event.value} · {escape(r.customer)}\n"
            f"{listed}{more}\n\n"
            "Only recipients still unknown are resent; nobody already sent gets a second email."
        )
        title = f"Resend to {len(emails)} recipient{'s' if len(emails) != 1 else ''} with unknown outcome?"

        def answered(yes: bool | None) -> None:
            if yes:
                self.resending = True
                self._render_unknown()
                self._resend(emails)

        self.app.push_screen(
            ConfirmModal(title, body, yes="Resend (may duplicate)", no="Cancel", danger=True), answered
        )

    @work(thread=True, exclusive=True, group="delivery-resend", exit_on_error=False)
    def _resend(self, emails: list[str]) -> None:
        try:
            services = self.app.services  # type: ignore[attr-defined]
            service = self._resend_service or ResendService(
                services.aws, services.config, status=services.status
            )
            result = service.resend_delivery(DeliveryKey.of(self.record), emails)
        except Exception as exc:
            self._post(self._resend_failed, describe(exc))
            return
        self._post(self._resend_done, result)

    def _resend_done(self, result: ResendResult) -> None:
        self.resending = False
        self.last_resend = result
        refused = result.refused
        if result.resent and result.ok:
            note = f"Resending to {result.resent} recipient(s); a worker will send them once."
            if refused:
                note += f" {refused} refused (no longer unknown)."
            self.notify(note, title="Resend requested")
        elif result.resent:
            failed = ", ".join(d.trigger_error or "" for d in result.deliveries if not d.ok)
            self.notify(
                f"Recipients reopened but the trigger failed: {escape(failed)}. Press u again to re-trigger.",
                title="Resend incomplete",
                severity="error",
                timeout=15,
            )
        else:
            reasons = "; ".join(
                f"{escape(a)}: {escape(why)}" for d in result.deliveries for a, why in d.refused.items()
            )
            self.notify(f"Nothing resent. {reasons}", title="Resend refused", severity="warning", timeout=10)
        if self.is_attached:
            self._load()

    def _resend_failed(self, message: str) -> None:
        self.resending = False
        self.notify(f"Resend failed: {escape(message)}", title="Resend failed", severity="error", timeout=15)
        if self.is_attached:
            self._render_unknown()
