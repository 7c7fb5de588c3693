"""Polling models side by side: idle cost and pickup latency for 30, 300 and 1,000 queues.

Plain boto3 against moto in its own process (no worker logic), so the numbers are the polling model's
alone. Models:

- ``thread-per-queue``: one thread per queue, 20 s long polls (the worker's model);
- ``pool-short``: 8 threads share the queues, zero-wait receives round-robin, an idle queue backs off
  from 0.05 s to 0.5 s between receives (the cap keeps pickup inside 1 s);
- ``pool-long``: 8 threads share the queues, each long poll ``max(1, 20 * 8 / queues)`` seconds;
- ``shards-4``: four processes, each one thread per queue for a quarter of the queues (our CPU summed);
- ``doorbell``: the sender also rings a doorbell queue with the queue's index; one thread long-polls the
  doorbell (20 s, 10 rings a receive) and hands each ring to 8 threads that receive that queue at once
  (zero wait). Idle queues are never received from (the worker's doorbell mode without its hot state).

Per model and size: ``--idle`` seconds with no traffic (our CPU %, moto CPU %, receives/s), then
``--probes`` messages to random queues, latency = SendMessage returned → ReceiveMessage returned it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3

from .common import BenchResult, MotoProcess, log, percentile

POOL = 8
MODELS = ("thread-per-queue", "pool-short", "pool-long", "shards-4", "doorbell")


def _client(endpoint: str, pool: int) -> Any:
    from botocore.config import Config

    return boto3.client(
        "sqs",
        endpoint_url=endpoint,
        region_name="us-east-1",
        config=Config(max_pool_connections=pool, read_timeout=40, retries={"max_attempts": 1}),
    )


class Poller:
    """Receives from ``urls`` with one model in threads of this process until stopped."""

    def __init__(self, endpoint: str, urls: list[str], model: str, bell: str | None = None) -> None:
        self.urls = urls
        self.model = model
        threads = len(urls) if model == "thread-per-queue" else min(POOL, len(urls))
        self.sqs = _client(endpoint, threads + 4)
        self.stop = threading.Event()
        self.receives = 0
        self.received: dict[str, float] = {}  # message body -> monotonic time received
        self.lock = threading.Lock()
        if model == "doorbell":
            assert bell is not None
            self.pool = ThreadPoolExecutor(POOL)
            self.threads = [threading.Thread(target=self._bell, args=(bell,), daemon=True)]
            return
        groups = [[u] for u in urls] if threads == len(urls) else [urls[i::threads] for i in range(threads)]
        self.threads = [threading.Thread(target=self._loop, args=(g,), daemon=True) for g in groups]

    def start(self) -> Poller:
        for t in self.threads:
            t.start()
        return self

    def _receive(self, url: str, wait: int) -> bool:
        try:
            resp = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=wait)
        except Exception:  # the server stopped under a long poll at the end of a measurement
            self.stop.set()
            return False
        now = time.monotonic()
        msgs = resp.get("Messages") or []
        with self.lock:
            self.receives += 1
            for m in msgs:
                self.received[m["Body"]] = now
        for m in msgs:
            self.sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        return bool(msgs)

    def _bell(self, bell: str) -> None:
        while not self.stop.is_set():
            try:
                resp = self.sqs.receive_message(QueueUrl=bell, MaxNumberOfMessages=10, WaitTimeSeconds=20)
            except Exception:  # the server stopped under the long poll
                return
            rings = resp.get("Messages") or []
            with self.lock:
                self.receives += 1
            for r in rings:
                self.pool.submit(self._receive, self.urls[int(r["Body"])], 0)
            if rings:
                entries = [{"Id": str(i), "ReceiptHandle": r["ReceiptHandle"]} for i, r in enumerate(rings)]
                self.sqs.delete_message_batch(QueueUrl=bell, Entries=entries)

    def _loop(self, group: list[str]) -> None:
        if self.model == "pool-short":
            gap = dict.fromkeys(group, 0.05)
            due = dict.fromkeys(group, 0.0)
            while not self.stop.is_set():
                now = time.monotonic()
                url = min(group, key=due.__getitem__)
                if due[url] > now:
                    self.stop.wait(due[url] - now)
                    continue
                got = self._receive(url, 0)
                gap[url] = 0.05 if got else min(0.5, gap[url] * 2)
                due[url] = time.monotonic() + gap[url]
            return
        wait = 20 if len(group) == 1 else max(1, 20 * POOL // len(self.urls))
        while not self.stop.is_set():
            for url in group:
                if self.stop.is_set():
                    return
                self._receive(url, wait)


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def child(endpoint: str, urls: list[str], warm: float, idle: float, seconds: float) -> None:
    """One shard process: poll ``urls`` for ``seconds``; print its CPU and receives during the idle
    window (``warm`` .. ``warm + idle``) and the received bodies as JSON."""
    poller = Poller(endpoint, urls, "thread-per-queue").start()
    poller.stop.wait(warm)
    cpu0, rec0 = _cpu(), poller.receives
    poller.stop.wait(idle)
    cpu, rec = _cpu() - cpu0, poller.receives - rec0
    poller.stop.wait(seconds - warm - idle)
    poller.stop.set()
    print(json.dumps({"cpu": cpu, "receives": rec, "received": poller.received}))
    sys.stdout.flush()
    os._exit(0)  # the long polls still under way need not be waited for


def measure(
    moto: MotoProcess, urls: list[str], model: str, idle: float, probes: int, bell: str | None = None
) -> dict[str, Any]:
    rng = random.Random(len(urls))
    sender = _client(moto.endpoint, 4)
    warm = 22.0  # every long poll issued and one cycle of 20 s polls seen
    procs: list[subprocess.Popen[str]] = []
    poller: Poller | None = None
    sent: dict[str, float] = {}
    total = warm + idle + probes * 0.3 + 5
    if model == "shards-4":
        for k in range(4):
            args = [moto.endpoint, str(warm), str(idle), str(total), json.dumps(urls[k::4])]
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "bench.pollmodels", "--child", *args],
                    stdout=subprocess.PIPE,
                    text=True,
                    cwd=Path(__file__).resolve().parent.parent,
                )
            )
    else:
        poller = Poller(moto.endpoint, urls, model, bell).start()
    time.sleep(warm)
    cpu0, srv0, t0 = _cpu(), moto.cpu_seconds(), time.monotonic()
    rec0 = poller.receives if poller else 0
    time.sleep(idle)
    ours_idle = _cpu() - cpu0
    server_idle = moto.cpu_seconds() - srv0
    wall = time.monotonic() - t0
    rec_idle = (poller.receives - rec0) if poller else None
    for i in range(probes):
        body = f"probe-{i}"
        index = rng.randrange(len(urls))
        sender.send_message(QueueUrl=urls[index], MessageBody=body)
        sent[body] = time.monotonic()
        if bell is not None:
            sender.send_message(QueueUrl=bell, MessageBody=str(index))
        time.sleep(rng.uniform(0.1, 0.5))
    time.sleep(2)
    received: dict[str, float] = {}
    shard_cpu = 0.0
    shard_receives = 0
    if poller is not None:
        poller.stop.set()
        received = dict(poller.received)
    else:
        # Children report monotonic times of their own clock: CLOCK_MONOTONIC is system-wide on Linux.
        for p in procs:
            out, _ = p.communicate(timeout=total + 60)
            data = json.loads(out)
            shard_cpu += data["cpu"]
            shard_receives += data["receives"]
            received.update(data["received"])
        rec_idle = shard_receives
    lat = [received[b] - t for b, t in sent.items() if b in received]
    row: dict[str, Any] = {
        "model": model,
        "queues": len(urls),
        "threads": len(poller.threads) if poller else len(urls),
        "idle_ours_cpu_pct": 100 * (ours_idle if poller else shard_cpu) / wall,
        "idle_server_cpu_pct": 100 * server_idle / wall,
        "idle_receives_per_s": rec_idle / wall,
        "pickup_p50_s": percentile(lat, 0.5),
        "pickup_p95_s": percentile(lat, 0.95),
        "missed": len(sent) - len(lat),
    }
    return row


def run(
    *,
    sizes: list[int] | None = None,
    idle: float = 20.0,
    probes: int = 20,
    models: tuple[str, ...] = MODELS,
    save: Callable[[BenchResult], Any] | None = None,
    **_: Any,
) -> BenchResult:
    result = BenchResult("pollmodels")
    for q in sizes or [30, 300, 1000]:
        for model in models:
            with MotoProcess() as moto:
                sqs = _client(moto.endpoint, 16)
                urls = [sqs.create_queue(QueueName=f"q{i:04d}")["QueueUrl"] for i in range(q)]
                bell = sqs.create_queue(QueueName="doorbell")["QueueUrl"] if model == "doorbell" else None
                log(f"pollmodels: {model} x {q} queues")
                result.rows.append(measure(moto, urls, model, idle, probes, bell))
                log(f"pollmodels: {result.rows[-1]}")
                if save is not None:
                    save(result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--child", nargs=5, metavar=("ENDPOINT", "WARM", "IDLE", "SECONDS", "URLS"))
    args = parser.parse_args()
    if args.child:
        endpoint, warm, idle, seconds, urls = args.child
        child(endpoint, json.loads(urls), float(warm), float(idle), float(seconds))


if __name__ == "__main__":
    main()
