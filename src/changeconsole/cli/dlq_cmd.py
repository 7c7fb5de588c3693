"""``dlq list|peek|redrive|export|import|purge``: dead-letter queues per customer.

stdout is data (``--json`` shapes in docs/cli-json.md), stderr narrates; exit 0 ok, 1 operation failed
(including a partial redrive/import/purge), 2 bad input (also: a purge refused for want of an export
or ``--yes``, a mutating command in ``--readonly``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..models import iso_utc
from ..services.dlq import (
    DEFAULT_PEEK,
    MAX_PEEK,
    PEEK_VISIBILITY,
    DlqMessage,
    DlqService,
    PurgeRefused,
    RedriveProgress,
    RedriveResult,
    age_text,
)
from .common import (
    EXIT_FAILED,
    BadInput,
    aws_options,
    handle_errors,
    json_option,
    print_json,
    refuse_readonly,
    state,
    stderr,
    stdout,
)

PEEK_NOTE = (
    "peeking receives messages: each was invisible for up to {v} s (released when done) "
    "and its receive count rose by one"
)


def _service() -> DlqService:
    st = state()
    return DlqService(st.aws(), st.config(), authz=st.reader())


def _when(value: datetime | None) -> str:
    return iso_utc(value) if value else "—"


def _print_table(table: Table) -> None:
    """Full width when piped (ids are copied from here; never wrap or cut them)."""
    if stdout.is_terminal:
        stdout.print(table)
    else:
        Console(highlight=False, width=400).print(table)


def _message_table(messages: list[DlqMessage]) -> Table:
    table = Table(box=None)
    table.add_column("message id", no_wrap=True)
    table.add_column("reason", no_wrap=True)
    table.add_column("change", no_wrap=True)
    for name in ("event", "v", "rc", "first seen", "detail"):
        table.add_column(name)
    for m in messages:
        table.add_row(
            m.message_id,
            m.reason,
            m.change_id or "—",
            m.event or "—",
            m.version or "—",
            str(m.receive_count),
            _when(m.first_seen),
            escape(m.detail[:80]),
        )
    return table


@click.group("dlq")
def dlq_group() -> None:
    """Dead-letter queues: list, peek, redrive, export, import and purge, per customer."""


@dlq_group.command("list")
@aws_options
@json_option
@handle_errors
def list_cmd(as_json: bool) -> None:
    """Every customer's DLQ depth and the age of its oldest message (CloudWatch; — without data)."""
    rows = _service().summaries()
    total = sum(r.depth or 0 for r in rows)
    if as_json:
        print_json({"customers": [r.to_json() for r in rows], "total_messages": total})
    else:
        table = Table("customer", "name", "queue", "depth", "in flight", "oldest", "error", box=None)
        for r in rows:
            depth = "?" if r.depth is None else str(r.depth)
            table.add_row(
                r.customer,
                escape(r.name),
                r.queue,
                f"[bold red]{depth}[/]" if r.depth else depth,
                "?" if r.in_flight is None else str(r.in_flight),
                age_text(r.oldest_age_seconds),
                escape(r.error or ""),
            )
        _print_table(table)
        busy = [r for r in rows if r.depth]
        stderr.print(f"{total} dead-lettered message(s) in {len(busy)} of {len(rows)} customer DLQs")
    if any(r.error for r in rows):
        raise SystemExit(EXIT_FAILED)


@dlq_group.command("peek")
@aws_options
@click.argument("code")
@click.option(
    "--max",
    "max_messages",
    type=click.IntRange(1, MAX_PEEK),
    default=DEFAULT_PEEK,
    show_default=True,
    help="Show at most N messages.",
)
@click.option(
    "--filter",
    "filter_text",
    metavar="TEXT",
    help="Terms, all must match: NAME=GLOB on an attribute (cc-reason=isolation*) or text in the body.",
)
@json_option
@handle_errors
def peek_cmd(code: str, max_messages: int, filter_text: str | None, as_json: bool) -> None:
    """Show messages of CODE's DLQ with the worker's reason.

    Peeking receives the messages: they are invisible for up to 15 s and their receive count rises.
    """
    result = _service().peek(code, max_messages=max_messages, filter=filter_text)
    if as_json:
        print_json(result.to_json())
    else:
        _print_table(_message_table(result.messages))
        stderr.print(
            f"{len(result.messages)} shown of {result.depth} in {result.queue} "
            f"(scanned {result.scanned}); oldest {age_text(result.oldest_age_seconds)} (from peek)"
        )
    stderr.print(f"[dim]{PEEK_NOTE.format(v=result.visibility_seconds or PEEK_VISIBILITY)}[/]")


