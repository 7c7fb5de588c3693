"""The worker runtime: pollers, a fair bounded scheduler, visibility heartbeat, batched acks, shutdown.

Threads (all bounded): one long-polling thread per assigned queue up to ``max_pollers`` (a thread
blocked in a 20 s long poll holds no GIL and little memory; beyond the cap, pollers rotate over several
queues, each long poll ``poll_wait / queues`` seconds, at least 2 s; shard instead), ``concurrency``
delivery threads fed round-robin by customer with at most ``customer_cap`` deliveries of one customer at
a time (a flood for one customer never starves the others), a send pool of
``concurrency * send_parallelism`` threads (created on demand), a heartbeat thread and a housekeeping
thread. Pollers pause while ``backlog_cap`` received messages wait for a delivery thread, so a burst
stays in SQS rather than waiting out its visibility in this process.

Doorbell mode (transport ``sqs-direct``, ``doorbell.enabled``, the worker's shard count N equal to the
config's ``worker_shards``, not ``--drain``, no ``--customers`` subset): a queue is HOT (long-polled as
above) or COLD (no receive at all). ``doorbell_receivers`` threads long-poll this shard's doorbell queue;
a ring (``services.doorbell``) heats its customer's queue and wakes its poller. At start each queue is
heated when SQS counts messages in it (visible, in flight or delayed: e.g. held by a worker that died).
A hot queue cools after an empty receive only when nothing of it is held here, no ring came since that
receive started, and SQS counts nothing in it. Each cold queue's depth is checked again within
``doorbell.sweep_seconds`` of its last check (the sweep): the backstop for a lost ring or a message put
by hand.

The heartbeat extends a held message's visibility to ``visibility_timeout`` while it runs, and to the
longer ``waiting_visibility`` while it waits for a delivery thread.
"""

from __future__ import annotations

import dataclasses
import heapq
import logging
import math
import random
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from ..models import Config, CustomerMapping, DeliveryState
from ..services.audit import AuditLog
from ..services.aws import AwsFactory
from ..services.dlq.attributes import requeue_attributes, retry_counters
from ..services.doorbell import Doorbell, rung_customer
from ..services.ledger import Ledger
from ..services.queues import QueueUrlCache
from ..services.status import StatusStore
from .errors import backoff_delay, classify
from .events import EventStage
from .health import HealthServer
from .observe import Metrics, event
from .options import WorkerOptions, assign_customers
from .processor import InFlight, Outcome, OutcomeKind, Processor, Result

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.literals import MessageSystemAttributeNameType, QueueAttributeNameType
    from mypy_boto3_sqs.type_defs import MessageTypeDef

SYSTEM_ATTRIBUTES: list[MessageSystemAttributeNameType] = ["ApproximateReceiveCount", "SentTimestamp"]
# What --drain counts as "still there" (SQS's approximate counts).
DEPTH_ATTRIBUTES: tuple[QueueAttributeNameType, ...] = (
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
)
DRAIN_RECHECK = 1.0
# A paused poller is woken when it may receive again; this only bounds a missed wake-up. Long: a
# thousand customers each holding a message here are a thousand paused pollers for the whole backlog.
PAUSE_SAFETY = 60.0
IDLE_TICK = 1.0  # the housekeeping loop's wake-up with no acknowledgement to flush (seconds)
# The beat of a poller parked until a wake-up (cold queues in doorbell mode, or paused for room in the
# local backlog): alive, with nothing to poll now.
PARKED = math.inf
# Doorbell mode: queues checked at start (URL and depth) at once, so a thousand pollers do not all ask.
PRIME_AT_ONCE = 8
# A message a stopping worker never started: visible again at once, for another worker.
SHUTDOWN = Outcome(OutcomeKind.RELEASE, Result.SHUTDOWN, failure=False)


# -- SQS operations ----------------------------------------------------------------------------


class Queues:
    """Queue URLs (cached) and the SQS calls of the worker."""

    def __init__(self, aws: AwsFactory, config: Config) -> None:
        self.aws = aws
        self.config = config
        self._urls = QueueUrlCache()

    def client(self, mapping: CustomerMapping) -> SQSClient:
        client: SQSClient = self.aws.client("sqs", region=mapping.queue_region)
        return client

    def _url(self, mapping: CustomerMapping, name: str) -> str:
        key = (mapping.queue_region, mapping.queue_account, name)
        return self._urls.lookup(self.client(mapping), name, mapping.queue_account, key=key)

    def url(self, mapping: CustomerMapping) -> str:
        return self._url(mapping, mapping.queue_name)

    def dlq_url(self, mapping: CustomerMapping) -> str:
        return self._url(mapping, mapping.dlq_name)

    def dead_letter(self, m: InFlight, attributes: dict[str, Any]) -> None:
        """``m`` to its customer's DLQ with ``attributes`` (``services.dlq.attributes``)."""
        mapping = self.config.customer(m.customer)
        self.client(mapping).send_message(
            QueueUrl=self.dlq_url(mapping), MessageBody=m.body, MessageAttributes=attributes
        )


# -- scheduling ---------------------------------------------------------------------------------


