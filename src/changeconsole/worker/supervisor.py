"""N worker processes, one per shard (``changeconsole worker --shard K/N``), under one supervisor.

A shard process that dies (crash, SIGKILL, OOM) is restarted after a back-off; one that exits 0 is done
(it drained, or it was told to stop). ``stop`` sends SIGTERM to every shard, waits for their drain and
kills what is left. The supervisor holds no messages: a killed shard's messages come back when their
visibility ends and its delivery claims when their lease ends, and the restarted shard (or, after a
change of N, whichever shard now owns the queue) takes them; the ledger keeps that exactly-once.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO

from .observe import event


@dataclass
class Shard:
    index: int
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    done: bool = False  # exited 0: not restarted
    started_at: float = 0.0
    exits: list[int] = field(default_factory=list)


class ShardSupervisor:
    """``shards`` processes of ``python -m changeconsole worker --shard K/N [worker_args]``."""

    def __init__(
        self,
        shards: int,
        *,
        worker_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        stderr: IO[bytes] | int | None = None,
        restart_backoff: float = 1.0,
    ) -> None:
        if shards < 1:
            raise ValueError("shards must be >= 1")
        self.n = shards
        self.worker_args = list(worker_args)
        self.env = {**os.environ, **(env or {})}
        self.stderr = stderr
        self.restart_backoff = restart_backoff
        self.shards = [Shard(k) for k in range(shards)]
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None

    def command(self, k: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "changeconsole",
            "worker",
            "--shard",
            f"{k}/{self.n}",
            *self.worker_args,
        ]

    def _spawn(self, shard: Shard) -> None:
        shard.proc = subprocess.Popen(  # nosec B603 - our own interpreter and module, no shell
            self.command(shard.index), env=self.env, stdout=subprocess.DEVNULL, stderr=self.stderr
        )
        shard.started_at = time.monotonic()
        event(logging.INFO, "supervisor.shard_started", shard=f"{shard.index}/{self.n}", pid=shard.proc.pid)

    def start(self) -> ShardSupervisor:
        with self._lock:
            for shard in self.shards:
                self._spawn(shard)
        self._watcher = threading.Thread(target=self._watch, name="cc-supervisor", daemon=True)
        self._watcher.start()
        return self

    def pids(self) -> list[int | None]:
        with self._lock:
            return [s.proc.pid if s.proc and s.proc.poll() is None else None for s in self.shards]

    def _watch(self) -> None:
        while not self._stopping.wait(0.2):
            with self._lock:
                for shard in self.shards:
                    proc = shard.proc
                    if shard.done or proc is None or (code := proc.poll()) is None:
                        continue
                    shard.exits.append(code)
                    if code == 0:
                        shard.done = True
                        event(logging.INFO, "supervisor.shard_done", shard=f"{shard.index}/{self.n}")
                        continue
                    # Back off only when the shard keeps dying right after it starts.
                    quick = time.monotonic() - shard.started_at < 10
                    delay = min(30.0, self.restart_backoff * 2 ** min(shard.restarts, 5)) if quick else 0
                    event(
                        logging.WARNING,
                        "supervisor.shard_exited",
                        shard=f"{shard.index}/{self.n}",
                        exit_code=code,
                        restart_in=delay,
                    )
                    shard.proc = None
                    shard.restarts += 1
                    threading.Timer(delay, self._restart, args=(shard,)).start()

    def _restart(self, shard: Shard) -> None:
        with self._lock:
            if not self._stopping.is_set() and shard.proc is None:
                self._spawn(shard)

    def all_done(self) -> bool:
        with self._lock:
            return all(s.done for s in self.shards)

    def stop(self, timeout: float = 30.0) -> list[int | None]:
        """SIGTERM every shard (each drains up to its --shutdown-timeout), wait, kill the rest; the exit
        codes in shard order."""
        self._stopping.set()
        with self._lock:
            procs = [s.proc for s in self.shards]
        for proc in procs:
            if proc is not None and proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + timeout
        codes: list[int | None] = []
        for proc in procs:
            if proc is None:
                codes.append(None)
                continue
            try:
                codes.append(proc.wait(max(0.1, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes.append(proc.wait(10))
        if self._watcher is not None:
            self._watcher.join(2)
        return codes
