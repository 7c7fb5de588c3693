"""Every configured customer at a glance, and one customer in detail.

``CustomersScreen()``
    One row per configured customer: code, name, environment, account id (from ``ses_role_arn``),
    queue depth, DLQ depth, contacts receiving each topic (approval / announce / calendar) and in
    total, ``customer verify``'s outcome and the last delivery. Config columns show at once; depths
    and last deliveries load in one thread worker (bounded parallel calls, rows fill in as each
    customer answers); contact counts assume the customer's role, so they load lazily for the
    highlighted row (``c`` counts every shown row); checks run on demand. Bindings: ``/`` filter,
    ``r`` refresh, ``c`` count contacts of every shown row, ``C`` the customer's contacts
    (``screens/contacts.py``), ``v`` verify the highlighted customer, ``V`` every shown one,
    ``enter`` customer detail, ``d`` the customer's DLQ, ``escape`` back.

``CustomerDetailScreen(code)``
    One customer: config facts, queue and DLQ depths, contacts per topic (subscribed with SES
    semantics, and how many of those its ``restricted_recipients`` allow), the 20 most recent
    deliveries (``enter`` opens the delivery drill-down), and ``customer verify``'s checks once ``v``
    ran them. ``c`` contacts, ``v`` verify, ``d`` DLQ, ``r`` reload, ``escape`` back.

Screens only call ``app.services.customers`` (``services/customers.py``) and
``app.services.verifier`` (``services/customer_admin.py``), and render.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any, ClassVar

from rich.markup import escape
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import DataTable, Static
from textual.worker import get_current_worker

from ..colours import DELIVERY_STATE
from ..errors import describe
from ..models import (
    ALL_TOPICS,
    TOPIC_ANNOUNCE,
    TOPIC_APPROVAL,
    TOPIC_CALENDAR,
    DeliveryRecord,
    OperatorAction,
)
from ..services.customer_admin import FAIL, OK, SKIPPED, WARN, VerifyReport
from ..services.customers import CONTACT_THREADS, ContactCounts, CustomerInfo, CustomerStats, QueueDepth
from ..widgets.filterbar import FilterBar
from ..widgets.livetable import LiveTable, SyncStats, cursor_key, sync_rows
from .base import ConsoleScreen
from .delivery import DeliveryDetailScreen
from .format import age, one_line

LOADING = "…"
NOT_LOADED = "·"
ERROR = "err"

CUSTOMER_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("code", "Code", 0),  # width from the longest configured code
    ("name", "Name", 16),
    ("env", "Env", 11),
    ("account", "Account", 12),
    ("queue", "Queue", 5),
    ("dlq", "DLQ", 5),
    ("approval", "Appr", 4),
    ("announce", "Annc", 4),
    ("calendar", "Cal", 4),
    ("contacts", "All", 4),
    ("bounce", "Bnc%", 5),  # hard bounces / sends, from SES events (SES warns at 5 %)
    ("complaint", "Cmp%", 5),  # complaints / sends (SES warns at 0.1 %)
    ("check", "Check", 5),
    ("last", "Last delivery", 14),  # fills the rest of the line
)
# Narrower terminals cut these first (name, then environment, then code), so the checks, rates and last
# delivery stay on screen at 120 columns.
CUSTOMER_SQUEEZE = {"name": 8, "env": 7, "code": 10}
CUSTOMER_KEYS: tuple[str, ...] = tuple(c[0] for c in CUSTOMER_COLUMNS)
TOPIC_COLUMNS = {TOPIC_APPROVAL: "approval", TOPIC_ANNOUNCE: "announce", TOPIC_CALENDAR: "calendar"}
_NUMERIC = {
    k: w
    for k, _label, w in CUSTOMER_COLUMNS
    if k in ("queue", "dlq", *TOPIC_COLUMNS.values(), "contacts", "bounce", "complaint")
}
RATE_WARNING = "!"  # appended to a rate at or above SES's warning level
CHECK_STYLES = {OK: "bold green3", WARN: "bold yellow", FAIL: "bold red1", SKIPPED: "grey50"}


def depth_text(depth: QueueDepth | None) -> str:
    if depth is None:
        return LOADING
    if depth.error:
        return ERROR
    return str(depth.total)


def last_delivery_text(stats: CustomerStats | None, now: datetime) -> str:
    if stats is None:
        return LOADING
    if stats.last_delivery_error:
        return ERROR
    record = stats.last_delivery
    if record is None:
        return "never"
    return f"{record.state.value} {age(record.updated_at or record.queued_at, now)}".strip()


def rate_text(stats: CustomerStats | None, kind: str) -> str:
    """A customer's bounce or complaint rate in percent, ``!`` at or above SES's warning level; ``-``
    before any send event."""
    if stats is None:
        return LOADING
    rep = stats.reputation
    if rep is None or not rep.sends:
        return "-"
    pct = 100 * ((rep.bounce_rate if kind == "bounce" else rep.complaint_rate) or 0.0)
    text = f"{pct:.2f}" if pct < 1 else f"{pct:.1f}" if pct < 10 else f"{pct:.0f}"  # fits the column
    return text + (RATE_WARNING if kind in rep.warning else "")


def check_text(report: VerifyReport | None, loading: bool) -> str:
    """``customer verify``'s outcome: ok / warn / fail (``v`` runs it)."""
    if loading:
        return LOADING
    return report.status if report is not None else NOT_LOADED


