"""``?``/F1 help, generated from the live bindings of the screen it was opened on (never hand-written):
its keys (those the operator may not use dimmed), then why each of those is not allowed (the
authorization point's reason), then the ``:`` commands."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from rich.markup import escape
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import ActiveBinding, Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

# The ``:`` commands (kept in one place: the app's command table).
CommandHelp = Iterable[tuple[str, str]]


def group_bindings(
    bindings: Mapping[str, ActiveBinding], key_display: Callable[[Binding], str]
) -> list[tuple[str, list[tuple[str, str, bool]]]]:
    """(group title, [(keys, description, enabled)]) from active bindings; keys of one action merged."""
    groups: dict[str, dict[tuple[str, str], list[str]]] = {}
    enabled_of: dict[tuple[str, str, str], bool] = {}
    for active in bindings.values():
        binding: Binding = active.binding
        if binding.system or not binding.description:
            continue
        title = _group_title(active)
        entry = groups.setdefault(title, {})
        ident = (binding.action, binding.description)
        entry.setdefault(ident, []).append(key_display(binding))
        enabled_of[(title, *ident)] = enabled_of.get((title, *ident), False) or active.enabled
    out = []
    for title, entries in groups.items():
        rows = [
            (" ".join(dict.fromkeys(keys)), description, enabled_of[(title, action, description)])
            for (action, description), keys in entries.items()
        ]
        out.append((title, rows))
    # The screen's own keys first, then its groups, what the focused widget adds, app-wide keys last.
    order = {"This screen": 0, "Focused widget": 8, "Anywhere": 9}
    out.sort(key=lambda item: (order.get(item[0], 1), item[0]))
    return out


def _group_title(active: ActiveBinding) -> str:
    from textual.app import App
    from textual.screen import Screen

    node = active.node
    if active.binding.group is not None and active.binding.group.description:
        scope = "Anywhere" if isinstance(node, App) else ""
        return scope or active.binding.group.description
    if isinstance(node, App):
        return "Anywhere"
    if isinstance(node, Screen):
        return "This screen"
    return "Focused widget"


class HelpScreen(ModalScreen[None]):
    """Every key that works right now, grouped, plus the ``:`` commands. Esc/?/F1 closes."""

    BINDINGS = [Binding("escape,question_mark,f1,q", "close", "Close")]

    def __init__(
        self,
        screen_title: str,
        bindings: Mapping[str, ActiveBinding],
        commands: CommandHelp = (),
        *,
        operator: str = "",
        refusals: Iterable[tuple[str, str, str]] = (),
    ) -> None:
        super().__init__(id="help")
        self.screen_title = screen_title
        self.bindings_snapshot = dict(bindings)
        self.commands = list(commands)
        self.operator = operator
        self.refusals = list(refusals)

    def compose(self) -> ComposeResult:
        with Vertical(id="help-box"):
            title = f"Help — {escape(self.screen_title)}"
            if self.operator:
                title += f"  [dim]· {escape(self.operator)}[/]"
            yield Static(title, id="help-title")
            with VerticalScroll(id="help-body"):
                for title, rows in group_bindings(self.bindings_snapshot, self.app.get_key_display):
                    table = Table.grid(padding=(0, 2))
                    table.add_column(style="bold", min_width=12)
                    table.add_column()
                    for keys, description, enabled in rows:
                        table.add_row(Text(keys), Text(description, style="" if enabled else "dim"))
                    yield Static(title, classes="help-group")
                    yield Static(table, classes="help-table")
                if self.refusals:
                    table = Table.grid(padding=(0, 2))
                    table.add_column(style="bold", min_width=12)
                    table.add_column()
                    for keys, what, why in self.refusals:
                        table.add_row(Text(keys), Text(f"{what}: {why}"))
                    yield Static(f"Not allowed for {escape(self.operator)}", classes="help-group")
                    yield Static(table, classes="help-table")
                if self.commands:
                    table = Table.grid(padding=(0, 2))
                    table.add_column(style="bold", min_width=12)
                    table.add_column()
                    for command, description in self.commands:
                        table.add_row(Text(f":{command}"), Text(description))
                    yield Static("Command line (:)", classes="help-group")
                    yield Static(table, classes="help-table")
            yield Static("[dim]esc closes · ctrl+p opens the command palette[/]", id="help-footer")

    def action_close(self) -> None:
        self.dismiss(None)
