"""Modal dialogs: confirmations scaled to danger, a file path, choices, the ``:`` command line, startup."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from rich.markup import escape
from rich.table import Table
from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Footer, Input, Label, LoadingIndicator, Select, Static

from ..widgets.console import console_of
from ..widgets.inputs import FormInput, WordListSuggester


class ConfirmModal(ModalScreen[bool]):
    """Yes/no: ``y``/enter confirms, ``n``/esc declines."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(
        self,
        title: str,
        body: str = "",
        *,
        yes: str = "Yes",
        no: str = "No",
        danger: bool = False,
    ) -> None:
        super().__init__(classes="dialog-screen")
        self.title_text, self.body, self.yes, self.no, self.danger = title, body, yes, no, danger

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog" + (" danger" if self.danger else "")):
            yield Static(escape(self.title_text), classes="dialog-title")
            if self.body:
                with VerticalScroll(classes="dialog-body"):
                    yield Static(self.body, markup=True)
            with Horizontal(classes="dialog-buttons"):
                yield Button(
                    f"{self.yes} (y)", id="yes", variant="error" if self.danger else "primary", compact=True
                )
                yield Button(f"{self.no} (n)", id="no", compact=True)

    def on_mount(self) -> None:
        self.query_one("#no" if self.danger else "#yes", Button).focus()

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


