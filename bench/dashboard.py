"""A year of history for 300 customers: the report and the console's dashboard, on moto in its own process.

Seeds the change index (``--changes`` changes over 52 weeks, each targeting 5-300 customers, skewed to
few) and one delivery record per (change, notice, customer) with a realistic outcome mix, written the
way the status table holds them. Then measures, ``repeats`` times each:

- ``report``: ``ReportService.build`` over the whole year and over the dashboard's default 13 weeks
  (one index query; every customer's delivery outcomes from one parallel ``Scan`` of the status table
  in 8 segments, only the counted attributes read);
- the delivery outcomes alone, read that way and the way it is not done: one ``gsi2`` query per
  customer (300 queries in 16 threads), for the choice between them;
- ``dashboard``: the real console (``App.run_test``, 160x48) opening the dashboard until its four plots
  are drawn (13 weeks), then switching it to 52 weeks (``4``), as an operator waits for it.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from changeconsole.models import Change, ChangeStatus, Config, DeliveryState, EmailEvent, iso_utc
from changeconsole.services.authz import Authorizer
from changeconsole.services.bundle import Services
from changeconsole.services.localstack import build_local_config, local_factory
from changeconsole.services.provision import Provisioner
from changeconsole.services.reports import ReportService
from changeconsole.services.status import DeliveryKey, StatusStore, to_item

from .common import BenchResult, MotoProcess, log, measured, percentile

NOW = datetime(2026, 12, 1, tzinfo=UTC)
OUTCOMES = [DeliveryState.SENT] * 90 + [DeliveryState.PARTIAL] * 3 + [DeliveryState.FAILED] * 2
OUTCOMES += [DeliveryState.DEAD_LETTERED] * 2 + [DeliveryState.SKIPPED] * 2 + [DeliveryState.SUPERSEDED]


def seed(aws: Any, config: Config, changes: int, rng: random.Random) -> tuple[int, int]:
    """The index and the delivery records of a year; (changes, delivery records) written."""
    codes = sorted(config.customer_mappings)
    status = StatusStore(aws, config)
    docs: list[Change] = []
    items: list[dict[str, Any]] = []
    for i in range(changes):
        created = NOW - timedelta(days=365) + timedelta(minutes=rng.randint(0, 365 * 24 * 60))
        state = rng.choices(list(ChangeStatus), weights=[5, 10, 10, 65, 10])[0]
        submitted = created + timedelta(hours=rng.randint(1, 72))
        approved = submitted + timedelta(hours=rng.randint(1, 120))
        start = approved + timedelta(hours=rng.randint(12, 400))
        targeted = rng.sample(codes, k=min(len(codes), max(1, int(rng.paretovariate(1.2) * 5))))
        doc: dict[str, Any] = {
            "changeId": f"CHG-{created:%Y-%m-%dT%H-%M-%S}-b{i:05d}",
            "changeTitle": f"Bench change {i}",
            "customers": targeted,
            "status": state.value,
            "version": 3,
            "createdAt": iso_utc(created),
            "createdBy": "bench",
            "modifiedAt": iso_utc(approved),
            "snowTicket": f"CHG{i:07d}",
        }
        events: list[tuple[EmailEvent, datetime]] = []
        if state is not ChangeStatus.DRAFT:
            doc.update(submittedAt=iso_utc(submitted), submittedBy="alice")
            events.append((EmailEvent.SUBMITTED, submitted))
        if state in (ChangeStatus.APPROVED, ChangeStatus.COMPLETED):
            doc.update(
                approvedAt=iso_utc(approved),
                approvedBy="carol",
                implementationStart=iso_utc(start),
                implementationEnd=iso_utc(start + timedelta(hours=2)),
            )
            events.append((EmailEvent.APPROVED, approved))
        if state is ChangeStatus.COMPLETED:
            events.append((EmailEvent.COMPLETED, start + timedelta(hours=3)))
        docs.append(Change.model_validate(doc))
        for event, at in events:
            for code in targeted:
                key = DeliveryKey(doc["changeId"], 3, event, code)
                outcome = rng.choice(OUTCOMES)
                updated = iso_utc(at + timedelta(seconds=rng.randint(1, 600)))
                data = {
                    "pk": key.pk,
                    "sk": key.sk,
                    "change_id": key.change_id,
                    "version": 3,
                    "event": event.value,
                    "customer": code,
                    "state": outcome.value,
                    "updated_at": updated,
                    "recipients_total": 4,
                    "recipients_sent": 4 if outcome is DeliveryState.SENT else 2,
                    "recipients_failed": 0 if outcome is DeliveryState.SENT else 2,
                    "gsi2pk": f"CUSTOMER#{code}",
                    "gsi2sk": f"{updated}#{key.change_id}",
                    "rev": 1,
                }
                items.append(to_item(data))
    ddb = aws.client("dynamodb")

    def write(batch: list[dict[str, Any]]) -> None:
        pending = [{"PutRequest": {"Item": item}} for item in batch]
        while pending:
            resp = ddb.batch_write_item(RequestItems={config.status_table_name: pending})
            pending = resp.get("UnprocessedItems", {}).get(config.status_table_name, [])

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(status.index_change, docs))
        list(pool.map(write, [items[i : i + 25] for i in range(0, len(items), 25)]))
    return len(docs), len(items)


async def _open_dashboard(services: Services) -> tuple[float, float]:
    """Seconds until the dashboard shows its first report (13 weeks), then the year's after ``4``."""
    from changeconsole.app import ChangeConsoleApp
    from changeconsole.screens.dashboard import DashboardScreen

    app = ChangeConsoleApp(services, live=False, clock=lambda: NOW)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()

        async def shown(previous: object) -> DashboardScreen:
            while not (isinstance(app.screen, DashboardScreen) and app.screen.report not in (None, previous)):
                await asyncio.sleep(0.01)
            await pilot.pause()  # the plots drawn
            return app.screen

        started = time.perf_counter()
        app.open_dashboard()
        screen = await shown(None)
        opened = time.perf_counter() - started
        started = time.perf_counter()
        await pilot.press("4")
        await shown(screen.report)
        return opened, time.perf_counter() - started


