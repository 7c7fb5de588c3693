"""Shared helpers of the reliability and security suites (imported by module name)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from changeconsole.models import (
    TOPIC_ANNOUNCE,
    TOPIC_APPROVAL,
    EmailEvent,
)
from changeconsole.services.localstack import TOPIC_DEFAULTS, contact_address, contact_profile
from changeconsole.services.outbox import OutboxEmail, read_outbox

LONG = os.environ.get("CHANGECONSOLE_LONG", "") not in ("", "0", "false", "no")

START = "2030-03-01T22:00:00Z"
END = "2030-03-02T02:00:00Z"

# Fast retry settings so a killed worker's messages and claims come back within seconds.
FAST_WORKER_ARGS = [
    "--health-port",
    "0",
    "--no-emf",
    "--poll-wait",
    "1",
    "--visibility-timeout",
    "5",
    "--backoff-base",
    "1",
    "--claim-lease",
    "3",
]

TOPIC_OF = {EmailEvent.SUBMITTED: TOPIC_APPROVAL, EmailEvent.APPROVED: TOPIC_ANNOUNCE}


def scaled(short: int, long: int) -> int:
    """``short`` in CI, ``long`` when CHANGECONSOLE_LONG=1."""
    return long if LONG else short


def wait_for(pred: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Re-check ``pred`` until it holds (a condition, not a fixed sleep); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        pause.wait(interval)


def subscribed(code: str, n_contacts: int, topic: str) -> set[str]:
    """Oracle independent of our code: who receives ``topic`` per the local stack's contact profiles."""
    out = set()
    for i in range(n_contacts):
        prefs, unsubscribe_all = contact_profile(i)
        if not unsubscribe_all and prefs.get(topic, TOPIC_DEFAULTS[topic]) == "OPT_IN":
            out.add(contact_address(code, i).lower())
    return out


def outbox(endpoint: str) -> list[OutboxEmail]:
    # moto's data API can answer 500 while other requests change its models: read again.
    for _ in range(40):
        try:
            return read_outbox(endpoint)
        except (urllib.error.HTTPError, RuntimeError):
            threading.Event().wait(0.05)
    return read_outbox(endpoint)


EmailKey = tuple[str | None, int | None, str | None, str | None, str]


def email_keys(mails: list[OutboxEmail]) -> Counter[EmailKey]:
    """(change, version, event, customer, recipient) → emails, from the X-Changeconsole-* headers."""
    counts: Counter[EmailKey] = Counter()
    for m in mails:
        for to in m.to:
            counts[(m.change_id, m.version, m.event, m.customer, to.lower())] += 1
    return counts


class WorkerProcess:
    """``changeconsole worker`` in a subprocess; its JSON log lines are collected as they come."""

    def __init__(
        self,
        config_path: Path,
        endpoint: str,
        *extra: str,
        log_path: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.cmd = [
            sys.executable,
            "-m",
            "changeconsole",
            "worker",
            "--config",
            str(config_path),
            "--endpoint-url",
            endpoint,
            *FAST_WORKER_ARGS,
            *extra,
        ]
        self.log_path = log_path
        self.lines: list[str] = []
        self.proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self.started = threading.Event()

    def start(self) -> WorkerProcess:
        self.started.clear()
        self.proc = subprocess.Popen(
            self.cmd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
        )
        self._reader = threading.Thread(target=self._read, args=(self.proc,), daemon=True)
        self._reader.start()
        return self

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            self.lines.append(line)
            if '"worker.started"' in line:
                self.started.set()
            if self.log_path is not None:
                with self.log_path.open("a", encoding="utf-8") as fh:
                    fh.write(line)

    def wait_started(self, timeout: float = 60) -> None:
        assert self.started.wait(timeout), "worker did not start:\n" + "".join(self.lines[-20:])

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # SIGKILL: no drain, no cleanup
            self.proc.wait(10)
        if self._reader is not None:
            self._reader.join(10)

    def terminate(self, timeout: float = 30) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self._reader is not None:
            self._reader.join(10)
        return self.proc.returncode

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.lines:
            line = line.strip()
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    out.append(json.loads(line))
        return out