def customer_cells(
    info: CustomerInfo,
    stats: CustomerStats | None,
    contacts: ContactCounts | None,
    contacts_loading: bool,
    now: datetime,
    check: str = NOT_LOADED,
) -> tuple[str, ...]:
    if contacts is not None and contacts.error:
        topic_cells = [ERROR] * (len(TOPIC_COLUMNS) + 1)
    elif contacts is not None:
        topic_cells = [str(contacts.subscribed.get(t, 0)) for t in TOPIC_COLUMNS]
        topic_cells.append(str(contacts.contacts))
    else:
        topic_cells = [LOADING if contacts_loading else NOT_LOADED] * (len(TOPIC_COLUMNS) + 1)
    return (
        info.code,
        info.name,
        info.environment,
        info.account_id,
        depth_text(stats.depths.queue if stats else None),
        depth_text(stats.depths.dlq if stats else None),
        *topic_cells,
        rate_text(stats, "bounce"),
        rate_text(stats, "complaint"),
        check,
        last_delivery_text(stats, now),
    )


def customer_cell(column: str, value: str) -> Text:
    """The renderable of one cell (always ``Text``: a plain ``str`` cell would be parsed as markup)."""
    numeric = column in _NUMERIC
    justify: Any = "right" if numeric else "left"
    if value == ERROR:
        return Text(value, style="bold red1", justify=justify)
    if value in (LOADING, NOT_LOADED):
        return Text(value, style="grey50", justify=justify)
    if column == "dlq" and value != "0":
        return Text(value, style="bold magenta", justify=justify)
    if column == "queue" and value != "0":
        return Text(value, style="bold dodger_blue1", justify=justify)
    if column == "check" and value in CHECK_STYLES:
        return Text(value, style=CHECK_STYLES[value])
    if column in ("bounce", "complaint") and value.endswith(RATE_WARNING):
        return Text(value, style="bold red1", justify=justify)
    if column == "last" and value:
        state = value.split(" ", 1)[0]
        style = DELIVERY_STATE.get(state)
        if style:
            text = Text(state, style=style)
            text.append(value[len(state) :])
            return text
    return Text(value, justify=justify)


