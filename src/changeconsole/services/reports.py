"""History in numbers, computed from the change index and the delivery records (the status table).

- changes per week (Monday, UTC, of the change's creation) by their current state;
- lead times: submit → approve and approve → window start (hours; median, p90, mean, range), overall
  and per week of approval;
- deliveries per customer (delivery records last written in the range, with only the attributes
  counted: one customer through its ``gsi2`` query, every customer through one parallel scan) by
  state, and their outcome rates over the deliveries that were attempted (sent, partial, failed,
  dead-lettered);
- the customers with the most failed (failed, partial or dead-lettered) deliveries.

Bounce and complaint rates need per-message delivery events, which are not recorded yet.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ..models import ChangeStatus, Config, DeliveryState, OperatorAction, iso_utc
from .authz import Authorizer
from .search import parse_moment
from .status import ChangeSummary, StatusStore

ATTEMPTED = (DeliveryState.SENT, DeliveryState.PARTIAL, DeliveryState.FAILED, DeliveryState.DEAD_LETTERED)
FAILURES = (DeliveryState.PARTIAL, DeliveryState.FAILED, DeliveryState.DEAD_LETTERED)
TOP_FAILING = 10


def week_of(moment: datetime) -> str:
    """The Monday (UTC) of ``moment``'s week, ``YYYY-MM-DD``."""
    day = moment.astimezone(UTC).date()
    return (day - timedelta(days=day.weekday())).isoformat()