def _run_with_cancel(fn: Callable[[threading.Event], RedriveResult]) -> RedriveResult:
    """Run in a thread so Ctrl-C cancels between batches instead of killing mid-move."""
    cancel = threading.Event()
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = fn(cancel)
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name="dlq-redrive", daemon=True)
    thread.start()
    while thread.is_alive():
        try:
            thread.join(0.2)
        except KeyboardInterrupt:
            stderr.print("[yellow]cancelling after the current batch…[/]")
            cancel.set()
    if "error" in box:
        raise box["error"]
    return box["result"]


@dlq_group.command("redrive")
@aws_options
@click.argument("code")
@click.option("--message-id", "message_ids", multiple=True, metavar="ID", help="A message to move (repeat).")
@click.option("--all", "all_messages", is_flag=True, help="Every message in the DLQ now.")
@click.option("--filter", "filter_text", metavar="TEXT", help="Only messages matching (see `dlq peek`).")
@click.option("--dry-run", is_flag=True, help="Show what would move; move nothing.")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), help="At most N messages per second.")
@click.option("--no-native", is_flag=True, help="Never use SQS's native move task for --all.")
@json_option
@handle_errors
def redrive_cmd(
    code: str,
    message_ids: tuple[str, ...],
    all_messages: bool,
    filter_text: str | None,
    dry_run: bool,
    rate: float | None,
    no_native: bool,
    as_json: bool,
) -> None:
    """Move messages of CODE's DLQ back to its source queue (send, then delete).

    Each copy carries its original attributes plus cc-redriven-at/-count/-by. Ctrl-C cancels between
    batches. Exit 1 when any id was not found or any message failed.
    """
    if bool(message_ids) == all_messages:
        raise BadInput("give --message-id ID (repeatable) or --all")
    if not dry_run:
        refuse_readonly("redrive")
    svc = _service()
    show_progress = not as_json and stderr.is_terminal

    def run(cancel: threading.Event) -> RedriveResult:
        kwargs: dict[str, Any] = {
            "message_ids": list(message_ids) or None,
            "all_messages": all_messages,
            "filter": filter_text,
            "dry_run": dry_run,
            "rate": rate,
            "cancel": cancel,
            "native": not no_native,
        }
        if not show_progress:
            return svc.redrive(code, **kwargs)
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:.0f}/{task.total}"),
            TimeElapsedColumn(),
            console=stderr,
            transient=True,
        ) as bar:
            task: TaskID = bar.add_task(f"redrive {code}", total=None)

            def progress(p: RedriveProgress) -> None:
                bar.update(task, completed=p.moved, total=p.total, description=f"redrive {code} ({p.mode})")

            return svc.redrive(code, progress=progress, **kwargs)

    result = _run_with_cancel(run)
    if as_json:
        print_json(result.to_json())
    elif dry_run:
        _print_table(_message_table(result.would_move))
        stderr.print(
            f"dry run: {len(result.would_move)} message(s) would move from {result.dlq} "
            f"to {result.source_queue}; nothing was moved"
        )
    else:
        for mid in result.moved:
            stdout.print(f"{mid} -> {result.new_ids.get(mid, '?')}", markup=False)
        how = result.mode
        if result.fallback_reason:
            how += f" (native move unavailable: {result.fallback_reason})"
        stderr.print(
            f"moved {result.moved_count} message(s) from {result.dlq} to {result.source_queue} "
            f"via {escape(how)} in {result.seconds:.1f}s"
        )
    for mid in result.not_found:
        stderr.print(f"[yellow]not found:[/] {escape(mid)}")
    for failure in result.failed:
        stderr.print(
            f"[red]failed ({failure.stage}):[/] {escape(failure.message_id)}: {escape(failure.error)}"
        )
    if result.cancelled:
        stderr.print("[yellow]cancelled[/]: messages not yet moved are still in the DLQ")
    if result.audit_key is None:
        stderr.print("[yellow]warning:[/] the audit event could not be written to S3 (see the log)")
    if not result.ok:
        raise SystemExit(EXIT_FAILED)


