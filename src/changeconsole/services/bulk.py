"""Approve, complete or cancel several changes at once, each pinned to the version the operator saw.

Each change goes through the same lifecycle call as one at a time (``ChangeService.approve`` …, with
``expected_version``), so through the authorization point change by change (scope, separation of
duties), independently: one refused or conflicting change fails alone, the others go on. The
result names each change's outcome; ``retry`` runs again only those that did not succeed, a change
whose archive write failed from the start (still pinned to the same version) and a change archived
with destinations that failed through ``ChangeService.retry`` (only those destinations).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ..errors import describe
from .fanout import ARCHIVE, FanoutResult
from .lifecycle import ChangeService

OPERATIONS = ("approve", "complete", "cancel")


class Outcome(StrEnum):
    OK = "ok"  # archived and every customer's trigger written
    PARTIAL = "partial"  # archived; some customers' triggers failed (retry sends only those)
    FAILED = "failed"  # nothing sent: refused, changed since, unreachable, archive write failed


@dataclass
class BulkItem:
    change_id: str
    version: int | None  # the version the operator saw (None: whatever is current)
    outcome: Outcome | None = None  # None until done
    error: str | None = None
    result: FanoutResult | None = None
    attempts: int = 0

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK

    def to_json(self) -> dict[str, Any]:
        result = self.result
        return {
            "change_id": self.change_id,
            "expected_version": self.version,
            "outcome": self.outcome.value if self.outcome else None,
            "error": self.error,
            "attempts": self.attempts,
            "version": result.change.version if result else None,
            "status": result.change.status.value if result else None,
            "failed_destinations": result.failed if result else [],
        }


@dataclass
class BulkRun:
    operation: str
    items: list[BulkItem] = field(default_factory=list)
    reason: str | None = None  # a cancellation's, the same for every change

    @property
    def ok(self) -> bool:
        return all(i.ok for i in self.items)

    @property
    def failed(self) -> list[BulkItem]:
        return [i for i in self.items if not i.ok]

    def to_json(self) -> dict[str, Any]:
        return {
            "operation": self.operation,
            "reason": self.reason,
            "ok": self.ok,
            "failed": [i.change_id for i in self.failed],
            "results": [i.to_json() for i in self.items],
        }


Progress = Callable[[BulkItem], None] | None


class BulkTransitions:
    def __init__(self, changes: ChangeService, *, parallel: int = 4) -> None:
        self.changes = changes
        self.parallel = parallel

    def run(
        self,
        operation: str,
        targets: Iterable[tuple[str, int | None]],
        *,
        on_item: Progress = None,
        reason: str | None = None,
    ) -> BulkRun:
        """``operation`` on each (change id, version seen); ``on_item`` hears of each as it ends.
        ``reason``: why (cancel only), kept with each change and told in its notices."""
        if operation not in OPERATIONS:
            raise ValueError(f"unknown bulk operation {operation!r}")
        if reason and operation != "cancel":
            raise ValueError("only a cancellation takes a reason")
        run = BulkRun(operation, [BulkItem(cid, version) for cid, version in targets], reason)
        self._each(run, run.items, on_item)
        return run

    def retry(self, run: BulkRun, *, on_item: Progress = None) -> BulkRun:
        """Only the items that did not succeed, again (the same ``run``, updated in place)."""
        self._each(run, run.failed, on_item)
        return run

    def _each(self, run: BulkRun, items: list[BulkItem], on_item: Progress) -> None:
        if not items:
            return
        with ThreadPoolExecutor(max_workers=max(1, min(self.parallel, len(items)))) as pool:
            for item in pool.map(lambda i: self._one(run, i), items):
                if on_item is not None:
                    on_item(item)

    def _one(self, run: BulkRun, item: BulkItem) -> BulkItem:
        item.attempts += 1
        try:
            if item.result is not None:  # archived already: only its failed destinations
                result = self.changes.retry(item.result)
            elif run.operation == "cancel":
                result = self.changes.cancel(item.change_id, expected_version=item.version, reason=run.reason)
            else:
                method = getattr(self.changes, run.operation)
                result = method(item.change_id, expected_version=item.version)
        except Exception as exc:
            item.outcome, item.error = Outcome.FAILED, describe(exc)
            return item
        item.result = result
        if result.ok:
            item.outcome, item.error = Outcome.OK, None
        elif ARCHIVE in result.failed:  # nothing sent; a retry writes the archive, pinned by its ETag
            item.outcome = Outcome.FAILED
            item.error = f"the archive write failed, nothing was sent: {result.errors.get(ARCHIVE, '')}"[:500]
        else:
            errors = "; ".join(f"{d}: {e}" for d, e in sorted(result.errors.items()))
            item.outcome = Outcome.PARTIAL
            item.error = f"{len(result.failed)} destination(s) failed: {errors}"[:500]
        return item
