"""The doorbell (transport ``sqs-direct``): after a trigger is put in a customer's queue, a ring
``{"customer": code}`` goes to the doorbell queue of the customer's worker shard, so workers long-poll
only the queues that have work (``worker.runtime``). A ring carries no work and may be lost: a failed
ring is logged and never fails the delivery (the worker's sweep finds the message).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable
from typing import Any

from ..errors import describe
from ..models import Config, shard_of
from .aws import AwsFactory

log = logging.getLogger(__name__)

BATCH = 10  # SQS send_message_batch limit


def ring_body(code: str) -> str:
    return json.dumps({"customer": code}, separators=(",", ":"))


def rung_customer(body: str) -> str | None:
    """The customer a ring names (None: not a ring)."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    code = data.get("customer") if isinstance(data, dict) else None
    return code if isinstance(code, str) else None


class Doorbell:
    """Sends rings; a no-op unless the config uses the doorbell. Thread-safe."""

    def __init__(self, aws: AwsFactory, config: Config) -> None:
        self.aws = aws
        self.config = config
        self._lock = threading.Lock()
        self._urls: dict[str, str] = {}
        self._pending: dict[int, list[tuple[str, int]]] = {}

    @property
    def on(self) -> bool:
        return self.config.uses_doorbell

    def queue_url(self, shard: int) -> str:
        name = self.config.doorbell_queue(shard)
        with self._lock:
            url = self._urls.get(name)
        if url is None:
            url = str(self.client().get_queue_url(QueueName=name)["QueueUrl"])
            with self._lock:
                self._urls[name] = url
        return url

    def client(self) -> Any:
        """SQS of the doorbell queues: the config's region, the caller's account."""
        return self.aws.client("sqs", self.config.aws_region)

    def ring(self, codes: Iterable[str], delay: int = 0) -> None:
        """Ring for each of ``codes`` now (``delay`` seconds: with a trigger sent with that delay)."""
        if not self.on:
            return
        by_shard: dict[int, list[tuple[str, int]]] = {}
        for code in codes:
            by_shard.setdefault(shard_of(code, self.config.worker_shards), []).append((code, delay))
        for shard, rings in by_shard.items():
            for i in range(0, len(rings), BATCH):
                self._send(shard, rings[i : i + BATCH])

    def add(self, code: str) -> None:
        """Ring for ``code`` in a batch: sent when its shard has ``BATCH`` rings waiting, or at ``flush``."""
        if not self.on:
            return
        shard = shard_of(code, self.config.worker_shards)
        with self._lock:
            pending = self._pending.setdefault(shard, [])
            pending.append((code, 0))
            full = self._pending.pop(shard) if len(pending) >= BATCH else None
        if full:
            self._send(shard, full)

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        for shard, rings in pending.items():
            self._send(shard, rings)

    def _send(self, shard: int, rings: list[tuple[str, int]]) -> None:
        entries = [
            {"Id": str(i), "MessageBody": ring_body(code), "DelaySeconds": min(900, max(0, delay))}
            for i, (code, delay) in enumerate(rings)
        ]
        try:
            resp = self.client().send_message_batch(QueueUrl=self.queue_url(shard), Entries=entries)
            failed = [rings[int(f["Id"])][0] for f in resp.get("Failed") or []]
            error = "refused"
        except Exception as exc:
            failed, error = [code for code, _ in rings], describe(exc)
        if failed:  # the worker's sweep of idle queues finds these messages
            log.warning(
                "doorbell ring failed for %d customer(s) of shard %d (%s): %s",
                len(failed),
                shard,
                error,
                ", ".join(failed[:10]),
            )
