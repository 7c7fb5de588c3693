"""The template picker: the team's templates (``templates/`` in the bucket) with a filter.

Enter starts from the highlighted template; ``ctrl+s`` saves the form it was opened from as a new
template; ``f2`` renames and ``delete`` deletes the highlighted one (after a confirmation). It answers
the chosen ``Template`` (or None) to the screen that opened it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.markup import escape
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from ..errors import describe
from ..models import Change, OperatorAction
from ..services.templates import Template
from ..widgets.console import ThreadResults, console_of
from ..widgets.inputs import FormInput
from .modals import ConfirmModal, InputModal


def template_line(t: Template) -> Text:
    out = Text()
    out.append(t.name, style="bold")
    out.append(f"  {t.title}")
    out.append(f"  · {len(t.customers)} customer(s)", style="dim")
    if t.saved_by:
        out.append(f" · {t.saved_by} {(t.saved_at or '')[:10]}", style="dim")
    return out


class TemplatePicker(ThreadResults, ModalScreen[Template | None]):
    """Pick a template (enter), or save ``source()`` as one (ctrl+s); rename (f2), delete (del)."""

    DEFAULT_CSS = """
    TemplatePicker { align: center middle; background: $background 60%; }
    TemplatePicker > Vertical {
        width: 90; max-width: 95%; height: 24; max-height: 90%; padding: 1 2;
        border: round $accent; background: $surface;
    }
    TemplatePicker #tp-title { text-style: bold; height: 1; }
    TemplatePicker #tp-list { height: 1fr; }
    TemplatePicker #tp-status { height: 1; color: $text-muted; }
    """
    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "save", "Save the form as a template", priority=True),
        Binding("f2", "rename", "Rename"),
        Binding("delete", "delete", "Delete"),
        Binding("down", "focus_list", "List", show=False),
    ]

    EDITS = frozenset({"save", "rename", "delete"})  # template.edit (read-only: hidden)

    def __init__(self, source: Callable[[], Change | None] | None = None, *, readonly: bool = False) -> None:
        super().__init__()
        self.source = source
        self.readonly = readonly
        self.templates: list[Template] = []

    @property
    def services(self) -> Any:
        return console_of(self).services

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action not in self.EDITS:
            return True
        if self.readonly:
            return False
        return True if console_of(self).decide(OperatorAction.TEMPLATE_EDIT).allowed else None

    def _refused(self, what: str) -> bool:
        """True (after telling the operator why) when templates may not be changed."""
        if self.readonly:
            self.notify(f"Read-only console: {what} is disabled.", title="Read-only", severity="warning")
            return True
        decision = console_of(self).decide(OperatorAction.TEMPLATE_EDIT)
        if not decision.allowed:
            console_of(self).not_allowed(decision)
            return True
        return False

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("Templates", id="tp-title")
            yield FormInput(placeholder="filter: name, title", id="tp-filter")
            yield OptionList(id="tp-list")
            yield Static("Loading…", id="tp-status")

    def on_mount(self) -> None:
        self.query_one("#tp-filter", Input).focus()
        self.load()

    def load(self) -> None:
        def run() -> None:
            try:
                found = self.services.templates.list()
            except Exception as exc:
                self.post_from_thread(self._status, f"[red]Cannot list templates: {escape(describe(exc))}[/]")
            else:
                self.post_from_thread(self._loaded, found)

        self.run_worker(run, thread=True, group="templates", exclusive=True, exit_on_error=False)

    def _status(self, text: str) -> None:
        self.query_one("#tp-status", Static).update(text)

    def _loaded(self, templates: list[Template]) -> None:
        self.templates = templates
        self._show_templates()

    def _visible(self) -> list[Template]:
        words = self.query_one("#tp-filter", Input).value.casefold().split()
        return [t for t in self.templates if all(w in f"{t.name} {t.title}".casefold() for w in words)]

    def _show_templates(self) -> None:
        options = self.query_one("#tp-list", OptionList)
        options.clear_options()
        shown = self._visible()
        options.add_options(Option(template_line(t), id=t.name) for t in shown)
        if shown:
            options.highlighted = 0
        keys = "enter use · ctrl+s save the form as a template · f2 rename · del delete"
        if not self.templates:
            self._status("No templates yet: ctrl+s saves the form as the first one.")
        else:
            self._status(f"{len(shown)} of {len(self.templates)} · {keys}")

    @on(Input.Changed, "#tp-filter")
    def _filter(self) -> None:
        self._show_templates()

    @on(Input.Submitted, "#tp-filter")
    def _enter(self) -> None:
        self._choose(self._highlighted())

    @on(OptionList.OptionSelected, "#tp-list")
    def _selected(self, event: OptionList.OptionSelected) -> None:
        self._choose(next((t for t in self.templates if t.name == event.option.id), None))

    def _highlighted(self) -> Template | None:
        options = self.query_one("#tp-list", OptionList)
        if options.highlighted is None or not options.option_count:
            return None
        option = options.get_option_at_index(options.highlighted)
        return next((t for t in self.templates if t.name == option.id), None)

    def _choose(self, template: Template | None) -> None:
        if template is not None:
            self.dismiss(template)

    def action_focus_list(self) -> None:
        self.query_one("#tp-list", OptionList).focus()

    def action_cancel(self) -> None:
        self.dismiss(None)

    def _call(self, fn: Callable[[], Any], done: Callable[[Any], None]) -> None:
        def run() -> None:
            try:
                result = fn()
            except Exception as exc:
                self.post_from_thread(
                    lambda e=exc: self.notify(escape(describe(e)), title="Templates", severity="error")
                )
            else:
                self.post_from_thread(done, result)

        self.run_worker(run, thread=True, group="template-change", exit_on_error=False)

    def action_save(self) -> None:
        if self._refused("saving templates"):
            return
        change = self.source() if self.source else None
        if change is None:
            self.notify("The form is not a valid change yet: fix it first.", severity="warning")
            return
        store = self.services.templates

        def named(name: str | None) -> None:
            if name:
                self._call(lambda: store.save(name, change), self._saved)

        self.app.push_screen(
            InputModal(
                "Save as a template",
                "The form's content without its id and window, shared by the team.",
                placeholder="e.g. monthly-patching",
            ),
            named,
        )

    def _saved(self, template: Template) -> None:
        self.notify(f"Template {escape(template.name)} saved.", title="Templates")
        self.load()

    def action_rename(self) -> None:
        template = self._highlighted()
        if template is None or self._refused("renaming templates"):
            return
        store = self.services.templates

        def named(name: str | None) -> None:
            if name and name != template.name:
                self._call(lambda: store.rename(template.name, name), self._saved)

        self.app.push_screen(InputModal(f"Rename template {template.name}", value=template.name), named)

    def action_delete(self) -> None:
        template = self._highlighted()
        if template is None or self._refused("deleting templates"):
            return
        store = self.services.templates

        def answered(ok: bool | None) -> None:
            if ok:
                self._call(lambda: store.delete(template.name), lambda _: self._deleted(template.name))

        self.app.push_screen(
            ConfirmModal(
                f"Delete template {template.name}?", escape(template.title), yes="Delete", danger=True
            ),
            answered,
        )

    def _deleted(self, name: str) -> None:
        self.notify(f"Template {escape(name)} deleted.", title="Templates")
        self.load()
