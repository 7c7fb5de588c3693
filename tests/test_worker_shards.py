"""Sharded workers: --drain means done, the shard supervisor, and a change of N mid-run."""

from __future__ import annotations

import os
import signal
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from changeconsole.cli import main
from changeconsole.models import FINAL_STATES, TOPIC_APPROVAL, DeliveryState, EmailEvent
from changeconsole.services.aws import AwsFactory
from changeconsole.services.ledger import Ledger
from changeconsole.services.lifecycle import ChangeService
from changeconsole.services.status import DeliveryKey, StatusStore
from changeconsole.worker import assign_customers, shard_of
from changeconsole.worker.supervisor import ShardSupervisor
from support.aws import queue_url
from support.changes import CHANGE_ID, change_doc, make_change
from support.cli import Cli
from support.mail import TOPIC_OF, email_keys, outbox, per_recipient, subscribed
from support.waiting import wait_until
from support.worker import FAST_WORKER_ARGS, WorkerProcess, final, records, submit


def _hold(aws: AwsFactory, url: str, seconds: int) -> int:
    """Receive every message of ``url`` and keep it hidden for ``seconds``, as a worker killed right
    after its receive would: the number held."""
    sqs = aws.client("sqs")
    held = 0
    while True:
        msgs = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=seconds, WaitTimeSeconds=0
        ).get("Messages", [])
        if not msgs:
            return held
        held += len(msgs)


@pytest.mark.timeout(120)
def test_drain_waits_for_messages_in_flight_elsewhere(
    make_stack: Any, aws_factory: AwsFactory, moto_endpoint: str
) -> None:
    stack = make_stack(customers=2, contacts=3)
    config = stack.config
    codes = sorted(config.customer_mappings)
    submit(aws_factory, config, change_doc(codes))
    url = queue_url(aws_factory, config, codes[0])
    sqs = aws_factory.client("sqs")

    def trigger_arrived() -> bool:
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
        return int(attrs["Attributes"]["ApproximateNumberOfMessages"]) >= 1

    wait_until(trigger_arrived, 30, what="the trigger in the first customer's queue")
    assert _hold(aws_factory, url, 6) >= 1
    worker = WorkerProcess(stack.config_path, moto_endpoint, "--drain").start()
    try:
        assert worker.proc is not None
        assert worker.proc.wait(90) == 0
    finally:
        worker.kill()
    # Before, --drain exited 0 here with the first customer's delivery still queued (its message hidden).
    assert final(aws_factory, config, codes)
    assert all(r.state is DeliveryState.SENT for r in records(aws_factory, config).values())
    waiting = [e for e in worker.events() if e.get("msg") == "worker.drain_waiting"]
    assert waiting and waiting[0]["customer"] == codes[0]
    counts = per_recipient(outbox(moto_endpoint, CHANGE_ID))
    assert set(counts.values()) == {1}
    assert len(counts) == sum(len(subscribed(c, 3, TOPIC_APPROVAL)) for c in codes)


def _submit_changes(aws: AwsFactory, config: Any, n: int) -> list[DeliveryKey]:
    service = ChangeService(aws, config, operator="shards")
    codes = sorted(config.customer_mappings)
    keys = []
    for i in range(n):
        result = service.submit(make_change(codes, changeTitle=f"Shard change {i}"))
        assert result.ok, result.errors
        keys += [
            DeliveryKey(result.change.change_id, result.change.version, EmailEvent.SUBMITTED, c)
            for c in codes
        ]
    return keys


def _all_final(status: StatusStore, keys: list[DeliveryKey]) -> bool:
    for change_id in {k.change_id for k in keys}:
        recs = {(r.version, r.event, r.customer): r for r in status.records(change_id)}
        for k in keys:
            if k.change_id == change_id:
                r = recs.get((k.version, k.event, k.customer))
                if r is None or r.state not in FINAL_STATES:
                    return False
    return True


def _exactly_once(aws: AwsFactory, config: Any, endpoint: str, keys: list[DeliveryKey], contacts: int) -> int:
    """Nobody emailed twice; every expected email sent, or recorded ``unknown`` by a kill inside its SES
    window (at-most-once by design, the delivery then ``partial``); the number of such unknown sends."""
    expected = {
        (k.change_id, k.version, k.event.value, k.customer, a)
        for k in keys
        for a in subscribed(k.customer, contacts, TOPIC_OF[k.event])
    }
    counts = email_keys(outbox(endpoint))
    assert not {k: n for k, n in counts.items() if n > 1}, "sent twice"
    received = {(c or "", v or 0, e or "", cu or "", to) for (c, v, e, cu, to) in counts}
    assert received <= expected
    ledger = Ledger(aws, config)
    for change_id, version, event, customer, addr in expected - received:
        mark = ledger.recipients(DeliveryKey(change_id, version, EmailEvent(event), customer)).get(addr)
        assert mark is not None and mark.state == "unknown", (change_id, customer, addr, mark)
    return len(expected - received)


