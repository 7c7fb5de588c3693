"""Worker settings, customer assignment and sharding."""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field

from ..models import Config, UnknownCustomer, shard_of


@dataclass
class WorkerOptions:
    customers: list[str] | None = None  # None: every customer of the config
    shard: tuple[int, int] | None = None  # (k, n): this replica takes customers whose hash % n == k
    concurrency: int = 16  # deliveries processed at once
    per_customer: int | None = None  # deliveries of one customer at once (default concurrency // 4)
    send_parallelism: int = 4  # SES sends in flight per delivery
    poll_wait: int = 20  # long polling (seconds)
    visibility_timeout: int = 120  # per receive; a heartbeat extends it for long deliveries
    waiting_visibility_timeout: int | None = None  # extension of a message not started yet (default 5x)
    backoff_base: float = 30.0  # first transient retry after ~base seconds (jittered)
    backoff_cap: float = 900.0  # 15 min
    claim_lease: float = 300.0  # also the lease of a (change, customer) lane
    busy_retry: float = 5.0  # a message whose lane or claim another worker holds comes back within this
    send_lease: float = 120.0
    doorbell_receivers: int = 2  # doorbell mode: long polls of this shard's doorbell queue in flight
    max_pollers: int = 1024  # one long-polling thread per queue up to this; beyond, pollers share queues
    max_waiting: int | None = None  # received, waiting for a delivery thread (default 2 x concurrency)
    shutdown_timeout: float = 25.0
    drain: bool = False
    health_port: int = 0
    health_host: str = "0.0.0.0"  # nosec B104 - container health probes come from outside
    metrics_interval: float = 60.0
    audit_interval: float = 10.0
    ack_linger: float = 0.05
    emit_emf: bool = False  # EMF lines on stdout
    worker_id: str = field(default_factory=lambda: default_worker_id())

    @property
    def customer_cap(self) -> int:
        if self.per_customer:
            return max(1, self.per_customer)
        return max(1, self.concurrency // 4)

    @property
    def prefetch(self) -> int:
        """Messages of one customer held at once (received, not yet acknowledged)."""
        return max(10, self.customer_cap)

    @property
    def backlog_cap(self) -> int:
        """Received messages allowed to wait for a delivery thread; beyond it pollers pause, so the rest
        stay in SQS (visible to other replicas) instead of waiting out their visibility here."""
        if self.max_waiting:
            return max(1, self.max_waiting)
        return max(10, 2 * self.concurrency)

    @property
    def waiting_visibility(self) -> int:
        """What the heartbeat extends a received message that still waits for a delivery thread to: longer
        than a running one's, so a backlog held here costs fewer extensions (at 1,000 customers each
        holding one message, one call per queue per extension). A worker that dies holding it hides it
        this long at most; SIGTERM releases it at once."""
        if self.waiting_visibility_timeout:
            return max(self.visibility_timeout, self.waiting_visibility_timeout)
        return max(self.visibility_timeout, min(900, 5 * self.visibility_timeout))

    @property
    def heartbeat_every(self) -> float:
        return max(0.5, min(30.0, self.visibility_timeout / 4))


def default_worker_id() -> str:
    host = os.environ.get("HOSTNAME") or socket.gethostname() or "worker"
    return f"{host[:40]}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def parse_shard(text: str) -> tuple[int, int]:
    """``K/N`` with 0 <= K < N (0-based, like StatefulSet ordinals)."""
    try:
        k_text, n_text = text.split("/", 1)
        k, n = int(k_text), int(n_text)
    except ValueError:
        raise ValueError(f"--shard must look like K/N (e.g. 0/3), got {text!r}") from None
    if n < 1 or not 0 <= k < n:
        raise ValueError(f"--shard {text}: need N >= 1 and 0 <= K < N (K is 0-based)")
    return k, n


def assign_customers(
    config: Config, customers: list[str] | None = None, shard: tuple[int, int] | None = None
) -> list[str]:
    """The customer codes this worker serves; unknown codes raise ``UnknownCustomer``."""
    if customers:
        codes = sorted(set(customers))
        for code in codes:
            config.customer(code)
    else:
        codes = sorted(config.customer_mappings)
    if shard is not None:
        k, n = shard
        codes = [c for c in codes if shard_of(c, n) == k]
    return codes


__all__ = ["UnknownCustomer", "WorkerOptions", "assign_customers", "parse_shard", "shard_of"]
