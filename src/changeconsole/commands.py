"""Command palette (ctrl+p): every console action, plus "open change" / "live status" for known changes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.screen import Screen

from .models import CHANGE_ID_RE, OperatorAction

if TYPE_CHECKING:
    from .app import ChangeConsoleApp


@dataclass(frozen=True)
class PaletteCommand:
    name: str
    help: str
    run: Callable[[], object]


def console_commands(app: ChangeConsoleApp) -> list[PaletteCommand]:
    """The fixed commands; those the operator may not use (read-only, roles) are left out."""
    commands = [
        PaletteCommand("Changes", "The list of changes (home)", app.go_home),
        PaletteCommand("New change", "Compose a new change notice", app.open_compose),
        PaletteCommand("Dead-letter queues", "Per-customer DLQs: peek, redrive, export", app.open_dlq),
        PaletteCommand("Customers", "Customers and their last deliveries", app.open_customers),
        PaletteCommand("Dashboard", "Changes and deliveries in plots (the report)", app.open_dashboard),
        PaletteCommand("Audit trail", "Who did what, when, to which change and customers", app.open_audit),
        PaletteCommand("Toggle AWS call log", "Show or hide the AWS calls this console made", app.toggle_log),
        PaletteCommand("Help", "Keys of the current screen", app.action_help),
        PaletteCommand("Command line", "Type a : command", app.action_command_line),
        PaletteCommand("Refresh", "Reload what the current screen shows", app.refresh_current),
    ]
    current = app.current_change_id()
    if current:
        commands.append(
            PaletteCommand(f"Live status {current}", "Delivery of the change on screen", app.open_status)
        )
    if app.readonly or not app.decide(OperatorAction.CHANGE_DRAFT).allowed:
        commands = [c for c in commands if c.name != "New change"]
    if not app.decide(OperatorAction.AUDIT_READ).allowed:
        commands = [c for c in commands if c.name != "Audit trail"]
    return commands


def screen_commands(screen: Screen[object]) -> list[PaletteCommand]:
    """The actions the calling screen offers right now (its shown, enabled bindings)."""
    from textual.app import App

    out: list[PaletteCommand] = []
    seen: set[str] = set()
    for active in screen.active_bindings.values():
        binding = active.binding
        if (
            isinstance(active.node, App)
            or active.node is not screen
            or not active.enabled
            or not binding.show
            or not binding.description
            or binding.action in seen
        ):
            continue
        seen.add(binding.action)
        key = screen.app.get_key_display(binding)
        out.append(
            PaletteCommand(
                binding.description,
                f"{key} on this screen",
                partial(screen.run_action, binding.action),
            )
        )
    return out


class ConsoleCommands(Provider):
    """Navigation and actions; change ids come from the last list the console loaded."""

    @property
    def console(self) -> ChangeConsoleApp:
        return cast("ChangeConsoleApp", self.app)

    def _change_hits(self) -> list[tuple[str, str, Callable[[], object]]]:
        app = self.console
        out: list[tuple[str, str, Callable[[], object]]] = []
        for summary in app.known_changes:
            label = f"{summary.change_id} {summary.title} ({summary.status.value})"
            out.append(
                (
                    f"Open change {label}",
                    "Change detail, actions and history",
                    partial(app.open_change, summary.change_id),
                )
            )
            if summary.status.value != "draft":
                out.append(
                    (
                        f"Live status {summary.change_id} {summary.title}",
                        "Per-customer delivery of the latest round",
                        partial(app.open_status, summary.change_id),
                    )
                )
        return out

    def _commands(self) -> list[PaletteCommand]:
        return screen_commands(self.screen) + console_commands(self.console)

    async def discover(self) -> Hits:
        for command in self._commands():
            yield DiscoveryHit(command.name, command.run, help=command.help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for command in self._commands():
            score = matcher.match(command.name)
            if score > 0:
                yield Hit(score, matcher.highlight(command.name), command.run, help=command.help)
        for text, help_text, run in self._change_hits():
            score = matcher.match(text)
            if score > 0:
                yield Hit(score * 0.9, matcher.highlight(text), run, help=help_text)
        candidate = query.strip()
        if CHANGE_ID_RE.match(candidate):
            app = self.console
            yield Hit(1.0, f"Open change {candidate}", partial(app.open_change, candidate), help="By id")
            yield Hit(0.95, f"Live status {candidate}", partial(app.open_status, candidate), help="By id")
