"""Issue 11, scenario by scenario: right content, right customer, right order under concurrency and
backlog. Each test reproduces one report of the issue against the local stack and checks what arrived.

1. a swallowed conflict sent to a customer the change never targeted;
2. a redrive sent stale content;
3. a backlog arrived out of order;
4. a superseded record said 0 sent while emails had gone out;
5. (IAM: tests/deploy/test_worker_iam.py);
6. an approval applied to a version the approver never saw; a file without "version" overwrote;
7. bad change files raised tracebacks; an undeliverable version was accepted;
8. the worker trusted the snapshot inside the trigger.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from changeconsole.app import ChangeConsoleApp
from changeconsole.models import (
    MAX_VERSION,
    TOPIC_ANNOUNCE,
    TOPIC_APPROVAL,
    DeliveryState,
    EmailEvent,
    RecipientState,
    trigger_key,
)
from changeconsole.services import lifecycle
from changeconsole.services.aws import AwsFactory
from changeconsole.services.bundle import Services
from changeconsole.services.changes import ConflictError
from changeconsole.services.dlq import DlqService
from changeconsole.services.ledger import Ledger
from changeconsole.services.lifecycle import ChangeService
from changeconsole.services.resend import ResendService
from changeconsole.services.status import DeliveryKey, StatusStore
from support.aws import attrs, bucket_keys, dlq_messages, queue_depth
from support.changes import change_data, change_doc, make_change
from support.cli import Cli
from support.mail import outbox, subscribed
from support.waiting import wait_until
from support.worker import put_trigger, record, running_worker

CONTACTS = 4  # approval: contacts 0, 2, 3; announce: 0, 1 (services/localstack.PROFILES)


def settled(status: StatusStore, change_ids: list[str]) -> bool:
    recs = [r for cid in change_ids for r in status.records(cid)]
    return bool(recs) and all(r.is_final for r in recs)


def mails_of(endpoint: str, customer: str) -> dict[str, list[tuple[str, int | None, str | None]]]:
    """recipient → [(change, version, event)] in the order SES accepted them."""
    out: dict[str, list[tuple[str, int | None, str | None]]] = defaultdict(list)
    for m in outbox(endpoint, change_id=None):
        if m.customer == customer:
            for to in m.to:
                out[to.lower()].append((m.change_id or "", m.version, m.event))
    return dict(out)


# -- 1 ---------------------------------------------------------------------------------------------
def test_1_a_lost_edit_race_raises_a_conflict_and_its_fan_out_never_runs(
    make_stack: Any, aws_factory: AwsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two edits by one identity in one second: the loser's write meets the winner's, and it is told so
    (same version, same modifiedAt/By/status: only the write token tells them apart)."""
    stack = make_stack(customers=3, contacts=0)
    config = stack.config
    a, b, c = sorted(config.customer_mappings)
    frozen = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)
    monkeypatch.setattr(lifecycle, "utcnow", lambda: frozen)
    mine = ChangeService(aws_factory, config, operator="alice")
    theirs = ChangeService(aws_factory, config, operator="alice")
    base = mine.submit(make_change([a, b])).change
    key = f"archive/{base.change_id}.json"
    raced: list[bool] = []

    def interleave(params: dict[str, Any], **_: Any) -> None:
        if params.get("Key") == key and not raced:
            raced.append(True)
            theirs.edit(base.model_copy(update={"title": "Retitled by the other shell"}))

    s3 = aws_factory.client("s3")
    s3.meta.events.register("provide-client-params.s3.PutObject", interleave)
    try:
        with pytest.raises(ConflictError) as err:
            mine.edit(base.model_copy(update={"customers": [a, b, c]}))
    finally:
        s3.meta.events.unregister("provide-client-params.s3.PutObject", interleave)
    assert raced
    assert err.value.current is not None and err.value.current.title == "Retitled by the other shell"
    assert "alice" in str(err.value) and "version 3" in str(err.value)
    current = mine.load(base.change_id)
    assert (current.version, current.customers) == (3, [a, b])
    # The loser's fan-out never ran: no trigger and no queued record for the customer it added.
    assert not [k for k in bucket_keys(aws_factory, config, "customers/") if k.startswith(f"customers/{c}/")]
    assert not [r for r in StatusStore(aws_factory, config).records(base.change_id) if r.customer == c]


