"""``change reindex`` and ``migrate check``: taking over a bucket the running system wrote.

stdout is data (``--json`` shapes in docs/cli-json.md), stderr narrates. ``change reindex`` exits 0
when it ran (refused changes are listed, not a failure); ``migrate check`` exits 0 when the bucket is
ready to switch over and 1 when something needs attention first.
"""

from __future__ import annotations

import click
from rich.markup import escape
from rich.table import Table

from ..services.changes import ChangeStore
from ..services.migration import MigrationCheck, MigrationReport, Reindexer, ReindexReport
from ..services.status import StatusStore
from .common import (
    EXIT_FAILED,
    aws_options,
    handle_errors,
    json_option,
    print_json,
    progress_bar,
    refuse_readonly,
    state,
    stderr,
    stdout,
)


def _narrate_reindex(report: ReindexReport, *, verb: str) -> None:
    c = report.counts()
    stderr.print(
        f"{verb}: {c['indexed']} indexed, {c['unchanged']} already indexed, {c['converted']} converted "
        f"from older shapes, {c['refused']} refused, {c['removed']} stale index entr(y/ies) removed"
    )
    for refused in report.refused:
        stderr.print(f"[yellow]refused[/] {escape(refused.key)}: {escape(refused.reason)}")


@click.command("reindex")
@aws_options
@click.option("--dry-run", is_flag=True, help="Report what would be indexed; write nothing.")
@json_option
@handle_errors
def reindex_cmd(dry_run: bool, as_json: bool) -> None:
    """Build or repair the change index from archive/ and drafts/ (safe to repeat)."""
    if not dry_run:
        refuse_readonly("change reindex")
    st = state()
    config, aws = st.config(), st.aws()
    reindexer = Reindexer(ChangeStore(aws, config), StatusStore(aws, config), authz=st.reader())
    with progress_bar("reindex", enabled=not as_json) as progress:
        report = reindexer.run(dry_run=dry_run, progress=progress)
    if as_json:
        print_json(report.to_json())
        return
    for change_id in report.indexed:
        notes = report.converted.get(change_id)
        stdout.print(f"{change_id}" + (f"  (converted: {'; '.join(notes)})" if notes else ""), markup=False)
    _narrate_reindex(report, verb="dry run" if dry_run else "reindexed")


@click.group("migrate")
def migrate_group() -> None:
    """Switching over from the running system (docs/migration.md)."""


def _print_check(report: MigrationReport) -> None:
    if report.index_table_missing:
        stderr.print("the status table does not exist yet: `changeconsole provision` creates it")
    _narrate_reindex(report.reindex, verb=f"bucket {report.bucket}: a reindex would do")
    for change_id, notes in sorted(report.reindex.converted.items()):
        stdout.print(f"convert  {change_id}: {'; '.join(notes)}", markup=False)
    for change_id, codes in sorted(report.unknown_customers.items()):
        stdout.print(f"unknown  {change_id}: customers not in the config: {', '.join(codes)}", markup=False)
    for trigger in report.leftover_triggers:
        stdout.print(f"trigger  {trigger.key} ({trigger.last_modified}): {trigger.note}", markup=False)
    if report.contacts:
        table = Table("customer", "contact list (ours)", "running system's", "gains", "loses", box=None)
        for diff in report.contacts:
            if diff.error:
                table.add_row(diff.customer, f"[red]{escape(diff.error)}[/]", diff.list_theirs or "—", "", "")
                continue
            gains = "; ".join(f"{t}: {', '.join(a)}" for t, a in diff.gained.items() if a)
            loses = "; ".join(f"{t}: {', '.join(a)}" for t, a in diff.lost.items() if a)
            table.add_row(
                diff.customer,
                f"{diff.list_ours} ({diff.list_ours_reason})",
                diff.list_theirs or "—",
                escape(gains or "—"),
                escape(loses or "—"),
            )
        stdout.print(table)
        stderr.print(
            "gains: contacts without a preference on a topic whose default is OPT_IN (SES's rule, which we "
            "apply); loses: explicit opt-ins of contacts unsubscribed from all (see docs/migration.md)"
        )
    stderr.print(
        "[green]ready to switch over[/]" if report.ready else "[yellow]needs attention before switching[/]"
    )


@migrate_group.command("check")
@aws_options
@click.option("--no-contacts", is_flag=True, help="Skip the customers' contact lists (bucket only).")
@json_option
@handle_errors
def check_cmd(no_contacts: bool, as_json: bool) -> None:
    """Read a bucket laid out by the running system and report, writing nothing: changes that would be
    indexed, converted or refused; leftover triggers; changes naming unknown customers; contacts whose
    delivery would differ. Exit 1 when something needs attention before switching over."""
    st = state()
    st.reader()
    with progress_bar("migrate check", enabled=not as_json) as progress:
        report = MigrationCheck(st.aws(), st.config()).run(contacts=not no_contacts, progress=progress)
    if as_json:
        print_json(report.to_json())
    else:
        _print_check(report)
    if not report.ready:
        raise SystemExit(EXIT_FAILED)
