"""Worker throughput: drain a backlog of trigger messages; messages/s and CPU seconds per message.

The backlog (``--messages``, default 300 = 10 changes x 30 customers x 5 recipients each) is queued
with the worker stopped; the clock starts when the worker starts (in this process; moto in its own) and
stops when the last message is acknowledged. The floor replays the same calls per message with plain
boto3 at the same concurrency (bench/floor.py), its uploads done before its clock starts too.
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import Any

from .common import BenchResult, Call, CallRecorder, CpuSample, MotoProcess, log, recording_factory
from .fanout import make_change, profile_of, provision, stage_times, worker_factories
from .floor import Floor

CUSTOMERS = 30


def run(*, messages: int = 300, recipients: int = 5, concurrency: int | None = None, **_: Any) -> BenchResult:
    from changeconsole.services.lifecycle import ChangeService
    from changeconsole.worker import WorkerOptions, start_background

    result = BenchResult("throughput")
    changes = max(1, messages // CUSTOMERS)
    total = changes * CUSTOMERS
    with tempfile.TemporaryDirectory() as tmp, MotoProcess() as moto:
        config = provision(moto.endpoint, CUSTOMERS, recipients, Path(tmp))
        codes = sorted(config.customer_mappings)
        recorder = CallRecorder({config.customer(c).queue_name: c for c in codes})
        service = ChangeService(
            recording_factory(moto.endpoint, recorder, "submit"), config, operator="bench"
        )
        for _ in range(changes):
            assert service.submit(make_change(codes)).ok
        log(f"throughput: {total} messages queued")
        options = WorkerOptions(health_port=0, emit_emf=False, metrics_interval=3600)
        if concurrency:
            options.concurrency = concurrency
        acked = [0]
        done = threading.Event()

        def on_call(call: Call) -> None:
            if (
                call.role == "worker"
                and call.op in ("DeleteMessage", "DeleteMessageBatch")
                and call.status < 300
            ):
                acked[0] += call.messages or 1
                if acked[0] >= total:
                    done.set()

        recorder.clear()
        recorder.listen(on_call)
        worker_aws = recording_factory(moto.endpoint, recorder, "worker")
        start = CpuSample.now(moto)
        with worker_factories(recorder):
            handle = start_background(worker_aws, config, options=options)
        try:
            finished = done.wait(600)
            end = CpuSample.now(moto)
        finally:
            handle.stop(timeout=30)
        ours = end.since(start)
        calls = [c for c in recorder.calls if c.role == "worker"]
        times = stage_times(calls, codes, start.wall)
        profile = profile_of(calls, codes, times)
        profile.upload.clear()
        log(f"throughput: ours {total} in {ours['wall_s']:.1f}s; floor")
        floor = Floor(
            moto.endpoint,
            config,
            profile,
            recipients=recipients,
            upload_threads=16,
            worker_threads=options.concurrency,
            send_parallelism=options.send_parallelism,
        )
        chains = [codes[i % CUSTOMERS] for i in range(total)]
        floor_times, floor_cpu = floor.run_drain(chains, moto)
    row = {
        "messages": total,
        "ours_msgs_per_s": total / ours["wall_s"],
        "floor_msgs_per_s": total / floor_cpu["wall_s"],
        "ratio": ours["wall_s"] / floor_cpu["wall_s"],
        "ours_cpu_ms_per_msg": 1000 * ours["ours_cpu_s"] / total,
        "floor_cpu_ms_per_msg": 1000 * floor_cpu["ours_cpu_s"] / total,
        "cpu_ratio": ours["ours_cpu_s"] / max(1e-9, floor_cpu["ours_cpu_s"]),
        "server_cpu_ms_per_msg": 1000 * ours["server_cpu_s"] / total,
        "floor_server_cpu_ms_per_msg": 1000 * floor_cpu["server_cpu_s"] / total,
        "concurrency": options.concurrency,
        "drained": finished,
        "profile": profile.to_json(),
    }
    result.rows.append(row)
    if floor_times.errors:
        result.notes.append(f"floor errors: {floor_times.errors[:3]}")
    result.notes.append(
        "CPU is per message and per process: ours = this process (the worker's threads and the bench's "
        "hooks), server = the moto process"
    )
    result.columns = [k for k in row if k != "profile"]
    return result
