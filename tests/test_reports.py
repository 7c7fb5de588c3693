"""The report on a seeded history matches counts computed here, independently, from the seed."""

from __future__ import annotations

import csv
import io
import random
import statistics
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from changeconsole.models import Change, EmailEvent
from changeconsole.services.authz import Authorizer
from changeconsole.services.aws import AwsFactory
from changeconsole.services.reports import ReportService
from changeconsole.services.status import DeliveryKey, StatusStore
from support.cli import Cli

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # a Monday
STATES = ["sent", "sent", "sent", "partial", "failed", "dead_lettered", "skipped", "superseded", "queued"]


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def seed(aws: AwsFactory, stack: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """40 changes over ten weeks and their delivery records; returns both as plain data."""
    rng = random.Random(17)
    codes = sorted(stack.config.customer_mappings)
    status = StatusStore(aws, stack.config)
    changes: list[dict[str, Any]] = []
    deliveries: list[dict[str, Any]] = []
    for i in range(40):
        created = T0 + timedelta(hours=rng.randint(0, 70 * 24))
        state = rng.choice(["draft", "submitted", "approved", "completed", "cancelled"])
        doc: dict[str, Any] = {
            "changeId": f"CHG-2026-01-05T09-00-00-r{i:05d}",
            "changeTitle": f"Change {i}",
            "customers": rng.sample(codes, k=rng.randint(1, len(codes))),
            "status": state,
            "version": 1 if state == "draft" else 3,
            "createdAt": _iso(created),
            "createdBy": "alice",
            "modifiedAt": _iso(created + timedelta(days=1)),
        }
        if state != "draft":
            submitted = created + timedelta(hours=rng.randint(1, 48))
            doc.update(submittedAt=_iso(submitted), submittedBy="bob")
            if state in ("approved", "completed") or (state == "cancelled" and i % 2):
                approved = submitted + timedelta(hours=rng.randint(1, 96))
                start = approved + timedelta(hours=rng.randint(-12, 240))
                doc.update(
                    approvedAt=_iso(approved),
                    approvedBy="carol",
                    implementationStart=_iso(start),
                    implementationEnd=_iso(start + timedelta(hours=2)),
                )
            for code in doc["customers"]:
                for event in (EmailEvent.SUBMITTED, EmailEvent.APPROVED)[: 1 + ("approvedAt" in doc)]:
                    outcome = rng.choice(STATES)
                    at = submitted + timedelta(hours=rng.randint(0, 100))
                    sent, failed = rng.randint(0, 5), rng.randint(0, 2)
                    status.update(
                        DeliveryKey(doc["changeId"], 3, event, code),
                        state=outcome,
                        updated_at=_iso(at),
                        recipients_sent=sent,
                        recipients_failed=failed,
                    )
                    deliveries.append(
                        {"customer": code, "state": outcome, "at": at, "sent": sent, "failed": failed}
                    )
        status.index_change(Change.model_validate(doc), location="draft" if state == "draft" else "archive")
        changes.append(doc)
    return changes, deliveries


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def expected(
    changes: list[dict[str, Any]],
    deliveries: list[dict[str, Any]],
    since: datetime,
    until: datetime,
    customer=None,
) -> dict[str, Any]:
    weeks: dict[str, Counter[str]] = defaultdict(Counter)
    to_approve, to_start = [], []
    for c in changes:
        if customer and customer not in c["customers"]:
            continue
        created = _when(c["createdAt"])
        if since <= created <= until:
            monday = created.date() - timedelta(days=created.weekday())
            weeks[monday.isoformat()][c["status"]] += 1
        if "approvedAt" in c and since <= _when(c["approvedAt"]) <= until:
            to_approve.append((_when(c["approvedAt"]) - _when(c["submittedAt"])).total_seconds() / 3600)
            to_start.append((_when(c["implementationStart"]) - _when(c["approvedAt"])).total_seconds() / 3600)
    per_customer: dict[str, Counter[str]] = defaultdict(Counter)
    for d in deliveries:
        if (customer is None or d["customer"] == customer) and since <= d["at"] <= until:
            per_customer[d["customer"]][d["state"]] += 1
            per_customer[d["customer"]]["recipients_sent"] += d["sent"]
    failing = sorted(
        (
            (sum(n[s] for s in ("failed", "partial", "dead_lettered")), code)
            for code, n in per_customer.items()
        ),
        key=lambda x: (-x[0], x[1]),
    )
    return {
        "weeks": {w: dict(n) for w, n in weeks.items()},
        "to_approve_median": round(statistics.median(to_approve), 2),
        "to_start_median": round(statistics.median(to_start), 2),
        "to_approve_count": len(to_approve),
        "per_customer": {code: dict(n) for code, n in per_customer.items()},
        "top_failing": [code for n, code in failing if n][:10],
    }


def _check(report: dict[str, Any], want: dict[str, Any]) -> None:
    weeks = {
        row["week"]: {k: v for k, v in row.items() if k != "week" and v} for row in report["changes_per_week"]
    }
    assert {w: n for w, n in weeks.items() if n} == want["weeks"]
    lead = report["lead_times"]
    assert lead["submit_to_approve"]["median_hours"] == want["to_approve_median"]
    assert lead["submit_to_approve"]["count"] == want["to_approve_count"]
    assert lead["approve_to_start"]["median_hours"] == want["to_start_median"]
    got = {}
    for row in report["deliveries"]["per_customer"]:
        counts = {s: n for s, n in row["counts"].items() if n}
        if counts:
            got[row["customer"]] = {**counts, "recipients_sent": row["recipients_sent"]}
        attempted = sum(row["counts"][s] for s in ("sent", "partial", "failed", "dead_lettered"))
        if attempted:
            assert row["rates"]["sent"] == round(row["counts"]["sent"] / attempted, 4)
            assert row["rates"]["dead_lettered"] == round(row["counts"]["dead_lettered"] / attempted, 4)
    assert got == {c: {k: v for k, v in n.items() if v} for c, n in want["per_customer"].items()}
    assert [t["customer"] for t in report["top_failing"]] == want["top_failing"]


def test_report_matches_an_independent_count(
    make_stack: Any, aws_factory: AwsFactory, tmp_path: Path
) -> None:
    stack = make_stack(customers=5, contacts=0)
    changes, deliveries = seed(aws_factory, stack)
    service = ReportService(
        StatusStore(aws_factory, stack.config), stack.config, authz=Authorizer(aws_factory, stack.config)
    )
    everything = service.build().to_json()
    _check(
        everything,
        expected(changes, deliveries, datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)),
    )
    since, until = datetime(2026, 1, 19, tzinfo=UTC), datetime(2026, 2, 22, 23, 59, 59, tzinfo=UTC)
    cli = Cli(stack, tmp_path)
    ranged = cli.json("report", "--since", "2026-01-19", "--until", "2026-02-22")
    _check(ranged, expected(changes, deliveries, since, until))
    code = sorted(stack.config.customer_mappings)[2]
    one = cli.json("report", "--since", "2026-01-19", "--until", "2026-02-22", "--customer", code)
    _check(one, expected(changes, deliveries, since, until, code))
    assert [r["customer"] for r in one["deliveries"]["per_customer"]] == [code]
    table = cli("report", "--csv", "--since", "2026-01-19", "--until", "2026-02-22")
    rows = list(csv.reader(io.StringIO(table.stdout)))
    assert rows[0] == ["section", "key", "metric", "value"]
    total_sent = next(r for r in rows[1:] if r[:3] == ["deliveries", "*", "sent"])
    assert int(total_sent[3]) == ranged["deliveries"]["total"]["counts"]["sent"]
    assert cli("report", "--customer", "nobody").exit_code == 2
    human = cli("report")
    assert human.exit_code == 0 and "changes per week" in human.stdout
