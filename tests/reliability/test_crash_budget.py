"""A worker SIGKILLed while it holds a trigger: crashes do not use up the message's retry budget
(``max_receive_count``, the queue's maxReceiveCount), yet a message that kills every worker is
dead-lettered after ``max_crash_count`` crashes, with a reason.

Each kill lands while the worker works on the trigger: another holder keeps its (change, customer)
lane, so the worker polls the lane (``lane.waiting``) and is killed then. No other worker runs: the next
one starts once the trigger is visible again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from changeconsole.models import TOPIC_APPROVAL, Config, DeliveryState
from changeconsole.services.aws import AwsFactory
from changeconsole.services.ledger import Lane, Ledger
from support.aws import attrs, dlq_messages, queue_depth, queue_url, visible
from support.changes import CHANGE_ID, change_doc
from support.events import with_events
from support.mail import email_keys, outbox, subscribed
from support.waiting import wait_until
from support.worker import WorkerProcess, put_trigger, record

CONTACTS = 5


def _held_trigger(aws: AwsFactory, config: Config, code: str) -> Lane:
    """The trigger of ``CHANGE_ID`` for ``code`` in its queue (nothing else there), its lane held by
    another worker."""
    aws.client("sqs").purge_queue(QueueUrl=queue_url(aws, config, code))  # the set-up's s3:TestEvent
    lane = Ledger(aws, config, claim_lease=600).acquire_lane(CHANGE_ID, code, "another-worker")
    assert isinstance(lane, Lane)
    put_trigger(aws, config, change_doc([code]), code)
    return lane


def _kill_while_working(worker: WorkerProcess, aws: AwsFactory, queue: str, done: Any) -> bool:
    """Start ``worker`` once the trigger is free, SIGKILL it while it works on it; False (the worker
    left running) when ``done()`` came first."""
    wait_until(lambda: visible(aws, queue) == 1 or done(), 30, "the trigger free again")
    if done():
        return False
    seen = sum('"lane.waiting"' in line for line in worker.lines)
    worker.start()
    wait_until(
        lambda: sum('"lane.waiting"' in line for line in worker.lines) > seen or done(),
        30,
        "the worker working on the trigger",
        interval=0.01,
    )
    if done():
        return False
    worker.kill()
    return True


@pytest.mark.timeout(240)
def test_more_kills_than_max_receive_count_while_holding_a_trigger_still_deliver_it_once(
    make_stack: Any, aws_factory: AwsFactory, moto_endpoint: str, tmp_path: Path
) -> None:
    stack = make_stack(customers=1, contacts=CONTACTS)
    config = stack.config
    code = sorted(config.customer_mappings)[0]
    assert config.max_receive_count == 3  # the default, as provisioned (the queue's maxReceiveCount)
    kills = config.max_receive_count + 3
    lane = _held_trigger(aws_factory, config, code)
    queue = config.customer(code).queue_name
    worker = WorkerProcess(stack.config_path, moto_endpoint, log_path=tmp_path / "w.log")
    try:
        for _ in range(kills):
            assert _kill_while_working(worker, aws_factory, queue, lambda: False)
        # The other holder finishes; the next worker delivers.
        assert Ledger(aws_factory, config).release_lane(lane)
        worker.start()
        wait_until(
            lambda: (r := record(aws_factory, config, code)) is not None and r.state is DeliveryState.SENT,
            60,
            "the delivery sent",
        )
        wait_until(lambda: queue_depth(aws_factory, config, code) == 0, 30, "the queue empty")
        assert worker.terminate() == 0
    finally:
        worker.kill()

    assert dlq_messages(aws_factory, config, code) == []
    counts = email_keys(outbox(moto_endpoint, CHANGE_ID))
    assert set(counts.values()) == {1}, counts
    assert {to for (*_k, to) in counts} == subscribed(code, CONTACTS, TOPIC_APPROVAL)
    # The trigger was replaced by fresh copies on its last receives (crashes carried, not spent).
    rotations = [e for e in worker.events() if e.get("msg") == "message.requeued" and e.get("crashes")]
    assert rotations, "never rotated: the kills did not land while the worker held the trigger"
    assert max(e["crashes"] for e in rotations) >= config.max_receive_count


@pytest.mark.timeout(240)
def test_a_trigger_that_kills_every_worker_is_dead_lettered_after_max_crash_count(
    make_stack: Any, aws_factory: AwsFactory, moto_endpoint: str, tmp_path: Path
) -> None:
    stack = make_stack(customers=1, contacts=CONTACTS)
    config = with_events(stack.config, stack.config_path, top={"max_crash_count": 4})
    code = sorted(config.customer_mappings)[0]
    _held_trigger(aws_factory, config, code)  # never released: every worker dies working on it
    queue = config.customer(code).queue_name
    worker = WorkerProcess(stack.config_path, moto_endpoint, log_path=tmp_path / "w.log")

    def dead_lettered() -> bool:
        return queue_depth(aws_factory, config, code, dlq=True) > 0

    kills = 0
    try:
        while _kill_while_working(worker, aws_factory, queue, dead_lettered):
            kills += 1
            assert kills <= config.max_crash_count, "still not dead-lettered"
        assert worker.terminate() == 0
    finally:
        worker.kill()

    assert kills == config.max_crash_count
    dead = [attrs(m) for m in dlq_messages(aws_factory, config, code)]
    assert len(dead) == 1, dead
    assert dead[0]["cc-reason"] == "worker_crashes"
    assert dead[0]["cc-receive-count"] == str(config.max_crash_count + 1)
    assert "cc-crashes" not in dead[0]  # a redrive starts with a full budget
    rec = record(aws_factory, config, code)
    assert rec is not None and rec.state is DeliveryState.DEAD_LETTERED
    assert "worker_crashes" in (rec.last_error or "")
    assert queue_depth(aws_factory, config, code) == 0
    assert outbox(moto_endpoint, CHANGE_ID) == []
