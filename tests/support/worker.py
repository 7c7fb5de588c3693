"""Triggers, delivery records and workers (in-process, or ``changeconsole worker`` as a subprocess).

Triggers are created the way the lifecycle and the fan-out do it: the change's archive record, a
``queued`` delivery record, then the change snapshot at ``models.trigger_key`` (the S3 event then
lands in the customer's queue).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from changeconsole.models import Config, DeliveryRecord, EmailEvent, trigger_key
from changeconsole.services.aws import AwsFactory
from changeconsole.services.status import DeliveryKey, StatusStore
from changeconsole.worker import WorkerHandle, WorkerOptions, start_background

from .changes import CHANGE_ID

# Fast settings: short polls, visibility and backoff so retries happen within a test.
FAST = {
    "poll_wait": 1,
    "visibility_timeout": 20,
    "backoff_base": 1.0,
    "backoff_cap": 2.0,
    "claim_lease": 5.0,
    "busy_retry": 1.0,
    "send_lease": 3.0,
    "ack_linger": 0.01,
    "metrics_interval": 3600.0,
    "audit_interval": 0.5,
}

# The same for ``changeconsole worker``: a killed worker's messages and claims come back within seconds.
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


def archive(aws: AwsFactory, config: Config, doc: dict[str, Any]) -> bool:
    """Make ``doc`` the change's archive record unless the archive holds a newer version already (the
    archive only moves forward); True when written."""
    s3 = aws.client("s3")
    bucket, key = config.s3_config.bucket_name, f"archive/{doc['changeId']}.json"
    try:
        current = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except s3.exceptions.NoSuchKey:
        current = None
    if isinstance(current, dict) and int(current.get("version", 0)) > int(doc["version"]):
        return False
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(doc).encode("utf-8"))
    return True


def put_trigger(
    aws: AwsFactory,
    config: Config,
    doc: dict[str, Any],
    customer: str,
    event: EmailEvent | None = None,
    *,
    archived: bool = True,
) -> str:
    """What the lifecycle and the fan-out do for one customer: the archive record (``archived``; the
    worker decides from it), the queued record, then the trigger object."""
    if archived:
        archive(aws, config, doc)
    event = event or EmailEvent(doc["status"])
    key = DeliveryKey(doc["changeId"], int(doc["version"]), event, customer)
    StatusStore(aws, config).put_queued(key)
    s3_key = trigger_key(customer, doc["changeId"], int(doc["version"]), event)
    aws.client("s3").put_object(
        Bucket=config.s3_config.bucket_name, Key=s3_key, Body=json.dumps(doc).encode("utf-8")
    )
    return s3_key


def submit(aws: AwsFactory, config: Config, doc: dict[str, Any], customers: list[str] | None = None) -> None:
    for code in customers or doc["customers"]:
        put_trigger(aws, config, doc, code)


def records(
    aws: AwsFactory, config: Config, change_id: str = CHANGE_ID
) -> dict[tuple[int, str, str], DeliveryRecord]:
    return {(r.version, r.event.value, r.customer): r for r in StatusStore(aws, config).records(change_id)}


def record(
    aws: AwsFactory,
    config: Config,
    customer: str,
    version: int = 2,
    event: str = "submitted",
    change_id: str = CHANGE_ID,
) -> DeliveryRecord | None:
    return records(aws, config, change_id).get((version, event, customer))


def final(
    aws: AwsFactory,
    config: Config,
    customers: list[str],
    version: int = 2,
    event: str = "submitted",
    change_id: str = CHANGE_ID,
) -> bool:
    recs = records(aws, config, change_id)
    return all((r := recs.get((version, event, c))) is not None and r.is_final for c in customers)


@contextmanager
def running_worker(aws: AwsFactory, config: Config, **overrides: Any) -> Iterator[WorkerHandle]:
    """An in-process worker with the ``FAST`` settings (``overrides`` win)."""
    opts = {**FAST, **overrides}
    customers = opts.pop("customers", None)
    handle = start_background(aws, config, customers=customers, options=WorkerOptions(**opts))
    try:
        yield handle
    finally:
        handle.stop(timeout=10)


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