class FairScheduler:
    """``threads`` workers take messages round-robin by customer, at most ``cap`` per customer at once."""

    def __init__(
        self,
        threads: int,
        cap: int,
        run: Callable[[InFlight], None],
        *,
        on_start: Callable[[], None] | None = None,
        on_idle: Callable[[str], None] | None = None,
    ) -> None:
        self.cap = cap
        self._on_start = on_start  # called (no lock held) each time a waiting message starts
        self._on_idle = on_idle  # called (no lock held) when a customer has nothing waiting or running
        self._waiting = 0
        self._run = run
        self._cond = threading.Condition()
        self._pending: dict[str, deque[InFlight]] = {}
        self._running: dict[str, int] = {}
        self._ready: deque[str] = deque()
        self._queued: set[str] = set()
        self._busy = 0
        self._stopping = False
        self._threads = [
            threading.Thread(target=self._loop, name=f"cc-delivery-{i}", daemon=True) for i in range(threads)
        ]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def _mark(self, code: str) -> None:
        if code not in self._queued and self._pending.get(code) and self._running.get(code, 0) < self.cap:
            self._ready.append(code)
            self._queued.add(code)

    def submit(self, m: InFlight) -> None:
        with self._cond:
            self._pending.setdefault(m.customer, deque()).append(m)
            self._waiting += 1
            self._mark(m.customer)
            self._cond.notify()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._ready and not self._stopping:
                    self._cond.wait()
                if not self._ready:
                    return
                code = self._ready.popleft()
                self._queued.discard(code)
                m = self._pending[code].popleft()
                self._waiting -= 1
                self._running[code] = self._running.get(code, 0) + 1
                self._busy += 1
                self._mark(code)
                if self._ready:
                    self._cond.notify()
            if self._on_start is not None:
                self._on_start()
            try:
                self._run(m)
            finally:
                with self._cond:
                    self._running[code] -= 1
                    self._busy -= 1
                    self._mark(code)
                    self._cond.notify_all()
                    idle = not self._running[code] and not self._pending[code]
                if idle and self._on_idle is not None:
                    self._on_idle(code)

    def active(self, code: str) -> int:
        """Messages of ``code`` waiting or running."""
        with self._cond:
            return len(self._pending.get(code, ())) + self._running.get(code, 0)

    def take_pending(self) -> list[InFlight]:
        with self._cond:
            out = [m for q in self._pending.values() for m in q]
            for q in self._pending.values():
                q.clear()
            self._waiting = 0
            self._ready.clear()
            self._queued.clear()
            return out

    def idle(self) -> bool:
        with self._cond:
            return self._busy == 0 and not any(self._pending.values())

    def wait_idle(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._busy == 0 and not any(self._pending.values()), timeout)

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()

    @property
    def busy(self) -> int:
        with self._cond:
            return self._busy

    @property
    def waiting(self) -> int:
        """Messages received and not yet started."""
        with self._cond:
            return self._waiting


# -- state -----------------------------------------------------------------------------------


@dataclass
class CustomerSlot:
    code: str
    mapping: CustomerMapping
    prefetch: int
    queue_url: str | None = None
    outstanding: int = 0  # received and not yet deleted/released
    cooldown_until: float = 0.0  # monotonic; SES throttled this account
    last_poll: float = 0.0
    poll_errors: int = 0
    drained: bool = False
    hot: bool = True  # long-polled (doorbell mode: until it cools)
    rung: bool = False  # doorbell mode: a ring (or a sweep) came since the last receive started
    primed: bool = False  # doorbell mode: its depth was checked at start
    checked_at: float = -math.inf  # monotonic: when SQS last told its depth
    acks: list[InFlight] = field(default_factory=list)
    acks_since: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)
    capacity: threading.Event = field(default_factory=threading.Event)

    def cooling(self, now: float) -> float:
        return max(0.0, self.cooldown_until - now)


