"""Pieces every console screen shares: the screen base class, header, AWS call log, inputs, suggesters.

Screens reach AWS only through ``self.app.services`` and only from thread workers (``call_service``);
results come back to the UI loop through ``app.call_from_thread``.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar
from zoneinfo import available_timezones

from rich.markup import escape
from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.suggester import Suggester
from textual.timer import Timer
from textual.widgets import DataTable, Footer, Input, Static, TextArea

from ..errors import describe, title_of

if TYPE_CHECKING:
    from ..app import ChangeConsoleApp
    from ..services.bundle import Services

T = TypeVar("T")
R = TypeVar("R")

# Binding groups: related keys shown together in the footer and in help.
DIFF_PICK = Binding.Group("Diff A/B")
CUSTOMER_PICK = Binding.Group("Select shown/clear")
SORTING = Binding.Group("Sort/reverse")


# -- AWS call log --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AwsCall:
    at: datetime
    service: str
    operation: str
    status: int | None
    duration_ms: float | None
    error: str | None = None


class AwsCallLog:
    """Thread-safe ring buffer fed by botocore ``after-call`` (and ``after-call-error``) hooks.

    Only service, operation, HTTP status and duration are kept, never payloads.
    """

    STARTED = "changeconsole.started"

    def __init__(self, maxlen: int = 500, clock: Callable[[], datetime] | None = None) -> None:
        self.calls: deque[AwsCall] = deque(maxlen=maxlen)
        self.total = 0
        self._lock = threading.Lock()
        self._clock = clock or (lambda: datetime.now(UTC))

    @staticmethod
    def _names(event_name: str | None, model: Any) -> tuple[str, str]:
        parts = (event_name or "").split(".")
        service = parts[1] if len(parts) > 2 else "?"
        operation = getattr(model, "name", None) or (parts[2] if len(parts) > 2 else "?")
        return service, operation

    def _elapsed(self, context: Any) -> float | None:
        if isinstance(context, dict) and isinstance(context.get(self.STARTED), float):
            return (time.perf_counter() - context[self.STARTED]) * 1000
        return None

    def before_call(self, context: Any = None, **_: Any) -> None:
        if isinstance(context, dict):
            context[self.STARTED] = time.perf_counter()

    def after_call(
        self,
        http_response: Any = None,
        model: Any = None,
        context: Any = None,
        event_name: str | None = None,
        **_: Any,
    ) -> None:
        service, operation = self._names(event_name, model)
        status = getattr(http_response, "status_code", None)
        self.add(AwsCall(self._clock(), service, operation, status, self._elapsed(context)))

    def after_call_error(
        self, exception: Any = None, context: Any = None, event_name: str | None = None, **_: Any
    ) -> None:
        service, operation = self._names(event_name, None)
        error = type(exception).__name__ if exception is not None else "error"
        self.add(AwsCall(self._clock(), service, operation, None, self._elapsed(context), error))

    def add(self, call: AwsCall) -> None:
        with self._lock:
            self.calls.append(call)
            self.total += 1

    def snapshot(self) -> tuple[int, list[AwsCall]]:
        with self._lock:
            return self.total, list(self.calls)


# -- inputs -------------------------------------------------------------------------------------------


class FormInput(Input):
    """An Input whose cursor blinks only when the app allows it (never in snapshot tests)."""

    def on_mount(self) -> None:
        self.cursor_blink = bool(getattr(self.app, "cursor_blink", True))


class CompletingInput(FormInput):
    """An input with a suggester where Tab takes the shown completion (the app's Tab binding asks it
    first) and otherwise moves on."""

    def accept_suggestion(self) -> bool:
        suggestion = self._suggestion
        if not suggestion or suggestion == self.value or not self.cursor_at_end:
            return False
        self.value = suggestion
        self.cursor_position = len(suggestion)
        return True


class FormTextArea(TextArea):
    def on_mount(self) -> None:
        self.cursor_blink = bool(getattr(self.app, "cursor_blink", True))


class PathSuggester(Suggester):
    """Completes a filesystem path: the first entry of the typed directory that starts with the rest."""

    def __init__(self, *, suffixes: Iterable[str] = (".json",)) -> None:
        super().__init__(use_cache=False, case_sensitive=True)
        self.suffixes = tuple(suffixes)

    async def get_suggestion(self, value: str) -> str | None:
        if not value:
            return None
        expanded = os.path.expanduser(value)
        head, tail = os.path.split(expanded)
        directory = Path(head or ".")
        try:
            names = sorted(p.name for p in directory.iterdir())
        except OSError:
            return None
        for name in names:
            if not name.startswith(tail) or name == tail or (name.startswith(".") and not tail):
                continue
            full = directory / name
            if full.is_dir():
                name += "/"
            elif self.suffixes and not name.endswith(self.suffixes):
                continue
            completed = os.path.join(head, name) if head else name
            if value.startswith("~"):
                home = os.path.expanduser("~")
                if completed.startswith(home):
                    completed = "~" + completed[len(home) :]
            return completed
        return None


@lru_cache(maxsize=1)
def timezone_names() -> tuple[str, ...]:
    return tuple(sorted(available_timezones() | {"UTC"}))


class TimezoneSuggester(Suggester):
    """Completes IANA timezone names case-insensitively (``europe/l`` → ``Europe/London``)."""

    def __init__(self) -> None:
        super().__init__(use_cache=True, case_sensitive=False)

    async def get_suggestion(self, value: str) -> str | None:
        for name in timezone_names():
            if name.casefold().startswith(value) and len(name) > len(value):
                return name
        return None


class WordListSuggester(Suggester):
    """Completes from a list that can change (e.g. ``:`` commands with known change ids)."""

    def __init__(self, words: Callable[[], Iterable[str]]) -> None:
        super().__init__(use_cache=False, case_sensitive=False)
        self.words = words

    async def get_suggestion(self, value: str) -> str | None:
        if not value:
            return None
        for word in self.words():
            if word.casefold().startswith(value) and len(word) > len(value):
                return word
        return None


# -- header and log pane ----------------------------------------------------------------------------


class EnvHeader(Static):
    """One line: app name, environment (local/endpoint/aws), profile, region, operator, read-only."""

    def on_mount(self) -> None:
        self.watch(self.app, "header_text", self._show, init=True)

    def _show(self, text: str) -> None:
        self.update(Text.from_markup(text))


class CallLogPane(Vertical):
    """The AWS calls this console made (service, operation, HTTP status, duration); ctrl+l toggles."""

    def compose(self) -> ComposeResult:
        yield Static("AWS calls made by this console  [dim](ctrl+l hides)[/]", classes="pane-title")
        table: DataTable[Any] = DataTable(cursor_type="none", zebra_stripes=True, id="call-log-table")
        table.add_columns("time", "service", "operation", "status", "ms")
        yield table

    def on_mount(self) -> None:
        self._seen = 0
        self._timer: Timer | None = None
        self.watch(self.app, "show_log", self._toggle, init=True)

    def _toggle(self, show: bool) -> None:
        self.display = show
        if show:
            self.refresh_calls()
            if getattr(self.app, "live", True):
                self._timer = self.set_interval(0.5, self.refresh_calls, name="call-log")
        elif self._timer is not None:
            self._timer.stop()
            self._timer = None

    def refresh_calls(self) -> None:
        log: AwsCallLog | None = getattr(self.app, "call_log", None)
        if log is None or not self.display:
            return
        total, calls = log.snapshot()
        new = total - self._seen
        if new <= 0:
            return
        table = self.query_one(DataTable)
        for call in calls[-min(new, len(calls)) :]:
            status = str(call.status) if call.status is not None else (call.error or "—")
            style = "red" if call.error or (call.status or 0) >= 400 else ""
            table.add_row(
                call.at.astimezone(UTC).strftime("%H:%M:%S"),
                call.service,
                call.operation,
                Text(status, style=style),
                f"{call.duration_ms:.0f}" if call.duration_ms is not None else "—",
            )
        while table.row_count > 300:
            table.remove_row(next(iter(table.rows)))
        self._seen = total
        table.scroll_end(animate=False)


# -- screen base ----------------------------------------------------------------------------------------


class ConsoleScreen(Screen[T]):
    """Base of the console's full screens: header, body, call log pane, footer; read-only guard."""

    # Actions that change something; hidden (and refused) in a read-only console.
    MUTATING: ClassVar[frozenset[str]] = frozenset()

    @property
    def console(self) -> ChangeConsoleApp:
        return self.app  # type: ignore[return-value]

    @property
    def services(self) -> Services:
        return self.console.services

    @property
    def readonly(self) -> bool:
        return bool(getattr(self.app, "readonly", False))

    def compose(self) -> ComposeResult:
        yield EnvHeader(id="env-header")
        yield from self.compose_body()
        yield CallLogPane(id="call-log")
        yield Footer()

    def compose_body(self) -> ComposeResult:
        yield from ()

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
        app = self.app

        def runner() -> None:
            try:
                result = fn()
            except Exception as exc:
                error = exc
                callback: Callable[[], None] = (
                    (lambda: failed(error)) if failed is not None else (lambda: self.notify_error(error))
                )
            else:
                callback = (lambda: done(result)) if done is not None else (lambda: None)
            with contextlib.suppress(RuntimeError):  # the app is shutting down
                app.call_from_thread(callback)

        self.run_worker(
            runner,
            thread=True,
            group=group,
            exclusive=exclusive,
            exit_on_error=False,
            description=description or group,
        )


def short_time(value: str | None, *, with_date: bool = True) -> str:
    """``2026-02-01T22:00:00Z`` → ``2026-02-01 22:00Z`` (UTC, as stored)."""
    if not value:
        return "—"
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        return value
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%MZ" if with_date else "%H:%MZ")


def window_text(start: str | None, end: str | None) -> str:
    if not start and not end:
        return "—"
    left = short_time(start)
    if start and end and start[:10] == end[:10]:
        return f"{left}→{short_time(end, with_date=False)}"
    return f"{left}→{short_time(end)}"
