"""Errors of the DLQ operations."""

from __future__ import annotations


class DlqError(Exception):
    """A DLQ operation that could not be done (exit 1)."""


class DlqInputError(ValueError):
    """Bad input to a DLQ operation: a malformed export file, a bad filter, a bad rate (exit 2)."""

    def __init__(self, message: str, problems: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class PurgeRefused(DlqInputError):
    """Purge without a recorded export of the queue and without an explicit ``--yes``."""


class QueueMissing(DlqError):
    pass