def _hours(a: datetime, b: datetime) -> float:
    return (b - a).total_seconds() / 3600.0


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted ``values``."""
    index = max(0, min(len(values) - 1, math.ceil(q * len(values)) - 1))
    return values[index]


@dataclass
class LeadTime:
    """Hours from one step to the next over the changes that took both."""

    count: int = 0
    median_hours: float | None = None
    p90_hours: float | None = None
    mean_hours: float | None = None
    min_hours: float | None = None
    max_hours: float | None = None

    @classmethod
    def of(cls, hours: Iterable[float]) -> LeadTime:
        values = sorted(hours)
        if not values:
            return cls()
        return cls(
            count=len(values),
            median_hours=round(statistics.median(values), 2),
            p90_hours=round(percentile(values, 0.9), 2),
            mean_hours=round(statistics.fmean(values), 2),
            min_hours=round(values[0], 2),
            max_hours=round(values[-1], 2),
        )


@dataclass
class CustomerDeliveries:
    customer: str
    name: str
    counts: dict[str, int]  # every DeliveryState
    recipients_sent: int = 0
    recipients_failed: int = 0

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def attempted(self) -> int:
        return sum(self.counts[s.value] for s in ATTEMPTED)

    @property
    def failures(self) -> int:
        return sum(self.counts[s.value] for s in FAILURES)

    def rate(self, state: DeliveryState) -> float | None:
        return round(self.counts[state.value] / self.attempted, 4) if self.attempted else None

    def rates(self) -> dict[str, float | None]:
        return {s.value: self.rate(s) for s in ATTEMPTED}

    def to_json(self) -> dict[str, Any]:
        return {
            "customer": self.customer,
            "name": self.name,
            "deliveries": self.total,
            "attempted": self.attempted,
            "failures": self.failures,
            "counts": self.counts,
            "rates": self.rates(),
            "recipients_sent": self.recipients_sent,
            "recipients_failed": self.recipients_failed,
        }


def _zero_counts() -> dict[str, int]:
    return {s.value: 0 for s in DeliveryState}


@dataclass
class Report:
    since: str | None
    until: str | None
    customer: str | None
    generated_at: str
    changes: int = 0
    weeks: list[str] = field(default_factory=list)
    changes_per_week: dict[str, dict[str, int]] = field(default_factory=dict)  # week -> state -> n
    submit_to_approve: LeadTime = field(default_factory=LeadTime)
    approve_to_start: LeadTime = field(default_factory=LeadTime)
    lead_by_week: dict[str, dict[str, float | None]] = field(default_factory=dict)  # week -> medians
    deliveries: list[CustomerDeliveries] = field(default_factory=list)  # by customer code

    @property
    def totals(self) -> CustomerDeliveries:
        total = CustomerDeliveries("*", "all customers", _zero_counts())
        for c in self.deliveries:
            for state, n in c.counts.items():
                total.counts[state] += n
            total.recipients_sent += c.recipients_sent
            total.recipients_failed += c.recipients_failed
        return total

    def top_failing(self, limit: int = TOP_FAILING) -> list[CustomerDeliveries]:
        failing = [c for c in self.deliveries if c.failures]
        return sorted(failing, key=lambda c: (-c.failures, c.customer))[:limit]

    def to_json(self) -> dict[str, Any]:
        totals = self.totals
        return {
            "since": self.since,
            "until": self.until,
            "customer": self.customer,
            "generated_at": self.generated_at,
            "changes": self.changes,
            "changes_per_week": [
                {"week": w, **{s.value: self.changes_per_week[w].get(s.value, 0) for s in ChangeStatus}}
                for w in self.weeks
            ],
            "lead_times": {
                "submit_to_approve": asdict(self.submit_to_approve),
                "approve_to_start": asdict(self.approve_to_start),
                "by_week": [
                    {"week": w, **self.lead_by_week[w]} for w in self.weeks if w in self.lead_by_week
                ],
            },
            "deliveries": {
                "total": totals.to_json(),
                "per_customer": [c.to_json() for c in self.deliveries],
            },
            "top_failing": [
                {"customer": c.customer, "name": c.name, "failures": c.failures, "deliveries": c.total}
                for c in self.top_failing()
            ],
            "bounce_complaint": None,  # needs per-message delivery events (not recorded yet)
        }

    def csv_rows(self) -> Iterator[list[Any]]:
        """Long format: section, key, metric, value (one number per row)."""
        yield ["section", "key", "metric", "value"]
        for week in self.weeks:
            for status in ChangeStatus:
                yield [
                    "changes_per_week",
                    week,
                    status.value,
                    self.changes_per_week[week].get(status.value, 0),
                ]
        for name, lead in (
            ("submit_to_approve", self.submit_to_approve),
            ("approve_to_start", self.approve_to_start),
        ):
            for metric, value in asdict(lead).items():
                yield ["lead_time", name, metric, "" if value is None else value]
        for c in [*self.deliveries, self.totals]:
            for state, n in c.counts.items():
                yield ["deliveries", c.customer, state, n]
            for state, rate in c.rates().items():
                yield ["delivery_rate", c.customer, state, "" if rate is None else rate]
            yield ["deliveries", c.customer, "recipients_sent", c.recipients_sent]
            yield ["deliveries", c.customer, "recipients_failed", c.recipients_failed]
        for rank, c in enumerate(self.top_failing(), start=1):
            yield ["top_failing", c.customer, f"rank {rank} failures", c.failures]

    def to_csv(self) -> str:
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows(self.csv_rows())
        return out.getvalue()


class ReportService:
    def __init__(self, status: StatusStore, config: Config, *, authz: Authorizer, threads: int = 16) -> None:
        self.status = status
        self.config = config
        self.authz = authz
        self.threads = threads

    def build(
        self,
        *,
        since: str | None = None,
        until: str | None = None,
        customer: str | None = None,
        now: datetime | None = None,
        changes: list[ChangeSummary] | None = None,
    ) -> Report:
        """The report of ``[since, until]`` (RFC 3339; open ends allowed), for one customer or all.

        ``changes``: the index rows when the caller holds them already (the console's change list)."""
        self.authz.require(OperatorAction.READ)  # a read of every customer's delivery records
        moment = now or datetime.now(UTC)
        report = Report(since, until, customer, iso_utc(moment))
        rows = changes if changes is not None else self.status.list_changes(customer=customer)
        self._changes(report, rows)
        codes = [customer] if customer else sorted(self.config.customer_mappings)
        per_customer = {code: self._empty(code) for code in codes}
        if customer:
            found = self.status.customer_outcomes(customer, since=since, until=until)
        else:
            found = self.status.all_outcomes(since=since, until=until, segments=min(8, self.threads))
        for data in found:
            counted = per_customer.get(str(data.get("customer")))
            state = data.get("state")
            if counted is None or state not in counted.counts:
                continue  # a customer no longer configured, or an item seen mid-write
            counted.counts[state] += 1
            counted.recipients_sent += int(data.get("recipients_sent") or 0)
            counted.recipients_failed += int(data.get("recipients_failed") or 0)
        report.deliveries = [per_customer[code] for code in codes]
        return report

    def _empty(self, code: str) -> CustomerDeliveries:
        mapping = self.config.customer_mappings.get(code)
        return CustomerDeliveries(code, mapping.customer_name if mapping else code, _zero_counts())

    def _in_range(self, report: Report, moment: datetime | None) -> bool:
        if moment is None:
            return False
        since, until = parse_moment(report.since), parse_moment(report.until)
        return (since is None or moment >= since) and (until is None or moment <= until)

    def _changes(self, report: Report, rows: list[ChangeSummary]) -> None:
        per_week: dict[str, Counter[str]] = defaultdict(Counter)
        to_approve: list[float] = []
        to_start: list[float] = []
        weekly: dict[str, tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))
        for s in rows:
            if report.customer and report.customer not in s.customers:
                continue
            created = parse_moment(s.created_at or s.modified_at)
            if self._in_range(report, created):
                assert created is not None
                per_week[week_of(created)][s.status.value] += 1
                report.changes += 1
            approved = parse_moment(s.approved_at)
            if not self._in_range(report, approved):
                continue
            assert approved is not None
            week = week_of(approved)
            submitted = parse_moment(s.submitted_at)
            if submitted is not None and submitted <= approved:
                to_approve.append(_hours(submitted, approved))
                weekly[week][0].append(to_approve[-1])
            start = parse_moment(s.implementation_start)
            if start is not None:
                to_start.append(_hours(approved, start))
                weekly[week][1].append(to_start[-1])
        report.weeks = sorted(set(per_week) | set(weekly))
        report.changes_per_week = {w: dict(per_week.get(w, Counter())) for w in report.weeks}
        report.submit_to_approve = LeadTime.of(to_approve)
        report.approve_to_start = LeadTime.of(to_start)
        report.lead_by_week = {
            w: {
                "submit_to_approve_median_hours": round(statistics.median(a), 2) if a else None,
                "approve_to_start_median_hours": round(statistics.median(b), 2) if b else None,
            }
            for w, (a, b) in weekly.items()
        }
