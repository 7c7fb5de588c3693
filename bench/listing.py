"""Listing 5,000 changes through the change index (gsi1 of the status table), never S3."""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from changeconsole.models import Change, ChangeStatus, Config
from changeconsole.services.localstack import build_local_config
from changeconsole.services.provision import provision
from changeconsole.services.status import StatusStore

from .common import BenchResult, CallRecorder, MotoProcess, log, measured, percentile, recording_factory

STATUSES = [
    ChangeStatus.DRAFT,
    ChangeStatus.SUBMITTED,
    ChangeStatus.APPROVED,
    ChangeStatus.COMPLETED,
    ChangeStatus.CANCELLED,
]
WORDS = [
    "database",
    "network",
    "patch",
    "kernel",
    "upgrade",
    "firewall",
    "certificate",
    "rotation",
    "failover",
    "storage",
    "dns",
    "vpn",
]


def make_change(i: int, codes: list[str], rng: random.Random) -> Change:
    created = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=7 * i)
    start = created + timedelta(days=rng.randint(1, 30))
    stamp = created.strftime("%Y-%m-%dT%H-%M-%S")
    return Change.model_validate(
        {
            "changeId": f"CHG-{stamp}-{i:06d}",
            "changeTitle": f"{rng.choice(WORDS).title()} {rng.choice(WORDS)} #{i}",
            "changeReason": " ".join(rng.choice(WORDS) for _ in range(12)),
            "snowTicket": f"CHG{i:07d}",
            "customers": rng.sample(codes, k=rng.randint(1, min(8, len(codes)))),
            "implementationStart": start.isoformat(),
            "implementationEnd": (start + timedelta(hours=2)).isoformat(),
            "status": rng.choice(STATUSES).value,
            "version": rng.randint(1, 6),
            "createdAt": created.isoformat(),
            "createdBy": "bench",
            "modifiedAt": created.isoformat(),
            "modifiedBy": rng.choice(["alice", "bob", "carol"]),
        }
    )


def run(*, changes: int = 5000, repeats: int = 5, customers: int = 30, **_: Any) -> BenchResult:
    result = BenchResult("listing")
    rng = random.Random(8)
    with MotoProcess() as moto:
        raw = build_local_config(customers, endpoint=moto.endpoint)
        config = Config.model_validate(raw)
        recorder = CallRecorder()
        aws = recording_factory(moto.endpoint, recorder, "listing")
        provision(aws, config)
        store = StatusStore(aws, config)
        codes = sorted(config.customer_mappings)
        docs = [make_change(i, codes, rng) for i in range(changes)]
        log(f"listing: indexing {changes} changes")
        started = time.perf_counter()
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(store.index_change, docs))
        result.notes.append(f"indexed {changes} changes in {time.perf_counter() - started:.1f}s (16 threads)")
        from changeconsole.services.lifecycle import ChangeService

        service = ChangeService(aws, config, operator="bench", status=store)
        cases: list[tuple[str, dict[str, Any]]] = [
            ("all (ChangeService.list)", {}),
            ("status=approved", {"status": ChangeStatus.APPROVED}),
            (f"customer={codes[3]}", {"customer": codes[3]}),
            ("text='firewall'", {"text": "firewall"}),
            ("status+customer+text", {"status": "submitted", "customer": codes[0], "text": "patch"}),
        ]
        for label, kwargs in cases:
            walls: list[float] = []
            ours: list[float] = []
            server: list[float] = []
            rows = 0
            pages = 0
            for _ in range(repeats):
                recorder.clear()
                with measured(moto) as m:
                    rows = len(service.list(**kwargs))
                pages = len(recorder.select(op="Query"))
                walls.append(m["wall_s"])
                ours.append(m["ours_cpu_s"])
                server.append(m["server_cpu_s"])
            result.rows.append(
                {
                    "query": label,
                    "rows": rows,
                    "pages": pages,
                    "p50_s": percentile(walls, 0.5),
                    "max_s": max(walls),
                    "ours_cpu_s": percentile(ours, 0.5),
                    "server_cpu_s": percentile(server, 0.5),
                }
            )
        result.notes.append(
            "wall includes the moto server's query evaluation (server_cpu_s); ours_cpu_s is the client "
            "side: request, paging, deserialising every item into a ChangeSummary"
        )
    return result
