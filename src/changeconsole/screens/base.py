"""``ConsoleScreen``: the base of every full screen of the console.

A screen shows the console's header line, its body, the AWS call log pane (ctrl+l) and the footer. It
reaches AWS only through ``self.services`` and only from thread workers (``call_service``, or
``@work(thread=True)`` methods); results come back to the UI loop through ``post_from_thread``.

Two guards on its keys: ``MUTATING`` actions are hidden in a read-only console; ``REQUIRES`` actions
(binding action → operator action) are shown disabled when the operator's roles do not allow them
(``services.authz``, asked with the customers ``action_customers`` names), and pressing one, or help,
says why. The services refuse them anyway: the screen only spares the operator the attempt.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar, TypeVar

from rich.markup import escape
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer

from ..errors import describe, title_of
from ..models import OperatorAction
from ..widgets.calllog import CallLogPane
from ..widgets.console import ThreadResults, console_of
from ..widgets.header import EnvHeader

if TYPE_CHECKING:
    from ..app import ChangeConsoleApp
    from ..services.authz import Decision
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
    # Actions that need a permission: binding action -> what the operator's roles must allow.
    REQUIRES: ClassVar[Mapping[str, OperatorAction]] = {}
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

    def roles_changed(self) -> None:
        """The operator's roles became known: re-check the keys (screens showing actions re-render)."""
        self.refresh_bindings()

    def action_customers(self, action: str) -> Iterable[str] | None:
        """The customers ``action`` would touch now (None: unknown yet; any scope that has it will do)."""
        return None

    def permission(self, action: str) -> Decision | None:
        """The authorization decision on a ``REQUIRES`` action (None for any other)."""
        need = self.REQUIRES.get(action)
        if need is None:
            return None
        return self.console.decide(need, self.action_customers(action))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in self.MUTATING and self.readonly:
            return False
        decision = self.permission(action)
        return None if decision is not None and not decision.allowed else True

    def refusals(self) -> list[tuple[str, str, str]]:
        """(keys, what, why) of this screen's actions the operator may not do now (for help)."""
        out: dict[str, tuple[str, str, str]] = {}
        for bindings in self._bindings.key_to_bindings.values():
            for binding in bindings:
                decision = self.permission(binding.action)
                # Only what is disabled for want of a permission (not hidden for another reason).
                if decision is None or self.check_action(binding.action, ()) is not None:
                    continue
                keys, what, _ = out.get(binding.action, ("", binding.description or binding.action, ""))
                shown = binding.key_display or self.app.get_key_display(binding)
                out[binding.action] = (" ".join(k for k in (keys, shown) if k), what, decision.reason)
        return list(out.values())

    def on_key(self, event: events.Key) -> None:
        """A key of a hidden or disabled action: say why nothing happens."""
        for binding in self._bindings.key_to_bindings.get(event.key, []):
            if self.readonly and binding.action in self.MUTATING:
                event.stop()
                self.refuse_readonly(binding.description or binding.action)
                return
            decision = self.permission(binding.action)
            if decision is not None and not decision.allowed:
                event.stop()
                self._not_allowed(binding.action, decision)
                return

    def refuse(self, action: str, what: str) -> bool:
        """True (after telling the operator why) when ``action`` may not run now: a read-only console,
        or the operator's roles do not allow it (keys are disabled already; buttons and the palette
        come here)."""
        if action in self.MUTATING and self.refuse_readonly(what):
            return True
        decision = self.permission(action)
        if decision is not None and not decision.allowed:
            self._not_allowed(action, decision)
            return True
        return False

    def _not_allowed(self, action: str, decision: Decision) -> None:
        """Say why, and put the attempt in the audit trail like any refusal."""
        self.console.not_allowed(decision, self.action_customers(action), self.change_shown())

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
