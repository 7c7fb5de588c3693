"""One worker process serves 300 idle customer queues with bounded threads and picks every probe up.

Pickup latency is printed here and measured in ``bench pickup`` (timing is not asserted in tests).

moto runs in its own process here, so the worker's threads do not compete with the server for the GIL.
Probes are S3 test events sent one at a time to random queues; pickup is the time from SQS's
``SentTimestamp`` to the worker's receive.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from changeconsole.models import Config
from changeconsole.services.localstack import build_local_config, is_listening, local_factory
from changeconsole.services.provision import provision
from changeconsole.worker import WorkerOptions, start_background
from support.aws import free_port
from support.waiting import wait_until

QUEUES = int(os.environ.get("CHANGECONSOLE_PICKUP_QUEUES", "300"))
PROBES = 40


@pytest.fixture(scope="module")
def moto_process() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: is_listening("127.0.0.1", port), 30, interval=0.1, what="moto server")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.timeout(300)
def test_one_process_long_polls_300_idle_queues_with_bounded_threads(moto_process: str) -> None:
    raw = build_local_config(QUEUES, endpoint=moto_process)
    raw["transport"] = "sqs-direct"  # no bucket notifications: the probes are the only messages
    raw["doorbell"] = {"enabled": False}  # every queue long-polled (tests/test_worker_doorbell.py: rung)
    config = Config.model_validate(raw)
    aws = local_factory(moto_process, max_attempts=3)
    provision(aws, config, threads=32)
    codes = sorted(config.customer_mappings)
    before = threading.active_count()
    opts = WorkerOptions(poll_wait=20, concurrency=16, metrics_interval=3600, audit_interval=3600)
    handle = start_background(aws, config, options=opts)
    try:
        wait_until(lambda: handle.worker.readiness()[0], 60, what="every queue resolved and polled")
        threads = threading.active_count() - before
        sqs = aws.client("sqs")
        urls = {c: sqs.get_queue_url(QueueName=config.customer(c).queue_name)["QueueUrl"] for c in codes}
        rng = random.Random(4)
        for i in range(PROBES):
            code = rng.choice(codes)
            sqs.send_message(
                QueueUrl=urls[code], MessageBody=json.dumps({"Event": "s3:TestEvent", "probe": i})
            )
            wait_until(lambda i=i: handle.stats["ignored"] > i, 10, interval=0.005, what=f"probe {i}")
        stats = handle.stats
    finally:
        handle.stop(timeout=2)
    lat = sorted(handle.worker.stats_data.pickup)
    assert len(lat) == PROBES
    p95 = lat[int(0.95 * (len(lat) - 1))]
    print(
        f"{QUEUES} queues: pickup p50 {lat[len(lat) // 2]:.3f}s p95 {p95:.3f}s max {lat[-1]:.3f}s; "
        f"worker threads {threads} (pollers {stats['pollers']})"
    )
    # Bounded: one poller per queue (capped by max_pollers), the delivery pool, two background threads.
    assert stats["pollers"] == min(QUEUES, opts.max_pollers)
    assert threads <= stats["pollers"] + opts.concurrency + 4