# -- 2 ---------------------------------------------------------------------------------------------
@pytest.mark.timeout(180)
def test_2_redrive_after_an_edit_and_a_cancellation_sends_nothing_stale(
    make_stack: Any, aws_factory: AwsFactory, moto_endpoint: str
) -> None:
    stack = make_stack(customers=3, contacts=CONTACTS)
    config = stack.config
    a, b, _c = sorted(config.customer_mappings)
    good = config.customer(b)
    config.customer_mappings[b] = good.model_copy(update={"contact_list_name": "no-such-list"})
    svc = ChangeService(aws_factory, config, operator="ops")
    status = StatusStore(aws_factory, config)
    dlq = DlqService(aws_factory, config)
    with running_worker(aws_factory, config):
        edited = svc.submit(make_change([a, b])).change
        other = svc.submit(make_change([b], changeTitle="Another change")).change
        wait_until(lambda: dlq.summary(b).depth == 2, 60, what="both approval requests dead-lettered")
        svc.approve(other.change_id)
        wait_until(lambda: dlq.summary(b).depth == 3, 60, what="the approved notice dead-lettered")
        # The change is edited to remove b; the other one is cancelled.
        svc.edit(svc.load(edited.change_id).model_copy(update={"customers": [a]}))
        svc.cancel(other.change_id)
        wait_until(lambda: settled(status, [edited.change_id, other.change_id]), 60, what="all settled")
        config.customer_mappings[b] = good  # the fix
        assert dlq.redrive(b, all_messages=True, native=False).ok
        wait_until(lambda: dlq.summary(b).depth == 0 and queue_depth(aws_factory, config, b) == 0, 60)
        wait_until(lambda: settled(status, [edited.change_id, other.change_id]), 60, what="redrive settled")
    assert mails_of(moto_endpoint, b) == {}, "b was never told anything current: nothing stale either"
    states = {(r.version, r.event.value): r.state for r in status.records(other.change_id)}
    assert states == {
        (2, "submitted"): DeliveryState.SUPERSEDED,
        (3, "approved"): DeliveryState.SUPERSEDED,
        (4, "cancelled"): DeliveryState.SKIPPED,
    }
    removed = record(aws_factory, config, b, 2, "submitted", change_id=edited.change_id)
    assert removed is not None and removed.state is DeliveryState.SUPERSEDED
    assert f"no longer targets {b}" in (removed.last_error or "")
    # a got both approval requests of the edited change, in order.
    assert {to: [(v, e) for _cid, v, e in seq] for to, seq in mails_of(moto_endpoint, a).items()} == {
        to: [(2, "submitted"), (3, "submitted")] for to in subscribed(a, CONTACTS, TOPIC_APPROVAL)
    }


# -- 3 ---------------------------------------------------------------------------------------------
@pytest.mark.timeout(240)
def test_3_a_backlog_drained_late_sends_only_what_is_current_in_order(
    make_stack: Any, aws_factory: AwsFactory, moto_endpoint: str
) -> None:
    stack = make_stack(customers=4, contacts=CONTACTS)
    config = stack.config
    codes = sorted(config.customer_mappings)
    svc = ChangeService(aws_factory, config, operator="ops")
    paths = {
        "cancelled": ["approve", "cancel"],
        "approved": ["approve"],
        "completed": ["approve", "complete"],
        "submitted": [],
    }
    changes: dict[str, str] = {}
    for i in range(2):  # two changes of each path, every step taken with no worker running
        for name, steps in paths.items():
            cid = svc.submit(make_change(codes, changeTitle=f"{name} {i}")).change.change_id
            for step in steps:
                getattr(svc, step)(cid)
            changes[cid] = name
    status = StatusStore(aws_factory, config)
    with (
        running_worker(aws_factory, config, worker_id="w1"),
        running_worker(aws_factory, config, worker_id="w2"),
    ):
        wait_until(lambda: settled(status, list(changes)), 120, what="the backlog drained")
    expect_event = {
        "cancelled": None,
        "approved": "approved",
        "completed": "completed",
        "submitted": "submitted",
    }
    topic = {"approved": TOPIC_ANNOUNCE, "completed": TOPIC_ANNOUNCE, "submitted": TOPIC_APPROVAL}
    for code in codes:
        got = mails_of(moto_endpoint, code)
        for cid, name in changes.items():
            want = expect_event[name]
            per = {to: [e for c, _v, e in seq if c == cid] for to, seq in got.items()}
            per = {to: seq for to, seq in per.items() if seq}
            if want is None:
                assert per == {}, f"{code} got {per} for a change cancelled before it heard of it"
            else:
                assert per == {to: [want] for to in subscribed(code, CONTACTS, topic[want])}, (code, name)
    for cid, name in changes.items():
        for r in status.records(cid):
            current = r.event.value == name
            assert r.state is (
                DeliveryState.SKIPPED
                if current and name == "cancelled"
                else DeliveryState.SENT
                if current
                else DeliveryState.SUPERSEDED
            ), r


