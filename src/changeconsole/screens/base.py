"""``ConsoleScreen``: the base of every full screen of the console.

A screen shows the console's header line, its body, the AWS call log pane (ctrl+l) and the footer. It
reaches AWS only through ``self.services`` and only from thread workers (``call_service``, or
``@work(thread=True)`` methods); results come back to the UI loop through ``post_from_thread``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar, TypeVar

from rich.markup import escape
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer

from ..errors import describe, title_of
from ..widgets.calllog import CallLogPane
from ..widgets.console import ThreadResults, console_of
from ..widgets.header import EnvHeader

if TYPE_CHECKING:
    from ..app import ChangeConsoleApp
    from ..services.bundle import Services

T = TypeVar("T")
R = TypeVar("R")

# Binding groups: related keys shown together in the footer and in help.
DIFF_PICK = Binding.Group("Diff A/B")
CUSTOMER_PICK = Binding.Group("Select shown/clear")
SORTING = Binding.Group("Sort/reverse")


class ConsoleScreen(ThreadResults, Screen[T]):
    """Header, body (``compose_body``), call log pane, footer; the read-only guard; service calls."""

    # What the help screen calls this screen.
    help_title: ClassVar[str] = ""
    # Actions that change something; hidden (and refused) in a read-only console.
    MUTATING: ClassVar[frozenset[str]] = frozenset()
    # One key here starts a customer-visible action on what the screen shows (approve, cancel,
    # redrive, resend…): leaving compose never lands on such a screen (``app.leave_compose``).
    ARMED: ClassVar[bool] = False

    @property
    def console(self) -> ChangeConsoleApp:
        return console_of(self)

    @property
    def services(self) -> Services:
        return self.console.services

    @property
    def readonly(self) -> bool:
        return self.console.readonly

    @property
    def live(self) -> bool:
        """False when the console runs without timers (deterministic snapshots)."""
        return self.console.live

    def now(self) -> datetime:
        """The console's clock (frozen in tests)."""
        return self.console.now()

    def compose(self) -> ComposeResult:
        yield EnvHeader(id="env-header")
        yield from self.compose_body()
        yield CallLogPane(id="call-log")
        yield Footer()

    def compose_body(self) -> ComposeResult:
        yield from ()

    def change_shown(self) -> str | None:
        """The change this screen is about, if any (``:status`` without an id takes the topmost one)."""
        return None

    def action_refresh(self) -> None:
        """Reload what the screen shows (screens that load something override it)."""

    def back(self) -> None:
        """Back to the screen below (never past the first)."""
        if len(self.app.screen_stack) > 1:
            self.app.pop_screen()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not (action in self.MUTATING and self.readonly)

    def on_key(self, event: events.Key) -> None:
        """A key of a hidden mutating action in a read-only console: say why nothing happens."""
        if not self.readonly or not self.MUTATING:
            return
        for binding in self._bindings.key_to_bindings.get(event.key, []):
            if binding.action in self.MUTATING:
                event.stop()
                self.refuse_readonly(binding.description or binding.action)
                return

    def refuse_readonly(self, what: str) -> bool:
        """True (after telling the operator) when the console is read-only."""
        if self.readonly:
            self.notify(f"Read-only console: {what} is disabled.", title="Read-only", severity="warning")
            return True
        return False

    def notify_error(self, exc: BaseException, title: str | None = None) -> None:
        self.notify(escape(describe(exc)), title=title or title_of(exc), severity="error", timeout=10)

    def call_service(
        self,
        fn: Callable[[], R],
        *,
        done: Callable[[R], None] | None = None,
        failed: Callable[[BaseException], None] | None = None,
        group: str = "service",
        exclusive: bool = False,
        description: str = "",
    ) -> None:
        """Run a blocking service call in a thread worker; ``done``/``failed`` run on the UI loop."""

        def runner() -> None:
            try:
                result = fn()
            except Exception as exc:
                self.post_from_thread(failed or self.notify_error, exc)
            else:
                if done is not None:
                    self.post_from_thread(done, result)

        self.run_worker(
            runner,
            thread=True,
            group=group,
            exclusive=exclusive,
            exit_on_error=False,
            description=description or group,
        )
