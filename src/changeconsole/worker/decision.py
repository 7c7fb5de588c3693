"""What a customer must receive now: the archive decides, a trigger only rings the bell.

``decide`` is the rule of docs/architecture.md ("What is sent"), row by row. Its inputs are the
trigger's (version, event) of one customer, the change's current archive record and the customer's
lane of the ledger (what it was sent of this change). Every path into a delivery — a fresh trigger, a
retry, a redriven or requeued message, an operator's resend, a backlog drained late — passes through it.

A send is always of the archive's current version ``V``, keyed ``(change, V, event, customer)``: the
content is that archive record, never the trigger's snapshot, and the ledger's claim makes every other
trigger that rings for the same notice a duplicate.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ..models import Change, EmailEvent
from ..services.ledger import Lane
from ..services.lifecycle import EVENT_OF_STATUS


class Action(StrEnum):
    SEND = "send"  # send ``event`` of the archive's version
    NOTHING = "nothing"  # nothing is due: the trigger's record becomes superseded or skipped
    REJECT = "reject"  # isolation violation: dead-lettered


@dataclass(frozen=True)
class Decision:
    action: Action
    row: int  # the row of the table in docs/architecture.md
    reason: str
    event: EmailEvent | None = None  # SEND: what is sent (of the archive's version)


def decide(
    customer: str,
    version: int | None,
    event: EmailEvent | None,
    archive: Change | None,
    lane: Lane,
) -> Decision:
    """The notice due to ``customer`` for a trigger of (``version``, ``event``); both None: a trigger
    that names neither (a flat legacy key) rings for the current version."""
    if archive is None:
        return Decision(Action.NOTHING, 1, "the change is not in the archive (deleted, or never archived)")
    current = archive.version
    status = archive.status
    if version is not None and version > current:
        return Decision(
            Action.NOTHING,
            2,
            f"the archive is at v{current}: v{version} was never archived (a lost write or a deleted change)",
        )
    due = EVENT_OF_STATUS.get(status)
    if due is None:
        return Decision(Action.NOTHING, 1, f"the archived change is {status.value}: it sends nothing")
    at = f"version {current} ({status.value})"
    if customer in archive.customers:
        if due is EmailEvent.CANCELLED and not lane.notified:
            return Decision(
                Action.NOTHING,
                3,
                f"{at} is current and nothing of this change was ever sent to {customer}: "
                "no cancellation is due",
            )
        return Decision(Action.SEND, 4, f"{at} is current", due)
    if (version is None or version == current) and event is not EmailEvent.REMOVED:
        return Decision(
            Action.REJECT,
            5,
            f"the trigger names v{current} for {customer}, "
            f"which {archive.change_id} v{current} does not target",
        )
    if lane.removal_due(current):
        return Decision(
            Action.SEND, 6, f"{at} no longer targets {customer}, which was notified", EmailEvent.REMOVED
        )
    if lane.notified:
        why = f"it was told at v{lane.removed_version} that the change no longer affects it"
    else:
        why = "nothing of this change was ever sent to it: nothing to withdraw"
    return Decision(Action.NOTHING, 7, f"{at} no longer targets {customer}; {why}")
