"""Per-destination progress of one change event's fan-out (archive write + one trigger per customer).

Constructor (what the console shell calls, ``app.start_fanout``)::

    SubmitProgressScreen(
        operation,            # "submit" | "resubmit" | "approve" | "complete" | "cancel" (label only)
        change,               # the Change (its customers pre-fill the rows) or a change id
        run,                  # run(progress_cb) -> FanoutResult: the blocking lifecycle call
        *,
        on_archived=None,     # called once (UI thread) with the new Change when the archive is written
        retry=None,           # retry(result, progress_cb) -> FanoutResult; default
                              #   app.services.changes.retry(result, progress=progress_cb)
        customers=None,       # destinations to show before the first event (default change.customers)
        auto_follow=True,     # after full success, move to LiveStatusScreen on its own (1.5 s)
        follow_delay=1.5,
    )

``run`` and ``retry`` execute in a thread worker; their progress callbacks arrive on pool threads and are
queued to the UI thread without blocking the fan-out (bursts are applied in one repaint).

Rows: ``archive`` then every customer, each with state (pending / uploading / done / failed) and error;
a ProgressBar of settled destinations; the full error of every failed destination. Bindings: ``r`` retry
only the failed destinations (or the whole call when it failed before any result), ``l`` (or ``enter``
when no button has focus) the live status of the change (``switch_screen``: the progress screen is
replaced), ``escape`` close (refused while sending). After a result the button of the likely next step
has focus (Retry after a failure, Live status after success), so ``enter`` does that.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.timer import Timer
from textual.widgets import Button, ProgressBar, Static

from ..colours import DESTINATION_STATE
from ..errors import describe
from ..models import Change
from ..services.fanout import ARCHIVE, DestinationState, FanoutResult, ProgressEvent
from ..widgets.livetable import LiveTable
from .base import ConsoleScreen
from .status import LiveStatusScreen

ProgressCallback = Callable[[ProgressEvent], None]
RunFn = Callable[[ProgressCallback], FanoutResult]
RetryFn = Callable[[FanoutResult, ProgressCallback], FanoutResult]

OPERATION_LABELS = {
    "submit": "Submitting",
    "resubmit": "Resubmitting",
    "approve": "Approving",
    "complete": "Completing",
    "cancel": "Cancelling",
}
PROGRESS_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("destination", "Destination", 20),
    ("name", "Name", 24),
    ("state", "State", 10),
    ("error", "Error", 30),  # fills the rest of the line
)


def _state(value: Any) -> str:
    return str(getattr(value, "value", value))


class SubmitProgressScreen(ConsoleScreen[None]):
    help_title = "Fan-out progress"
    CSS_PATH = "status.tcss"
    AUTO_FOCUS = ""  # enter belongs to the screen until a result picks the button to focus

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close"),
        Binding("r", "retry", "Retry failed"),
        Binding("enter,l", "live_status", "Live status"),
    ]

    def __init__(
        self,
        operation: str,
        change: Change | str,
        run: RunFn,
        *,
        on_archived: Callable[[Change], None] | None = None,
        retry: RetryFn | None = None,
        customers: list[str] | None = None,
        auto_follow: bool = True,
        follow_delay: float = 1.5,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        self.operation = operation
        self.change = change if isinstance(change, Change) else None
        self.change_id = change.change_id if isinstance(change, Change) else change
        self._run = run
        self._retry = retry
        self._on_archived = on_archived
        self.auto_follow = auto_follow
        self.follow_delay = follow_delay
        initial = customers if customers is not None else (self.change.customers if self.change else [])
        self.states: dict[str, str] = {ARCHIVE: DestinationState.PENDING.value}
        self.states.update({c: DestinationState.PENDING.value for c in sorted(initial)})
        self.errors: dict[str, str] = {}
        self.result: FanoutResult | None = None
        self.failure: str | None = None  # the call raised before returning a result
        self.running = False
        self.attempts = 0
        self._archived_reported = False
        self._follow_timer: Timer | None = None

    def change_shown(self) -> str | None:
        return self.change_id

    # -- layout ----------------------------------------------------------------------------
    def compose_body(self) -> ComposeResult:
        with Vertical(id="progress-head"):
            yield Static(id="progress-title")
            yield ProgressBar(id="progress-bar", show_eta=False)
            yield Static(id="progress-status")
        yield Static(id="progress-errors", classes="hidden")
        yield LiveTable(id="progress-table", cursor_type="none", show_cursor=False, fill_column="error")
        with Horizontal(id="progress-buttons"):
            yield Button("Retry failed (r)", id="progress-retry", variant="warning", disabled=True)
            yield Button("Live status (l)", id="progress-live", variant="primary", disabled=True)
            yield Button("Close (esc)", id="progress-close")

    def on_mount(self) -> None:
        self.title = OPERATION_LABELS.get(self.operation, self.operation.capitalize())
        self.sub_title = self.change_id
        table = self.query_one("#progress-table", LiveTable)
        table.can_focus = False
        for key, label, width in PROGRESS_COLUMNS:
            table.add_column(label, key=key, width=width)
        table.fit_fill_column()
        for dest in self.states:
            self._add_row(dest)
        self.render_progress()
        self._start(lambda cb: self._run(cb))

    # -- running -------------------------------------------------------------------------------
    def _progress(self, event: ProgressEvent) -> None:
        """The progress callback (any thread): applied on the UI loop, a burst with one repaint."""
        self.post_from_thread(self._apply, event.destination, _state(event.state), event.error)

    @contextmanager
    def applying_results(self) -> Iterator[None]:
        with self.query_one("#progress-table", LiveTable).coalesced():
            yield

    def results_applied(self) -> None:
        self.render_progress()

    def _start(self, call: RunFn) -> None:
        self.running = True
        self.attempts += 1
        self.failure = None
        self.render_progress()
        self._work(call)

    @work(thread=True, exclusive=True, group="fanout-progress", exit_on_error=False)
    def _work(self, call: RunFn) -> None:
        try:
            result = call(self._progress)
        except Exception as exc:  # shown on screen; r runs the call again
            self.post_from_thread(self._failed, describe(exc))
            return
        self.post_from_thread(self._finished, result)

    def _finished(self, result: FanoutResult) -> None:
        self.running = False
        self.result = result
        self.change = result.change
        if result.states and ARCHIVE not in result.states and self.states.get(ARCHIVE) == "pending":
            self._remove_row(ARCHIVE)  # a resend: no archive write
        for dest, state in result.states.items():
            self._apply(dest, _state(state), result.errors.get(dest))
        self.render_progress()
        self._focus_next_step()
        if result.states and result.ok and self.auto_follow and self.live:
            self.call_after_refresh(self._arm_follow)

    def _arm_follow(self) -> None:
        if self.is_attached and self._follow_timer is None:
            self._follow_timer = self.set_timer(self.follow_delay, self.action_live_status)

    def _failed(self, message: str) -> None:
        self.running = False
        self.failure = message
        for dest, state in self.states.items():
            if state == DestinationState.UPLOADING.value:
                self._apply(dest, DestinationState.FAILED.value, message)
        self.render_progress()
        self._focus_next_step()

    def _focus_next_step(self) -> None:
        """Focus what enter should do now: retry after a failure, else the live status."""
        for button_id in ("#progress-retry", "#progress-live", "#progress-close"):
            button = self.query_one(button_id, Button)
            if not button.disabled:
                button.focus()
                return

    # -- rows -------------------------------------------------------------------------------------
    def _dest_name(self, dest: str) -> str:
        if dest == ARCHIVE:
            return "S3 archive (the change itself)"
        mapping = self.services.config.customer_mappings.get(dest)
        return mapping.customer_name if mapping is not None else ""

    def _cells(self, dest: str) -> tuple[Text, ...]:
        state = self.states.get(dest, "pending")
        error = " ".join((self.errors.get(dest) or "").split())
        return (
            Text(dest, style="bold" if dest == ARCHIVE else ""),
            Text(self._dest_name(dest)),
            Text(state, style=DESTINATION_STATE.get(state, "")),
            Text(error, style="red1"),
        )

    def _add_row(self, dest: str) -> None:
        self.query_one("#progress-table", LiveTable).add_row(*self._cells(dest), key=dest)

    def _remove_row(self, dest: str) -> None:
        self.states.pop(dest, None)
        self.errors.pop(dest, None)
        self.query_one("#progress-table", LiveTable).remove_row(dest)

    def _apply(self, dest: str, state: str, error: str | None) -> None:
        table = self.query_one("#progress-table", LiveTable)
        known = dest in self.states
        old_state, old_error = self.states.get(dest), self.errors.get(dest)
        self.states[dest] = state
        if error:
            self.errors[dest] = error
        else:
            self.errors.pop(dest, None)
        if not known:
            self._add_row(dest)
            return
        cells = self._cells(dest)
        if state != old_state:
            table.update_cell(dest, "state", cells[2])
        if self.errors.get(dest) != old_error:
            table.update_cell(dest, "error", cells[3])
        if dest == ARCHIVE and state == DestinationState.DONE.value:
            self._report_archived()

    def _report_archived(self) -> None:
        if self._archived_reported or self._on_archived is None:
            return
        change = self.result.change if self.result is not None else None
        if change is None:
            return  # reported when the result (with the new Change) arrives
        self._archived_reported = True
        self._on_archived(change)

    # -- header ------------------------------------------------------------------------------------
    @property
    def failed(self) -> list[str]:
        return [d for d, s in self.states.items() if s == DestinationState.FAILED.value]

    @property
    def can_follow(self) -> bool:
        return (
            not self.running
            and self.result is not None
            and bool(self.result.states)
            and self.states.get(ARCHIVE, DestinationState.DONE.value) == DestinationState.DONE.value
        )

    def render_progress(self) -> None:
        if self.states.get(ARCHIVE) == DestinationState.DONE.value:
            self._report_archived()
        total = len(self.states)
        done = sum(1 for s in self.states.values() if s == DestinationState.DONE.value)
        failed = len(self.failed)
        title = Text()
        title.append(f"{OPERATION_LABELS.get(self.operation, self.operation)} ", style="bold")
        title.append(self.change_id, style="bold")
        if self.change is not None:
            title.append(f"  v{self.change.version}", style="bold dodger_blue1")
            title.append("  —  ")
            title.append(self.change.title)
        if self.result is not None:
            title.append(f"  ({self.result.event.value} email)", style="grey62")
        self.query_one("#progress-title", Static).update(title)
        self.query_one("#progress-bar", ProgressBar).update(total=max(total, 1), progress=done + failed)

        status = Text()
        if self.running:
            status.append(f"Sending… {done}/{total} done", style="bold")
            if failed:
                status.append(f", {failed} failed", style="bold red1")
            if self.attempts > 1:
                status.append(f"  (attempt {self.attempts})", style="grey62")
        elif self.failure is not None:
            status.append("Failed: ", style="bold red1")
            status.append(self.failure)
            status.append("  — r tries again, esc closes", style="grey62")
        elif self.result is not None and not self.result.states:
            status.append("Nothing changed: nothing was sent.", style="bold")
        elif failed:
            status.append(f"{failed} of {total} destinations failed", style="bold red1")
            status.append(f", {done} done. r retries only the failed ones")
            if self.can_follow:
                status.append("; l watches the live status of the others")
            status.append(".")
        elif self.result is not None:
            status.append(f"All {total} destinations done.", style="bold green3")
            status.append(" enter (or l) opens the live status")
            if self.auto_follow and self.live:
                status.append(" (opening by itself…)")
            status.append(".")
        self.query_one("#progress-status", Static).update(status)

        errors = self.query_one("#progress-errors", Static)
        failed_errors = [(d, self.errors.get(d, "")) for d in self.failed]
        if failed_errors:
            text = Text()
            for i, (dest, error) in enumerate(failed_errors):
                if i:
                    text.append("\n")
                text.append(f"✗ {dest}: ", style="bold")
                text.append(error or "failed")
            errors.update(text)
            errors.remove_class("hidden")
        else:
            errors.add_class("hidden")
        self.query_one("#progress-retry", Button).disabled = self.running or not (
            failed or self.failure is not None
        )
        self.query_one("#progress-live", Button).disabled = not self.can_follow
        self.query_one("#progress-close", Button).disabled = self.running

    # -- actions --------------------------------------------------------------------------------------
    def action_retry(self) -> None:
        if self.running:
            return
        if self.result is None:
            if self.failure is None:
                return
            for dest, state in self.states.items():
                if state == DestinationState.FAILED.value:
                    self._apply(dest, DestinationState.PENDING.value, None)
            self._start(lambda cb: self._run(cb))
            return
        result = self.result
        if not result.failed:
            self.notify("Nothing failed: nothing to retry.")
            return
        retry = self._retry or self._service_retry
        self._start(lambda cb: retry(result, cb))

    def _service_retry(self, result: FanoutResult, progress: ProgressCallback) -> FanoutResult:
        return self.services.changes.retry(result, progress=progress)

    def action_live_status(self) -> None:
        if self._follow_timer is not None:
            self._follow_timer.stop()
            self._follow_timer = None
        if not self.can_follow or self.result is None:
            if self.running:
                self.notify("Still sending…")
            return
        result = self.result
        if not self.is_current:
            return
        self.app.switch_screen(
            LiveStatusScreen(result.change.change_id, version=result.change.version, event=result.event)
        )

    def action_close(self) -> None:
        if self.running:
            self.notify("Still sending: wait for every destination to settle.", severity="warning")
            return
        if self._follow_timer is not None:
            self._follow_timer.stop()
        self.back()

    @on(Button.Pressed, "#progress-retry")
    def _retry_pressed(self) -> None:
        self.action_retry()

    @on(Button.Pressed, "#progress-live")
    def _live_pressed(self) -> None:
        self.action_live_status()

    @on(Button.Pressed, "#progress-close")
    def _close_pressed(self) -> None:
        self.action_close()
