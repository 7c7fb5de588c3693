"""Several changes approved, completed or cancelled at once: the confirmation and the results.

``bulk_confirmation`` is the one confirmation listing every marked change (and those whose state does
not allow the action, left out); a cancellation asks there one reason for all of them.
``BulkResultsScreen`` runs ``services.bulk`` in a thread worker, each change pinned to the version the
list showed (and through the authorization point on its own), and fills one row per change as it
ends; ``r`` retries only the changes that did not succeed.
"""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from ..models import TRANSITIONS, ChangeStatus
from ..services.bulk import BulkItem, BulkRun, Outcome
from ..services.status import ChangeSummary
from ..widgets.console import ThreadResults, console_of
from .modals import ConfirmModal, ReasonConfirmModal

TARGETS = {
    "approve": ChangeStatus.APPROVED,
    "complete": ChangeStatus.COMPLETED,
    "cancel": ChangeStatus.CANCELLED,
}
OUTCOME_STYLE = {Outcome.OK: "green", Outcome.PARTIAL: "yellow", Outcome.FAILED: "red"}


def allowed(summary: ChangeSummary, operation: str) -> bool:
    return TARGETS[operation] in TRANSITIONS[summary.status]


SHOWN = 8  # changes listed by name in the confirmation (it fits 80x24); the rest are counted


def bulk_confirmation(
    operation: str, chosen: list[ChangeSummary]
) -> tuple[ConfirmModal | ReasonConfirmModal, list[ChangeSummary]]:
    """The confirmation of ``operation`` on ``chosen`` and the changes it would act on. A
    cancellation's answers with its reason (the same for every change), the others' with yes/no."""
    able = [s for s in chosen if allowed(s, operation)]
    left_out = [s for s in chosen if s not in able]
    customers = sorted({c for s in able for c in s.customers})
    lines = [
        f"  • {escape(s.change_id)} v{s.version} [dim]{s.status.value}[/] {escape(s.title)} "
        f"[dim]({len(s.customers)} customer(s))[/]"
        for s in able[:SHOWN]
    ]
    if len(able) > SHOWN:
        lines.append(f"  … and {len(able) - SHOWN} more")
    body = f"Notices go to {len(customers)} customer(s), each change pinned to the version shown:\n"
    body += "\n".join(lines)
    if left_out:
        body += (
            f"\n[yellow]Left out (a {', '.join(sorted({s.status.value for s in left_out}))} change cannot be "
        )
        body += f"{operation}d):[/] " + ", ".join(escape(s.change_id) for s in left_out)
    title = f"{operation.capitalize()} {len(able)} change{'s' if len(able) != 1 else ''}?"
    if operation == "cancel":
        body += "\nA cancelled change cannot be reopened."
        modal: ConfirmModal | ReasonConfirmModal = ReasonConfirmModal(
            title,
            body,
            str(len(able)),
            action_label=f"Cancel {len(able)}",
            keep_label="Keep them",
            reason_label="Reason, for every one (kept with each change and told in its notice):",
        )
    else:
        modal = ConfirmModal(title, body, yes=operation.capitalize())
    return modal, able


class BulkResultsScreen(ThreadResults, ModalScreen[None]):
    DEFAULT_CSS = """
    BulkResultsScreen { align: center middle; background: $background 60%; }
    BulkResultsScreen > Vertical {
        width: 110; max-width: 98%; height: auto; max-height: 90%; padding: 1 2;
        border: round $accent; background: $surface;
    }
    BulkResultsScreen #bulk-title { text-style: bold; height: auto; }
    BulkResultsScreen #bulk-table { height: auto; max-height: 20; }
    BulkResultsScreen #bulk-status { height: auto; margin-top: 1; }
    """
    BINDINGS = [
        Binding("r", "retry", "Retry the failed"),
        Binding("escape,q", "close", "Close"),
    ]

    def __init__(self, operation: str, targets: list[ChangeSummary], *, reason: str | None = None) -> None:
        super().__init__()
        self.operation = operation
        self.targets = targets
        self.reason = reason  # a cancellation's
        self.run_state: BulkRun | None = None
        self.running = False

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(f"{self.operation.capitalize()} {len(self.targets)} change(s)", id="bulk-title")
            table: DataTable[Any] = DataTable(cursor_type="row", id="bulk-table")
            table.add_column("change", key="change")
            table.add_column("seen", key="seen")
            table.add_column("outcome", key="outcome")
            table.add_column("now", key="now")
            table.add_column("detail", key="detail")
            yield table
            yield Static("", id="bulk-status")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for s in self.targets:
            table.add_row(s.change_id, f"v{s.version}", Text("…", style="dim"), "", "", key=s.change_id)
        table.focus()
        self._start(retry=False)

    def _start(self, *, retry: bool) -> None:
        bulk = console_of(self).services.bulk
        self.running = True
        self._status()
        targets = [(s.change_id, s.version) for s in self.targets]
        previous = self.run_state

        def work() -> None:
            try:
                if retry and previous is not None:
                    result = bulk.retry(
                        previous, on_item=lambda item: self.post_from_thread(self._item, item)
                    )
                else:
                    result = bulk.run(
                        self.operation,
                        targets,
                        on_item=lambda item: self.post_from_thread(self._item, item),
                        reason=self.reason,
                    )
            except Exception as exc:  # the run itself could not start: every row says why
                self.post_from_thread(self._crashed, exc)
                return
            self.post_from_thread(self._done, result)

        self.run_worker(work, thread=True, group="bulk", exclusive=True, exit_on_error=False)

    def _item(self, item: BulkItem) -> None:
        table = self.query_one(DataTable)
        outcome = item.outcome or Outcome.FAILED
        table.update_cell(item.change_id, "outcome", Text(outcome.value, style=OUTCOME_STYLE[outcome]))
        now = f"v{item.result.change.version} {item.result.change.status.value}" if item.result else ""
        table.update_cell(item.change_id, "now", now, update_width=True)
        table.update_cell(
            item.change_id, "detail", Text(item.error or "", overflow="ellipsis"), update_width=True
        )

    def _crashed(self, exc: BaseException) -> None:
        from ..errors import describe

        self.running = False
        self.query_one("#bulk-status", Static).update(f"[red]✖ {escape(describe(exc))}[/]")

    def _done(self, run: BulkRun) -> None:
        self.run_state, self.running = run, False
        self._status()

    def _status(self) -> None:
        box = self.query_one("#bulk-status", Static)
        run = self.run_state
        if self.running:
            box.update("Working… each change on its own; the others go on when one fails.")
        elif run is None:
            box.update("")
        elif run.ok:
            box.update(f"[green]All {len(run.items)} done.[/] esc closes.")
        else:
            box.update(
                f"[red]{len(run.failed)} of {len(run.items)} did not succeed.[/] "
                "r retries only those · esc closes"
            )

    def action_retry(self) -> None:
        if self.running or self.run_state is None or self.run_state.ok:
            return
        table = self.query_one(DataTable)
        for item in self.run_state.failed:
            table.update_cell(item.change_id, "outcome", Text("…", style="dim"))
        self._start(retry=True)

    def action_close(self) -> None:
        if not self.running:
            self.dismiss(None)
