"""The rule of what a customer must receive now (worker/decision.py), row by row of the table in
docs/architecture.md ("What is sent")."""

from __future__ import annotations

from typing import Any

import pytest

from changeconsole.models import Change, EmailEvent
from changeconsole.services.ledger import Lane
from changeconsole.worker.decision import Action, decide
from support.changes import CHANGE_ID, change_doc

SUB, APP, COM, CAN, REM = (
    EmailEvent.SUBMITTED,
    EmailEvent.APPROVED,
    EmailEvent.COMPLETED,
    EmailEvent.CANCELLED,
    EmailEvent.REMOVED,
)


def archive(version: int, status: str, customers: list[str] | None = None) -> Change:
    return Change.model_validate(change_doc(customers or ["acme", "globex"], version=version, status=status))


def lane(**facts: Any) -> Lane:
    return Lane(CHANGE_ID, "acme", "me", 0.0, **facts)


NEVER = lane()
NOTIFIED = lane(sent_version=2, sent_event="submitted", topics={"aws-approval"})
TOLD = lane(sent_version=2, sent_event="submitted", removed_version=3)
NOTIFIED_AGAIN = lane(sent_version=5, sent_event="submitted", removed_version=3)


# (row, customer, trigger version, trigger event, archive, lane) -> (action, event sent)
ROWS = [
    # 1: the change is not in the archive (deleted, or never archived)
    (1, "acme", 2, SUB, None, NOTIFIED, Action.NOTHING, None),
    # 2: the trigger is ahead of the archive (a lost write's trigger)
    (2, "acme", 4, SUB, archive(3, "approved"), NOTIFIED, Action.NOTHING, None),
    # 3: targeted, cancelled, never sent anything: no cancellation
    (3, "acme", 4, CAN, archive(4, "cancelled"), NEVER, Action.NOTHING, None),
    (3, "acme", 2, SUB, archive(4, "cancelled"), NEVER, Action.NOTHING, None),
    # 4: targeted: the current version's notice, whichever trigger rang
    (4, "acme", 2, SUB, archive(2, "submitted"), NEVER, Action.SEND, SUB),
    (4, "acme", 2, SUB, archive(3, "approved"), NEVER, Action.SEND, APP),
    (4, "acme", 3, APP, archive(4, "completed"), NEVER, Action.SEND, COM),
    (4, "acme", 3, APP, archive(4, "cancelled"), NOTIFIED, Action.SEND, CAN),
    (4, "acme", None, None, archive(3, "approved"), NEVER, Action.SEND, APP),
    (4, "acme", 3, REM, archive(5, "submitted"), NOTIFIED, Action.SEND, SUB),
    # 5: a trigger at the archive's version for a customer it does not target: isolation violation
    (5, "initech", 2, SUB, archive(2, "submitted"), NEVER, Action.REJECT, None),
    (5, "initech", None, None, archive(2, "submitted"), NOTIFIED, Action.REJECT, None),
    # 6: no longer targeted and notified since its last removal notice: one removal notice
    (6, "acme", 3, REM, archive(3, "submitted", ["globex"]), NOTIFIED, Action.SEND, REM),
    (6, "acme", 2, SUB, archive(4, "cancelled", ["globex"]), NOTIFIED, Action.SEND, REM),
    (6, "acme", 3, REM, archive(3, "submitted", ["globex"]), TOLD, Action.SEND, REM),  # this very notice
    (6, "acme", 6, REM, archive(6, "submitted", ["globex"]), NOTIFIED_AGAIN, Action.SEND, REM),
    # 7: no longer targeted, nothing to withdraw or told already
    (7, "acme", 3, REM, archive(3, "submitted", ["globex"]), NEVER, Action.NOTHING, None),
    (7, "acme", 2, SUB, archive(3, "submitted", ["globex"]), NEVER, Action.NOTHING, None),
    (7, "acme", 3, REM, archive(4, "cancelled", ["globex"]), TOLD, Action.NOTHING, None),
]


@pytest.mark.parametrize(
    ("row", "customer", "version", "event", "current", "known", "action", "sends"),
    ROWS,
    ids=[f"row{r[0]}-{i}" for i, r in enumerate(ROWS)],
)
def test_every_row_of_the_table(
    row: int,
    customer: str,
    version: int | None,
    event: EmailEvent | None,
    current: Change | None,
    known: Lane,
    action: Action,
    sends: EmailEvent | None,
) -> None:
    decision = decide(customer, version, event, current, known)
    assert (decision.row, decision.action, decision.event) == (row, action, sends), decision.reason
    assert decision.reason


def test_every_row_is_covered() -> None:
    assert {r[0] for r in ROWS} == set(range(1, 8))


def test_reasons_name_the_current_version() -> None:
    stale = decide("acme", 2, SUB, archive(4, "cancelled"), NEVER)
    assert "version 4 (cancelled)" in stale.reason
    ahead = decide("acme", 5, SUB, archive(3, "approved"), NEVER)
    assert "v5 was never archived" in ahead.reason
