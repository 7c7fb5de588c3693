"""Search by date range, operator and ticket; my changes; saved filters (XDG config)."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from changeconsole.errors import InputError
from changeconsole.models import ChangeStatus
from changeconsole.services.aws import AwsFactory
from changeconsole.services.lifecycle import ChangeService
from changeconsole.services.search import ChangeQuery, SavedFilters, my_relation
from changeconsole.services.status import ChangeSummary
from support.changes import make_change
from support.cli import Cli

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def summary(**kw: Any) -> ChangeSummary:
    base: dict[str, Any] = {
        "change_id": "CHG-2026-03-01T10-00-00-abc123",
        "title": "Patch",
        "status": ChangeStatus.SUBMITTED,
        "customers": ["acme"],
        "version": 2,
        "implementation_start": "2026-03-12T22:00:00Z",
        "implementation_end": "2026-03-13T01:00:00Z",
        "modified_at": "2026-03-05T10:00:00Z",
        "modified_by": "bob",
        "created_by": "alice",
        "location": "archive",
        "search": "patch chg0012345 ops-42",
        "created_at": "2026-03-01T10:00:00Z",
        "submitted_by": "bob",
        "snow_ticket": "CHG0012345",
        "jira_ticket": "OPS-42",
    }
    base.update(kw)
    return ChangeSummary(**base)


def test_my_relation_says_what_is_mine_to_do_first() -> None:
    assert my_relation(summary(status=ChangeStatus.DRAFT, submitted_by=None), "alice", NOW) == "to submit"
    assert my_relation(summary(), "alice", NOW) == "to approve"  # someone else submitted it
    assert my_relation(summary(), "bob", NOW) == "submitted"  # not their own to approve
    approved = summary(status=ChangeStatus.APPROVED, approved_by="carol")
    assert my_relation(approved, "carol", NOW) == "approved"  # the window has not begun
    begun = summary(
        status=ChangeStatus.APPROVED, approved_by="carol", implementation_start="2026-03-10T11:00:00Z"
    )
    assert my_relation(begun, "carol", NOW) == "to complete"
    assert my_relation(summary(status=ChangeStatus.COMPLETED), "dave", NOW) is None
    assert my_relation(summary(status=ChangeStatus.COMPLETED), "ALICE", NOW) == "created"


def test_query_by_operator_ticket_and_date_range() -> None:
    s = summary()
    assert ChangeQuery(operator="bo").matches(s) and not ChangeQuery(operator="carol").matches(s)
    assert ChangeQuery(ticket="ops-4").matches(s) and ChangeQuery(ticket="chg0012").matches(s)
    assert not ChangeQuery(ticket="OPS-7").matches(s)
    legacy = summary(snow_ticket="", jira_ticket="")  # indexed before tickets were: its search text
    assert ChangeQuery(ticket="ops-42").matches(legacy)
    assert ChangeQuery(since="2026-03-04T00:00:00Z", until="2026-03-06T00:00:00Z").matches(s)
    assert not ChangeQuery(since="2026-03-06T00:00:00Z").matches(s), "last changed before"
    assert not ChangeQuery(until="2026-02-28T23:59:59Z").matches(s), "created after"
    assert ChangeQuery(mine=True).matches(s, me="alice", now=NOW)
    assert ChangeQuery(mine=True).matches(s, me="dave", now=NOW), "anyone but the submitter approves"
    assert not ChangeQuery(mine=True).matches(summary(status=ChangeStatus.COMPLETED), me="dave", now=NOW)


def test_saved_filters_round_trip(tmp_path: Path) -> None:
    saved = SavedFilters(tmp_path / "filters.json")
    query = ChangeQuery(text="patch", operator="bob", mine=True)
    saved.save("bob patches", query)
    assert SavedFilters(tmp_path / "filters.json").get("bob patches") == query
    assert list(saved.all()) == ["bob patches"]
    saved.delete("bob patches")
    with pytest.raises(InputError):
        saved.get("bob patches")
    with pytest.raises(InputError):
        saved.save("", query)


def test_cli_search_mine_and_saved_filters(make_stack: Any, aws_factory: AwsFactory, tmp_path: Path) -> None:
    stack = make_stack(customers=3, contacts=0)
    codes = sorted(stack.config.customer_mappings)
    alice = ChangeService(aws_factory, stack.config, operator="alice")
    bob = ChangeService(aws_factory, stack.config, operator="bob")
    mine = alice.submit(make_change(codes[:1], snowTicket="CHG0000777", jiraTicket="OPS-1")).change
    theirs = bob.submit(make_change(codes[:1], snowTicket="CHG0000888", jiraTicket="OPS-2")).change
    draft = alice.save_draft(make_change(codes[:1], changeTitle="Alice's draft", status="draft"))
    cli = Cli(stack, tmp_path)

    def ids(*args: str, operator: str = "alice") -> list[str]:
        return sorted(c["change_id"] for c in cli.json("change", "list", *args, operator=operator)["changes"])

    assert ids("--ticket", "ops-2") == [theirs.change_id]
    assert ids("--ticket", "CHG0000777") == [mine.change_id]
    assert ids("--operator", "bob") == [theirs.change_id]
    assert ids("--since", "2000-01-01", "--until", "2100-01-01") == sorted(
        [mine.change_id, theirs.change_id, draft.change_id]
    )
    assert ids("--since", "2100-01-01") == []
    listed = cli.json("change", "list", "--mine")
    relation = {c["change_id"]: c["mine"] for c in listed["changes"]}
    assert relation == {
        mine.change_id: "submitted",
        theirs.change_id: "to approve",
        draft.change_id: "to submit",
    }
    assert ids("--mine", operator="bob") == sorted([mine.change_id, theirs.change_id])  # alice's to approve
    result = cli("change", "list", "--operator", "bob", "--save-filter", "bob")
    assert result.exit_code == 0
    path = Path(os.environ["XDG_CONFIG_HOME"]) / "changeconsole" / "filters.json"
    assert json.loads(path.read_text())["filters"]["bob"] == {"operator": "bob"}
    assert ids("--filter", "bob") == [theirs.change_id]
    assert ids("--filter", "bob", "--ticket", "OPS-1") == []
    assert cli.json("filter", "list")["filters"] == {"bob": {"operator": "bob"}}
    assert cli("change", "list", "--filter", "nope").exit_code == 2
    assert cli.json("filter", "delete", "bob")["deleted"] is True
