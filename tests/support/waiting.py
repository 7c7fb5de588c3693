"""The one sync and the one async wait of the suite: poll a condition until it holds or time runs out.

``stall`` is simulated latency (a slow fake call), not a wait: it is the only other place time passes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from textual.pilot import Pilot


def wait_until(
    pred: Callable[[], Any], timeout: float = 30.0, what: str = "", *, interval: float = 0.05
) -> Any:
    """Re-check ``pred`` until it returns something truthy (returned); fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what or pred}")
        time.sleep(interval)


async def wait_for(
    pilot: Pilot[Any], condition: Callable[[], bool], timeout: float = 20.0, what: str = ""
) -> None:
    """Let the app run until ``condition()`` holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what or 'a condition'}")
        await pilot.pause(0.02)


def stall(seconds: float) -> Callable[..., None]:
    """A botocore ``before-call`` hook that makes the call take ``seconds`` longer (a slow service)."""

    def hook(**_: Any) -> None:
        time.sleep(seconds)

    return hook