class CustomersScreen(ConsoleScreen[None]):
    help_title = "Customers"
    CSS_PATH = "customers.tcss"
    AUTO_FOCUS = "#customers-table"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("r", "refresh", "Refresh"),
        Binding("c", "count_contacts", "Count contacts"),
        Binding("C", "contacts", "Contacts"),
        Binding("v", "verify", "Verify"),
        Binding("V", "verify_shown", "Verify all"),
        Binding("d", "dlq", "DLQ"),
    ]
    REQUIRES: ClassVar[Mapping[str, OperatorAction]] = {
        "verify": OperatorAction.CUSTOMER_VERIFY,
        "verify_shown": OperatorAction.CUSTOMER_VERIFY,
        "count_contacts": OperatorAction.CONTACTS_READ,
        "contacts": OperatorAction.CONTACTS_READ,
    }

    def __init__(self, *, name: str | None = None, id: str | None = None) -> None:
        super().__init__(name=name, id=id)
        self.filter_text = ""
        self.infos: dict[str, CustomerInfo] = {}
        self.stats: dict[str, CustomerStats] = {}
        self.contacts: dict[str, ContactCounts] = {}
        self.shown: dict[str, tuple[str, ...]] = {}
        self.last_sync = SyncStats()
        self.stats_loading = False
        self._stats_generation = 0
        self._lazy: str | None = None
        self._bulk: list[str] = []
        self._stale: set[str] = set()
        self._contacts_loading: set[str] = set()
        self._contacts_running = False
        self._draining = False
        self._extra_error: str | None = None
        self.checks: dict[str, VerifyReport] = {}
        self._checking: set[str] = set()

    # -- layout ---------------------------------------------------------------------------
    def compose_body(self) -> ComposeResult:
        with Vertical(id="customers-head"):
            yield Static(id="customers-summary")
            yield Static(id="customers-error", classes="hidden")
        yield FilterBar(
            "filter: code, name, environment or account", table="#customers-table", id="customers-filter"
        )
        yield LiveTable(
            id="customers-table",
            cursor_type="row",
            zebra_stripes=True,
            fill_column="last",
            fill_min=14,
            squeeze=CUSTOMER_SQUEEZE,
        )

    def on_mount(self) -> None:
        self.title = "Customers"
        try:
            self.infos = {info.code: info for info in self.services.customers.customers()}
        except Exception as exc:  # no usable customer service/config: say so instead of crashing
            self._extra_error = describe(exc)
        table = self.table
        code_width = min(30, max([6, *(len(c) for c in self.infos)]))
        for key, label, width in CUSTOMER_COLUMNS:
            table.add_column(label, key=key, width=width or code_width)
        table.fit_fill_column()
        self.sync_table()
        self.render_summary(extra_error=self._extra_error)
        if self.infos:
            self._load_stats()

    @property
    def table(self) -> LiveTable:
        return self.query_one("#customers-table", LiveTable)

    @property
    def idle(self) -> bool:
        """Nothing loading (tests wait on it)."""
        return not self.stats_loading and not self._contacts_running and not self._checking

    # -- loading ----------------------------------------------------------------------------
    @contextmanager
    def applying_results(self) -> Iterator[None]:
        """A burst of results from the workers: one repaint, and one summary after it."""
        if not self.is_attached:
            yield
            return
        self._draining = True
        try:
            with self.table.coalesced():
                yield
        finally:
            self._draining = False

    def results_applied(self) -> None:
        if self.is_attached:
            self.render_summary(extra_error=self._extra_error)

    def _load_stats(self) -> None:
        self._stats_generation += 1
        self._extra_error = None
        self.stats_loading = True
        self.render_summary()
        self._fetch_stats(self._stats_generation, sorted(self.infos))

    @work(thread=True, group="customer-stats", exit_on_error=False)
    def _fetch_stats(self, generation: int, codes: list[str]) -> None:
        worker = get_current_worker()
        try:
            self.services.customers.all_stats(
                codes,
                on_result=lambda stats: self.post_from_thread(self._stats_arrived, generation, stats),
                cancelled=lambda: worker.is_cancelled,
            )
        except Exception as exc:  # every failure is shown on screen
            self.post_from_thread(self._stats_failed, generation, describe(exc))
            return
        self.post_from_thread(self._stats_done, generation)

    def _stats_arrived(self, generation: int, stats: CustomerStats) -> None:
        if generation != self._stats_generation or not self.is_attached:
            return
        self.stats[stats.code] = stats
        self.update_row(stats.code)

    def _stats_done(self, generation: int) -> None:
        if generation != self._stats_generation:
            return
        self.stats_loading = False
        if self.is_attached:
            self.render_summary()

    def _stats_failed(self, generation: int, message: str) -> None:
        if generation != self._stats_generation:
            return
        self.stats_loading = False
        self._extra_error = message
        if self.is_attached:
            self.render_summary(extra_error=message)

    def _request_contacts(self, *, lazy: str | None = None, bulk: list[str] | None = None) -> None:
        if lazy is not None:
            self._lazy = lazy
        if bulk:
            self._bulk.extend(c for c in bulk if c not in self._bulk)
        self._kick_contacts()

    def _needs_contacts(self, code: str) -> bool:
        if not self.console.decide(OperatorAction.CONTACTS_READ, [code]).allowed:
            return False  # not this operator's to read: the counts stay blank
        return (code not in self.contacts or code in self._stale) and code not in self._contacts_loading

    def _kick_contacts(self) -> None:
        if self._contacts_running:
            return
        batch: list[str] = []
        if self._lazy is not None and self._needs_contacts(self._lazy):
            batch.append(self._lazy)
        self._lazy = None
        while self._bulk and len(batch) < 4 * CONTACT_THREADS:
            code = self._bulk.pop(0)
            if self._needs_contacts(code) and code not in batch:
                batch.append(code)
        if not batch:
            return
        self._contacts_running = True
        self._contacts_loading.update(batch)
        for code in batch:
            self.update_row(code)
        self._fetch_contacts(batch)

    @work(thread=True, group="customer-contacts", exit_on_error=False)
    def _fetch_contacts(self, codes: list[str]) -> None:
        try:
            self.services.customers.all_contact_counts(
                codes, on_result=lambda counts: self.post_from_thread(self._contacts_arrived, counts)
            )
        except Exception as exc:
            message = describe(exc)
            for code in codes:
                self.post_from_thread(self._contacts_arrived, ContactCounts(code, "", error=message))
        self.post_from_thread(self._contacts_batch_done, codes)

    def _contacts_arrived(self, counts: ContactCounts) -> None:
        self.contacts[counts.code] = counts
        self._contacts_loading.discard(counts.code)
        self._stale.discard(counts.code)
        if self.is_attached:
            self.update_row(counts.code)

    def _contacts_batch_done(self, codes: list[str]) -> None:
        self._contacts_running = False
        self._contacts_loading.difference_update(codes)
        if self.is_attached:
            self.render_summary()
            self._kick_contacts()

    # -- table -------------------------------------------------------------------------------
    def matches(self, info: CustomerInfo) -> bool:
        needle = self.filter_text.strip().casefold()
        if not needle:
            return True
        return needle in " ".join((info.code, info.name, info.environment, info.account_id)).casefold()

    def cells(self, code: str, now: datetime | None = None) -> tuple[str, ...]:
        return customer_cells(
            self.infos[code],
            self.stats.get(code),
            self.contacts.get(code),
            code in self._contacts_loading,
            now or self.now(),
            check_text(self.checks.get(code), code in self._checking),
        )

    def sync_table(self) -> SyncStats:
        now = self.now()
        rows = [
            (code, self.cells(code, now)) for code in sorted(self.infos) if self.matches(self.infos[code])
        ]
        self.last_sync = sync_rows(self.table, self.shown, rows, CUSTOMER_KEYS, customer_cell)
        return self.last_sync

    def update_row(self, code: str) -> None:
        """Refresh one row's changed cells (rows outside the filter are left alone)."""
        old = self.shown.get(code)
        if old is None:
            return
        new = self.cells(code)
        if new == old:
            return
        table = self.table
        with table.coalesced():
            for key, value, prev in zip(CUSTOMER_KEYS, new, old, strict=True):
                if value != prev:
                    table.update_cell(code, key, customer_cell(key, value))
        self.shown[code] = new
        self.render_summary()

    def render_summary(self, extra_error: str | None = None) -> None:
        if self._draining:
            return  # once, after the whole burst
        n = len(self.infos)
        loaded = list(self.stats.values())
        queued = sum(s.depths.queue.total for s in loaded if s.depths.queue.ok)
        dlq_customers = [s.code for s in loaded if s.depths.dlq.ok and s.depths.dlq.total]
        dlq_total = sum(s.depths.dlq.total for s in loaded if s.depths.dlq.ok)
        text = Text()
        text.append(f"{n} customer{'s' if n != 1 else ''}", style="bold")
        if self.filter_text.strip():
            text.append(f" ({len(self.shown)} match “{self.filter_text.strip()}”)", style="italic")
        text.append(f" · {queued} message{'s' if queued != 1 else ''} queued")
        text.append(" · DLQ ")
        if dlq_total:
            text.append(
                f"{dlq_total} message{'s' if dlq_total != 1 else ''} in {len(dlq_customers)} "
                f"customer{'s' if len(dlq_customers) != 1 else ''}",
                style="bold magenta",
            )
        else:
            text.append("empty", style="green3")
        if self.stats_loading:
            text.append(f" · loading {len(self.stats)}/{n}…", style="italic")
        keys = "c counts all · C contacts · v verify"
        text.append(f"\ncontacts load for the highlighted row; {keys}", style="grey50")
        self.query_one("#customers-summary", Static).update(text)

        errors = [s for s in loaded if not s.depths.queue.ok or not s.depths.dlq.ok or s.last_delivery_error]
        contact_errors = [c for c in self.contacts.values() if c.error]
        banner = self.query_one("#customers-error", Static)
        if errors or contact_errors or extra_error:
            first = extra_error or (
                errors[0].depths.queue.error or errors[0].depths.dlq.error or errors[0].last_delivery_error
                if errors
                else contact_errors[0].error
            )
            msg = Text(f"⚠ {first}", style="bold")
            if errors:
                msg.append(f"  ({len(errors)} of {n} customers could not be read; r retries)")
            elif contact_errors:
                msg.append(f"  (contacts of {len(contact_errors)} customer(s) could not be read)")
            banner.update(msg)
            banner.remove_class("hidden")
        else:
            banner.add_class("hidden")

    # -- actions -------------------------------------------------------------------------------
    @on(DataTable.RowHighlighted, "#customers-table")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key.value is not None:
            self._request_contacts(lazy=str(event.row_key.value))
            self.refresh_bindings()  # verifying depends on the customer

    def action_customers(self, action: str) -> list[str] | None:
        if action in ("verify", "contacts"):
            key = cursor_key(self.table)
            return [key] if key else None
        return None  # verify all, count all: those of the operator's customers that are shown

    @on(DataTable.RowSelected, "#customers-table")
    def _selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value is not None:
            self.app.push_screen(CustomerDetailScreen(str(event.row_key.value)))

    def action_back(self) -> None:
        if not self.query_one("#customers-filter", FilterBar).cancel():
            self.back()

    def action_filter(self) -> None:
        self.query_one("#customers-filter", FilterBar).open()

    @on(FilterBar.Applied, "#customers-filter")
    def _filter_applied(self, event: FilterBar.Applied) -> None:
        self.filter_text = event.text
        self.sync_table()
        self.render_summary()

    def action_refresh(self) -> None:
        self._stale.update(self.contacts)
        self._load_stats()
        key = cursor_key(self.table)
        self._request_contacts(lazy=key, bulk=sorted(self.contacts))

    def action_count_contacts(self) -> None:
        self._request_contacts(bulk=list(self.shown))

    def action_dlq(self) -> None:
        key = cursor_key(self.table)
        if key is None:
            self.notify("No customer selected", severity="warning")
            return
        self.console.open_dlq(key)

    def action_contacts(self) -> None:
        key = cursor_key(self.table)
        if key is None:
            self.notify("No customer selected", severity="warning")
            return
        self.console.open_contacts(key)

    def action_verify(self) -> None:
        key = cursor_key(self.table)
        if key is None:
            self.notify("No customer selected", severity="warning")
            return
        if self.refuse("verify", "verifying"):
            return
        self._verify([key])

    def action_verify_shown(self) -> None:
        if self.refuse("verify_shown", "verifying"):
            return
        mine = [c for c in self.shown if self.console.decide(OperatorAction.CUSTOMER_VERIFY, [c]).allowed]
        if len(mine) < len(self.shown):
            self.notify(
                f"{len(self.shown) - len(mine)} customer(s) outside your scope are not verified.",
                severity="information",
            )
        self._verify(mine)

    def _verify(self, codes: list[str]) -> None:
        codes = [c for c in codes if c not in self._checking]
        if not codes:
            return
        self._checking.update(codes)
        for code in codes:
            self.update_row(code)
        self._fetch_checks(codes)

    @work(thread=True, group="customer-verify", exit_on_error=False)
    def _fetch_checks(self, codes: list[str]) -> None:
        try:
            self.services.verifier.verify_all(
                codes, on_result=lambda report: self.post_from_thread(self._checked, report)
            )
        except Exception as exc:
            self.post_from_thread(self._checks_failed, codes, describe(exc))

    def _checked(self, report: VerifyReport) -> None:
        self.checks[report.customer] = report
        self._checking.discard(report.customer)
        if self.is_attached:
            self.update_row(report.customer)
            if report.status != OK:
                self.notify(
                    escape(report.summary()),
                    title=f"{report.customer}: {report.status}",
                    severity="error" if report.status == FAIL else "warning",
                    timeout=8,
                )

    def _checks_failed(self, codes: list[str], message: str) -> None:
        self._checking.difference_update(codes)
        self._extra_error = message
        if self.is_attached:
            for code in codes:
                self.update_row(code)
            self.render_summary(extra_error=message)


