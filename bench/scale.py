"""Scale: one fan-out to N customers with the worker as 1 or 4 shard processes, N = 30, 300, 1,000.

The deployed shape: ``changeconsole worker --shard K/S`` processes (S = 1 or 4) serve one provisioned
local stack (moto in its own process), every size on one transport (``--transport``, default
``sqs-direct``: the fan-out sends each trigger to the customer's queue, what ``docs/capacity.md``
prescribes past 100 customers, where S3 allows no more notification configurations per bucket).
With ``sqs-direct`` the workers run in doorbell mode (the config's ``worker_shards`` is S, each shard's
doorbell queue provisioned): they long-poll only queues that were rung.
Per size and shard count, a config of the first N customers is written, the workers start and report
ready (every queue resolved, SQS answering) and deliver a warm-up change to one customer per shard
(not measured), then one ``ChangeService.submit`` to the N customers runs in this process. Done =
every delivery record final.

Reported per customer, apart: end to end (submit start → the last record's ``finished_at``), **our**
CPU (the submit in this process + every worker process, from /proc, between submit start and done)
and the **stand-in's** CPU (the moto process). Our CPU is also split into the rest cost (the workers'
CPU rate at rest, measured for one long-poll cycle before the submit, times the run's wall time: paid
per second of run, so it grows with however long the stand-in takes) and the rest, the delivery work.
The status polling that detects "done" is not counted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

from changeconsole.config import write_config
from changeconsole.models import FINAL_STATES, Config, DeliveryRecord, DeliveryState, Transport
from changeconsole.services.localstack import local_factory
from changeconsole.services.provision import Provisioner
from changeconsole.services.status import StatusStore
from changeconsole.worker import shard_of

from .common import CLK_TCK, BenchResult, CpuSample, MotoProcess, free_port, log
from .fanout import make_change, provision

IDLE_WINDOW = 20.0  # one long poll per queue (the worker's poll_wait)


def proc_cpu(pid: int) -> float:
    """user+system CPU seconds of a live process (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _ready(port: int) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:  # nosec B310
            return bool(resp.status == 200)
    except OSError:
        return False


class Shards:
    """``changeconsole worker --shard K/S`` processes against ``config_path``; logs to ``log_dir``."""

    def __init__(self, endpoint: str, config_path: Path, shards: int, log_dir: Path) -> None:
        self.ports = [free_port() for _ in range(shards)]
        self.procs: list[subprocess.Popen[bytes]] = []
        for k, port in enumerate(self.ports):
            cmd = [sys.executable, "-m", "changeconsole", "worker", "--config", str(config_path)]
            cmd += ["--endpoint-url", endpoint, "--health-port", str(port), "--health-host", "127.0.0.1"]
            cmd += ["--no-emf", "--log-level", "warning", "--metrics-interval", "3600"]
            if shards > 1:
                cmd += ["--shard", f"{k}/{shards}"]
            log_file = (log_dir / f"shard-{k}-of-{shards}.log").open("ab")
            self.procs.append(
                subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log_file, env=dict(os.environ))
            )

    def wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(_ready(p) for p in self.ports):
                return True
            time.sleep(0.5)
        return False

    def cpu(self) -> float:
        return sum(proc_cpu(p.pid) for p in self.procs)

    def threads(self) -> int:
        total = 0
        for p in self.procs:
            try:
                status = Path(f"/proc/{p.pid}/status").read_text()
            except OSError:
                continue
            total += int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:")))
        return total

    def stop(self) -> list[int | None]:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        codes = []
        for p in self.procs:
            try:
                codes.append(p.wait(60))
            except subprocess.TimeoutExpired:
                p.kill()
                codes.append(p.wait(10))
        return codes


