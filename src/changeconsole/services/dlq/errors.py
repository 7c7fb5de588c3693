"""Errors of the DLQ operations."""

from __future__ import annotations

from ...errors import InputError, OperationError


class DlqError(OperationError):
    """A DLQ operation that could not be done (exit 1)."""


class DlqInputError(InputError):
    """Bad input to a DLQ operation: a malformed export file, a bad filter, a bad rate (exit 2)."""

    def __init__(self, message: str, problems: list[dict[str, str]] | None = None) -> None:
        super().__init__(message, problems=problems)


class PurgeRefused(DlqInputError):
    """Purge without a recorded export of the queue and without an explicit ``--yes``."""


class QueueMissing(DlqError):
    """The customer's queue or DLQ does not exist (not provisioned)."""
