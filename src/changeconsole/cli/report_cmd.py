"""``report``: the change and delivery history in numbers; ``filter …``: saved ``change list`` filters."""

from __future__ import annotations

import sys

import click
from rich.markup import escape
from rich.table import Table

from ..services.reports import Report, ReportService
from ..services.search import SavedFilters, parse_date
from ..services.status import StatusStore
from .common import BadInput, aws_options, handle_errors, json_option, print_json, state, stderr, stdout


def _hours(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}h"


def _rate(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def print_report(report: Report) -> None:
    period = f"{report.since or 'the beginning'} → {report.until or 'now'}"
    who = f" · customer {report.customer}" if report.customer else ""
    stderr.print(escape(f"report {period}{who}: {report.changes} change(s)"))
    weeks = Table(
        "week", "draft", "submitted", "approved", "completed", "cancelled", title="changes per week"
    )
    for week in report.weeks:
        row = report.changes_per_week[week]
        weeks.add_row(
            week, *(str(row.get(s, 0)) for s in ("draft", "submitted", "approved", "completed", "cancelled"))
        )
    stdout.print(weeks)
    lead = Table("lead time", "changes", "median", "p90", "mean", "min", "max")
    for label, value in (
        ("submit → approve", report.submit_to_approve),
        ("approve → window", report.approve_to_start),
    ):
        lead.add_row(
            label,
            str(value.count),
            _hours(value.median_hours),
            _hours(value.p90_hours),
            _hours(value.mean_hours),
            _hours(value.min_hours),
            _hours(value.max_hours),
        )
    stdout.print(lead)
    table = Table(
        "customer", "deliveries", "sent", "partial", "failed", "dead-lettered", "other", title="deliveries"
    )
    for c in [*report.deliveries, report.totals]:
        if not c.total and c.customer != "*":
            continue
        other = c.total - c.attempted
        rates = c.rates()
        table.add_row(
            escape(c.customer),
            str(c.total),
            f"{c.counts['sent']} ({_rate(rates['sent'])})",
            f"{c.counts['partial']} ({_rate(rates['partial'])})",
            f"{c.counts['failed']} ({_rate(rates['failed'])})",
            f"{c.counts['dead_lettered']} ({_rate(rates['dead_lettered'])})",
            str(other),
        )
    stdout.print(table)
    top = report.top_failing()
    if top:
        failing = Table("customer", "failures", "deliveries", title="most failures")
        for c in top:
            failing.add_row(escape(f"{c.name} ({c.customer})"), str(c.failures), str(c.total))
        stdout.print(failing)


@click.command("report")
@aws_options
@click.option("--since", metavar="DATE", help="From this day (YYYY-MM-DD) or moment (RFC 3339).")
@click.option("--until", metavar="DATE", help="Up to this day (inclusive) or moment.")
@click.option("--customer", metavar="CODE", help="Only this customer.")
@json_option
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV (section,key,metric,value) on stdout.")
@handle_errors
def report_cmd(
    since: str | None, until: str | None, customer: str | None, as_json: bool, as_csv: bool
) -> None:
    """Changes per week, lead times, deliveries per customer and outcome rates, most failing customers."""
    if as_json and as_csv:
        raise BadInput("--json and --csv: pick one")
    st = state()
    config = st.config()
    if customer and customer not in config.customer_mappings:
        raise BadInput(f"unknown customer {customer!r}")
    frm, to = parse_date(since, end=False), parse_date(until, end=True)
    report = ReportService(StatusStore(st.aws(), config), config, authz=st.reader()).build(
        since=frm, until=to, customer=customer
    )
    if as_json:
        print_json(report.to_json())
    elif as_csv:
        sys.stdout.write(report.to_csv())
    else:
        print_report(report)


@click.group("filter")
def filter_group() -> None:
    """Saved `change list` filters (save one with `change list … --save-filter NAME`)."""


@filter_group.command("list")
@json_option
@handle_errors
def filter_list_cmd(as_json: bool) -> None:
    """Every saved filter and what it selects."""
    saved = SavedFilters()
    filters = saved.all()
    if as_json:
        print_json({"path": str(saved.path), "filters": {n: q.to_json() for n, q in filters.items()}})
        return
    table = Table("name", "selects")
    for name, query in filters.items():
        table.add_row(escape(name), escape(query.describe()))
    stdout.print(table)
    stderr.print(f"{len(filters)} saved filter(s) in {escape(str(saved.path))}")


@filter_group.command("delete")
@click.argument("name")
@json_option
@handle_errors
def filter_delete_cmd(name: str, as_json: bool) -> None:
    """Delete saved filter NAME."""
    SavedFilters().delete(name)
    if as_json:
        print_json({"name": name, "deleted": True})
        return
    stderr.print(f"deleted filter {escape(name)}")
