"""Sharded workers: --drain means done, the shard supervisor, and a change of N mid-run."""

from __future__ import annotations

from typing import Any

import pytest

from changeconsole.models import TOPIC_APPROVAL, DeliveryState
from changeconsole.services.aws import AwsFactory
from support.aws import queue_url
from support.changes import CHANGE_ID, change_doc
from support.mail import outbox, per_recipient, subscribed
from support.waiting import wait_until
from support.worker import WorkerProcess, final, records, submit


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

