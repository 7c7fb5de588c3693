"""One delivery in detail: ``DeliveryDetailScreen(record)``.

The record's fields, its full error, the worker's claim, recipient-level results from the ledger and the
depth of the customer's DLQ. ``d`` opens the customer's DLQ, ``r`` reloads, ``escape`` goes back.
Recipients whose outcome is ``unknown`` (a worker stopped mid-send) are called out; ``u`` resends them
after a confirmation that says they may get the email twice (``services.resend``, in a thread worker).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from rich.markup import escape
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from ..colours import DELIVERY_STATE, RECIPIENT_STATE, SES_OUTCOME
from ..errors import describe
from ..models import DeliveryRecord, DeliveryState, OperatorAction
from ..services.delivery_detail import DeliveryDetail
from ..services.resend import DUPLICATE_WARNING, ResendResult
from ..services.status import DeliveryKey
from ..widgets.livetable import LiveTable
from .base import ConsoleScreen
from .format import format_duration, one_line, record_duration
from .modals import ConfirmModal

RECIPIENT_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("email", "Recipient", 30),
    ("state", "Result", 8),
    ("ses", "SES says", 12),  # from its SES events: delivered, bounced, complained, …
    ("at", "At", 20),
    ("message_id", "Message id", 18),
    ("error", "Error", 30),
)


class DeliveryDetailScreen(ConsoleScreen[None]):
    help_title = "Delivery detail"
    ARMED = True
    CSS_PATH = "status.tcss"
    AUTO_FOCUS = "#detail-recipients"

    REQUIRES: ClassVar[Mapping[str, OperatorAction]] = {"resend_unknown": OperatorAction.CHANGE_RESEND}
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
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        self.record = record
        self.resending = False
        self.last_resend: ResendResult | None = None
        self.detail: DeliveryDetail | None = None
        self.error: str | None = None  # reading the ledger (or everything) failed
        self.record_error: str | None = None  # refreshing the delivery record failed
        self.loaded = False

    def compose_body(self) -> ComposeResult:
        with Vertical(id="detail-head"):
            yield Static(id="detail-summary")
            yield Static(id="detail-error", classes="hidden")
            yield Static(id="detail-unknown", classes="hidden")
            yield Static(id="detail-dlq")
        yield Static("Recipients", id="detail-recipients-title")
        yield LiveTable(id="detail-recipients", cursor_type="row", zebra_stripes=True, fill_column="error")

    def on_mount(self) -> None:
        self.title = "Delivery"
        self.sub_title = f"{self.record.customer} · {self.record.change_id}"
        table = self.query_one("#detail-recipients", LiveTable)
        for key, label, width in RECIPIENT_COLUMNS:
            table.add_column(label, key=key, width=width)
        table.fit_fill_column()
        self.render_detail()
        self._load()

    @work(thread=True, exclusive=True, group="delivery-detail", exit_on_error=False)
    def _load(self) -> None:
        services = self.services
        key = DeliveryKey.of(self.record)
        try:
            record, record_error = services.status.get(key) or self.record, None
        except Exception as exc:  # keep showing the record we have
            record, record_error = self.record, describe(exc)
        try:
            detail = services.delivery_detail.detail(record)
        except Exception as exc:
            self.post_from_thread(self._failed, describe(exc))
            return
        self.post_from_thread(self._loaded_ok, record, detail, record_error)

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
        mapping = self.services.config.customer_mappings.get(self.record.customer)
        return mapping.customer_name if mapping is not None else ""

    def render_detail(self) -> None:
        r = self.record
        summary = Text()
        summary.append(f"{r.customer}", style="bold")
        name = self._customer_name()
        if name:
            summary.append(f"  {name}")
        summary.append(f"\n{r.change_id}  v{r.version} · {r.event.value}\n")
        summary.append("state ")
        summary.append(r.state.value, style=DELIVERY_STATE.get(r.state, ""))
        summary.append(f"   attempts {r.attempts}")
        summary.append(f"   recipients {r.recipients_sent}/{r.recipients_total} sent")
        if r.recipients_failed:
            summary.append(f", {r.recipients_failed} failed", style="bold red1")
        summary.append(f"   duration {format_duration(record_duration(r, self.now()))}")
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
        by_outcome = ", ".join(f"{n} {o}" for o, n in sorted(self.detail.outcome_counts.items()))
        if by_outcome:
            head.append(f"   SES: {by_outcome}")
        title.update(head)
        for rr in self.detail.recipients:
            said = rr.outcome.outcome.value if rr.outcome is not None else ""
            table.add_row(
                Text(rr.email),
                Text(rr.state, style=RECIPIENT_STATE.get(rr.state, "")),
                Text(said, style=SES_OUTCOME.get(said, "")),
                Text(rr.at or ""),
                Text(rr.message_id or ""),
                Text(one_line(rr.error), style="red1"),
                key=rr.email,
            )

    def action_back(self) -> None:
        self.back()

    def action_reload(self) -> None:
        self._load()

    def action_dlq(self) -> None:
        self.console.open_dlq(self.record.customer)

    # -- unknown recipients ---------------------------------------------------------------------
    def action_customers(self, action: str) -> list[str]:
        return [self.record.customer]

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action != "resend_unknown":
            return True
        # Shown (in the footer) only when there is something to resend and the console may act.
        if self.readonly or self.detail is None or not self.detail.unknown:
            return False
        return super().check_action(action, parameters)

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
            ": a worker stopped mid-send, so they may or may not have this email. Their SES event confirms"
            " them; with none after the grace period they are sent again (events.unknown_policy)."
        )
        if self.resending:
            text.append("  Resending…", style="italic")
        elif not self.readonly:
            decision = self.permission("resend_unknown")
            if decision is None or decision.allowed:
                text.append("  Press u to resend them (they may get it twice).", style="bold")
            else:
                text.append(f"  Not yours to resend: {decision.reason}.", style="italic")
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
        if self.refuse("resend_unknown", "resending"):
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
            result = self.services.resend.resend_delivery(DeliveryKey.of(self.record), emails)
        except Exception as exc:
            self.post_from_thread(self._resend_failed, describe(exc))
            return
        self.post_from_thread(self._resend_done, result)

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