# -- 4 ---------------------------------------------------------------------------------------------
def test_4_a_superseded_delivery_counts_what_a_dead_worker_had_sent(
    make_stack: Any, aws_factory: AwsFactory
) -> None:
    stack = make_stack(customers=1, contacts=CONTACTS)
    config = stack.config
    (code,) = config.customer_mappings
    submitted = change_doc([code], version=2, status="submitted")
    approved = change_doc([code], version=3, status="approved")
    key = DeliveryKey(submitted["changeId"], 2, EmailEvent.SUBMITTED, code)
    # What a worker killed mid-delivery leaves: its lane and claim held, three recipients sent, one in
    # flight (its leases expire at once).
    dead = Ledger(aws_factory, config, claim_lease=0.2, send_lease=60)  # the send mark outlives the lane
    owner = "dead-worker/1"
    assert not isinstance(dead.acquire_lane(key.change_id, code, owner, delivery=key), type(None))
    assert dead.claim(key, owner).acquired
    recipients = sorted(subscribed(code, CONTACTS, TOPIC_APPROVAL))
    for i, address in enumerate(recipients):
        assert dead.begin_send(key, address, owner).outcome == "go"
        if i < len(recipients) - 1:
            dead.record_sent(key, address, owner, f"ses-{i}")
    with running_worker(aws_factory, config):
        # Meanwhile the change was approved and the approval notice went out…
        put_trigger(aws_factory, config, approved, code)
        wait_until(lambda: (r := record(aws_factory, config, code, 3, "approved")) is not None and r.is_final)
        # …then the dead worker's message comes back.
        put_trigger(aws_factory, config, submitted, code)
        wait_until(
            lambda: (r := record(aws_factory, config, code, 2, "submitted")) is not None and r.is_final, 30
        )
    rec = record(aws_factory, config, code, 2, "submitted")
    assert rec is not None and rec.state is DeliveryState.SUPERSEDED
    sent = len(recipients) - 1
    assert (rec.recipients_total, rec.recipients_sent, rec.recipients_failed) == (len(recipients), sent, 1)
    assert f"{sent} of {len(recipients)} recipient(s) had been sent" in (rec.last_error or "")
    assert "1 unknown" in (rec.last_error or "")
    assert Ledger(aws_factory, config).recipients(key)[recipients[-1].lower()].state == RecipientState.UNKNOWN
    # The dead worker's claim is settled with the delivery; an operator's resend of the unknown one is
    # refused as superseded (the change has moved on), not as "a worker is still on it".
    assert Ledger(aws_factory, config).get_claim(key).state == "done"
    (refused,) = ResendService(aws_factory, config).resend_delivery(key).deliveries
    assert refused.refused[recipients[-1].lower()].startswith("superseded: version 3 (approved)")