class TypeToConfirmModal(ModalScreen[bool]):
    """For irreversible actions of wide reach (delete, purge): type the exact text (e.g. the customer
    code). ``keep_label`` names what esc keeps (e.g. "Keep messages")."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(
        self,
        title: str,
        body: str,
        expected: str,
        *,
        action_label: str = "Confirm",
        keep_label: str = "Keep it",
    ) -> None:
        super().__init__(classes="dialog-screen")
        self.title_text, self.body, self.expected, self.action_label = title, body, expected, action_label
        self.keep_label = keep_label

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog danger"):
            yield Static(escape(self.title_text), classes="dialog-title")
            yield Static(self.body, classes="dialog-body-text")
            yield Label(f"Type [b]{escape(self.expected)}[/b] to confirm:")
            yield FormInput(placeholder=self.expected, id="confirm-text")
            yield Static("", id="confirm-hint", classes="field-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button(self.action_label, id="confirm", variant="error", compact=True, disabled=True)
                yield Button(f"{self.keep_label} (esc)", id="cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    @on(Input.Changed)
    def _changed(self, event: Input.Changed) -> None:
        self.query_one("#confirm", Button).disabled = event.value.strip() != self.expected

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        if event.value.strip() == self.expected:
            self.dismiss(True)
        else:
            self.query_one("#confirm-hint", Static).update(
                f"That does not match {escape(self.expected)}; nothing was done."
            )

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm")

    def action_cancel(self) -> None:
        self.dismiss(False)


class PathModal(ModalScreen[tuple[str, str] | None]):
    """A file path (and, for import, where to send): enter confirms, esc cancels."""

    DEFAULT_CSS = """
    PathModal { align: center middle; background: $background 60%; }
    PathModal > Vertical {
        width: 76; max-width: 95%; height: auto; padding: 1 2;
        border: round $accent; background: $surface;
    }
    PathModal .path-title { text-style: bold; margin-bottom: 1; }
    PathModal Input, PathModal Select { margin-top: 1; }
    PathModal Horizontal { height: 1; margin-top: 1; align-horizontal: right; }
    PathModal Button { margin-left: 2; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, body: str, path: str, *, choose_target: bool = False) -> None:
        super().__init__()
        self.title_text, self.body, self.path, self.choose_target = title, body, path, choose_target

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(escape(self.title_text), classes="path-title")
            yield Static(self.body)
            yield Input(value=self.path, id="path-input")
            if self.choose_target:
                yield Select(
                    [
                        ("back to the DLQ, exactly as exported", "dlq"),
                        ("to the source queue (redrive)", "source"),
                    ],
                    value="dlq",
                    allow_blank=False,
                    id="path-target",
                )
            with Horizontal():
                yield Button("OK (enter)", id="ok", variant="primary", compact=True)
                yield Button("Cancel (esc)", id="cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def _result(self) -> tuple[str, str] | None:
        path = self.query_one("#path-input", Input).value.strip()
        if not path:
            return None
        target = str(self.query_one("#path-target", Select).value) if self.choose_target else ""
        return path, target

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self.dismiss(self._result())

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(self._result() if event.button.id == "ok" else None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ReasonConfirmModal(ModalScreen[str | None]):
    """A customer-visible action that cannot be undone, on one change (cancel): a reason (recorded
    with the change) and a confirmation, ``y`` or the change's short suffix. Dismissed with the
    reason, or None (esc, or the keep button)."""

    BINDINGS = [Binding("escape", "keep", "Keep")]

    def __init__(
        self, title: str, body: str, suffix: str, *, action_label: str, keep_label: str, reason_label: str
    ) -> None:
        super().__init__(classes="dialog-screen")
        self.title_text, self.body, self.suffix = title, body, suffix
        self.action_label, self.keep_label, self.reason_label = action_label, keep_label, reason_label

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog danger", id="reason-dialog"):
            yield Static(escape(self.title_text), classes="dialog-title")
            yield Static(self.body, classes="dialog-body-text")
            yield Label(self.reason_label)
            yield FormInput(placeholder="why (required)", id="reason", compact=True)
            yield Label(f"Then type [b]y[/b] or [b]{escape(self.suffix)}[/b] to confirm:")
            yield FormInput(placeholder=f"y or {self.suffix}", id="confirm-text", compact=True)
            yield Static("", id="confirm-hint", classes="field-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button(self.action_label, id="confirm", variant="error", compact=True, disabled=True)
                yield Button(f"{self.keep_label} (esc)", id="keep", compact=True)

    def on_mount(self) -> None:
        self.query_one("#reason", Input).focus()

    @property
    def reason(self) -> str:
        return self.query_one("#reason", Input).value.strip()

    def _confirmed(self) -> bool:
        typed = self.query_one("#confirm-text", Input).value.strip()
        return bool(self.reason) and typed.casefold() in ("y", self.suffix.casefold())

    @on(Input.Changed)
    def _changed(self) -> None:
        self.query_one("#confirm", Button).disabled = not self._confirmed()

    @on(Input.Submitted, "#reason")
    def _reason_done(self) -> None:
        if self.reason:
            self.query_one("#confirm-text", Input).focus()
        else:
            self.query_one("#confirm-hint", Static).update("Give a reason first: it is kept with the change.")

    @on(Input.Submitted, "#confirm-text")
    def _confirm_done(self) -> None:
        if self._confirmed():
            self.dismiss(self.reason)
        elif not self.reason:
            self.query_one("#confirm-hint", Static).update("Give a reason first: it is kept with the change.")
            self.query_one("#reason", Input).focus()
        else:
            self.query_one("#confirm-hint", Static).update(
                f"Type y or {escape(self.suffix)} to confirm; nothing was done."
            )

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(self.reason if event.button.id == "confirm" and self._confirmed() else None)

    def action_keep(self) -> None:
        self.dismiss(None)


class ChoiceModal(ModalScreen[str]):
    """Several labelled choices; returns the chosen key (esc returns ``cancel_key``)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(
        self,
        title: str,
        body: str,
        choices: Iterable[tuple[str, str]],
        *,
        cancel_key: str = "cancel",
        primary: str | None = None,
    ) -> None:
        super().__init__(classes="dialog-screen")
        self.title_text, self.body = title, body
        self.choices = list(choices)
        self.cancel_key = cancel_key
        self.primary = primary or (self.choices[0][0] if self.choices else cancel_key)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(escape(self.title_text), classes="dialog-title")
            yield Static(self.body, classes="dialog-body-text")
            with Horizontal(classes="dialog-buttons"):
                for key, label in self.choices:
                    yield Button(
                        label,
                        id=f"choice-{key}",
                        variant="primary" if key == self.primary else "default",
                        compact=True,
                    )

    def on_mount(self) -> None:
        self.query_one(f"#choice-{self.primary}", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss((event.button.id or "").removeprefix("choice-"))

    def action_cancel(self) -> None:
        self.dismiss(self.cancel_key)


class JumpPalette(ModalScreen[str | None]):
    """Go to a field in one key (posting's jump mode, as a list): ``targets`` are (section, key, label,
    widget id); typing a key (case matters) closes it with that widget id, esc with None."""

    BINDINGS = [Binding("escape", "cancel", "Close")]

    def __init__(self, title: str, targets: Iterable[tuple[str, str, str, str]]) -> None:
        super().__init__(classes="dialog-screen")
        self.title_text = title
        self.targets = list(targets)

    def compose(self) -> ComposeResult:
        sections: dict[str, list[tuple[str, str]]] = {}
        for section, key, label, _ in self.targets:
            sections.setdefault(section, []).append((key, label))
        per_row = 3
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold", no_wrap=True)
        for _ in range(per_row):
            table.add_column(no_wrap=True)
        for section, entries in sections.items():
            cells = [Text.assemble((f" {key} ", "reverse bold"), f" {label}") for key, label in entries]
            for start in range(0, len(cells), per_row):
                row = cells[start : start + per_row]
                table.add_row(section if start == 0 else "", *row, *[""] * (per_row - len(row)))
        with Vertical(classes="dialog", id="jump-palette"):
            yield Static(escape(self.title_text), classes="dialog-title")
            yield Static(table)
            yield Static("[dim]esc closes[/]", classes="dialog-hint")

    def on_key(self, event: events.Key) -> None:
        target = next((t for _, key, _, t in self.targets if key == event.character), None)
        if target is not None:
            event.stop()
            self.dismiss(target)

    def action_cancel(self) -> None:
        self.dismiss(None)


class CommandLine(ModalScreen[str | None]):
    """The ``:`` command line at the bottom of the screen, with completion (tab/→ accepts)."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(self, words: Callable[[], Iterable[str]], help_text: str = "") -> None:
        super().__init__(classes="command-line-screen")
        self.words = words
        self.help_text = help_text

    def compose(self) -> ComposeResult:
        with Vertical(id="command-line"):
            if self.help_text:
                yield Static(self.help_text, id="command-help")
            with Horizontal():
                yield Label(":", id="command-prompt")
                yield FormInput(
                    placeholder="changes · new · status CHG-… · open CHG-… · dlq · customers · q",
                    suggester=WordListSuggester(self.words),
                    id="command-input",
                )

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class StartupScreen(Screen[None]):
    """Shown while the console connects (and, with ``--local``, starts and provisions a stack)."""

    def __init__(self, headline: str) -> None:
        super().__init__(id="startup")
        self.headline = headline
        self._lines: list[str] = []

    def compose(self) -> ComposeResult:
        with Vertical(id="startup-box"):
            yield Static(escape(self.headline), id="startup-title")
            yield LoadingIndicator()
            yield Static("", id="startup-log")

    def add_line(self, line: str) -> None:
        self._lines = [*self._lines, escape(line)][-8:]
        self.query_one("#startup-log", Static).update("\n".join(self._lines))


class StartupErrorScreen(Screen[None]):
    """The console could not start: the cause, each problem, what to do. ``r`` retries, ``q`` quits."""

    BINDINGS = [
        Binding("r", "retry", "Retry"),
        Binding("q,escape", "app.quit_with_error", "Quit"),
    ]

    def __init__(self, title: str, problems: list[str], hint: str = "", *, can_retry: bool = True) -> None:
        super().__init__(id="startup-error")
        self.title_text, self.problems, self.hint, self.can_retry = title, problems, hint, can_retry

    def compose(self) -> ComposeResult:
        with Vertical(id="startup-error-box"):
            yield Static(f"✖ {escape(self.title_text)}", id="startup-error-title")
            with VerticalScroll(id="startup-error-problems"):
                for problem in self.problems:
                    yield Static(f"• {escape(problem)}", classes="problem")
            if self.hint:
                yield Static(escape(self.hint), id="startup-error-hint")
        yield Footer()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "retry":
            return self.can_retry
        return True

    def action_retry(self) -> None:
        console_of(self).retry_startup()


class InputModal(ModalScreen[str | None]):
    """One line of text (an address, a name): enter confirms, esc cancels (None)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, body: str = "", *, value: str = "", placeholder: str = "") -> None:
        super().__init__(classes="dialog-screen")
        self.title_text, self.body, self.value, self.placeholder = title, body, value, placeholder

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(escape(self.title_text), classes="dialog-title")
            if self.body:
                yield Static(self.body, classes="dialog-body-text")
            yield FormInput(value=self.value, placeholder=self.placeholder, id="modal-input")
            with Horizontal(classes="dialog-buttons"):
                yield Button("OK (enter)", id="ok", variant="primary", compact=True)
                yield Button("Cancel (esc)", id="cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def _value(self) -> str | None:
        return self.query_one("#modal-input", Input).value.strip() or None

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self.dismiss(self._value())

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(self._value() if event.button.id == "ok" else None)

    def action_cancel(self) -> None:
        self.dismiss(None)
