"""The live status screen with 1,000 customer rows refreshing at 1 Hz, headless (``App.run_test``).

A background thread (bounded, stops by itself) keeps changing ~5 % of the delivery records per second
so every refresh has work to do. Measured over the window: refreshes done, the query per refresh (in
the screen's worker thread), the table sync per refresh (UI thread), the event loop's worst lag (what a
user would feel as stutter) and the console's CPU % (this process, minus the mutator thread).
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from changeconsole.models import Config, DeliveryRecord, DeliveryState, EmailEvent
from changeconsole.services.bundle import Services
from changeconsole.services.localstack import build_local_config, local_factory
from changeconsole.services.provision import Provisioner
from changeconsole.services.status import DeliveryKey, StatusStore

from .common import BenchResult, MotoProcess, log, percentile

CHANGE_ID = "CHG-2026-11-27T12-00-00-bench1"
STATES = [DeliveryState.PROCESSING, DeliveryState.SENT, DeliveryState.PARTIAL, DeliveryState.FAILED]


def _timed(fn: Any, sink: list[float]) -> Any:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            sink.append(time.perf_counter() - started)

    return wrapper


class MemoryStore:
    """The status store's read side, in memory: what the screen costs without any storage latency."""

    def __init__(self, records: list[DeliveryRecord]) -> None:
        self._records = {r.customer: r for r in records}
        self._lock = threading.Lock()

    def latest_round(self, change_id: str) -> list[DeliveryRecord]:
        with self._lock:
            return list(self._records.values())

    def records(self, change_id: str, **_: Any) -> list[DeliveryRecord]:
        return self.latest_round(change_id)

    def get_summary(self, change_id: str) -> Any:
        return None

    def update(self, key: DeliveryKey, **fields: Any) -> None:
        with self._lock:
            old = self._records[key.customer]
            self._records[key.customer] = old.model_copy(update=fields)


def _watch(services: Any, seconds: float, mutate: Callable[[threading.Event], float]) -> dict[str, float]:
    """Run the screen headless for ``seconds`` while ``mutate`` changes records; measure it."""
    from changeconsole.app import ChangeConsoleApp
    from changeconsole.screens.status import LiveStatusScreen
    from changeconsole.services.live_status import LiveStatusQuery

    queries: list[float] = []
    query_cpu: list[float] = []
    query_items: list[int] = []
    syncs: list[float] = []
    lags: list[float] = []
    store = services.status
    # Items DynamoDB returned to this process (Query/GetItem), by thread: what one refresh read.
    items_by_thread: dict[int, int] = {}

    def count_items(parsed: Any = None, **_: Any) -> None:
        if isinstance(parsed, dict):
            n = len(parsed.get("Items", [])) + (1 if "Item" in parsed else 0)
            ident = threading.get_ident()
            items_by_thread[ident] = items_by_thread.get(ident, 0) + n

    aws = getattr(store, "aws", None)
    if aws is not None:
        aws.client("dynamodb").meta.events.register("after-call.dynamodb", count_items)
    # What the screen calls once per refresh: ``poll`` (``fetch`` in releases before it existed).
    method = "poll" if hasattr(LiveStatusQuery, "poll") else "fetch"
    original = getattr(LiveStatusQuery, method)

    def timed_fetch(self: Any, *args: Any, **kwargs: Any) -> Any:
        ident = threading.get_ident()
        items_by_thread[ident] = 0
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            return original(self, *args, **kwargs)
        finally:
            queries.append(time.perf_counter() - wall)
            query_cpu.append(time.thread_time() - cpu)
            query_items.append(items_by_thread.pop(ident, 0))

    setattr(LiveStatusQuery, method, timed_fetch)
    stop = threading.Event()
    mutator_cpu = [0.0]

    async def scenario() -> dict[str, float]:
        # The console itself; its home screen's list refresh is pushed out of the measured window.
        app = ChangeConsoleApp(services, refresh_interval=3600.0, autosave_interval=0)
        async with app.run_test(size=(160, 50), headless=True) as pilot:
            await app.push_screen(LiveStatusScreen(CHANGE_ID, interval=1.0))
            deadline = time.monotonic() + 120
            while not (isinstance(app.screen, LiveStatusScreen) and app.screen.loaded):
                if time.monotonic() > deadline:
                    raise RuntimeError("the status screen never loaded")
                await pilot.pause(0.05)
            screen = app.screen
            assert isinstance(screen, LiveStatusScreen)
            screen.sync_table = _timed(screen.sync_table, syncs)  # type: ignore[method-assign]
            rows_shown = screen.table.row_count
            thread = threading.Thread(
                target=lambda: mutator_cpu.__setitem__(0, mutate(stop)), name="bench-mutator", daemon=True
            )
            thread.start()
            fetches = screen.fetch_count
            n_queries = len(queries)
            cpu0, wall0 = time.process_time(), time.perf_counter()
            loop = asyncio.get_running_loop()
            end = wall0 + seconds
            while time.perf_counter() < end:
                tick = loop.time()
                await asyncio.sleep(0.05)
                lags.append(loop.time() - tick - 0.05)
            cpu1, wall1 = time.process_time(), time.perf_counter()
            stop.set()
            thread.join(30)
            return {
                "rows_shown": rows_shown,
                "refreshes": screen.fetch_count - fetches,
                "cpu_s": cpu1 - cpu0,
                "wall_s": wall1 - wall0,
                "first_query": n_queries,
            }

    try:
        out = asyncio.run(scenario())
    finally:
        setattr(LiveStatusQuery, method, original)
    window = queries[int(out["first_query"]) :] or queries
    window_cpu = query_cpu[int(out["first_query"]) :] or query_cpu
    window_items = query_items[int(out["first_query"]) :] or query_items
    return {
        "rows": int(out["rows_shown"]),
        "seconds": round(out["wall_s"], 1),
        "refreshes": int(out["refreshes"]),
        "refresh_hz": out["refreshes"] / out["wall_s"],
        "query_p50_s": percentile(window, 0.5),
        "query_p95_s": percentile(window, 0.95),
        "query_cpu_p50_s": percentile(window_cpu, 0.5),
        "query_cpu_mean_s": sum(window_cpu) / len(window_cpu) if window_cpu else float("nan"),
        "items_per_refresh_p50": percentile([float(n) for n in window_items], 0.5),
        "items_per_refresh_mean": sum(window_items) / len(window_items) if window_items else float("nan"),
        "sync_p50_s": percentile(syncs, 0.5),
        "sync_p95_s": percentile(syncs, 0.95),
        "sync_max_s": max(syncs) if syncs else float("nan"),
        "loop_lag_p95_s": percentile(lags, 0.95),
        "loop_lag_max_s": max(lags) if lags else float("nan"),
        "cpu_pct": 100 * max(0.0, out["cpu_s"] - mutator_cpu[0]) / out["wall_s"],
    }