@dlq_group.command("export")
@aws_options
@click.argument("code")
@click.argument("file", type=click.Path(dir_okay=False, writable=True))
@click.option("--filter", "filter_text", metavar="TEXT", help="Only messages matching (see `dlq peek`).")
@json_option
@handle_errors
def export_cmd(code: str, file: str, filter_text: str | None, as_json: bool) -> None:
    """Write CODE's DLQ messages to FILE as JSON lines (re-importable exactly; mode 0600).

    The export is recorded: `dlq purge CODE` (without --yes) then deletes exactly these messages.
    """
    result = _service().export_jsonl(code, file, filter=filter_text)
    if as_json:
        print_json(result.to_json())
    else:
        stderr.print(f"exported {result.count} message(s) of {result.queue} to {escape(result.path)}")
        stderr.print(f"[dim]sha256 {result.sha256}[/]")
        if result.recorded:
            stderr.print(f"recorded: `changeconsole dlq purge {code}` will delete exactly these messages")
        else:
            stderr.print("[yellow]warning:[/] the export could not be recorded; purge will need --yes")


@dlq_group.command("import")
@aws_options
@click.argument("code")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--to",
    "target",
    type=click.Choice(["dlq", "source"]),
    default="dlq",
    show_default=True,
    help="Put the messages back on the DLQ exactly, or on the source queue as a redrive.",
)
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), help="At most N messages per second.")
@json_option
@handle_errors
def import_cmd(code: str, file: str, target: str, rate: float | None, as_json: bool) -> None:
    """Send the messages of an export FILE back to CODE's DLQ or source queue.

    Every line is checked first (and must come from CODE) before anything is sent; into the DLQ,
    messages already there (same body and attributes) are skipped, so a repeat duplicates nothing.
    """
    refuse_readonly("import")
    result = _service().import_jsonl(code, file, to="source" if target == "source" else "dlq", rate=rate)
    if as_json:
        print_json(result.to_json())
    else:
        for old, new in result.sent.items():
            stdout.print(f"{old} -> {new}", markup=False)
        stderr.print(
            f"sent {len(result.sent)} of {result.read} message(s) to {result.queue}"
            + (f"; {len(result.skipped_present)} already there, skipped" if result.skipped_present else "")
        )
        for failure in result.failed:
            stderr.print(f"[red]failed:[/] {escape(failure.message_id)}: {escape(failure.error)}")
    if not result.ok:
        raise SystemExit(EXIT_FAILED)


@dlq_group.command("purge")
@aws_options
@click.argument("code")
@click.option("--yes", is_flag=True, help="Delete every message now in the DLQ, export or not.")
@json_option
@handle_errors
def purge_cmd(code: str, yes: bool, as_json: bool) -> None:
    """Delete messages from CODE's DLQ: exactly those of the recorded export, or all with --yes.

    Refused (exit 2) when no export of the queue is recorded (or its file is gone or changed) and
    --yes is not given.
    """
    refuse_readonly("purge")
    try:
        result = _service().purge(code, yes=yes)
    except PurgeRefused as exc:
        raise PurgeRefused(
            f"{exc}; run `changeconsole dlq export {code} FILE` first, or pass --yes to purge without one"
        ) from None
    if as_json:
        print_json(result.to_json())
    else:
        for mid in result.deleted:
            stdout.print(mid, markup=False)
        scope = "every message present" if result.mode == "all" else "the messages of the recorded export"
        stderr.print(f"purged {len(result.deleted)} message(s) from {result.queue} ({scope})")
        if result.kept:
            stderr.print(f"kept {len(result.kept)} message(s) that are not in the export (arrived later)")
        if result.missing:
            stderr.print(f"{len(result.missing)} exported message(s) were already gone from the DLQ")
        if result.in_flight:
            stderr.print(f"[yellow]{result.in_flight} message(s) in flight were not purged[/]")
        for failure in result.failed:
            stderr.print(f"[red]failed:[/] {escape(failure.message_id)}: {escape(failure.error)}")
    if not result.ok:
        raise SystemExit(EXIT_FAILED)
