"""Listing 5,000 changes through the change index (gsi1 of the status table), never S3."""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3

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


def run(*, changes: int = 5000, repeats: int = 3, customers: int = 30, **_: Any) -> BenchResult:
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
        ]
        floor_client = boto3.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=config.aws_region
        ).client("dynamodb", endpoint_url=moto.endpoint)

        def bare(kwargs: dict[str, Any]) -> int:
            """The floor: the same paged Query, items left as they come (no ChangeSummary)."""
            names: dict[str, str] = {}
            values: dict[str, Any] = {":pk": {"S": "CHANGES"}}
            filters = []
            if "status" in kwargs:
                names["#st"], values[":st"] = "status", {"S": str(kwargs["status"])}
                filters.append("#st = :st")
            if "customer" in kwargs:
                names["#cu"], values[":cu"] = "customers", {"S": kwargs["customer"]}
                filters.append("contains(#cu, :cu)")
            if "text" in kwargs:
                names["#se"], values[":tx"] = "search", {"S": kwargs["text"]}
                filters.append("contains(#se, :tx)")
            query: dict[str, Any] = {
                "TableName": config.status_table_name,
                "IndexName": "gsi1",
                "KeyConditionExpression": "gsi1pk = :pk",
                "ExpressionAttributeValues": values,
                "ScanIndexForward": False,
            }
            if filters:
                query["ExpressionAttributeNames"] = names
                query["FilterExpression"] = " AND ".join(filters)
            n = 0
            for page in floor_client.get_paginator("query").paginate(**query):
                n += len(page.get("Items", []))
            return n

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
            floor_walls: list[float] = []
            floor_cpu: list[float] = []
            for _ in range(repeats):
                with measured(moto) as m:
                    floor_rows = bare(kwargs)
                floor_walls.append(m["wall_s"])
                floor_cpu.append(m["ours_cpu_s"])
            result.rows.append(
                {
                    "query": label,
                    "rows": rows,
                    "pages": pages,
                    "p50_s": percentile(walls, 0.5),
                    "floor_p50_s": percentile(floor_walls, 0.5),
                    "ratio": percentile(walls, 0.5) / percentile(floor_walls, 0.5),
                    "ours_cpu_s": percentile(ours, 0.5),
                    "floor_cpu_s": percentile(floor_cpu, 0.5),
                    "server_cpu_s": percentile(server, 0.5),
                    "floor_rows_match": floor_rows == rows,
                }
            )
        result.notes.append(
            "wall includes the moto server's query evaluation (server_cpu_s); ours_cpu_s is the client "
            "side: request, paging, deserialising every item into a ChangeSummary"
        )
    return result
