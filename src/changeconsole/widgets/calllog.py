"""The AWS calls this console made: the log (fed by botocore hooks) and its pane (ctrl+l)."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.timer import Timer
from textual.widgets import Static

from .console import console_of
from .navtable import NavTable


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


class CallLogPane(Vertical):
    """The AWS calls this console made (service, operation, HTTP status, duration); ctrl+l toggles."""

    def compose(self) -> ComposeResult:
        yield Static("AWS calls made by this console  [dim](ctrl+l hides)[/]", classes="pane-title")
        table = NavTable(cursor_type="none", zebra_stripes=True, id="call-log-table")
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
            if console_of(self).live:
                self._timer = self.set_interval(0.5, self.refresh_calls, name="call-log")
        elif self._timer is not None:
            self._timer.stop()
            self._timer = None

    def refresh_calls(self) -> None:
        if not self.display:
            return
        total, calls = console_of(self).call_log.snapshot()
        new = total - self._seen
        if new <= 0:
            return
        table = self.query_one(NavTable)
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