def _row(what: str, walls: list[float], **extra: Any) -> dict[str, Any]:
    return {"what": what, **extra, "p50_s": percentile(walls, 0.5), "max_s": max(walls)}


def run(*, customers: int = 300, changes: int = 260, repeats: int = 3, **_: Any) -> BenchResult:
    result = BenchResult("dashboard")
    rng = random.Random(17)
    with MotoProcess() as moto:
        config = Config.model_validate(build_local_config(customers, endpoint=moto.endpoint))
        aws = local_factory(moto.endpoint)
        Provisioner(aws, config).tables()
        started = time.perf_counter()
        n_changes, n_records = seed(aws, config, changes, rng)
        result.notes.append(
            f"seeded {n_changes} changes and {n_records} delivery records for {customers} customers "
            f"over 52 weeks in {time.perf_counter() - started:.0f}s"
        )
        log(f"dashboard: {n_changes} changes, {n_records} delivery records")
        status = StatusStore(aws, config)
        service = ReportService(status, config, authz=Authorizer(aws, config, via="bench"))
        codes = sorted(config.customer_mappings)
        quarter = iso_utc(NOW - timedelta(weeks=13))

        def per_customer(since: str | None) -> int:
            with ThreadPoolExecutor(16) as pool:
                return sum(pool.map(lambda c: len(list(status.customer_outcomes(c, since=since))), codes))

        reads: list[tuple[str, str | None, Callable[[str | None], int]]] = [
            ("report, 52 weeks", None, lambda since: service.build(since=since, now=NOW).totals.total),
            ("report, 13 weeks", quarter, lambda since: service.build(since=since, now=NOW).totals.total),
            ("outcomes: scan, 52 weeks", None, lambda since: len(list(status.all_outcomes(since=since)))),
            ("outcomes: scan, 13 weeks", quarter, lambda since: len(list(status.all_outcomes(since=since)))),
            ("outcomes: gsi2 x customer, 52 weeks", None, per_customer),
            ("outcomes: gsi2 x customer, 13 weeks", quarter, per_customer),
        ]
        for what, since, read in reads:
            walls: list[float] = []
            cpu: list[float] = []
            server: list[float] = []
            for _round in range(repeats):
                with measured(moto) as m:
                    deliveries = read(since)
                walls.append(m["wall_s"])
                cpu.append(m["ours_cpu_s"])
                server.append(m["server_cpu_s"])
            result.rows.append(
                _row(
                    what,
                    walls,
                    deliveries=deliveries,
                    ours_cpu_s=percentile(cpu, 0.5),
                    server_cpu_s=percentile(server, 0.5),
                )
            )
            log(f"dashboard: {what}: {percentile(walls, 0.5):.2f}s")
        services = Services(aws, config)
        opened = [asyncio.run(_open_dashboard(services)) for _round in range(repeats)]
        result.rows.append(_row("console: dashboard opened (13 weeks)", [o for o, _ in opened]))
        result.rows.append(_row("console: then 4 (52 weeks)", [y for _, y in opened]))
        result.notes.append(
            "wall includes moto evaluating the scan or queries (server_cpu_s, on the same 2 cores); the "
            "console rows are the report plus drawing four plots in a headless console at 160x48"
        )
    return result