def _mutator(
    update: Callable[[DeliveryKey], None], keys: list[DeliveryKey], seconds: float
) -> Callable[..., float]:
    def mutate(stop: threading.Event) -> float:
        rng = random.Random(1)
        started = time.thread_time()
        deadline = time.monotonic() + seconds + 10
        with ThreadPoolExecutor(4) as pool:
            while not stop.is_set() and time.monotonic() < deadline:
                list(pool.map(update, rng.sample(keys, max(1, len(keys) // 20))))
                stop.wait(1.0)
        return time.thread_time() - started

    return mutate


def run(*, rows: int = 1000, seconds: float = 15.0, **_: Any) -> BenchResult:
    result = BenchResult("console")
    rng = random.Random(2)
    with MotoProcess() as moto:
        config = Config.model_validate(build_local_config(rows, endpoint=moto.endpoint))
        aws = local_factory(moto.endpoint)
        Provisioner(aws, config).tables()
        codes = sorted(config.customer_mappings)
        keys = [DeliveryKey(CHANGE_ID, 2, EmailEvent.SUBMITTED, c) for c in codes]
        seeded = StatusStore(aws, config, threads=16).put_queued_many(keys)
        log(f"console: {rows} delivery records seeded")

        # 1. The screen alone: records from memory, so the refresh rate is the screen's own.
        memory = MemoryStore(seeded)
        services = Services(local_factory(moto.endpoint), config, readonly=True)
        services.__dict__["status"] = memory
        row = _watch(
            services,
            seconds,
            _mutator(
                lambda k: memory.update(k, state=rng.choice(STATES), attempts=rng.randint(1, 3)),
                keys,
                seconds,
            ),
        )
        result.rows.append({"store": "memory (screen only)", **row})
        log(f"console: screen alone {row['refresh_hz']:.2f} Hz")

        # 2. The whole path: the status table on the local stack (moto answers every read).
        services = Services(local_factory(moto.endpoint), config, readonly=True)
        writer = StatusStore(local_factory(moto.endpoint), config)
        row = _watch(
            services,
            seconds,
            _mutator(
                lambda k: writer.update(k, state=rng.choice(STATES), attempts=rng.randint(1, 3)),
                keys,
                seconds,
            ),
        )
        result.rows.append({"store": "status table on moto", **row})
    result.notes.append(
        "query = one refresh's read (LiveStatusQuery.poll) in the screen's worker thread (wall incl. the "
        "moto server; query_cpu = this process's thread CPU; items = DynamoDB items returned); sync = "
        "the UI-thread table diff; loop lag = how late a 50 ms timer fired (stutter); cpu_pct = this "
        "process minus the bench's record mutator"
    )
    return result
