"""Wait until every targeted customer's delivery of one (change, version, event) is final."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

from ..errors import OperationError
from ..models import FINAL_STATES, DeliveryRecord, DeliveryState, EmailEvent
from .ledger import Ledger
from .status import StatusStore


class WaitTimeout(OperationError, TimeoutError):
    """Not every customer reached a final state in time; ``records`` is the last view."""

    def __init__(self, timeout: float, records: list[DeliveryRecord], pending: list[str]) -> None:
        self.timeout = timeout
        self.records = records
        self.pending = pending
        shown = ", ".join(pending[:10]) + (f" and {len(pending) - 10} more" if len(pending) > 10 else "")
        super().__init__(f"after {timeout:g}s {len(pending)} customer(s) not final yet: {shown}")


def pending_customers(records: Iterable[DeliveryRecord], customers: Iterable[str]) -> list[str]:
    final = {r.customer for r in records if r.state in FINAL_STATES}
    return sorted(c for c in set(customers) if c not in final)


def wait_for_final(
    status: StatusStore,
    change_id: str,
    version: int,
    event: EmailEvent,
    customers: Iterable[str],
    timeout: float,
    poll: float = 1.0,
    on_update: Callable[[list[DeliveryRecord]], None] | None = None,
    *,
    stop: threading.Event | None = None,
    settling: Callable[[], set[str]] | None = None,
) -> list[DeliveryRecord]:
    """Poll the status table until each customer's record is final; return the records (sorted).

    ``on_update`` gets the records whenever any of them changed. ``settling`` names the customers whose
    ``partial`` is not final yet: recipients ``unknown`` awaiting their SES event or the reconciler
    (``reconciling``). Raises ``WaitTimeout`` after ``timeout`` seconds (or when ``stop`` is set).
    """
    wanted = set(customers)
    deadline = time.monotonic() + timeout
    stop = stop or threading.Event()
    last: list[tuple[str, str, str | None]] | None = None
    while True:
        records = sorted(
            (r for r in status.records(change_id, version=version, event=event) if r.customer in wanted),
            key=lambda r: r.customer,
        )
        fingerprint = [(r.customer, r.state.value, r.updated_at) for r in records]
        if on_update is not None and fingerprint != last:
            on_update(records)
        last = fingerprint
        pending = pending_customers(records, wanted)
        if not pending and settling is not None:
            partial = {r.customer for r in records if r.state is DeliveryState.PARTIAL}
            pending = sorted(settling() & partial) if partial else []
        if not pending:
            return records
        remaining = deadline - time.monotonic()
        if remaining <= 0 or stop.wait(min(poll, remaining)):
            raise WaitTimeout(timeout, records, pending)


def reconciling(ledger: Ledger, change_id: str, version: int, event: EmailEvent) -> Callable[[], set[str]]:
    """``settling`` for ``wait_for_final``: customers of this round whose delivery awaits the
    reconciler (``unknown`` recipients; their SES event or a resend settles them)."""

    def customers() -> set[str]:
        keys = (item.key for item in ledger.reconciles())
        return {
            k.customer
            for k in keys
            if k is not None and (k.change_id, k.version, k.event) == (change_id, version, event)
        }

    return customers