# -- one customer ---------------------------------------------------------------------------------

DELIVERY_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("change", "Change", 30),
    ("round", "Round", 14),
    ("state", "State", 13),
    ("recipients", "Recipients", 10),
    ("updated", "Updated", 20),
    ("error", "Last error", 20),  # fills the rest of the line
)


class CustomerDetailScreen(ConsoleScreen[None]):
    help_title = "Customer"
    CSS_PATH = "customers.tcss"
    AUTO_FOCUS = "#customer-deliveries"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("r", "refresh", "Reload"),
        Binding("c", "contacts", "Contacts"),
        Binding("v", "verify", "Verify"),
        Binding("d", "dlq", "DLQ"),
    ]
    REQUIRES: ClassVar[Mapping[str, OperatorAction]] = {
        "verify": OperatorAction.CUSTOMER_VERIFY,
        "contacts": OperatorAction.CONTACTS_READ,
    }

    def __init__(self, code: str, *, name: str | None = None) -> None:
        super().__init__(name=name)
        self.code = code
        self.stats: CustomerStats | None = None
        self.contacts: ContactCounts | None = None
        self.deliveries: list[DeliveryRecord] = []
        self.deliveries_error: str | None = None
        self.loaded = False
        self.check: VerifyReport | None = None
        self.checking = False

    def compose_body(self) -> ComposeResult:
        with Vertical(id="customer-head"):
            yield Static(id="customer-summary")
            yield Static(id="customer-error", classes="hidden")
        yield Static("Contacts per topic", id="customer-topics-title", classes="section")
        yield DataTable(id="customer-topics", cursor_type="none", show_cursor=False)
        yield Static(id="customer-checks-title", classes="section hidden")
        yield DataTable(id="customer-checks", cursor_type="none", show_cursor=False, classes="hidden")
        yield Static("Recent deliveries", id="customer-deliveries-title", classes="section")
        yield LiveTable(id="customer-deliveries", cursor_type="row", zebra_stripes=True, fill_column="error")

    def on_mount(self) -> None:
        self.title = "Customer"
        self.sub_title = self.code
        topics = self.query_one("#customer-topics", DataTable)
        for key, label, width in (
            ("topic", "Topic", 14),
            ("default", "Default", 8),
            ("subscribed", "Subscribed", 10),
            ("deliverable", "Allowed", 8),
        ):
            topics.add_column(label, key=key, width=width)
        checks = self.query_one("#customer-checks", DataTable)
        for key, label, width in (("check", "Check", 13), ("status", "Status", 7), ("detail", "Detail", 80)):
            checks.add_column(label, key=key, width=width)
        deliveries = self.query_one("#customer-deliveries", LiveTable)
        for key, label, width in DELIVERY_COLUMNS:
            deliveries.add_column(label, key=key, width=width)
        deliveries.fit_fill_column()
        self.render_detail()
        self._load()

    @work(thread=True, exclusive=True, group="customer-detail", exit_on_error=False)
    def _load(self) -> None:
        service = self.services.customers
        try:
            stats = service.stats(self.code)
            contacts = service.contact_counts(self.code)
        except Exception as exc:
            self.post_from_thread(self._failed, describe(exc))
            return
        try:
            deliveries, error = service.recent_deliveries(self.code, 20), None
        except Exception as exc:
            deliveries, error = [], describe(exc)
        self.post_from_thread(self._loaded, stats, contacts, deliveries, error)

    def _loaded(
        self,
        stats: CustomerStats,
        contacts: ContactCounts,
        deliveries: list[DeliveryRecord],
        error: str | None,
    ) -> None:
        self.loaded = True
        self.stats, self.contacts, self.deliveries, self.deliveries_error = stats, contacts, deliveries, error
        if self.is_attached:
            self.render_detail()

    def _failed(self, message: str) -> None:
        self.loaded = True
        self.deliveries_error = message
        if self.is_attached:
            self.render_detail()

    def _info(self) -> CustomerInfo:
        return self.services.customers.info(self.code)

    def render_detail(self) -> None:
        info = self._info()
        mapping = self.services.config.customer(self.code)
        now = self.now()
        text = Text()
        text.append(info.code, style="bold")
        text.append(f"  {info.name}  ({info.environment}")
        text.append(f", {info.region})" if info.region else ")")
        text.append(f"\naccount {info.account_id}  role {mapping.ses_role_arn}")
        stats = self.stats
        text.append(f"\nqueue {info.queue_name}: ")
        text.append(self._depth(stats.depths.queue if stats else None))
        dlq = stats.depths.dlq if stats else None
        dead = dlq is not None and dlq.ok and dlq.total > 0
        text.append(f"\nDLQ {info.dlq_name}: ")
        text.append(self._depth(dlq), style="bold magenta" if dead else "")
        if dead:
            text.append(" — press d to inspect or redrive")
        restricted = info.restricted
        text.append(
            f"\nrestricted recipients: {restricted} address{'es' if restricted != 1 else ''}"
            if restricted
            else "\nrestricted recipients: none (every subscribed contact receives email)"
        )
        if self.contacts is not None and not self.contacts.error:
            c = self.contacts
            text.append(
                f"\ncontact list {c.list_name}: {c.contacts} contacts, {c.unsubscribed_all} unsubscribed"
            )
            text.append(" from everything")
        last = stats.last_delivery if stats else None
        if last is not None:
            text.append(f"\nlast delivery {last.change_id} v{last.version} {last.event.value}: ")
            text.append(last.state.value, style=DELIVERY_STATE.get(last.state, ""))
            ago = age(last.updated_at or last.queued_at, now)
            if ago:
                text.append(f" {ago}")
        self.query_one("#customer-summary", Static).update(text)

        problems = [
            p
            for p in (
                stats.depths.queue.error if stats else None,
                stats.depths.dlq.error if stats else None,
                self.contacts.error if self.contacts else None,
                self.deliveries_error,
            )
            if p
        ]
        banner = self.query_one("#customer-error", Static)
        if problems:
            banner.update(Text("⚠ " + "\n⚠ ".join(dict.fromkeys(problems)), style="bold"))
            banner.remove_class("hidden")
        else:
            banner.add_class("hidden")

        topics = self.query_one("#customer-topics", DataTable)
        topics.clear()
        for topic in ALL_TOPICS:
            if self.contacts is None or self.contacts.error:
                value = LOADING if not self.loaded else ERROR
                cell = Text(value, justify="right", style="grey50" if value == LOADING else "bold red1")
                topics.add_row(Text(topic), Text(""), cell, cell, key=topic)
                continue
            topics.add_row(
                Text(topic),
                Text(self.contacts.defaults.get(topic, "-")),
                Text(str(self.contacts.subscribed.get(topic, 0)), justify="right"),
                Text(str(self.contacts.deliverable.get(topic, 0)), justify="right"),
                key=topic,
            )

        table = self.query_one("#customer-deliveries", LiveTable)
        title = self.query_one("#customer-deliveries-title", Static)
        table.clear()
        if not self.loaded:
            title.update(Text("Recent deliveries  loading…"))
            return
        title.update(
            Text(
                f"Recent deliveries  ({len(self.deliveries)})"
                if self.deliveries
                else "Recent deliveries  none"
            )
        )
        for i, record in enumerate(self.deliveries):
            table.add_row(
                Text(record.change_id),
                Text(f"v{record.version} {record.event.value}"),
                Text(record.state.value, style=DELIVERY_STATE.get(record.state, "")),
                Text(f"{record.recipients_sent}/{record.recipients_total}", justify="right"),
                Text(record.updated_at or ""),
                Text(one_line(record.last_error), style="red1"),
                key=f"{i}",
            )

    @staticmethod
    def _depth(depth: QueueDepth | None) -> str:
        if depth is None:
            return LOADING
        if depth.error:
            return "unreadable"
        return f"{depth.total} ({depth.visible} waiting, {depth.in_flight} in flight)"

    @on(DataTable.RowSelected, "#customer-deliveries")
    def _selected(self, event: DataTable.RowSelected) -> None:
        index = int(str(event.row_key.value))
        if 0 <= index < len(self.deliveries):
            self.app.push_screen(DeliveryDetailScreen(self.deliveries[index]))

    def action_back(self) -> None:
        self.back()

    def action_refresh(self) -> None:
        self._load()

    def action_dlq(self) -> None:
        self.console.open_dlq(self.code)

    def action_contacts(self) -> None:
        self.console.open_contacts(self.code)

    def action_customers(self, action: str) -> list[str]:
        return [self.code]

    def action_verify(self) -> None:
        if self.checking or self.refuse("verify", "verifying"):
            return
        self.checking = True
        self.render_checks()
        self.call_service(
            lambda: self.services.verifier.verify(self.code),
            done=self._verified,
            failed=self._verify_failed,
            group="customer-verify",
            exclusive=True,
        )

    def _verified(self, report: VerifyReport) -> None:
        self.checking, self.check = False, report
        if self.is_attached:
            self.render_checks()

    def _verify_failed(self, exc: BaseException) -> None:
        self.checking = False
        self.deliveries_error = describe(exc)
        if self.is_attached:
            self.render_detail()
            self.render_checks()

    def render_checks(self) -> None:
        """``customer verify``'s checks, once ``v`` ran it."""
        title = self.query_one("#customer-checks-title", Static)
        table = self.query_one("#customer-checks", DataTable)
        if self.check is None and not self.checking:
            title.add_class("hidden")
            table.add_class("hidden")
            return
        title.remove_class("hidden")
        table.remove_class("hidden")
        if self.checking:
            title.update(Text("Checks  verifying (read-only)…"))
            return
        report = self.check
        assert report is not None
        title.update(
            Text.assemble(
                "Checks  ", (report.status, CHECK_STYLES.get(report.status, "")), f"  at {report.checked_at}"
            )
        )
        table.clear()
        for check in report.checks:
            table.add_row(
                Text(check.name),
                Text(check.status, style=CHECK_STYLES.get(check.status, "")),
                Text(check.detail),
                key=check.name,
            )
