"""Bulk approve/complete/cancel: each change on its own, pinned to the version seen; retry only the failed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from changeconsole.models import Config
from changeconsole.services.aws import AwsFactory
from changeconsole.services.bulk import BulkTransitions, Outcome
from changeconsole.services.lifecycle import ChangeService
from support.aws import audit_events
from support.changes import make_change
from support.cli import Cli


def _submitted(svc: ChangeService, codes: list[str], n: int) -> list[str]:
    return [svc.submit(make_change(codes[:2], changeTitle=f"Change {i}")).change.change_id for i in range(n)]


def test_one_failure_leaves_the_others_and_a_retry_runs_only_it(
    make_stack: Any, aws_factory: AwsFactory
) -> None:
    stack = make_stack(customers=3, contacts=0)
    codes = sorted(stack.config.customer_mappings)
    svc = ChangeService(aws_factory, stack.config, operator="alice")
    ids = _submitted(svc, codes, 3)
    broken = ids[1]
    failures = {"left": 1}

    def refuse_once(params: dict[str, Any], **_: Any) -> None:
        if params.get("Key") == f"archive/{broken}.json" and failures["left"]:
            failures["left"] -= 1
            raise ConnectionError("injected: the archive write did not reach S3")

    s3 = aws_factory.client("s3")
    s3.meta.events.register("before-parameter-build.s3.PutObject", refuse_once)
    try:
        bulk = BulkTransitions(svc)
        seen: list[str] = []
        run = bulk.run("approve", [(i, 2) for i in ids], on_item=lambda item: seen.append(item.change_id))
        assert sorted(seen) == sorted(ids)
        outcomes = {i.change_id: i.outcome for i in run.items}
        assert outcomes == {ids[0]: Outcome.OK, broken: Outcome.FAILED, ids[2]: Outcome.OK}
        assert [i.change_id for i in run.failed] == [broken]
        assert svc.load(broken).status.value == "submitted"
        bulk.retry(run)
    finally:
        s3.meta.events.unregister("before-parameter-build.s3.PutObject", refuse_once)
    assert run.ok
    assert {i.change_id: i.attempts for i in run.items} == {ids[0]: 1, broken: 2, ids[2]: 1}
    for cid in ids:
        current = svc.load(cid)
        assert (current.status.value, current.version) == ("approved", 3), "each approved exactly once"


def test_cli_takes_several_ids_each_pinned(make_stack: Any, aws_factory: AwsFactory, tmp_path: Path) -> None:
    stack = make_stack(customers=3, contacts=0)
    codes = sorted(stack.config.customer_mappings)
    svc = ChangeService(aws_factory, stack.config, operator="alice")
    a, b, c = _submitted(svc, codes, 3)
    cli = Cli(stack, tmp_path)
    result = cli("change", "approve", f"{a}@2", f"{b}@1", c, "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["failed"] == [b] and not data["ok"]
    by_id = {r["change_id"]: r for r in data["results"]}
    assert by_id[a]["outcome"] == "ok" and by_id[a]["status"] == "approved"
    assert by_id[b]["outcome"] == "failed" and "was changed" in by_id[b]["error"]
    assert f"change approve {b}@1" in result.stderr
    assert svc.load(b).status.value == "submitted"
    assert cli("change", "approve", a, b, "--version", "2").exit_code == 2
    assert cli("change", "approve", f"{b}@x").exit_code == 2
    done = cli.json("change", "complete", f"{a}@3", f"{c}@3")
    assert done["ok"] and [r["status"] for r in done["results"]] == ["completed", "completed"]
    single = cli.json("change", "approve", f"{b}@2")  # one id: the output of one transition, as before
    assert single["status"] == "approved" and "destinations" in single


def test_each_change_passes_the_authorization_point_and_a_refusal_fails_only_it(
    make_stack: Any, aws_factory: AwsFactory
) -> None:
    stack = make_stack(customers=3, contacts=0)
    a, b, _c = sorted(stack.config.customer_mappings)
    roles = {
        "ChangeManagers": {"principals": ["user:alice", "user:carol"]},
        "Regional": {"principals": ["user:rob"], "customers": [a], "actions": ["change.approve"]},
    }
    data = {**stack.config.to_json_dict(), "operator_roles": roles, "require_distinct_approver": True}
    config = Config.model_validate(data)
    alice = ChangeService(aws_factory, config, operator="alice")
    own, wide, third = (
        alice.submit(make_change(codes, changeTitle=f"Change {i}")).change.change_id
        for i, codes in enumerate([[a], [a, b], [a]])
    )

    # Scope: rob approves his customer's change; the one that also targets b is refused, alone.
    rob = BulkTransitions(ChangeService(aws_factory, config, operator="rob"))
    run = rob.run("approve", [(own, 2), (wide, 2)])
    outcomes = {i.change_id: (i.outcome, i.error or "") for i in run.items}
    assert outcomes[own] == (Outcome.OK, "")
    assert outcomes[wide][0] is Outcome.FAILED and "outside rob's scope" in outcomes[wide][1]
    # Separation of duties, change by change: alice submitted them, so she may not approve them.
    mine = BulkTransitions(alice).run("approve", [(wide, 2), (third, 2)])
    assert [i.outcome for i in mine.items] == [Outcome.FAILED, Outcome.FAILED]
    assert all("separation of duties" in (i.error or "") for i in mine.items)

    # One reason for every cancellation, kept with each change; each refusal and each act audited.
    carol = ChangeService(aws_factory, config, operator="carol")
    cancelled = BulkTransitions(carol).run("cancel", [(wide, 2), (third, 2)], reason="window moved to Q3")
    assert cancelled.ok and cancelled.to_json()["reason"] == "window moved to Q3"
    for cid in (wide, third):
        assert carol.load(cid).cancel_reason == "window moved to Q3"
    acts = [
        (e["operator"], e["action"], e["result"], e["change_id"])
        for e in audit_events(aws_factory, config)
        if e.get("type") == "operator.action" and e["action"] in ("change.approve", "change.cancel")
    ]
    assert sorted(acts) == sorted(
        [
            ("rob", "change.approve", "ok", own),
            ("rob", "change.approve", "refused", wide),
            ("alice", "change.approve", "refused", wide),
            ("alice", "change.approve", "refused", third),
            ("carol", "change.cancel", "ok", wide),
            ("carol", "change.cancel", "ok", third),
        ]
    )
