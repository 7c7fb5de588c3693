"""Roles, scopes and separation of duties through the CLI, as distinct Identity Center sessions on moto
(``AWSReservedSSO_<PermissionSet>_<hash>`` roles assumed with each person's name): the allowed/denied
matrix, exit code 3 naming the role or customers missing, and an audit record for every action."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from changeconsole.models import ChangeStatus
from changeconsole.services.aws import AwsFactory
from changeconsole.services.localstack import LocalStackResult
from support.changes import change_data
from support.dlq import put_dead_letters
from support.operators import (
    OperatorCli,
    add_user,
    caller_arn,
    config_with_roles,
    identity_store,
    sso_session,
)

CHANGE_ACTIONS = ["change.draft", "change.submit", "change.edit", "change.cancel"]


@pytest.fixture
def stack(make_stack: Any) -> LocalStackResult:
    return make_stack(customers=4, contacts=0)


@pytest.fixture
def codes(stack: LocalStackResult) -> list[str]:
    return sorted(stack.config.customer_mappings)  # acme, globex, initech, umbrella


@pytest.fixture
def people(stack: LocalStackResult, codes: list[str], tmp_path: Path) -> dict[str, Any]:
    endpoint = stack.endpoint
    store = identity_store(endpoint)
    roles = {
        "ChangeManagers": ["ChangeManagers"],
        "RegionalChangeManagers": {
            "principals": ["RegionalChangeManagers"],
            "customers": codes[:2],
            "actions": CHANGE_ACTIONS,
        },
        "CustomerManagers": {"principals": ["CustomerManagers"], "customers": codes[:1]},
        "Auditors": ["Auditors"],
        "DlqOperators": {"principals": ["group:On-call"], "actions": ["dlq.export", "dlq.redrive"]},
    }
    path = config_with_roles(
        stack.config, tmp_path / "config.json", roles, identity_center={"identity_store_id": store}
    )
    sessions = {
        "carol": ("ChangeManagers", "carol@example.com"),
        "dave": ("ChangeManagers", "dave@example.com"),
        "rita": ("RegionalChangeManagers", "rita@example.com"),
        "erin": ("CustomerManagers", "erin@example.com"),
        "ada": ("Auditors", "ada@example.com"),
        "otto": ("Support", "otto@example.com"),  # no role by permission set; DLQ actions by group
        "nina": ("Viewers", "nina@example.com"),  # nothing at all
    }
    for _ps, person in sessions.values():
        add_user(endpoint, store, person, groups=["On-call"] if person.startswith("otto") else [])
    creds = {who: sso_session(endpoint, ps, person) for who, (ps, person) in sessions.items()}
    return {"cli": OperatorCli(endpoint, path), "creds": creds}


def test_sessions_are_distinct_identities(stack: LocalStackResult, people: dict[str, Any]) -> None:
    arns = {who: caller_arn(stack.endpoint, c) for who, c in people["creds"].items()}
    assert len(set(arns.values())) == len(arns)
    assert arns["carol"].endswith("assumed-role/" + arns["carol"].split("/")[1] + "/carol@example.com")
    cli, creds = people["cli"], people["creds"]
    me = cli.json(creds["rita"], "whoami")
    assert (me["operator"], me["kind"], me["permission_set"]) == (
        "rita@example.com",
        "identity-center",
        "RegionalChangeManagers",
    )
    assert [(r["role"], r["customers"]) for r in me["roles"]] == [
        ("RegionalChangeManagers", ["acme", "globex"])
    ]
    assert me["require_distinct_approver"] is True
    otto = cli.json(creds["otto"], "whoami")
    assert [(r["role"], r["via"]) for r in otto["roles"]] == [("DlqOperators", "group:On-call")]


def exit_code(result: Any, code: int, *needles: str) -> None:
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    for needle in needles:
        assert needle in result.stderr, (needle, result.stderr)


def test_allowed_and_denied_matrix_and_every_action_audited(
    stack: LocalStackResult,
    people: dict[str, Any],
    codes: list[str],
    aws_factory: AwsFactory,
    tmp_path: Path,
) -> None:
    cli: OperatorCli = people["cli"]
    carol, dave, rita, erin, ada, otto, nina = (
        people["creds"][w] for w in ("carol", "dave", "rita", "erin", "ada", "otto", "nina")
    )
    acme, globex, other = codes[0], codes[1], codes[2]

    def change_file(customers: list[str], name: str) -> str:
        path = tmp_path / name
        path.write_text(json.dumps(change_data(customers)), encoding="utf-8")
        return str(path)

    # A change manager drafts and submits a change to acme and other; they cannot approve their own.
    drafted = cli.json(carol, "change", "draft", change_file([acme, other], "wide.json"))
    wide = drafted["change_id"]
    submitted = cli.json(carol, "change", "submit", wide)
    assert submitted["status"] == "submitted" and submitted["ok"]
    exit_code(cli(carol, "change", "approve", wide), 3, "separation of duties", "carol@example.com submitted")
    # Another change manager approves it.
    assert cli.json(dave, "change", "approve", wide)["status"] == "approved"
    shown = cli.json(ada, "change", "show", wide)
    assert (shown["submittedBy"], shown["approvedBy"], shown["createdBy"]) == (
        "carol@example.com",
        "dave@example.com",
        "carol@example.com",
    )

    # The regional change manager: only acme and globex.
    exit_code(
        cli(rita, "change", "draft", change_file([acme, other], "rita-wide.json")),
        3,
        "outside rita@example.com's scope",
        other,
    )
    exit_code(cli(rita, "change", "cancel", wide), 3, f"change.cancel on {other}")
    own = cli.json(rita, "change", "draft", change_file([acme, globex], "rita.json"))["change_id"]
    assert cli.json(rita, "change", "submit", own)["ok"]
    exit_code(cli(rita, "change", "approve", own), 3, "change.approve needs ChangeManagers")

    # The customer manager and the auditor change no change; the auditor reads everything.
    exit_code(cli(erin, "change", "submit", own), 3, "change.submit needs ChangeManagers or")
    exit_code(cli(ada, "change", "complete", wide), 3, "needs ChangeManagers; ada@example.com has Auditors")
    exit_code(cli(ada, "change", "resend", wide), 3, "change.resend needs ChangeManagers")
    listed = cli.json(ada, "change", "list")
    assert {c["change_id"] for c in listed["changes"]} == {wide, own}
    assert cli(erin, "change", "list").exit_code == 0

    # DLQ actions come from the group, on any customer; nobody else has them.
    put_dead_letters(aws_factory, stack.config, acme, 2)
    export = tmp_path / "dlq.jsonl"
    assert cli.json(otto, "dlq", "export", acme, str(export))["count"] == 2
    exit_code(cli(otto, "dlq", "purge", acme, "--yes"), 3, "dlq.purge needs a role with it")
    exit_code(cli(carol, "dlq", "redrive", acme, "--all"), 3, "dlq.redrive needs DlqOperators")
    exit_code(cli(otto, "change", "approve", own), 3, "change.approve needs ChangeManagers")

    # Without any role nothing is allowed, not even reading.
    exit_code(cli(nina, "change", "list"), 3, "nina@example.com has no role")
    exit_code(cli(nina, "audit", "search"), 3)
    exit_code(cli(carol, "audit", "search"), 3, "audit.read needs Auditors")

    # Completed by the first change manager (no separation needed there).
    assert cli.json(carol, "change", "complete", wide)["status"] == ChangeStatus.COMPLETED.value

    # Every action, allowed or refused, is in the audit trail; the auditor finds it by operator.
    found = cli.json(ada, "audit", "search")
    by = {(e["operator"], e["action"], e["result"]) for e in found["entries"]}
    expected = {
        ("carol@example.com", "change.draft", "ok"),
        ("carol@example.com", "change.submit", "ok"),
        ("carol@example.com", "change.approve", "refused"),
        ("dave@example.com", "change.approve", "ok"),
        ("rita@example.com", "change.draft", "refused"),
        ("rita@example.com", "change.cancel", "refused"),
        ("rita@example.com", "change.draft", "ok"),
        ("rita@example.com", "change.submit", "ok"),
        ("rita@example.com", "change.approve", "refused"),
        ("erin@example.com", "change.submit", "refused"),
        ("ada@example.com", "change.complete", "refused"),
        ("ada@example.com", "change.resend", "refused"),
        ("otto@example.com", "dlq.export", "ok"),
        ("otto@example.com", "dlq.purge", "refused"),
        ("carol@example.com", "dlq.redrive", "refused"),
        ("otto@example.com", "change.approve", "refused"),
        ("nina@example.com", "read", "refused"),
        ("carol@example.com", "audit.read", "refused"),
        ("carol@example.com", "change.complete", "ok"),
    }
    assert expected <= by, expected - by
    assert len(found["entries"]) == found["count"] == found["matched"]
    for entry in found["entries"]:
        assert entry["ts"].endswith("Z") and entry["via"] == "cli"
        assert entry["operator_arn"].startswith("arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_")
    refused_scope = next(
        e
        for e in found["entries"]
        if e["operator"] == "rita@example.com" and e["action"] == "change.draft" and e["result"] == "refused"
    )
    assert refused_scope["outside"] == [other] and refused_scope["roles"] == ["RegionalChangeManagers"]
    approved = next(e for e in found["entries"] if e["action"] == "change.approve" and e["result"] == "ok")
    assert (approved["change_id"], approved["version"], approved["customers"]) == (wide, 3, [acme, other])
    assert approved["permission_set"] == "ChangeManagers" and approved["roles"] == ["ChangeManagers"]

    # Filters: by operator (glob), customer, change, action and result.
    mine = cli.json(ada, "audit", "search", "--operator", "rita*", "--result", "refused")
    assert {e["action"] for e in mine["entries"]} == {"change.draft", "change.cancel", "change.approve"}
    draft = next(e for e in mine["entries"] if e["action"] == "change.draft")
    assert (draft["customers"], draft["outside"]) == ([acme, other], [other])
    on_change = cli.json(ada, "audit", "search", "--change", wide)
    assert {e["change_id"] for e in on_change["entries"]} == {wide}
    on_globex = cli.json(ada, "audit", "search", "--customer", globex)
    # rita's own change targets globex; erin and otto were refused actions on it (named in their records).
    assert {e["operator"] for e in on_globex["entries"]} == {
        "rita@example.com",
        "erin@example.com",
        "otto@example.com",
    }
    dlq = cli.json(ada, "audit", "search", "--action", "dlq.*")
    assert {(e["operator"], e["action"]) for e in dlq["entries"]} == {
        ("otto@example.com", "dlq.export"),
        ("otto@example.com", "dlq.purge"),
        ("carol@example.com", "dlq.redrive"),
    }
    table = cli(ada, "audit", "search", "--action", "approve")
    assert table.exit_code == 0 and "dave@example.com" in table.stdout and "refused" in table.stdout
