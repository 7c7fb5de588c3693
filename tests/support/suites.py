"""The reliability suite's two forms: short in CI, long with ``CHANGECONSOLE_LONG=1``."""

from __future__ import annotations

import os

LONG = os.environ.get("CHANGECONSOLE_LONG", "") not in ("", "0", "false", "no")


def scaled(short: int, long: int) -> int:
    """``short`` in CI, ``long`` when CHANGECONSOLE_LONG=1."""
    return long if LONG else short
