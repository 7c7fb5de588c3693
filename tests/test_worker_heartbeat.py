"""The visibility heartbeat: a message running on a delivery thread is extended to the visibility
timeout, one still waiting here for a thread to the longer ``waiting_visibility``, so a backlog held
here costs fewer extensions."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from changeconsole.services.lifecycle import ChangeService
from changeconsole.services.localstack import local_factory
from changeconsole.services.status import StatusStore
from changeconsole.worker import WorkerOptions
from changeconsole.worker.processor import Processor
from support.changes import make_change
from support.iam import Recorder
from support.waiting import wait_until
from support.worker import running_worker


def test_waiting_visibility_defaults_to_five_times_the_visibility_capped_at_fifteen_minutes() -> None:
    assert WorkerOptions(visibility_timeout=120).waiting_visibility == 600
    assert WorkerOptions(visibility_timeout=300).waiting_visibility == 900
    assert WorkerOptions(visibility_timeout=4).waiting_visibility == 20
    assert WorkerOptions(visibility_timeout=120, waiting_visibility_timeout=60).waiting_visibility == 120
    assert WorkerOptions(visibility_timeout=120, waiting_visibility_timeout=1800).waiting_visibility == 1800


@pytest.mark.timeout(120)
def test_a_waiting_message_is_extended_longer_than_a_running_one_and_both_are_delivered_once(
    make_stack: Any, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = make_stack(customers=2, contacts=2, transport="sqs-direct")  # no S3 test events
    config = stack.config
    recorder = Recorder(lambda: "worker" if threading.current_thread().name.startswith("cc-") else None)
    recorder.install(monkeypatch)
    release = threading.Event()
    running: list[str] = []
    original = Processor.process

    def held_first(self: Processor, m: Any) -> Any:
        if not running:
            running.append(m.queue_url)
            release.wait(60)  # the only delivery thread is busy: the other message waits
        return original(self, m)

    monkeypatch.setattr(Processor, "process", held_first)
    aws = local_factory(moto_endpoint, max_attempts=1)
    svc = ChangeService(aws, config, operator="alice")
    codes = sorted(config.customer_mappings)
    opts = {"concurrency": 1, "per_customer": 1, "visibility_timeout": 4, "waiting_visibility_timeout": 40}
    with running_worker(aws, config, **opts) as handle:
        result = svc.submit(make_change(codes))
        assert result.ok

        def extended(seconds: int) -> Any:
            return recorder.wait(
                lambda c: (
                    c.operation == "ChangeMessageVisibilityBatch"
                    and any(e["VisibilityTimeout"] == seconds for e in c.params["Entries"])
                ),
                f"an extension to {seconds} s",
            )

        waiting, busy = extended(40), extended(4)
        assert running and busy.params["QueueUrl"] == running[0]
        assert waiting.params["QueueUrl"] != running[0]
        release.set()
        status = StatusStore(aws, config)
        wait_until(
            lambda: [r.state.value for r in status.records(result.change.change_id)] == ["sent", "sent"],
            60,
            what="both deliveries",
        )
        assert handle.stats["duplicates"] == 0
    sent = [
        (c.customer, tuple(c.params["Destination"]["ToAddresses"]))
        for c in recorder.calls
        if c.operation == "SendEmail"
    ]
    records = status.records(result.change.change_id)
    assert len(sent) == len(set(sent)) == sum(r.recipients_sent for r in records) > 0  # one email each
