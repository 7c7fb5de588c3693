"""The crash budget counts workers that died holding a delivery, not SQS receives.

SQS also counts receives nobody saw: a SIGKILLed worker's long polls stay open on the server and take
the messages that arrive. Such receives rotate the message (a fresh copy, so SQS's maxReceiveCount never
moves it) and have their own generous budget (``max_receives_without_outcome``); a crash is a take-over
of the delivery's ledger claim from a worker whose lease ran out (``Ledger.claim``), and a delivery taken
over ``max_crash_count`` times is dead-lettered as ``worker_crashes``.

The workers run as shipped (``changeconsole worker``) behind a test proxy to moto (``support.proxy``),
which shows their long polls under way and can hold their SES calls: a worker whose first SES call
(listing the customer's contacts, right after its claim) is held is killed while it holds the claim.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from changeconsole.models import TOPIC_APPROVAL, DeliveryState, EmailEvent
from changeconsole.services.aws import AwsFactory
from changeconsole.services.ledger import ClaimState, Ledger
from changeconsole.services.status import DeliveryKey
from support.aws import attrs, dlq_messages, queue_depth, queue_url, visible
from support.changes import CHANGE_ID, change_doc
from support.events import with_events
from support.mail import email_keys, outbox, subscribed
from support.proxy import Proxy, proxy
from support.waiting import wait_until
from support.worker import WorkerProcess, put_trigger, record, running_worker

CONTACTS = 3
KEY = DeliveryKey("CHG-2026-03-01T10-00-00-trn123", 1, EmailEvent.SUBMITTED, "acme")


def test_the_ledger_counts_take_overs_of_a_claim_whose_holder_died(
    make_stack: Any, aws_factory: AwsFactory
) -> None:
    config = make_stack(customers=1, contacts=0).config
    dead = Ledger(aws_factory, config, claim_lease=-1.0)  # each claim's lease has run out: its holder died
    live = Ledger(aws_factory, config)
    calls: list[str] = []
    ddb = aws_factory.client("dynamodb")
    ddb.meta.events.register("before-call.dynamodb.*", lambda model, **_: calls.append(model.name))

    first = dead.claim(KEY, "w1")
    assert first.acquired and first.takeovers == 0
    assert calls == ["PutItem"]  # a first claim makes one call
    assert [dead.claim(KEY, f"w{i}").takeovers for i in (2, 3)] == [1, 2]
    claim = live.get_claim(KEY)
    assert claim is not None and (claim.owner, claim.takeovers) == ("w3", 2)
    # A release is no death: the next claim carries the count without adding to it.
    assert live.finish_claim(KEY, "w3", done=False)
    assert live.claim(KEY, "w4").takeovers == 2
    # A busy claim (lease still valid) is no take-over either.
    assert not live.claim(KEY, "w5").acquired
    assert live.get_claim(KEY).takeovers == 2  # type: ignore[union-attr]
    # ``forget`` (a dead letter for them) drops the count: a redrive starts with a full budget.
    assert live.finish_claim(KEY, "w4", done=False, forget=True)
    got = live.get_claim(KEY)
    assert got is not None and got.state is ClaimState.RELEASED and got.takeovers == 0
    assert dead.claim(KEY, "w6").takeovers == 0
    # Settled: the count goes too.
    assert dead.claim(KEY, "w7").takeovers == 1
    assert live.finish_claim(KEY, "w7", done=True, result="sent")
    assert live.get_claim(KEY).takeovers == 0  # type: ignore[union-attr]


def _kill_at_poll(worker: WorkerProcess, p: Proxy, queues: list[str]) -> None:
    """Start ``worker``, SIGKILL it once it has a long poll under way on each of ``queues`` (not only
    some other queue's, such as the events queue's): they stay open."""
    before = {q: p.polls_by_queue[q] for q in queues}
    worker.start()
    wait_until(
        lambda: all(p.polls_by_queue[q] > n for q, n in before.items()),
        60,
        "the worker's long polls on every customer queue",
        interval=0.01,
    )
    worker.kill()


@pytest.mark.timeout(300)
def test_kills_while_long_polls_are_pending_dead_letter_no_healthy_trigger(
    make_stack: Any, aws_factory: AwsFactory, moto_endpoint: str, tmp_path: Path
) -> None:
    stack = make_stack(customers=3, contacts=CONTACTS)
    config = with_events(stack.config, stack.config_path, top={"max_crash_count": 2})
    codes = sorted(config.customer_mappings)
    sqs = aws_factory.client("sqs")
    for code in codes:  # the set-up's s3:TestEvent
        sqs.purge_queue(QueueUrl=queue_url(aws_factory, config, code))
    rounds = config.max_crash_count + 1
    with proxy(moto_endpoint) as p:
        args = ("--poll-wait", "20", "--visibility-timeout", "10")
        worker = WorkerProcess(stack.config_path, p.endpoint, *args, log_path=tmp_path / "w.log")
        try:
            for r in range(rounds):
                _kill_at_poll(worker, p, [config.customer(c).queue_name for c in codes])
                taken = p.taken
                if r == 0:  # the triggers arrive while only dead polls wait on the queues
                    for code in codes:
                        put_trigger(aws_factory, config, change_doc(codes), code)
                # A dead poll takes each (again, once it is visible again): a receive nobody saw.
                wait_until(lambda t=taken: p.taken >= t + len(codes), 60, "dead polls taking the triggers")
            worker.start()
            wait_until(
                lambda: all(
                    (rec := record(aws_factory, config, code)) is not None and rec.state is DeliveryState.SENT
                    for code in codes
                ),
                90,
                "every delivery sent",
            )
            wait_until(lambda: not any(queue_depth(aws_factory, config, c) for c in codes), 30, "empty")
            assert worker.terminate() == 0
        finally:
            worker.kill()

    for code in codes:
        assert dlq_messages(aws_factory, config, code) == []
    counts = email_keys(outbox(moto_endpoint, CHANGE_ID))
    assert set(counts.values()) == {1}, counts
    want = {(code, to) for code in codes for to in subscribed(code, CONTACTS, TOPIC_APPROVAL)}
    assert {(customer, to) for (_c, _v, _e, customer, to) in counts} == want
    # SQS counted more receives of each trigger than max_crash_count (counting them as crashes would
    # have dead-lettered them): carried by their fresh copies instead.
    rotated = [e for e in worker.events() if e.get("msg") == "message.requeued" and e.get("unfinished")]
    assert max((e["unfinished"] for e in rotated), default=0) >= config.max_crash_count, rotated
    assert not [e for e in worker.events() if e.get("reason") == "worker_crashes"]


@pytest.mark.timeout(240)
def test_a_trigger_that_kills_every_worker_holding_it_is_dead_lettered_after_max_crash_count_take_overs(
    make_stack: Any, aws_factory: AwsFactory, moto_endpoint: str, tmp_path: Path
) -> None:
    stack = make_stack(customers=1, contacts=CONTACTS)
    config = with_events(stack.config, stack.config_path, top={"max_crash_count": 3})
    code = sorted(config.customer_mappings)[0]
    aws_factory.client("sqs").purge_queue(QueueUrl=queue_url(aws_factory, config, code))
    put_trigger(aws_factory, config, change_doc([code]), code)
    queue = config.customer(code).queue_name

    def dead_lettered() -> bool:
        return queue_depth(aws_factory, config, code, dlq=True) > 0

    kills = 0
    # Every worker's first SES call is held: it dies after its claim, before it sends anything.
    with proxy(moto_endpoint, hold_service="ses") as p:
        worker = WorkerProcess(stack.config_path, p.endpoint, log_path=tmp_path / "w.log")
        try:
            while True:
                wait_until(lambda: visible(aws_factory, queue) == 1 or dead_lettered(), 60, "trigger free")
                if dead_lettered():
                    break
                held, started = p.held, sum('"delivery.started"' in line for line in worker.lines)
                worker.start()
                wait_until(lambda h=held: p.held > h or dead_lettered(), 60, "the worker holding the claim")
                if dead_lettered():
                    break
                assert sum('"delivery.started"' in line for line in worker.lines) == started + 1
                worker.kill()
                kills += 1
                assert kills <= config.max_crash_count, "still not dead-lettered"
            wait_until(lambda: queue_depth(aws_factory, config, code) == 0, 30, "the queue empty")
            assert worker.terminate() == 0
        finally:
            worker.kill()

    assert kills == config.max_crash_count
    dead = [attrs(m) for m in dlq_messages(aws_factory, config, code)]
    assert len(dead) == 1, dead
    assert dead[0]["cc-reason"] == "worker_crashes"
    assert f"{kills} take-overs of a worker that died holding it" in dead[0]["cc-detail"]
    assert "cc-crashes" not in dead[0]  # a redrive starts with a full budget
    rec = record(aws_factory, config, code)
    assert rec is not None and rec.state is DeliveryState.DEAD_LETTERED
    assert "worker_crashes" in (rec.last_error or "")
    key = DeliveryKey(CHANGE_ID, rec.version, rec.event, code)
    claim = Ledger(aws_factory, config).get_claim(key)
    assert claim is not None and claim.state is ClaimState.RELEASED and claim.takeovers == 0
    assert outbox(moto_endpoint, CHANGE_ID) == []


def test_a_trigger_received_max_receives_without_outcome_times_is_dead_lettered_before_its_claim(
    make_stack: Any, aws_factory: AwsFactory, moto_endpoint: str
) -> None:
    stack = make_stack(customers=1, contacts=CONTACTS)
    config = stack.config.model_copy(update={"max_receives_without_outcome": 3})
    code = sorted(config.customer_mappings)[0]
    sqs, url = aws_factory.client("sqs"), queue_url(aws_factory, config, code)
    sqs.purge_queue(QueueUrl=url)
    put_trigger(aws_factory, config, change_doc([code]), code)
    # The trigger as a copy that carries its receives so far (``cc-crashes``): one more is the last.
    got = wait_until(lambda: sqs.receive_message(QueueUrl=url).get("Messages"), 30, "the trigger")
    sqs.send_message(
        QueueUrl=url,
        MessageBody=got[0]["Body"],
        MessageAttributes={"cc-crashes": {"DataType": "String", "StringValue": "3"}},
    )
    sqs.delete_message(QueueUrl=url, ReceiptHandle=got[0]["ReceiptHandle"])
    with running_worker(aws_factory, config):
        wait_until(lambda: queue_depth(aws_factory, config, code, dlq=True) == 1, 30, "dead-lettered")
    dead = [attrs(m) for m in dlq_messages(aws_factory, config, code)]
    assert [d["cc-reason"] for d in dead] == ["receives_exhausted"]
    assert "max_receives_without_outcome 3" in dead[0]["cc-detail"]
    key = DeliveryKey(CHANGE_ID, 2, EmailEvent.SUBMITTED, code)
    assert Ledger(aws_factory, config).get_claim(key) is None  # dead-lettered before any claim
    rec = record(aws_factory, config, code)
    assert rec is not None and rec.state is DeliveryState.DEAD_LETTERED
    assert outbox(moto_endpoint, CHANGE_ID) == []
