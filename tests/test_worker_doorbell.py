"""Doorbell mode (transport ``sqs-direct``): the fan-out rings the shard's doorbell queue, the worker
long-polls only the queues that were rung (or that SQS counts messages in), and a ring that never
comes is made up for by the sweep or by the start-up depth check.

Receives are counted per queue with botocore hooks on the worker's own clients (its threads are
named ``cc-*``).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from typing import Any

import pytest

from changeconsole.models import Config
from changeconsole.services.doorbell import Doorbell
from changeconsole.services.lifecycle import ChangeService
from changeconsole.services.localstack import local_factory
from changeconsole.services.outbox import read_outbox
from changeconsole.services.provision import provision
from changeconsole.services.status import StatusStore
from changeconsole.worker import Worker, WorkerOptions
from changeconsole.worker.processor import Outcome, OutcomeKind, Processor, Result
from changeconsole.worker.runtime import PARKED
from support.changes import make_change
from support.iam import Recorder
from support.waiting import wait_until
from support.worker import running_worker


def _config(stack: Any, **doorbell: Any) -> Config:
    config: Config = stack.config
    return config.model_copy(update={"doorbell": config.doorbell.model_copy(update=doorbell)})


def _worker_calls(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorder = Recorder(lambda: "worker" if threading.current_thread().name.startswith("cc-") else None)
    recorder.install(monkeypatch)
    return recorder


def _received_from(recorder: Recorder) -> set[str]:
    return {c.params["QueueUrl"] for c in recorder.calls if c.operation == "ReceiveMessage"}


def _sent(config: Config, aws: Any, change_id: str, code: str) -> bool:
    recs = [r for r in StatusStore(aws, config).records(change_id) if r.customer == code]
    return bool(recs) and all(r.state.value == "sent" for r in recs)


def _primed(handle: Any) -> bool:
    return all(s.primed for s in handle.worker.slots.values())


@pytest.mark.timeout(120)
def test_rung_queue_is_delivered_and_idle_queues_are_never_received_from(
    make_stack: Any, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = make_stack(customers=4, contacts=2, transport="sqs-direct")
    config = stack.config
    assert config.doorbell_queues() == ["changeconsole-doorbell-0-of-1"]
    recorder = _worker_calls(monkeypatch)
    aws = local_factory(moto_endpoint, max_attempts=1)
    svc = ChangeService(aws, config, operator="alice")
    a, *idle = sorted(config.customer_mappings)
    urls = {c: svc.fanout.queue_url(c) for c in config.customer_mappings}
    with running_worker(aws, config) as handle:
        assert handle.worker.doorbell_on
        wait_until(lambda: _primed(handle), 30, what="every queue checked at start")
        assert handle.stats["hot"] == 0
        result = svc.submit(make_change([a]))
        assert result.ok
        wait_until(
            lambda: _sent(config, aws, result.change.change_id, a), 30, what="delivery to the rung queue"
        )
        assert handle.stats["rings"] >= 1
        wait_until(lambda: handle.stats["hot"] == 0, 30, what="the delivered queue cools again")
        # Every poller parks on its cold queue (no timed wake-ups) and the worker stays healthy.
        wait_until(
            lambda: all(b == PARKED for b in handle.worker._poller_beats), 30, what="every poller parked"
        )
        ok, detail = handle.worker.health()
        assert ok and detail["oldest_poll_age_s"] < 30
    received = _received_from(recorder)
    assert urls[a] in received
    assert not received & {urls[c] for c in idle}, "idle queues must not be long-polled"
    depth_checked = {c.params["QueueUrl"] for c in recorder.calls if c.operation == "GetQueueAttributes"}
    assert {urls[c] for c in config.customer_mappings} <= depth_checked  # once at start, each


@pytest.mark.timeout(120)
def test_a_lost_ring_is_made_up_for_by_the_sweep(
    make_stack: Any, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = make_stack(customers=3, contacts=2, transport="sqs-direct")
    config = _config(stack, sweep_seconds=1)
    aws = local_factory(moto_endpoint, max_attempts=1)
    svc = ChangeService(aws, config, operator="alice")
    code = sorted(config.customer_mappings)[1]
    with running_worker(aws, config) as handle:
        wait_until(lambda: _primed(handle), 30, what="every queue checked at start")
        monkeypatch.setattr(Doorbell, "_send", lambda *_a, **_k: None)  # every ring is lost
        result = svc.submit(make_change([code]))
        assert result.ok
        wait_until(lambda: _sent(config, aws, result.change.change_id, code), 30, what="the sweep's delivery")
        assert handle.stats["rings"] == 0
        assert handle.stats["swept"] >= 1


@pytest.mark.timeout(120)
def test_a_message_held_by_a_dead_worker_heats_its_queue_at_start_and_is_delivered_once(
    make_stack: Any, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = make_stack(customers=3, contacts=2, transport="sqs-direct")
    config = _config(stack, sweep_seconds=3600)  # only the start-up check can find it
    aws = local_factory(moto_endpoint, max_attempts=1)
    svc = ChangeService(aws, config, operator="alice")
    code = sorted(config.customer_mappings)[2]
    monkeypatch.setattr(Doorbell, "_send", lambda *_a, **_k: None)  # no ring
    result = svc.submit(make_change([code]))
    assert result.ok
    sqs = aws.client("sqs")
    url = svc.fanout.queue_url(code)
    held = sqs.receive_message(QueueUrl=url, VisibilityTimeout=3, WaitTimeSeconds=1)["Messages"]
    assert len(held) == 1  # a worker took it and died: invisible for 3 s
    with running_worker(aws, config) as handle:
        wait_until(lambda: _sent(config, aws, result.change.change_id, code), 40, what="the delivery")
        stats = handle.stats
    assert (stats["rings"], stats["swept"]) == (0, 0)
    # received a second time: replaced by a fresh copy (crash rotation), which is delivered
    assert (stats["received"], stats["results"].get("rotated")) == (2, 1)
    [rec] = StatusStore(aws, config).records(result.change.change_id)
    mails = read_outbox(moto_endpoint, customer=code, change_id=result.change.change_id)
    recipients = [a for m in mails for a in m.to]
    assert rec.recipients_sent >= 1 and len(recipients) == len(set(recipients)) == rec.recipients_sent


@pytest.mark.timeout(120)
def test_a_retry_copy_rings_with_its_delay(
    make_stack: Any, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = make_stack(customers=2, contacts=1, transport="sqs-direct")
    config = stack.config
    recorder = _worker_calls(monkeypatch)
    aws = local_factory(moto_endpoint, max_attempts=1)
    svc = ChangeService(aws, config, operator="alice")
    code = sorted(config.customer_mappings)[0]
    process = Processor.process
    failed: list[str] = []

    def fail_once(self: Processor, m: Any) -> Outcome:
        if not failed:
            failed.append(m.message_id)
            return Outcome(OutcomeKind.RETRY, Result.ERROR, "test", delay=2)
        return process(self, m)

    monkeypatch.setattr(Processor, "process", fail_once)
    with running_worker(aws, config) as handle:
        wait_until(lambda: _primed(handle), 30, what="every queue checked at start")
        result = svc.submit(make_change([code]))
        wait_until(
            lambda: _sent(config, aws, result.change.change_id, code), 40, what="delivery after a retry"
        )
        bell = Doorbell(aws, config).queue_url(0)
    rings = [
        e
        for c in recorder.calls
        if c.operation == "SendMessageBatch" and c.params["QueueUrl"] == bell
        for e in c.params["Entries"]
    ]
    assert failed and [e["DelaySeconds"] for e in rings] == [2]


def test_doorbell_is_off_with_its_reason_when_the_shard_count_differs(
    make_stack: Any, moto_endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    stack = make_stack(customers=2, contacts=1, transport="sqs-direct")
    config = stack.config
    aws = local_factory(moto_endpoint, max_attempts=1)
    provision(aws, config.model_copy(update={"worker_shards": 2}))  # the 2-shard doorbells exist too
    on = Worker(aws, config.model_copy(update={"worker_shards": 2}), WorkerOptions(shard=(1, 2)))
    assert on.doorbell_on and not any(s.hot for s in on.slots.values())
    caplog.set_level(logging.INFO, logger="changeconsole.worker")
    worker = Worker(aws, config, WorkerOptions(shard=(0, 2), poll_wait=1, metrics_interval=3600)).start()
    try:
        assert not worker.doorbell_on and all(s.hot for s in worker.slots.values())
    finally:
        worker.stop(2)
    off = [r for r in caplog.records if r.getMessage() == "doorbell.off"]
    assert len(off) == 1
    assert "worker_shards 1" in off[0].cc["reason"]  # type: ignore[attr-defined]
    for options, reason in (
        (WorkerOptions(drain=True), "--drain"),
        (WorkerOptions(customers=[sorted(config.customer_mappings)[0]]), "--customers"),
    ):
        assert reason in (Worker(aws, config, options).doorbell_off or "")


@pytest.mark.timeout(120)
def test_the_sweep_leaves_a_queue_alone_for_a_period_after_sqs_told_its_depth(
    make_stack: Any, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The sweep checks a queue's depth no sooner than its jittered period (90-100 % of sweep_seconds)
    # after the queue's last depth check of any kind (at start, on cooling, by the sweep).
    period = 2.0
    stack = make_stack(customers=3, contacts=2, transport="sqs-direct")
    config = _config(stack, sweep_seconds=period)
    checks: dict[str, list[tuple[float, bool]]] = {}  # (when, made by the sweep)
    lock = threading.Lock()
    original = Worker._queue_depth

    def timed(self: Worker, slot: Any) -> int:
        depth = original(self, slot)
        with lock:
            by_sweep = threading.current_thread().name == "cc-doorbell-sweep"
            checks.setdefault(slot.code, []).append((time.monotonic(), by_sweep))
        return depth

    monkeypatch.setattr(Worker, "_queue_depth", timed)
    aws = local_factory(moto_endpoint, max_attempts=1)
    svc = ChangeService(aws, config, operator="alice")
    a = sorted(config.customer_mappings)[0]
    with running_worker(aws, config) as handle:
        wait_until(lambda: _primed(handle), 30, what="every queue checked at start")
        result = svc.submit(make_change([a]))
        wait_until(lambda: _sent(config, aws, result.change.change_id, a), 30, what="the delivery")
        wait_until(lambda: handle.stats["hot"] == 0, 30, what="the delivered queue cools again")
        wait_until(
            lambda: all(sum(s for _, s in checks.get(c, ())) >= 2 for c in config.customer_mappings),
            30,
            what="two sweep checks of every queue",
        )
    with lock:
        seen = {code: list(times) for code, times in checks.items()}
    for code, times in seen.items():
        gaps = [b - a for (a, _), (b, sweep) in itertools.pairwise(times) if sweep]
        assert gaps and min(gaps) >= 0.9 * period - 0.05, (code, gaps)
