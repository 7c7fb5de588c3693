"""The console app as its widgets see it, and the one way thread workers hand results to the UI."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

from textual.dom import DOMNode
from textual.message import Message

if TYPE_CHECKING:
    from ..app import ChangeConsoleApp


def console_of(node: DOMNode) -> ChangeConsoleApp:
    """The ``ChangeConsoleApp`` a widget or screen runs in (the console's widgets run in no other app)."""
    return cast("ChangeConsoleApp", node.app)


class ThreadResults:
    """Mixin of the app and its screens (before ``App``/``Screen`` in the bases): from a thread worker,
    ``post_from_thread(callback, *args)`` has ``callback(*args)`` run on the UI loop, never blocking the
    worker.

    Results keep their order; a burst of them is applied in one go, inside ``applying_results()`` and
    followed by ``results_applied()`` (e.g. one repaint and one summary line for many rows). Results for
    a screen closed meanwhile are dropped.
    """

    class Waiting(Message, bubble=False):
        """Results from thread workers wait in the inbox."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._results: list[tuple[Callable[..., None], tuple[Any, ...]]] = []
        self._results_lock = threading.Lock()

    def post_from_thread(self, callback: Callable[..., None], *args: Any) -> None:
        with self._results_lock:
            self._results.append((callback, args))
            first = len(self._results) == 1
        if first:
            cast(DOMNode, self).post_message(self.Waiting())

    def on_thread_results_waiting(self, _: ThreadResults.Waiting) -> None:
        with self._results_lock:
            items, self._results = self._results, []
        if not items:
            return
        with self.applying_results():
            for callback, args in items:
                callback(*args)
        self.results_applied()

    @contextmanager
    def applying_results(self) -> Iterator[None]:
        """Around a burst of results (override: e.g. coalesce a table's repaints)."""
        yield

    def results_applied(self) -> None:
        """After a burst of results (override: e.g. one summary line for many rows)."""
