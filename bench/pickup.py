"""Pickup latency with one worker serving 300 idle customer queues (bar: p95 <= 1 s).

The worker runs in this process (``start_background``; moto in its own process). Each probe submits a
change to one random customer and measures the trigger's start (S3 PUT with ``s3-events``, SQS
SendMessage with ``sqs-direct``, where the worker is in doorbell mode: the ring wakes the customer's
poller) → the worker's ReceiveMessage returning that message; the probe waits for the delivery to be
acknowledged and a random 0-0.5 s more, so the queues are idle again when the next probe starts.
"""

from __future__ import annotations

import random
import tempfile
import threading
from pathlib import Path
from typing import Any

from changeconsole.models import Transport

from .common import (
    BenchResult,
    Call,
    CallRecorder,
    CpuSample,
    MotoProcess,
    log,
    percentile,
    recording_factory,
)
from .fanout import make_change, provision, worker_factories

TRIGGERS = ("PutObject", "SendMessage")  # s3-events, sqs-direct


def run(*, queues: int = 300, probes: int = 60, transport: Transport = "sqs-direct", **_: Any) -> BenchResult:
    from changeconsole.services.lifecycle import ChangeService
    from changeconsole.worker import WorkerOptions, start_background

    result = BenchResult("pickup")
    rng = random.Random(300)
    with tempfile.TemporaryDirectory() as tmp, MotoProcess() as moto:
        config = provision(moto.endpoint, queues, 1, Path(tmp), transport)
        codes = sorted(config.customer_mappings)
        recorder = CallRecorder({config.customer(c).queue_name: c for c in codes})
        worker_aws = recording_factory(moto.endpoint, recorder, "worker")
        submit_aws = recording_factory(moto.endpoint, recorder, "submit")
        service = ChangeService(submit_aws, config, operator="bench")
        polled: set[str] = set()
        warm = threading.Event()

        def on_poll(call: Call) -> None:
            if call.op == "ReceiveMessage" and call.customer:
                polled.add(call.customer)
                if len(polled) >= len(codes):
                    warm.set()

        recorder.listen(on_poll)
        options = WorkerOptions(health_port=0, emit_emf=False, metrics_interval=3600)
        with worker_factories(recorder):
            handle = start_background(worker_aws, config, options=options)
        latencies: list[float] = []
        missed = 0
        try:
            # Every queue has been long-polled once (each poll returns after its wait), or in doorbell
            # mode checked once and left cold: steady state.
            if handle.worker.doorbell_on:
                slots = handle.worker.slots.values()
                while not all(s.primed for s in slots) and not warm.wait(0.2):
                    pass
            else:
                warm.wait(120)
            recorder.unlisten(on_poll)
            log(f"pickup: {len(polled)}/{len(codes)} queues polled; {probes} probes; {transport}")
            start = CpuSample.now(moto)
            for _ in range(probes):
                code = rng.choice(codes)
                got = threading.Event()
                done = threading.Event()
                seen: dict[str, float] = {}

                def watch(
                    call: Call,
                    code: str = code,
                    seen: dict[str, float] = seen,
                    got: threading.Event = got,
                    done: threading.Event = done,
                ) -> None:
                    if call.customer != code:
                        return
                    if call.role == "submit" and call.op in TRIGGERS and "put" not in seen:
                        seen["put"] = call.t - call.seconds
                    elif call.role == "worker" and call.op == "ReceiveMessage" and call.messages:
                        seen.setdefault("received", call.t)
                        got.set()
                    elif call.role == "worker" and call.op in ("DeleteMessage", "DeleteMessageBatch"):
                        done.set()

                recorder.listen(watch)
                service.submit(make_change([code]))
                ok = got.wait(60) and done.wait(60)
                recorder.unlisten(watch)
                if ok and "put" in seen:
                    latencies.append(seen["received"] - seen["put"])
                else:
                    missed += 1
                threading.Event().wait(rng.uniform(0, 0.5))
            cpu = CpuSample.now(moto).since(start)
            stats = handle.stats
        finally:
            handle.stop(timeout=30)
    idle_polls = sum(1 for c in recorder.calls if c.op == "ReceiveMessage" and not c.messages)
    result.rows.append(
        {
            "queues": queues,
            "transport": transport,
            "doorbell": stats.get("rings", 0) > 0,
            "probes": len(latencies),
            "missed": missed,
            "p50_s": percentile(latencies, 0.5),
            "p95_s": percentile(latencies, 0.95),
            "max_s": max(latencies) if latencies else float("nan"),
            "bar_p95_le_1s": "met" if latencies and percentile(latencies, 0.95) <= 1.0 else "NOT met",
            "worker_threads": stats.get("threads"),
            "ours_cpu_pct": 100 * cpu["ours_cpu_s"] / cpu["wall_s"],
            "server_cpu_pct": 100 * cpu["server_cpu_s"] / cpu["wall_s"],
            "idle_polls_per_s": idle_polls / max(1e-9, cpu["wall_s"]),
        }
    )
    result.notes.append(f"worker stats at the end: {stats}")
    result.notes.append(
        "latency = the trigger's PUT (s3-events) or SendMessage (sqs-direct) start → ReceiveMessage "
        "returned it; ours_cpu_pct includes the probes' own "
        "submits; worker_threads = the worker's own count (pollers, delivery and send pools)"
    )
    return result