# -- 6 ---------------------------------------------------------------------------------------------
def test_6_actions_pin_the_version_the_operator_saw(
    make_stack: Any, aws_factory: AwsFactory, tmp_path: Path
) -> None:
    stack = make_stack(customers=2, contacts=0)
    codes = sorted(stack.config.customer_mappings)
    cli = Cli(stack, tmp_path)
    cid = cli.json("change", "submit", cli.file(change_data(codes)))["change_id"]  # v2
    seen = cli.json("change", "show", cid)
    edited = dict(seen, changeTitle="Edited by bob")
    assert cli.json("change", "submit", cli.file(edited, "bob.json"), operator="bob")["version"] == 3
    late = cli("change", "approve", cid, "--version", "2", operator="carol")
    assert late.exit_code == 1
    assert "bob" in late.stderr and "version 3" in late.stderr
    assert cli.json("change", "show", cid)["status"] == "submitted"
    assert cli.json("change", "approve", cid, "--version", "3", operator="carol")["status"] == "approved"
    for action in ("complete", "cancel"):
        moved = cli("change", action, cid, "--version", "3", operator="carol")
        assert moved.exit_code == 1, action
    # A file without "version" for an archived change is refused; --force says last writer wins.
    unpinned = {k: v for k, v in seen.items() if k != "version"} | {"changeTitle": "Mine, whatever"}
    refused = cli("change", "submit", cli.file(unpinned, "unpinned.json"))
    assert refused.exit_code == 2 and '"version"' in refused.stderr and "--force" in refused.stderr
    assert cli.json("change", "show", cid)["version"] == 4
    forced = cli.json("change", "submit", cli.file(unpinned, "unpinned.json"), "--force")
    assert (forced["version"], forced["status"]) == (5, "submitted")
    # The console pins the version it shows: acting on a stale display is a conflict, never applied.
    app = ChangeConsoleApp(Services(aws_factory, stack.config), live=False)
    shown = app.services.changes.load(cid).model_copy(update={"version": 4})
    with pytest.raises(ConflictError):
        app.fanout_call("cancel", shown)(None)
    assert cli.json("change", "show", cid)["status"] == "submitted"


# -- 7 ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\xff\xfe{", "is not UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b" " * (5 * 1024 * 1024 + 1), "larger than 5 MiB"),
    ],
    ids=["not-utf8", "deep", "huge"],
)
def test_7_unreadable_change_files_exit_2_with_one_line(
    make_stack: Any, tmp_path: Path, content: bytes, message: str
) -> None:
    stack = make_stack(customers=1, contacts=0)
    cli = Cli(stack, tmp_path)
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    for command in ("draft", "submit"):
        result = cli("change", command, str(path))
        assert result.exit_code == 2, (command, result.stderr[-500:])
        assert message in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("version", [MAX_VERSION, 10**9])
def test_7_a_version_keys_cannot_carry_is_refused_at_input(
    make_stack: Any, aws_factory: AwsFactory, tmp_path: Path, version: int
) -> None:
    stack = make_stack(customers=1, contacts=0)
    codes = sorted(stack.config.customer_mappings)
    cli = Cli(stack, tmp_path)
    result = cli("change", "submit", cli.file(change_data(codes, version=version)))
    assert result.exit_code == 2, result.stderr
    assert "version" in result.stderr and str(MAX_VERSION) in result.stderr
    assert not bucket_keys(aws_factory, stack.config, "archive/")


# -- 8 ---------------------------------------------------------------------------------------------
def test_8_a_forged_snapshot_in_a_trigger_sends_nothing_to_the_customer_it_names(
    make_stack: Any, aws_factory: AwsFactory, moto_endpoint: str
) -> None:
    stack = make_stack(customers=2, contacts=CONTACTS)
    config = stack.config
    a, b = sorted(config.customer_mappings)
    doc = change_doc([a])
    put_trigger(aws_factory, config, doc, a)  # archived, targeting a only
    forged = dict(doc, customers=[a, b], changeTitle="Forged")
    aws_factory.client("s3").put_object(
        Bucket=config.s3_config.bucket_name,
        Key=trigger_key(b, doc["changeId"], 2, EmailEvent.SUBMITTED),
        Body=json.dumps(forged).encode(),
    )
    with running_worker(aws_factory, config):
        wait_until(lambda: (r := record(aws_factory, config, a)) is not None and r.is_final, 30)
        wait_until(lambda: dlq_messages(aws_factory, config, b), 30, what="the forged trigger dead-lettered")
    assert mails_of(moto_endpoint, b) == {}
    titles = {m.subject.split(" [")[0] for m in outbox(moto_endpoint)}
    assert titles == {"Approval requested: Patch the web fleet"}, "archive content only"
    (dead,) = dlq_messages(aws_factory, config, b)
    assert attrs(dead)["cc-reason"] == "isolation_violation"
    assert record(aws_factory, config, b) is None