def _wait_final(status: StatusStore, change_id: str, n: int, timeout: float) -> list[DeliveryRecord]:
    """The change's delivery records once all ``n`` are final (or what there is at the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        records = status.records(change_id)
        done = len(records) == n and all(r.state in FINAL_STATES for r in records)
        if done or time.monotonic() > deadline:
            return records
        time.sleep(1.0)


def run_one(
    moto: MotoProcess, config: Config, codes: list[str], shards: int, recipients: int, workdir: Path
) -> tuple[dict[str, Any], list[str]]:
    from changeconsole.services.lifecycle import ChangeService

    problems: list[str] = []
    raw = config.to_json_dict()
    raw["customer_mappings"] = {c: raw["customer_mappings"][c] for c in codes}
    raw["worker_shards"] = shards  # the shards' doorbell queues (sqs-direct)
    path = workdir / f"config-{len(codes)}.json"
    write_config(raw, path)
    sub = Config.model_validate(raw)
    Provisioner(local_factory(moto.endpoint, max_attempts=3), sub).doorbells()
    workers = Shards(moto.endpoint, path, shards, workdir)
    aws = local_factory(moto.endpoint, max_attempts=3)
    status = StatusStore(aws, sub)
    try:
        if not workers.wait_ready(120 + len(codes) / 5):
            problems.append("workers not ready in time")
        service = ChangeService(local_factory(moto.endpoint), sub, operator="bench")
        # Warm-up, not measured: a long-running worker has loaded its clients' models already.
        firsts = {shard_of(c, shards): c for c in reversed(codes)}
        warm = service.submit(make_change(sorted(firsts.values())))
        _wait_final(status, warm.change.change_id, len(firsts), 120)
        threads = workers.threads()
        # The rest cost: every worker at rest for one long-poll cycle (each queue receives once).
        idle_cpu0, idle_t0 = workers.cpu(), time.perf_counter()
        time.sleep(IDLE_WINDOW)
        idle_rate = (workers.cpu() - idle_cpu0) / (time.perf_counter() - idle_t0)
        start = CpuSample.now(moto)
        workers_cpu0 = workers.cpu()
        started = datetime.now().astimezone()
        result = service.submit(make_change(codes))
        submit_cpu = CpuSample.now(moto).ours - start.ours
        submitted = time.perf_counter() - start.wall
        records = _wait_final(status, result.change.change_id, len(codes), max(180.0, 3.0 * len(codes)))
        end = CpuSample.now(moto)
        workers_cpu = workers.cpu() - workers_cpu0
        rest = idle_rate * (end.wall - start.wall)
    finally:
        exit_codes = workers.stop()
    if any(exit_codes):
        problems.append(f"worker exit codes {exit_codes}")
    if not result.ok:
        problems.append(f"fan-out failed for {result.failed}")
    states = Counter(r.state.value for r in records)
    bad = [r for r in records if r.state is not DeliveryState.SENT or r.recipients_sent != recipients]
    if bad or len(records) != len(codes):
        problems.append(f"{len(bad)} of {len(codes)} records not sent x{recipients} ({dict(states)})")
    finished = [datetime.fromisoformat(r.finished_at) for r in records if r.finished_at]
    e2e = (max(finished) - started).total_seconds() if finished else float("nan")
    n = len(codes)
    ours = submit_cpu + workers_cpu
    server = end.server - start.server
    row = {
        "customers": n,
        "shards": shards,
        "transport": sub.transport,
        "sent": states.get("sent", 0),
        "e2e_s": e2e,
        "s_per_customer": e2e / n,
        "ours_cpu_ms_per_customer": 1000 * ours / n,
        "submit_cpu_ms_per_customer": 1000 * submit_cpu / n,
        "worker_cpu_ms_per_customer": 1000 * workers_cpu / n,
        "server_cpu_ms_per_customer": 1000 * server / n,
        "worker_idle_cpu_pct": 100 * idle_rate,
        "rest_cpu_ms_per_customer": 1000 * rest / n,
        "ours_less_rest_ms_per_customer": 1000 * (ours - rest) / n,
        "submit_returned_s": submitted,
        "worker_threads": threads,
        "ours_cpu_s": ours,
        "server_cpu_s": server,
    }
    return row, problems


def run(
    *,
    sizes: list[int],
    recipients: int = 5,
    shard_counts: list[int] | None = None,
    transport: Transport = "sqs-direct",
    save: Any = None,
    **_: Any,
) -> BenchResult:
    result = BenchResult("scale", columns=COLUMNS)
    sizes = sorted(set(sizes))
    with tempfile.TemporaryDirectory() as tmp, MotoProcess() as moto:
        workdir = Path(tmp)
        config = provision(moto.endpoint, max(sizes), recipients, workdir, transport)
        all_codes = sorted(config.customer_mappings)
        for shards in shard_counts or [1, 4]:
            for n in sizes:
                log(f"scale: {n} customers, {shards} shard(s), {transport}")
                row, problems = run_one(moto, config, all_codes[:n], shards, recipients, workdir)
                result.rows.append(row)
                result.notes += [f"n={n} shards={shards}: {p}" for p in problems]
                shown = {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}
                log(f"scale: {json.dumps(shown)}")
                if save is not None:
                    save(result)
        base = {r["shards"]: r for r in result.rows if r["customers"] == sizes[0]}
        for row in result.rows:
            first = base[row["shards"]]
            row["ours_cpu_growth"] = row["ours_cpu_ms_per_customer"] / first["ours_cpu_ms_per_customer"]
            row["ours_less_rest_growth"] = (
                row["ours_less_rest_ms_per_customer"] / first["ours_less_rest_ms_per_customer"]
            )
            row["server_cpu_growth"] = row["server_cpu_ms_per_customer"] / first["server_cpu_ms_per_customer"]
            row["time_growth"] = row["s_per_customer"] / first["s_per_customer"]
    result.notes.append(
        f"transport {transport} for every row (docs/capacity.md: sqs-direct past 100 customers); "
        "growth columns: per-customer value ÷ the same at the smallest size with the same shard count; "
        "ours = the submit (this process) + every worker process; server = the moto process; "
        f"rest = the workers' CPU rate at rest (measured for {IDLE_WINDOW:.0f} s before the submit: idle "
        "long polls, housekeeping) x the run's wall time, an upper bound (queues busy delivering do not "
        "long-poll); ours less rest = the delivery work"
    )
    return result


COLUMNS = [
    "customers",
    "shards",
    "sent",
    "e2e_s",
    "s_per_customer",
    "ours_cpu_ms_per_customer",
    "worker_cpu_ms_per_customer",
    "submit_cpu_ms_per_customer",
    "server_cpu_ms_per_customer",
    "rest_cpu_ms_per_customer",
    "ours_less_rest_ms_per_customer",
    "ours_cpu_growth",
    "ours_less_rest_growth",
    "server_cpu_growth",
    "time_growth",
    "worker_threads",
]
