"""At most N messages per second, with an injectable clock and sleep."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from .errors import DlqInputError


class RateLimiter:
    """At most ``rate`` messages per second on average (bursts of one batch); clock and sleep injectable."""

    def __init__(
        self,
        rate: float | None,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate is not None and rate <= 0:
            raise DlqInputError(f"rate must be positive, got {rate}")
        self.rate = rate
        self._monotonic = monotonic
        self._sleep = sleep
        self._next: float | None = None

    @property
    def batch_size(self) -> int:
        if not self.rate:
            return 10
        return max(1, min(10, int(self.rate)))

    def acquire(self, n: int, cancel: threading.Event | None = None) -> bool:
        """Wait until ``n`` messages may go; False when cancelled while waiting."""
        if not self.rate:
            return not (cancel and cancel.is_set())
        now = self._monotonic()
        if self._next is None:
            self._next = now
        while now < self._next:
            if cancel is not None and cancel.is_set():
                return False
            self._sleep(min(0.25, self._next - now))
            now = self._monotonic()
        if cancel is not None and cancel.is_set():
            return False
        self._next = max(now, self._next) + n / self.rate
        return True