@dataclass
class WorkerStats:
    received: int = 0
    deleted: int = 0
    retried: int = 0
    released: int = 0
    processed: int = 0
    failed: int = 0
    dead_lettered: int = 0
    duplicates: int = 0
    superseded: int = 0
    emails_sent: int = 0
    ignored: int = 0
    rings: int = 0  # doorbell rings received for customers of this worker
    swept: int = 0  # cold queues the sweep found holding messages
    pickup: deque[float] = field(default_factory=lambda: deque(maxlen=5000))
    results: dict[str, int] = field(default_factory=dict)

    def snapshot(self) -> dict[str, Any]:
        data = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("pickup", "results")}
        data["results"] = dict(self.results)
        lat = sorted(self.pickup)
        if lat:
            data["pickup_p50"] = lat[len(lat) // 2]
            data["pickup_p95"] = lat[min(len(lat) - 1, int(len(lat) * 0.95))]
            data["pickup_max"] = lat[-1]
        return data


# -- the worker ------------------------------------------------------------------------------


class Worker:
    def __init__(
        self,
        aws: AwsFactory,
        config: Config,
        options: WorkerOptions | None = None,
        *,
        emf_stream: TextIO | None = None,
    ) -> None:
        self.aws = aws
        self.config = config
        self.options = options = options or WorkerOptions()
        self.codes = assign_customers(config, options.customers, options.shard)
        self.worker_id = options.worker_id
        n_pollers = max(1, min(len(self.codes), options.max_pollers))
        # Pollers hold one connection each for the length of a long poll: size the SQS pool for them.
        settings = dataclasses.replace(
            aws.settings,
            max_pool_connections=max(aws.settings.max_pool_connections, n_pollers + options.concurrency + 16),
            read_timeout=max(aws.settings.read_timeout, options.poll_wait + 10),
        )
        self.sqs_aws = AwsFactory(settings)
        for listener in aws.call_listeners:
            self.sqs_aws.add_call_listener(listener)
        self.queues = Queues(self.sqs_aws, config)
        self.status = StatusStore(aws, config)
        self.ledger = Ledger(aws, config, claim_lease=options.claim_lease, send_lease=options.send_lease)
        self.audit = AuditLog(aws, config, source="worker")
        if emf_stream is None and options.emit_emf:
            emf_stream = sys.stdout
        self.metrics = Metrics(config, aws=aws, emf_stream=emf_stream, worker_id=self.worker_id)
        self.send_pool = (
            ThreadPoolExecutor(
                max_workers=options.concurrency * options.send_parallelism, thread_name_prefix="cc-send"
            )
            if options.send_parallelism > 1
            else None
        )
        self.stats_data = WorkerStats()
        self._stats_lock = threading.Lock()
        self._abort = threading.Event()
        self.processor = Processor(
            aws,
            config,
            options,
            queues=self.queues,
            status=self.status,
            ledger=self.ledger,
            audit=self.audit,
            metrics=self.metrics,
            send_pool=self.send_pool,
            aborting=self._abort.is_set,
            cooldown=self.cooldown,
        )
        self.doorbell = Doorbell(self.sqs_aws, config)
        self.doorbell_off = self._doorbell_off()
        self.doorbell_on = self.doorbell_off is None
        self.slots = {
            code: CustomerSlot(code, config.customer(code), options.prefetch, hot=not self.doorbell_on)
            for code in self.codes
        }
        for slot in self.slots.values():
            slot.capacity.set()
        self.events = EventStage(
            aws,
            config,
            queues=self.queues,
            ledger=self.ledger,
            status=self.status,
            audit=self.audit,
            metrics=self.metrics,
            customers=self.codes,
            poll_wait=options.poll_wait,
            worker_id=self.worker_id,
        )
        self.scheduler = FairScheduler(
            options.concurrency,
            options.customer_cap,
            self._run_one,
            on_start=self._room_freed,
            on_idle=self._customer_idle,
        )
        self._inflight: dict[int, InFlight] = {}
        # Slots holding acknowledgements (a slot's acks are not empty => its code is here, both changed
        # under the slot's lock), so housekeeping never walks every slot.
        self._acking: set[str] = set()
        self._acks_lock = threading.Lock()
        self._inflight_lock = threading.Lock()
        self._stop_receiving = threading.Event()
        self._stop_background = threading.Event()
        self._acks_added = threading.Event()  # wakes the housekeeping loop: acknowledgements to flush
        self._stopped = threading.Event()
        self._started = False
        self._groups = (
            [list(self.slots.values())[i::n_pollers] for i in range(n_pollers)] if self.codes else []
        )
        self._pollers: list[threading.Thread] = []
        self._poller_beats = [0.0] * len(self._groups)
        self._poll_cond = threading.Condition()
        self._in_receive = 0  # pollers inside a receive call (stop waits for them)
        self._room = threading.Lock()  # guards _reserved and _paused
        self._reserved = 0  # messages the receives under way may return
        # Pollers paused for room in the local backlog, oldest first, each woken by its own event: when
        # room frees (one per message) or its customer has nothing here any more. Never a timed wake-up
        # of every paused poller: with a thousand queues that was a thousand wake-ups a second.
        self._paused: dict[int, threading.Event] = {}
        self._wakes = [threading.Event() for _ in self._groups]
        self._poller_of = {slot.code: i for i, group in enumerate(self._groups) for slot in group}
        self._prime_gate = threading.BoundedSemaphore(PRIME_AT_ONCE)
        self._doorbell_beats = [0.0] * (options.doorbell_receivers if self.doorbell_on and self.codes else 0)
        self._doorbell_threads: list[threading.Thread] = []
        self._loop_beat = 0.0
        self._drain_next = 0.0
        self._drain_clean = 0
        self._drain_waiting: tuple[str, int] | None = None
        self._last_sqs_ok = 0.0
        self.started_at = 0.0
        self._health: HealthServer | None = None
        self._aux: list[threading.Thread] = []

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> Worker:
        if self._started:
            return self
        self._started = True
        self.started_at = time.monotonic()
        self._loop_beat = self.started_at
        self._poller_beats = [self.started_at] * len(self._groups)
        self._doorbell_beats = [self.started_at] * len(self._doorbell_beats)
        if self.options.health_port:
            self._health = HealthServer(
                self.options.health_host, self.options.health_port, health=self.health, ready=self.readiness
            ).start()
        self.scheduler.start()
        for i, group in enumerate(self._groups):
            t = threading.Thread(target=self._poll_group, args=(i, group), name=f"cc-poll-{i}", daemon=True)
            self._pollers.append(t)
            t.start()
        background: list[tuple[Callable[[], None], str]] = [
            (self._heartbeat_loop, "cc-heartbeat"),
            (self._housekeeping_loop, "cc-housekeeping"),
            (lambda: self.events.run(self._stop_background), "cc-events"),
        ]
        if self._doorbell_beats:
            background.append((self._sweep_loop, "cc-doorbell-sweep"))
        for target, name in background:
            t = threading.Thread(target=target, name=name, daemon=True)
            self._aux.append(t)
            t.start()
        for i in range(len(self._doorbell_beats)):  # not joined at stop: a long poll ends on its own
            t = threading.Thread(target=self._doorbell_loop, args=(i,), name=f"cc-doorbell-{i}", daemon=True)
            self._doorbell_threads.append(t)
            t.start()
        event(
            logging.INFO,
            "worker.started",
            worker_id=self.worker_id,
            customers=len(self.codes),
            pollers=len(self._groups),
            concurrency=self.options.concurrency,
            customer_cap=self.options.customer_cap,
            shard=_shard_text(self.options.shard),
            drain=self.options.drain or None,
            doorbell=self.config.doorbell_queue(self._shard[0]) if self.doorbell_on else None,
        )
        if self.doorbell_off and self.config.uses_doorbell:
            event(logging.INFO, "doorbell.off", worker_id=self.worker_id, reason=self.doorbell_off)
        if len(self._groups) < len(self.codes):
            event(
                logging.WARNING,
                "worker.pollers_shared",
                customers=len(self.codes),
                pollers=len(self._groups),
                poll_wait=poll_wait_of(self.options, -(-len(self.codes) // len(self._groups))),
                hint="more queues than max_pollers: pickup slows; split customers with --shard K/N",
            )
        return self

    @property
    def _shard(self) -> tuple[int, int]:
        return self.options.shard or (0, 1)

    def _doorbell_off(self) -> str | None:
        """Why this worker polls every queue although the config uses the doorbell (None: it does not)."""
        if not self.config.uses_doorbell:
            return "not sqs-direct" if self.config.doorbell.enabled else "doorbell.enabled is off"
        if self.options.drain:
            return "--drain polls every queue until it is empty"
        if self.options.customers:
            return "--customers: the doorbell queue is the whole shard's"
        n = self._shard[1]
        if n != self.config.worker_shards:
            return f"this worker's shard count {n} is not worker_shards {self.config.worker_shards}"
        return None

    @property
    def health_port(self) -> int | None:
        return self._health.port if self._health else None

    def stop(self, timeout: float | None = None) -> None:
        """Stop receiving, finish in-flight work until the deadline, release the rest."""
        if self._stopped.is_set() or not self._started:
            self._stopped.set()
            return
        timeout = self.options.shutdown_timeout if timeout is None else timeout
        deadline = time.monotonic() + max(0.0, timeout)
        self._stop_receiving.set()
        with self._room:
            self._wake(len(self._paused))
        if self.doorbell_on:  # cold pollers wait for a ring
            for wake in self._wakes:
                wake.set()
        event(
            logging.INFO,
            "worker.stopping",
            worker_id=self.worker_id,
            timeout=timeout,
            in_flight=self.in_flight(),
        )
        for m in self.scheduler.take_pending():
            self._apply(m, SHUTDOWN)
        abort_at = deadline - min(2.0, timeout * 0.2)
        while not self.scheduler.idle():
            now = time.monotonic()
            if now >= abort_at:
                self._abort.set()
            if now >= deadline:
                break
            self.scheduler.wait_idle(min(0.1, max(0.01, deadline - now)))
        self._flush_acks(force=True)
        with self._inflight_lock:
            leftover = [m for m in self._inflight.values() if not m.settled]
        for m in leftover:  # still running at the deadline: let another worker take it
            self._apply(m, SHUTDOWN)
        self.scheduler.stop()
        with self._poll_cond:  # a poller mid long poll releases what it receives
            self._poll_cond.wait_for(lambda: self._in_receive == 0, max(0.0, deadline - time.monotonic()))
        for m in self.scheduler.take_pending():  # submitted while we were stopping
            self._apply(m, SHUTDOWN)
        self._flush_acks(force=True)
        self._stop_background.set()
        self._acks_added.set()
        for t in self._aux:
            t.join(2.0)
        self._final_flush()
        if self.send_pool is not None:
            self.send_pool.shutdown(wait=False, cancel_futures=True)
        if self._health is not None:
            self._health.stop()
        self._stopped.set()
        event(logging.INFO, "worker.stopped", worker_id=self.worker_id, **self._summary())

    def _final_flush(self) -> None:
        try:
            self.metrics.flush()
        except Exception as exc:
            event(logging.WARNING, "metrics.flush_failed", error=type(exc).__name__)
        self.audit.flush()

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def drained(self) -> bool:
        """--drain: every assigned queue answered empty, nothing is held here, and SQS counts no message
        in any of them (visible, in flight elsewhere, e.g. held by a killed worker, or delayed) on two
        checks in a row, at least ``DRAIN_RECHECK`` s apart. A queue found holding messages is polled
        again (its in-flight ones come back when their visibility ends)."""
        if not (
            all(s.drained for s in self.slots.values()) and self.scheduler.idle() and self.in_flight() == 0
        ):
            self._drain_clean = 0
            return False
        now = time.monotonic()
        if now < self._drain_next:
            return False
        self._drain_next = now + DRAIN_RECHECK
        for slot in self.slots.values():
            left = self._queue_depth(slot)
            if left:
                with slot.lock:
                    slot.drained = False
                self._drain_clean = 0
                if self._drain_waiting != (slot.code, left):
                    self._drain_waiting = (slot.code, left)
                    event(logging.INFO, "worker.drain_waiting", customer=slot.code, messages=left)
                return False
        self._drain_clean += 1
        return self._drain_clean >= 2

    def _queue_depth(self, slot: CustomerSlot) -> int:
        """Messages SQS counts in the slot's queue: visible + not visible + delayed (1 when unknown)."""
        if slot.queue_url is None:
            return 1
        try:
            attrs = self.queues.client(slot.mapping).get_queue_attributes(
                QueueUrl=slot.queue_url, AttributeNames=list(DEPTH_ATTRIBUTES)
            )["Attributes"]
        except Exception as exc:
            event(
                logging.WARNING,
                "queue.depth_failed",
                customer=slot.code,
                error=classify(exc, "central").detail,
            )
            return 1
        slot.checked_at = time.monotonic()
        return sum(int(attrs.get(name, 0)) for name in DEPTH_ATTRIBUTES)

    def in_flight(self) -> int:
        with self._inflight_lock:
            return len(self._inflight)

    def cooldown(self, code: str, seconds: float) -> None:
        """SES throttled this customer's account: pause its queue only."""
        slot = self.slots.get(code)
        if slot is not None:
            with slot.lock:
                slot.cooldown_until = max(slot.cooldown_until, time.monotonic() + seconds)
            event(logging.WARNING, "customer.cooldown", customer=code, seconds=round(seconds, 1))

    # -- polling ----------------------------------------------------------------------------------
    def _poll_group(self, index: int, group: list[CustomerSlot]) -> None:
        single = len(group) == 1
        wait = poll_wait_of(self.options, len(group))
        while not self._stop_receiving.is_set():
            polled = False
            paused = False
            self._wakes[index].clear()  # a wake-up from here on ends the pause below at once
            for slot in group:
                if self._stop_receiving.is_set():
                    break
                now = time.monotonic()
                self._poller_beats[index] = now
                if slot.drained:
                    continue
                if self.doorbell_on:
                    if not slot.primed and not self._prime(slot):
                        continue
                    if not slot.hot:
                        continue
                elif slot.queue_url is None and not self._resolve(slot):
                    continue
                if slot.cooling(now) > 0:
                    continue
                with slot.lock:
                    free = slot.prefetch - slot.outstanding
                if free <= 0:
                    continue
                n = self._reserve(index, slot.code, free)
                if n == 0:
                    paused = True
                    continue
                with self._poll_cond:
                    if self._stop_receiving.is_set():
                        self._unreserve(n)
                        break
                    self._in_receive += 1
                polled = True
                with slot.lock:
                    slot.rung = False  # a ring from here on means: receive again before cooling
                try:
                    self._receive(slot, n, wait)
                finally:
                    self._unreserve(n)
                    with self._poll_cond:
                        self._in_receive -= 1
                        self._poll_cond.notify_all()
                self._poller_beats[index] = time.monotonic()
            if not polled:
                if all(s.drained for s in group):  # --drain: until a depth check finds more
                    self._stop_receiving.wait(0.25)
                elif paused:
                    self._poller_beats[index] = PARKED  # alive, waiting for room: not a stuck poll
                    self._wakes[index].wait(PAUSE_SAFETY)
                elif self.doorbell_on and all(s.primed and not s.hot for s in group):
                    # Cold: parked until a ring, the sweep or stop sets its wake-up (none is missed: it
                    # was cleared before the slots were looked at). No timed wake-ups: with a thousand
                    # cold queues those were most of the worker's CPU at rest.
                    self._poller_beats[index] = PARKED
                    self._wakes[index].wait()
                elif single:
                    group[0].capacity.wait(0.25)
                else:
                    self._stop_receiving.wait(0.05)

    def _reserve(self, poller: int, code: str, free: int) -> int:
        """How many messages a receive for ``code`` may ask for (0: pause, and ``poller`` is woken when
        that may change). Batches only while the local backlog (waiting messages plus receives under
        way) has room; past it, a customer with nothing here still takes one message, so no customer
        waits behind another's backlog."""
        with self._room:
            left = self.options.backlog_cap - self.scheduler.waiting - self._reserved
            if left <= 0 and self.scheduler.active(code) > 0:
                self._paused.setdefault(poller, self._wakes[poller])
                return 0
            self._paused.pop(poller, None)
            n = min(10, free, max(1, left))
            self._reserved += n
            return n

    def _unreserve(self, n: int) -> None:
        with self._room:
            self._reserved -= n
            self._wake(n)

    def _room_freed(self) -> None:
        """A waiting message started: one paused poller may receive again (not all of them at once)."""
        with self._room:
            self._wake(1)

    def _customer_idle(self, code: str) -> None:
        """``code`` has nothing waiting or running: its poller, if paused, may take one message again."""
        poller = self._poller_of.get(code)
        with self._room:
            wake = self._paused.pop(poller, None) if poller is not None else None
        if wake is not None:
            wake.set()

    def _wake(self, n: int) -> None:
        """Wake the ``n`` longest-paused pollers (``_room`` held)."""
        for _ in range(min(n, len(self._paused))):
            poller = next(iter(self._paused))
            self._paused.pop(poller).set()

    def _resolve(self, slot: CustomerSlot) -> bool:
        try:
            slot.queue_url = self.queues.url(slot.mapping)
            self._last_sqs_ok = time.monotonic()
            return True
        except Exception as exc:
            self._poll_error(slot, exc, "queue.resolve_failed")
            return False

    def _poll_error(self, slot: CustomerSlot, exc: Exception, name: str) -> None:
        slot.poll_errors += 1
        failure = classify(exc, "central")
        if self._stop_receiving.is_set():
            return
        if slot.poll_errors == 1 or slot.poll_errors % 10 == 0:
            event(
                logging.WARNING,
                name,
                customer=slot.code,
                reason=failure.reason,
                detail=failure.detail,
                errors=slot.poll_errors,
            )
        self._stop_receiving.wait(error_pause(slot.poll_errors))

    def _receive(self, slot: CustomerSlot, n: int, wait: int) -> None:
        assert slot.queue_url is not None
        try:
            resp = self.queues.client(slot.mapping).receive_message(
                QueueUrl=slot.queue_url,
                MaxNumberOfMessages=n,
                WaitTimeSeconds=wait,
                VisibilityTimeout=self.options.visibility_timeout,
                MessageSystemAttributeNames=SYSTEM_ATTRIBUTES,
                MessageAttributeNames=["All"],
            )
        except Exception as exc:
            self._poll_error(slot, exc, "queue.receive_failed")
            return
        now = time.monotonic()
        slot.last_poll = now
        slot.poll_errors = 0
        self._last_sqs_ok = now
        raw = resp.get("Messages") or []
        if not raw:
            if self.options.drain and self.scheduler.active(slot.code) == 0:
                with slot.lock:
                    slot.drained = slot.outstanding == 0
            if self.doorbell_on:
                self._maybe_cool(slot)
            return
        messages = [self._inflight_of(slot, r, now) for r in raw]
        with slot.lock:
            slot.outstanding += len(messages)
            if slot.outstanding >= slot.prefetch:
                slot.capacity.clear()
        with self._inflight_lock:
            for m in messages:
                self._inflight[id(m)] = m
        with self._stats_lock:
            self.stats_data.received += len(messages)
        if self._stop_receiving.is_set():
            for m in messages:
                self._apply(m, SHUTDOWN)
            return
        for m in messages:
            if not self._rotate(m):
                self.scheduler.submit(m)

    # -- doorbell mode ---------------------------------------------------------------------------
    def _prime(self, slot: CustomerSlot) -> bool:
        """Resolve the slot's queue and heat it when SQS counts messages in it (a few slots at a time)."""
        failed: Exception | None = None
        with self._prime_gate:
            if self._stop_receiving.is_set():
                return False
            try:
                slot.queue_url = slot.queue_url or self.queues.url(slot.mapping)
            except Exception as exc:
                failed = exc
            else:
                self._last_sqs_ok = time.monotonic()
                if self._queue_depth(slot):
                    self._heat(slot)
        if failed is not None:  # its back-off outside the gate
            self._poll_error(slot, failed, "queue.resolve_failed")
            return False
        slot.primed = True
        return True

    def _maybe_cool(self, slot: CustomerSlot) -> None:
        """After an empty receive: cold when nothing of it is held here, no ring came since the receive
        started and SQS counts no message in its queue (visible, in flight elsewhere or delayed)."""
        if slot.rung or slot.outstanding or self.scheduler.active(slot.code):
            return
        if self._queue_depth(slot):
            return
        with slot.lock:  # a ring sets rung under this lock: it either keeps the slot hot or reheats it
            if not slot.rung and not slot.outstanding:
                slot.hot = False

    def _heat(self, slot: CustomerSlot) -> None:
        with slot.lock:
            slot.rung = True
            slot.hot = True
        self._wakes[self._poller_of[slot.code]].set()

    def _doorbell_loop(self, index: int) -> None:
        """Long-poll this shard's doorbell queue: each ring heats its customer's queue."""
        sqs = self.doorbell.client()
        errors = 0
        url: str | None = None
        while not self._stop_receiving.is_set():
            self._doorbell_beats[index] = time.monotonic()
            try:
                url = url or self.doorbell.queue_url(self._shard[0])
                resp = sqs.receive_message(
                    QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=self.options.poll_wait
                )
            except Exception as exc:
                errors += 1
                if not self._stop_receiving.is_set() and (errors == 1 or errors % 10 == 0):
                    failure = classify(exc, "central")
                    event(
                        logging.WARNING,
                        "doorbell.receive_failed",
                        reason=failure.reason,
                        detail=failure.detail,
                        errors=errors,
                    )
                self._stop_receiving.wait(error_pause(errors))
                continue
            errors = 0
            raw = resp.get("Messages") or []
            if not raw or self._stop_receiving.is_set():
                continue  # stopping: the rings come back for another replica
            rings = 0
            for r in raw:
                slot = self.slots.get(rung_customer(str(r.get("Body", ""))) or "")
                if slot is not None:
                    rings += 1
                    self._heat(slot)
            with self._stats_lock:
                self.stats_data.rings += rings
            try:
                sqs.delete_message_batch(
                    QueueUrl=url,
                    Entries=[{"Id": str(j), "ReceiptHandle": r["ReceiptHandle"]} for j, r in enumerate(raw)],
                )
            except Exception as exc:  # they come back and ring again: harmless
                event(logging.WARNING, "doorbell.delete_failed", error=classify(exc, "central").detail)

    def _sweep_loop(self) -> None:
        """Check each cold queue's depth within ``doorbell.sweep_seconds`` of when SQS last told it (at
        start, when it cooled, or here): a queue that just cooled is not checked again at once. Each
        next visit is jittered into the period's last tenth, so checks made together spread out."""
        period = self.config.doorbell.sweep_seconds
        slots = list(self.slots.values())
        if not slots:
            return
        start = time.monotonic()
        # (when, slot index, its checked_at when this visit was planned)
        due = [(start + random.random() * period, i, -math.inf) for i in range(len(slots))]
        heapq.heapify(due)
        while True:
            at, i, seen = due[0]
            if self._stop_background.wait(max(0.0, at - time.monotonic())):
                return
            slot = slots[i]
            if slot.checked_at > seen:  # told since this visit was planned: plan from then
                heapq.heapreplace(due, (self._sweep_due(slot.checked_at, period), i, slot.checked_at))
                continue
            if slot.primed and not slot.hot and not self._stop_receiving.is_set() and self._queue_depth(slot):
                with self._stats_lock:
                    self.stats_data.swept += 1
                event(logging.INFO, "doorbell.swept", customer=slot.code)
                self._heat(slot)
            heapq.heapreplace(due, (self._sweep_due(time.monotonic(), period), i, slot.checked_at))

    @staticmethod
    def _sweep_due(since: float, period: float) -> float:
        return since + period * (1 - 0.1 * random.random())

    def _rotate(self, m: InFlight) -> bool:
        """True when ``m`` was replaced by a fresh copy instead of being worked on: it is received again
        after a receive that ended with no outcome (its worker died), and SQS would move it to the DLQ
        after ``max_receive_count`` such receives. Replaced at once, before anything else: a worker dying
        again within that moment leaves the next receive to try again. The copy carries the count of
        such receives (``max_receives_without_outcome`` bounds them) and is worked on when received."""
        if m.receive_count < 2:
            return False
        if m.unfinished >= self.config.max_receives_without_outcome or not self._requeue(m, 0):
            return False  # worked on now: dead-lettered (receives_exhausted), or SQS redrives it
        with self._stats_lock:
            self.stats_data.results["rotated"] = self.stats_data.results.get("rotated", 0) + 1
        self._apply(m, Outcome(OutcomeKind.DELETE, Result.REQUEUED))
        return True

    def _inflight_of(self, slot: CustomerSlot, raw: MessageTypeDef, now: float) -> InFlight:
        attrs = raw.get("Attributes") or {}
        attributes: dict[str, Any] = dict(raw.get("MessageAttributes") or {})
        failures, unfinished = retry_counters(attributes)
        sent_ms = int(attrs.get("SentTimestamp") or 0)
        sent_at = sent_ms / 1000 if sent_ms else time.time()
        age = max(0.0, time.time() - sent_at)
        with self._stats_lock:
            self.stats_data.pickup.append(age)
        self.metrics.message_age(slot.code, age)
        assert slot.queue_url is not None
        return InFlight(
            customer=slot.code,
            queue_url=slot.queue_url,
            message_id=str(raw.get("MessageId", "")),
            receipt=str(raw["ReceiptHandle"]),
            body=str(raw.get("Body", "")),
            receive_count=int(attrs.get("ApproximateReceiveCount") or 1),
            sent_at=sent_at,
            attributes=attributes,
            failures=failures,
            carried_unfinished=unfinished,
            received_at=now,
            visible_until=now + self.options.visibility_timeout,
        )

    # -- one message --------------------------------------------------------------------------------
    def _run_one(self, m: InFlight) -> None:
        m.started = True
        try:
            outcome = self.processor.process(m)
        except Exception as exc:  # e.g. the DLQ itself unreachable: try again later
            failure = classify(exc, "central")
            delay = backoff_delay(m.attempt, self.options.backoff_base, self.options.backoff_cap)
            event(
                logging.ERROR,
                "message.error",
                customer=m.customer,
                message_id=m.message_id,
                reason=failure.reason,
                detail=failure.detail,
                retry_in=delay,
            )
            outcome = Outcome(OutcomeKind.RETRY, Result.ERROR, failure.reason, delay=delay)
        elapsed = time.monotonic() - m.received_at
        self.metrics.latency(m.customer, elapsed)
        self._count(m, outcome)
        self._apply(m, outcome)

    def _count(self, m: InFlight, outcome: Outcome) -> None:
        result, kind = outcome.result, outcome.kind
        failed = kind is OutcomeKind.RETRY and outcome.failure
        processed = kind is OutcomeKind.DELETE and result is not Result.DEAD_LETTERED
        with self._stats_lock:
            s = self.stats_data
            s.results[outcome.label] = s.results.get(outcome.label, 0) + 1
            s.emails_sent += outcome.emails
            if result is Result.DEAD_LETTERED:
                s.dead_lettered += 1
            elif failed:
                s.failed += 1
            elif result is Result.DUPLICATE:
                s.duplicates += 1
            elif result is DeliveryState.SUPERSEDED:
                s.superseded += 1
            elif result is Result.IGNORED:
                s.ignored += 1
            if processed:
                s.processed += 1
        if failed or result is Result.ERROR:
            self.metrics.count(m.customer, "MessagesFailed")
        elif processed:
            self.metrics.count(m.customer, "MessagesProcessed")

    def _apply(self, m: InFlight, outcome: Outcome) -> None:
        """Delete (batched), retry later or release (visibility 0).

        A retry replaces the message by a fresh copy (SQS's receive count 0) that carries its counters
        (``cc-failures`` + 1 for a failure), so SQS's receive count of a copy counts only receives that
        ended with no outcome (``_rotate``). A release at shutdown leaves it as it is (counted like
        one) unless SQS would dead-letter it on its next receive. A failure out of budget, or a
        copy that cannot be sent, keeps the message and sets its visibility instead."""
        if m.settled:
            return
        slot = self.slots[m.customer]
        if outcome.kind is OutcomeKind.DELETE:
            with slot.lock:
                if not slot.acks:
                    slot.acks_since = time.monotonic()
                    with self._acks_lock:
                        self._acking.add(slot.code)
                    self._acks_added.set()
                slot.acks.append(m)
                full = len(slot.acks) >= 10
            if full or self.scheduler.active(m.customer) <= 1 or self._stop_receiving.is_set():
                self._flush_slot(slot)
            return
        retry = outcome.kind is OutcomeKind.RETRY
        delay = outcome.delay if retry else 0
        failed = retry and outcome.failure
        last = m.receive_count >= self.config.max_receive_count
        copy = (retry or last) and not (failed and m.attempt >= self.config.max_receive_count)
        with self._stats_lock:
            if retry:
                self.stats_data.retried += 1
            else:
                self.stats_data.released += 1
        if copy and self._requeue(m, min(delay, 900), failed=failed):
            self._apply(m, Outcome(OutcomeKind.DELETE, Result.REQUEUED))
            return
        try:
            self.queues.client(slot.mapping).change_message_visibility(
                QueueUrl=m.queue_url, ReceiptHandle=m.receipt, VisibilityTimeout=int(delay)
            )
        except Exception as exc:  # it reappears when its current visibility ends
            event(
                logging.WARNING,
                "message.visibility_failed",
                customer=m.customer,
                message_id=m.message_id,
                error=classify(exc, "central").detail,
            )
        self._settle(m)

    def _requeue(self, m: InFlight, delay: int, *, failed: bool = False) -> bool:
        """A fresh copy (receive count 0) of ``m`` in its queue with its retry counters (one more failure
        when ``failed``); the caller then deletes the original."""
        failures = m.failures + int(failed)
        attributes = requeue_attributes(m.attributes or {}, failures=failures, crashes=m.unfinished)
        kwargs: dict[str, Any] = {"QueueUrl": m.queue_url, "MessageBody": m.body, "DelaySeconds": int(delay)}
        if attributes:
            kwargs["MessageAttributes"] = attributes
        try:
            self.queues.client(self.slots[m.customer].mapping).send_message(**kwargs)
        except Exception as exc:
            event(
                logging.WARNING,
                "message.requeue_failed",
                customer=m.customer,
                message_id=m.message_id,
                error=classify(exc, "central").detail,
            )
            return False
        self.doorbell.ring([m.customer], int(delay))
        event(
            logging.INFO,
            "message.requeued",
            customer=m.customer,
            message_id=m.message_id,
            receive_count=m.receive_count,
            failures=failures,
            unfinished=m.unfinished,
            delay=delay,
        )
        return True

    def _settle(self, m: InFlight) -> None:
        if m.settled:
            return
        m.settled = True
        with self._inflight_lock:
            self._inflight.pop(id(m), None)
        slot = self.slots[m.customer]
        with slot.lock:
            slot.outstanding -= 1
            if slot.outstanding < slot.prefetch:
                slot.capacity.set()

    def _flush_slot(self, slot: CustomerSlot) -> None:
        with slot.lock:
            batch, slot.acks = slot.acks, []
        for i in range(0, len(batch), 10):
            chunk = batch[i : i + 10]
            try:
                resp = self.queues.client(slot.mapping).delete_message_batch(
                    QueueUrl=chunk[0].queue_url,
                    Entries=[{"Id": str(j), "ReceiptHandle": m.receipt} for j, m in enumerate(chunk)],
                )
                failed = [(int(f["Id"]), f.get("Code")) for f in resp.get("Failed") or []]
            except Exception as exc:
                failed = [(j, classify(exc, "central").reason) for j in range(len(chunk))]
            for j, code in failed:  # redelivered later; the ledger makes that harmless
                m = chunk[j]
                event(
                    logging.WARNING,
                    "message.delete_failed",
                    customer=m.customer,
                    message_id=m.message_id,
                    code=code,
                )
            with self._stats_lock:
                self.stats_data.deleted += len(chunk) - len(failed)
            for m in chunk:
                self._settle(m)

    def _flush_acks(self, *, force: bool = False) -> None:
        """Flush the slots holding acknowledgements older than ``ack_linger`` (or all: ``force``)."""
        now = time.monotonic()
        with self._acks_lock:
            codes = list(self._acking)
        for code in codes:
            slot = self.slots[code]
            with slot.lock:
                if not slot.acks:
                    with self._acks_lock:
                        self._acking.discard(code)
                    continue
            if force or now - slot.acks_since >= self.options.ack_linger:
                self._flush_slot(slot)

    # -- background ----------------------------------------------------------------------------------
    def _heartbeat_loop(self) -> None:
        every = self.options.heartbeat_every
        while not self._stop_background.wait(every):
            try:
                self._heartbeat()
            except Exception as exc:
                event(logging.WARNING, "heartbeat.failed", error=classify(exc, "central").detail)

    def _heartbeat(self) -> None:
        """Extend the visibility of held messages and the leases of held claims and lanes before they
        lapse. A message still waiting for a delivery thread is extended to ``waiting_visibility``."""
        now = time.monotonic()
        vis = self.options.visibility_timeout
        with self._inflight_lock:
            held = [m for m in self._inflight.values() if not m.settled]
        due: dict[str, list[tuple[InFlight, int]]] = {}
        for m in held:
            if m.visible_until - now < vis / 2:
                extend = vis if m.started else self.options.waiting_visibility
                due.setdefault(m.queue_url, []).append((m, extend))
        for url, msgs in due.items():
            client = self.queues.client(self.slots[msgs[0][0].customer].mapping)
            for i in range(0, len(msgs), 10):
                chunk = msgs[i : i + 10]
                resp = client.change_message_visibility_batch(
                    QueueUrl=url,
                    Entries=[
                        {"Id": str(j), "ReceiptHandle": m.receipt, "VisibilityTimeout": extend}
                        for j, (m, extend) in enumerate(chunk)
                    ],
                )
                failed = {int(f["Id"]) for f in resp.get("Failed") or []}
                for j, (m, extend) in enumerate(chunk):
                    if j not in failed:
                        m.visible_until = now + extend
        renew_by = time.time() + self.options.claim_lease / 2
        for m in held:
            claim, lane = m.claim, m.lane
            if claim is not None and m.claim_lease_until < renew_by:
                lease = self._renewed(m, "claim", claim[0].change_id, self.ledger.renew_claim(*claim))
                m.claim_lease_until = lease or m.claim_lease_until
            if lane is not None and lane.lease_until < renew_by:
                renewal = self.ledger.renew_lane(lane.change_id, lane.customer, lane.owner)
                lane.lease_until = self._renewed(m, "lane", lane.change_id, renewal) or lane.lease_until

    @staticmethod
    def _renewed(m: InFlight, what: str, change_id: str, lease: float | None) -> float | None:
        """A renewed lease (``what``: claim or lane), or None logged as lost."""
        if lease is None:
            event(
                logging.WARNING,
                f"{what}.lost",
                customer=m.customer,
                change_id=change_id,
                message_id=m.message_id,
            )
        return lease

    def _housekeeping_loop(self) -> None:
        tick = max(0.02, min(0.25, self.options.ack_linger))
        next_metrics = time.monotonic() + self.options.metrics_interval
        next_audit = time.monotonic() + self.options.audit_interval
        idle = max(tick, min(IDLE_TICK, self.options.metrics_interval, self.options.audit_interval))
        while True:
            # Every ``tick`` while acknowledgements wait to be flushed, else once a second or so
            # (metrics, audit, the health beat) unless one comes: not 20 timed wake-ups a second.
            self._acks_added.clear()
            with self._acks_lock:
                lingering = bool(self._acking)
            if lingering:
                self._stop_background.wait(tick)
            else:
                self._acks_added.wait(idle)
            if self._stop_background.is_set():
                return
            now = time.monotonic()
            self._loop_beat = now
            try:
                self._flush_acks()
                if now >= next_metrics:
                    next_metrics = now + self.options.metrics_interval
                    self.metrics.flush()
                if now >= next_audit:
                    next_audit = now + self.options.audit_interval
                    self.audit.flush()
            except Exception as exc:
                event(logging.WARNING, "housekeeping.failed", error=classify(exc, "central").detail)

    # -- health --------------------------------------------------------------------------------------
    def health(self) -> tuple[bool, dict[str, Any]]:
        """Loop alive and every poller polled recently."""
        now = time.monotonic()
        loop_age = now - self._loop_beat
        limit = self.options.poll_wait + self.sqs_aws.settings.read_timeout + 30
        beats = (*self._poller_beats, *self._doorbell_beats)
        oldest = max((now - b for b in beats if b != PARKED), default=0.0)
        ok = self._started and not self._stopped.is_set() and loop_age < 30 and oldest < limit
        return ok, {
            "loop_age_s": round(loop_age, 2),
            "oldest_poll_age_s": round(oldest, 2),
            "worker_id": self.worker_id,
        }

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Config valid (loaded), queues resolved and SQS answering; not ready while stopping."""
        now = time.monotonic()
        resolved = sum(1 for s in self.slots.values() if s.queue_url)
        sqs_age = now - self._last_sqs_ok if self._last_sqs_ok else None
        recent = sqs_age is not None and sqs_age < max(60.0, 3.0 * self.options.poll_wait)
        ok = (
            self._started and not self._stop_receiving.is_set() and resolved == len(self.slots) > 0 and recent
        )
        return ok, {
            "customers": len(self.slots),
            "queues_resolved": resolved,
            "last_sqs_ok_s": round(sqs_age, 2) if sqs_age is not None else None,
            "stopping": self._stop_receiving.is_set(),
        }

    # -- stats ---------------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        with self._stats_lock:
            data = self.stats_data.snapshot()
        data.update(
            worker_id=self.worker_id,
            customers=len(self.codes),
            pollers=len(self._groups),
            hot=sum(1 for slot in self.slots.values() if slot.hot),
            in_flight=self.in_flight(),
            busy=self.scheduler.busy,
            waiting=self.scheduler.waiting,
            threads=threading.active_count(),
            running=self._started and not self._stopped.is_set(),
        )
        return data

    def _summary(self) -> dict[str, Any]:
        s = self.stats()
        keys = ("received", "processed", "dead_lettered", "emails_sent", "released", "results")
        return {k: s.get(k) for k in keys}


def poll_wait_of(options: WorkerOptions, queues: int) -> int:
    """Long-poll seconds for a poller serving ``queues`` queues: the full wait for one queue; shared
    pollers split it (at least 2 s, so idle queues never cost more than one receive each 2 s)."""
    if options.drain:
        return min(options.poll_wait, 1)
    if queues <= 1:
        return options.poll_wait
    return min(options.poll_wait, max(2, options.poll_wait // queues))


def error_pause(errors: int) -> float:
    """Seconds to wait after the ``errors``-th failed receive in a row: exponential, jittered, <= 30."""
    return min(30.0, 0.5 * 2 ** min(errors, 6)) * random.uniform(0.5, 1.0)


def _shard_text(shard: tuple[int, int] | None) -> str | None:
    return f"{shard[0]}/{shard[1]}" if shard else None


class WorkerHandle:
    """A worker running in threads of this process (no signal handlers)."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    @property
    def stats(self) -> dict[str, Any]:
        return self.worker.stats()

    @property
    def running(self) -> bool:
        return not self.worker.stopped

    @property
    def customers(self) -> list[str]:
        return list(self.worker.codes)

    @property
    def worker_id(self) -> str:
        return self.worker.worker_id

    def stop(self, timeout: float = 25.0) -> None:
        self.worker.stop(timeout)


def start_background(
    aws: AwsFactory,
    config: Config,
    *,
    customers: list[str] | None = None,
    concurrency: int | None = None,
    worker_id: str | None = None,
    options: WorkerOptions | None = None,
) -> WorkerHandle:
    """Run the worker in threads of the current process; ``handle.stop(timeout)`` ends it."""
    opts = dataclasses.replace(options) if options is not None else WorkerOptions()
    if customers is not None:
        opts.customers = list(customers)
    if concurrency is not None:
        opts.concurrency = concurrency
    if worker_id is not None:
        opts.worker_id = worker_id
    return WorkerHandle(Worker(aws, config, opts).start())
