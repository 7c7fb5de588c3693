"""``audit search`` (who did what, when, to which change and customers) and ``whoami``.

stdout is data (``--json`` shapes in docs/cli-json.md), stderr narrates; exit 0 ok, 1 operation failed
(some audit objects could not be read), 2 bad input, 3 not authorized (searching needs ``audit.read``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from ..colours import AUDIT_RESULT, styled
from ..models import CHANGE_ID_RE, CUSTOMER_CODE_RE, OperatorAction
from ..services.audit import DEFAULT_SPAN, AuditEntry, AuditQuery, AuditReader, parse_when
from .common import (
    EXIT_FAILED,
    BadInput,
    aws_options,
    handle_errors,
    json_option,
    print_json,
    state,
    stderr,
    stdout,
)


@click.group("audit")
def audit_group() -> None:
    """The audit trail of operator actions (and, with --all, the worker's delivery events)."""


@audit_group.command("search")
@aws_options
@click.option("--since", metavar="WHEN", help="From (7d, 24h, YYYY-MM-DD, RFC 3339) [default: 7d].")
@click.option("--until", metavar="WHEN", help="Until (same forms) [default: now].")
@click.option("--operator", metavar="NAME", help="Only this operator (glob, case-insensitive).")
@click.option("--customer", metavar="CODE", help="Only actions touching this customer.")
@click.option("--change", "change_id", metavar="ID", help="Only actions on this change.")
@click.option("--action", metavar="ACTION", help="Only this action (change.approve, 'dlq.*', approve).")
@click.option(
    "--result",
    type=click.Choice(["ok", "partial", "failed", "rejected", "refused"]),
    help="Only this outcome.",
)
@click.option("--all", "include_worker", is_flag=True, help="Also the worker's delivery events.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=1000, show_default=True, help="At most N.")
@json_option
@handle_errors
def search_cmd(
    since: str | None,
    until: str | None,
    operator: str | None,
    customer: str | None,
    change_id: str | None,
    action: str | None,
    result: str | None,
    include_worker: bool,
    limit: int,
    as_json: bool,
) -> None:
    """Audit records of a time range, newest first (reads audit/ one day at a time)."""
    now = datetime.now(UTC)
    start = parse_when(since, end=False, now=now) if since else now - DEFAULT_SPAN
    stop = parse_when(until, end=True, now=now) if until else now
    if stop < start:
        raise BadInput(f"--until ({stop:%Y-%m-%d %H:%M}) is before --since ({start:%Y-%m-%d %H:%M})")
    if customer is not None and not CUSTOMER_CODE_RE.match(customer):
        raise BadInput(f"--customer {customer!r} is not a customer code")
    if change_id is not None and not CHANGE_ID_RE.match(change_id):
        raise BadInput(f"--change {change_id!r} is not a change id (CHG-…)")
    st = state()
    reader = AuditReader(st.aws(), st.config(), authz=st.authz())
    query = AuditQuery(
        since=start,
        until=stop,
        operator=operator,
        customer=customer,
        change_id=change_id,
        action=action,
        result=result,
        include_worker=include_worker,
        limit=limit,
    )
    found = reader.search(query)
    if as_json:
        print_json(
            {
                "since": _iso(start),
                "until": _iso(stop),
                "count": len(found.entries),
                "matched": found.matched,
                "truncated": found.truncated,
                "objects_read": found.objects_read,
                "days": found.days,
                "errors": found.errors,
                "entries": [e.to_json() for e in found.entries],
            }
        )
    else:
        stdout.print(audit_table(found.entries))
        more = f" (newest {len(found.entries)} of {found.matched}; --limit)" if found.truncated else ""
        stderr.print(
            f"{len(found.entries)} record(s){more} from {found.objects_read} object(s) over "
            f"{found.days} day(s), {_iso(start)} .. {_iso(stop)}"
        )
    for error in found.errors:
        stderr.print(f"[red]unreadable:[/] {escape(error)}")
    if found.errors:
        raise SystemExit(EXIT_FAILED)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


RESULT_STYLE = {
    "ok": "green",
    "partial": "yellow",
    "failed": "red",
    "rejected": "yellow",
    "refused": "bold red",
}


def audit_table(entries: list[AuditEntry]) -> Table:
    table = Table("time (UTC)", "operator", "action", "result", "change", "customers", "detail", box=None)
    for e in entries:
        change = f"{e.change_id} v{e.version}" if e.change_id and e.version else (e.change_id or "")
        detail = str(e.raw.get("detail") or "")
        table.add_row(
            e.ts.strftime("%Y-%m-%d %H:%M:%S"),
            escape(e.operator or "—"),
            escape(e.action),
            styled(AUDIT_RESULT, e.result) if e.result else "",
            change,
            escape(", ".join(e.customers)),
            escape(detail[:100]),
        )
    return table


@click.command("whoami")
@aws_options
@json_option
@handle_errors
def whoami_cmd(as_json: bool) -> None:
    """Who you are to changeconsole: identity, roles, scopes and what you may do."""
    authz = state().authz()
    operator = authz.operator
    grants = authz.grants() if authz.enforced else []
    data: dict[str, Any] = {
        "operator": operator.name,
        "kind": operator.kind,
        "arn": operator.arn,
        "account": operator.account,
        "permission_set": operator.permission_set,
        "roles_configured": authz.enforced,
        "roles": [
            {
                "role": g.role,
                "via": g.via,
                "customers": sorted(g.customers) if g.customers is not None else None,
                "actions": sorted(a.value for a in g.actions),
            }
            for g in grants
        ],
        "actions": sorted(a.value for a in OperatorAction if authz.allows(a)),
        "require_distinct_approver": authz.distinct_approver_required,
        "warnings": authz.warnings,
    }
    if as_json:
        print_json(data)
        return
    stdout.print(f"[b]{escape(operator.label())}[/]  {escape(operator.arn or 'local stack')}")
    if not authz.enforced:
        stdout.print("no roles configured: every action is allowed")
    elif not grants:
        stdout.print("[red]no role[/]: operator_roles names none of this identity's principals")
    for g in grants:
        scope = "all customers" if g.customers is None else g.scope_text()
        actions = ", ".join(sorted(a.value for a in g.actions))
        stdout.print(f"{escape(g.role)} [dim](via {escape(g.via)})[/] on {escape(scope)}: {actions}")
    if authz.distinct_approver_required and authz.allows(OperatorAction.CHANGE_APPROVE):
        stdout.print("separation of duties: you cannot approve a version you submitted")