@pytest.mark.timeout(240)
def test_changing_the_shard_count_mid_run_loses_nothing_and_sends_nothing_twice(
    make_stack: Any, aws_factory: AwsFactory, moto_endpoint: str, tmp_path: Path
) -> None:
    """N goes from 2 to 3 mid-run: one old shard is killed mid-delivery, the three new shards start while
    the other old one still runs (for a while two workers poll the same queues), then it is stopped.
    Each queue's new owner takes what the old one left; the ledger's claims (a delivery claimed by one
    worker is "busy" or "done" for any other) keep every email single."""
    contacts = 4
    stack = make_stack(customers=6, contacts=contacts)
    config = stack.config
    keys = _submit_changes(aws_factory, config, 6)
    total = sum(len(subscribed(k.customer, contacts, TOPIC_OF[k.event])) for k in keys)
    status = StatusStore(aws_factory, config)

    def shard(k: int, n: int) -> WorkerProcess:
        log = tmp_path / f"shard-{k}-of-{n}.log"
        return WorkerProcess(
            stack.config_path, moto_endpoint, "--shard", f"{k}/{n}", "--concurrency", "2", log_path=log
        )

    old = [shard(k, 2).start() for k in range(2)]
    new = [shard(k, 3) for k in range(3)]
    try:
        wait_until(lambda: len(outbox(moto_endpoint)) >= total // 4, 90, interval=0.02, what="a quarter sent")
        old[0].kill()  # mid-delivery: its messages and claims come back after visibility / lease
        at_switch = len(outbox(moto_endpoint))
        for w in new:
            w.start()
        for w in new:
            w.wait_started()
        assert old[1].terminate() == 0  # served its queues alongside the new shards until now
        wait_until(lambda: _all_final(status, keys), 150, interval=0.25, what="every delivery final")
        for w in new:
            assert w.terminate() == 0
    finally:
        for w in old + new:
            w.kill()
    unknown = _exactly_once(aws_factory, config, moto_endpoint, keys, contacts)
    after = {e.get("customer") for w in new for e in w.events() if e.get("msg") == "delivery.started"}
    # What the ledger turned away in the new shards: deliveries another worker held ("busy", retried
    # later) or had finished ("duplicate", deleted).
    results: Counter[str] = Counter()
    for w in new:
        for e in w.events():
            if e.get("msg") == "worker.stopped":
                results.update(e.get("results") or {})
    print(
        f"{at_switch} of {total} emails sent by N=2; {unknown} send(s) left unknown by the kill; "
        f"new shards' results {dict(results)}"
    )
    assert at_switch < total, "N changed mid-run"
    assert after, "the N=3 shards delivered part of the run"
    # Every queue is served by exactly one shard of each generation.
    codes = sorted(config.customer_mappings)
    for n in (2, 3):
        served = [set(assign_customers(config, None, (k, n))) for k in range(n)]
        assert sorted(c for s in served for c in s) == codes


@pytest.mark.timeout(180)
def test_the_supervisor_restarts_a_killed_shard_and_stops_all_with_a_drain(
    make_stack: Any, aws_factory: AwsFactory, moto_endpoint: str
) -> None:
    contacts = 3
    stack = make_stack(customers=5, contacts=contacts)
    config = stack.config
    args = ["--config", str(stack.config_path), "--endpoint-url", moto_endpoint, *FAST_WORKER_ARGS]
    supervisor = ShardSupervisor(2, worker_args=args, stderr=subprocess.DEVNULL, restart_backoff=0.2)
    assert supervisor.command(1)[-len(args) - 2 :][:2] == ["--shard", "1/2"]
    supervisor.start()
    try:
        first = supervisor.pids()
        assert all(first)
        os.kill(first[0], signal.SIGKILL)  # type: ignore[arg-type]
        wait_until(lambda: supervisor.pids()[0] not in (None, first[0]), 30, what="shard 0 restarted")
        assert supervisor.pids()[1] == first[1]
        keys = _submit_changes(aws_factory, config, 2)
        status = StatusStore(aws_factory, config)
        wait_until(lambda: _all_final(status, keys), 90, interval=0.25, what="every delivery final")
    finally:
        codes = supervisor.stop(timeout=30)
    assert codes == [0, 0]  # SIGTERM: each shard drained and exited 0
    assert [s.restarts for s in supervisor.shards] == [1, 0]
    assert _exactly_once(aws_factory, config, moto_endpoint, keys, contacts) == 0


def test_provision_and_customer_add_say_which_shard_serves_a_customer(
    make_stack: Any, tmp_path: Path
) -> None:
    stack = make_stack(customers=6, contacts=0)
    cli = Cli(stack, tmp_path)
    codes = sorted(stack.config.customer_mappings)
    data = cli.json("provision", "--shards", "4")
    assert data["shards"] == {c: f"{shard_of(c, 4)}/4" for c in codes}
    shown = cli("provision", "--shards", "4").stdout
    assert all(f"{c}" in shown and f"{shard_of(c, 4)}/4" in shown for c in codes)
    assert "shards" not in cli.json("provision")
    role = "arn:aws:iam::000000000077:role/changeconsole-ses-sender"
    added = cli.json("customer", "add", "initrode", "--name", "Initrode", "--role-arn", role, "--shards", "3")
    assert added["shard"] == f"{shard_of('initrode', 3)}/3"
    plain = cli("customer", "add", "initrode", "--name", "Initrode", "--role-arn", role, "--shards", "3")
    assert f"served by worker shard {shard_of('initrode', 3)}/3" in plain.stderr


def test_provision_warns_when_shards_differ_from_the_doorbell_shard_count(
    make_stack: Any, tmp_path: Path
) -> None:
    stack = make_stack(customers=2, contacts=0, transport="sqs-direct", worker_shards=2)
    cli = Cli(stack, tmp_path)
    assert "doorbell.off" in cli("provision", "--shards", "3").stderr
    assert "doorbell" not in cli("provision", "--shards", "2").stderr
    doorbells = [a for a in cli.json("provision")["actions"] if a["kind"] == "doorbell"]
    assert sorted(a["name"] for a in doorbells) == [
        "changeconsole-doorbell-0-of-2",
        "changeconsole-doorbell-1-of-2",
    ]
    assert {a["result"] for a in doorbells} == {"unchanged"}  # local up provisioned them


def test_local_up_shards_needs_the_worker() -> None:
    result = CliRunner().invoke(main, ["local", "up", "--shards", "2"])
    assert result.exit_code == 2
    assert "--shards needs --with-worker" in result.output
