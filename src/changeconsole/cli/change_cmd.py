"""``change …`` and ``status``: the change lifecycle from the command line.

stdout is data (tables, or ``--json`` as documented in docs/cli-json.md); stderr narrates progress.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError
from rich import box
from rich.live import Live
from rich.markup import escape
from rich.syntax import Syntax
from rich.table import Table

from .. import changeformat
from ..colours import DELIVERY_STATE, DESTINATION_STATE, styled
from ..config import ConfigError
from ..errors import validation_problems
from ..models import (
    CHANGE_ID_RE,
    MAX_CHANGE_BYTES,
    MAX_VERSION,
    Change,
    ChangeStatus,
    DeliveryRecord,
    DeliveryState,
    EmailEvent,
)
from ..services.bulk import BulkItem, BulkTransitions
from ..services.fanout import ARCHIVE, DestinationState, FanoutResult, ProgressEvent
from ..services.ledger import Ledger
from ..services.lifecycle import ChangeService
from ..services.resend import DUPLICATE_WARNING, ResendResult, ResendService, UnknownRecipient
from ..services.search import ChangeQuery, SavedFilters, my_relation, parse_date
from ..services.status import DeliveryKey, StatusStore
from ..services.waiting import WaitTimeout, pending_customers, reconciling, wait_for_final
from .common import (
    BadInput,
    OperationFailed,
    aws_options,
    handle_errors,
    json_option,
    print_json,
    state,
    stderr,
    stdout,
)

DEFAULT_TIMEOUT = 300.0


def _service() -> ChangeService:
    st = state()
    return ChangeService(st.aws(), st.config(), authz=st.reader())


def _status_store() -> StatusStore:
    st = state()
    st.reader()
    return StatusStore(st.aws(), st.config())


def _reconciling(change_id: str, version: int, event: EmailEvent) -> Callable[[], set[str]]:
    st = state()
    return reconciling(Ledger(st.aws(), st.config()), change_id, version, event)


# -- input ------------------------------------------------------------------------------
def parse_customers(value: str | None) -> list[str] | None:
    if value is None:
        return None
    codes = sorted({c.strip() for c in value.split(",") if c.strip()})
    if not codes:
        raise BadInput("--customers needs at least one customer code")
    return codes


def read_change_file(path: Path, customers: list[str] | None = None) -> tuple[Change, dict[str, Any]]:
    """A change file validated against the config; BadInput (exit 2) naming each bad field.

    Every way a file can be unreadable (missing, too large, not UTF-8, not JSON, nested too deep) is
    bad input with a one-line reason, never a traceback."""
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_CHANGE_BYTES + 1)
    except OSError as exc:
        raise BadInput(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_CHANGE_BYTES:
        raise BadInput(f"{path} is larger than {MAX_CHANGE_BYTES // (1024 * 1024)} MiB: not a change file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadInput(f"{path} is not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInput(
            f"{path} is not valid JSON",
            [{"path": "$", "message": f"{exc.msg} at line {exc.lineno} column {exc.colno}"}],
        ) from None
    except RecursionError:
        raise BadInput(f"{path} is nested too deeply to be a change") from None
    if not isinstance(raw, dict):
        raise BadInput(f"{path} must hold one JSON object (a change)")
    if customers is not None:
        raw["customers"] = customers
    try:
        change = Change.model_validate(raw, context={"config": state().config()})
    except ValidationError as exc:
        problems = validation_problems(exc)
        raise BadInput(f"{path}: {len(problems)} invalid field(s); nothing was written", problems) from None
    return change, raw


# -- progress narration (stderr) ------------------------------------------------------------------
class FanoutNarrator:
    """Per-destination progress: a live table when stderr is a terminal, plain lines otherwise."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.states: dict[str, tuple[DestinationState, str | None]] = {}
        self.live: Live | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> FanoutNarrator:
        stderr.print(escape(self.title))
        if stderr.is_terminal:
            self.live = Live(
                get_renderable=self._table, console=stderr, refresh_per_second=8, transient=False
            )
            self.live.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.live is not None:
            self.live.stop()

    def _table(self) -> Table:
        table = Table("destination", "state", "error", box=None, padding=(0, 2, 0, 0))
        with self._lock:
            items = list(self.states.items())
        for dest, (st, err) in items:
            table.add_row(dest, styled(DESTINATION_STATE, st), escape(err or ""))
        return table

    def __call__(self, event: ProgressEvent) -> None:
        with self._lock:
            self.states[event.destination] = (event.state, event.error)
        if self.live is None and event.state in (DestinationState.DONE, DestinationState.FAILED):
            line = f"{event.destination}: {event.state.value}"
            if event.error:
                line += f": {event.error}"
            stderr.print(escape(line))


class DeliveryNarrator:
    """Delivery states while waiting: a live table on a terminal, a line per change otherwise."""

    def __init__(self, customers: list[str]) -> None:
        self.customers = customers
        self.records: dict[str, DeliveryRecord] = {}
        self.live: Live | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> DeliveryNarrator:
        if stderr.is_terminal:
            self.live = Live(get_renderable=self._table, console=stderr, refresh_per_second=4)
            self.live.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.live is not None:
            self.live.stop()

    def _table(self) -> Table:
        with self._lock:
            records = dict(self.records)
        return delivery_table(records, self.customers)

    def __call__(self, records: list[DeliveryRecord]) -> None:
        with self._lock:
            before = {c: r.state for c, r in self.records.items()}
            self.records = {r.customer: r for r in records}
        if self.live is None:
            for r in records:
                if before.get(r.customer) != r.state:
                    detail = f" ({r.last_error})" if r.last_error else ""
                    stderr.print(escape(f"{r.customer}: {r.state.value}{detail}"))


# -- output ------------------------------------------------------------------------------------
def fanout_table(result: FanoutResult) -> Table:
    table = Table("destination", "state", "error", title=_result_title(result), title_justify="left")
    for dest, st in result.states.items():
        table.add_row(dest, styled(DESTINATION_STATE, st), escape(result.errors.get(dest, "")))
    return table


def _result_title(result: FanoutResult) -> str:
    c = result.change
    return f"{c.change_id} v{c.version} {c.status.value} ({result.event.value})"


def delivery_table(
    records: dict[str, DeliveryRecord], customers: list[str] | None = None, title: str | None = None
) -> Table:
    table = Table(
        "customer", "state", "attempts", "recipients", "updated", "error", title=title, title_justify="left"
    )
    for code in customers if customers is not None else sorted(records):
        r = records.get(code)
        if r is None:
            table.add_row(code, "[dim]no record[/]", "", "", "", "")
            continue
        recipients = f"{r.recipients_sent}/{r.recipients_total}" if r.recipients_total else ""
        if r.recipients_failed:
            recipients += f" ({r.recipients_failed} failed)"
        table.add_row(
            code,
            styled(DELIVERY_STATE, r.state),
            str(r.attempts),
            recipients,
            r.updated_at or "",
            escape(r.last_error or ""),
        )
    return table


def _record_json(record: DeliveryRecord) -> dict[str, Any]:
    return record.model_dump(mode="json")


def _transition_output(
    result: FanoutResult,
    *,
    as_json: bool,
    wait: bool,
    timeout: float,
    action: str,
) -> None:
    """Print the fan-out (and optional wait) result; exit 1 unless everything succeeded."""
    wait_data: dict[str, Any] | None = None
    failure: str | None = None
    if not result.ok:
        if result.states.get(ARCHIVE) is DestinationState.FAILED:
            failure = f"the archive write failed, nothing was sent; run `change {action}` again"
        else:
            failed = ",".join(result.failed)
            failure = (
                f"{len(result.failed)} destination(s) failed: {failed}; retry them with "
                f"`changeconsole change resend {result.change.change_id} --customers {failed}`"
            )
    elif wait and result.targeted:
        wait_data, failure = _wait(result, timeout=timeout, as_json=as_json)
    if as_json:
        data = result.to_json()
        data["wait"] = wait_data
        print_json(data)
    else:
        stdout.print(fanout_table(result))
    if failure:
        raise OperationFailed(failure)
    if not as_json:
        sent = " and sent" if wait_data else ""
        removed = (
            f"; {len(result.removed)} removed customer(s) notified if they had been" if result.removed else ""
        )
        stderr.print(
            f"[green]{escape(result.change.change_id)} v{result.change.version} "
            f"{result.change.status.value}[/]: {len(result.targeted)} customer(s) queued{sent}{removed}"
        )


def _wait(result: FanoutResult, *, timeout: float, as_json: bool) -> tuple[dict[str, Any], str | None]:
    change, customers = result.change, result.targeted
    stderr.print(f"waiting up to {timeout:g}s for {len(customers)} customer(s) to reach a final state")
    timed_out = False
    with DeliveryNarrator(customers) as narrator:
        try:
            records = wait_for_final(
                _status_store(),
                change.change_id,
                change.version,
                result.event,
                customers,
                timeout,
                on_update=narrator,
                settling=_reconciling(change.change_id, change.version, result.event),
            )
        except WaitTimeout as exc:
            records, timed_out = exc.records, True
    by_code = {r.customer: r for r in records}
    not_sent = sorted(c for c in customers if c not in by_code or by_code[c].state is not DeliveryState.SENT)
    data = {
        "ok": not not_sent,
        "timed_out": timed_out,
        "not_sent": not_sent,
        "records": [_record_json(by_code[c]) for c in customers if c in by_code],
    }
    if not not_sent:
        return data, None
    if not as_json:
        stdout.print(delivery_table(by_code, not_sent, title="not sent"))
    if timed_out:
        pending = pending_customers(records, customers)
        return data, (
            f"timed out after {timeout:g}s: {len(pending)} customer(s) not final "
            f"({', '.join(pending[:10])}); is a worker running?"
        )
    return data, f"{len(not_sent)} customer(s) did not reach sent: {', '.join(not_sent)}"


def _fanout(title: str, call: Callable[[Callable[[ProgressEvent], None]], Any]) -> Any:
    with FanoutNarrator(title) as narrator:
        return call(narrator)


wait_option = click.option(
    "--wait",
    is_flag=True,
    help="Wait until every targeted customer is final (a partial whose unknown recipients await their SES "
    "events or the reconciler is not); exit 0 only if all were sent.",
)
timeout_option = click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=DEFAULT_TIMEOUT,
    show_default=True,
    help="Seconds --wait waits at most.",
)


# -- commands ------------------------------------------------------------------------------------
@click.group("change")
def change_group() -> None:
    """Draft, submit, approve, complete, cancel and inspect change notices."""


@change_group.command("draft")
@aws_options
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@json_option
@handle_errors
def draft_cmd(file: Path, as_json: bool) -> None:
    """Save FILE to drafts/ (sends nothing). Prints the change id."""
    change, _raw = read_change_file(file)
    svc = _service()
    draft = svc.save_draft(change)
    if as_json:
        print_json(
            {
                "change_id": draft.change_id,
                "version": draft.version,
                "status": draft.status.value,
                "key": svc.store.draft_key(draft.change_id),
                "change": draft.to_json_dict(),
            }
        )
        return
    stdout.print(draft.change_id, markup=False)
    where = f"s3://{svc.store.bucket}/{svc.store.draft_key(draft.change_id)}"
    stderr.print(f"saved draft {escape(draft.change_id)} to {escape(where)}")


@change_group.command("submit")
@aws_options
@click.argument("target", metavar="FILE|ID")
@click.option("--customers", metavar="a,b,…", help="Target these customers (overrides the change's list).")
@click.option(
    "--force",
    is_flag=True,
    help='Edit an archived change even if FILE has no "version" or an older one (last writer wins).',
)
@wait_option
@timeout_option
@json_option
@handle_errors
def submit_cmd(
    target: str, customers: str | None, force: bool, wait: bool, timeout: float, as_json: bool
) -> None:
    """Submit a draft (file or id) for approval; a file of an archived change edits/resubmits it.

    Editing from a file is pinned to the file's "version": when the change moved on since, nothing is
    written (exit 1, naming who changed it). A file without "version" is refused (exit 2) unless
    --force says the file wins over whatever the archive holds now."""
    codes = parse_customers(customers)
    path = Path(target)
    svc = _service()
    if path.is_file():
        change, raw = read_change_file(path, codes)
        stored = svc.store.find(change.change_id)
        if stored is not None:
            if "version" not in raw and not force:
                raise BadInput(
                    f"{change.change_id} is already archived (version {stored.change.version}) and {path} "
                    'has no "version": add the "version" you edited (pins it) or pass --force '
                    "(last writer wins)"
                )
            expected = None if force else change.version
            title = f"editing {change.change_id} (new approval round)"
            edited = _fanout(title, lambda p: svc.edit(change, progress=p, expected_version=expected))
            if isinstance(edited, Change):
                _nothing_changed(edited, as_json)
                return
            result = edited
        else:
            title = f"submitting {change.change_id} to {len(change.customers)} customer(s)"
            result = _fanout(title, lambda p: svc.submit(change, progress=p))
    elif CHANGE_ID_RE.match(target):
        title = f"submitting {target}"
        result = _fanout(title, lambda p: svc.submit(target, customers=codes, progress=p))
    else:
        raise BadInput(f"{target!r} is neither a file nor a change id (CHG-…)")
    if not result.states:
        _nothing_changed(result.change, as_json)
        return
    _transition_output(result, as_json=as_json, wait=wait, timeout=timeout, action="submit")


def _nothing_changed(change: Change, as_json: bool) -> None:
    if as_json:
        print_json(
            {
                "change_id": change.change_id,
                "version": change.version,
                "status": change.status.value,
                "event": None,
                "ok": True,
                "failed": [],
                "destinations": [],
                "wait": None,
            }
        )
        return
    stdout.print(f"{change.change_id} v{change.version} {change.status.value}: nothing changed", markup=False)
    stderr.print("nothing changed, nothing sent")


def parse_pin(text: str) -> tuple[str, int | None]:
    """``ID`` or ``ID@VERSION`` (the version the operator reviewed)."""
    change_id, sep, version = text.partition("@")
    if not CHANGE_ID_RE.match(change_id):
        raise BadInput(f"{change_id!r} is not a change id (CHG-…)")
    if not sep:
        return change_id, None
    number = version.removeprefix("v")
    if not number.isdigit() or not 1 <= int(number) <= MAX_VERSION:
        raise BadInput(f"{text!r}: the version after @ must be a number 1..{MAX_VERSION}")
    return change_id, int(number)


def _short_time(stamp: str | None) -> str:
    """``2026-12-14T22:00:00Z`` as ``2026-12-14 22:00Z`` (minutes are what a list needs)."""
    if not stamp:
        return ""
    return stamp[:16].replace("T", " ") + ("Z" if stamp.endswith("Z") else "")


def _transition_command(name: str, target: ChangeStatus) -> click.Command:
    def command(
        change_ids: tuple[str, ...],
        version: int | None,
        wait: bool,
        timeout: float,
        as_json: bool,
        reason: str | None = None,
    ) -> None:
        targets = [parse_pin(t) for t in change_ids]
        if len({cid for cid, _ in targets}) != len(targets):
            raise BadInput("the same change is named twice")
        svc = _service()
        if len(targets) > 1:
            if version is not None:
                raise BadInput("--version pins one change; with several ids pin each as ID@VERSION")
            if wait:
                raise BadInput("--wait takes one id; follow several with `changeconsole status ID --watch`")
            _bulk(name, targets, svc, as_json=as_json, reason=reason)
            return
        change_id, pinned = targets[0]
        if version is not None and pinned is not None and version != pinned:
            raise BadInput(f"{change_ids[0]} and --version {version} name different versions")
        expected = version if version is not None else pinned
        if target is ChangeStatus.CANCELLED:
            result = _fanout(
                f"{name} {change_id}",
                lambda p: svc.cancel(change_id, progress=p, expected_version=expected, reason=reason),
            )
        else:
            method = svc.approve if target is ChangeStatus.APPROVED else svc.complete
            result = _fanout(
                f"{name} {change_id}", lambda p: method(change_id, progress=p, expected_version=expected)
            )
        _transition_output(result, as_json=as_json, wait=wait, timeout=timeout, action=f"{name} {change_id}")

    decorated = handle_errors(json_option(timeout_option(wait_option(command))))
    if target is ChangeStatus.CANCELLED:
        decorated = click.option(
            "--reason",
            metavar="TEXT",
            help="Why: recorded with each change (its modification) and told in the cancellation notice.",
        )(decorated)
    decorated = click.option(
        "--version",
        "version",
        type=click.IntRange(min=1, max=MAX_VERSION),
        help="The version you reviewed (one id): refuse if the change moved on since.",
    )(decorated)
    decorated = aws_options(
        click.argument("change_ids", metavar="ID[@VERSION]...", nargs=-1, required=True)(decorated)
    )
    return change_group.command(
        name,
        help=f"Move changes to {target.value} and notify their customers. Pin each to the version you "
        "reviewed (ID@N, or --version N with one id): a change that moved on since is not written "
        "(exit 1). With several ids each is done on its own: the others go on when one fails (refused, "
        "moved on), and the ids that failed are named for a retry of only those.",
    )(decorated)


def _bulk(
    operation: str,
    targets: list[tuple[str, int | None]],
    svc: ChangeService,
    *,
    as_json: bool,
    reason: str | None = None,
) -> None:
    """Several changes, each on its own; exit 1 naming the ones to retry when any did not succeed."""
    stderr.print(f"{operation} {len(targets)} changes")

    def narrate(item: BulkItem) -> None:
        line = f"{item.change_id}: {item.outcome.value if item.outcome else '?'}"
        stderr.print(escape(line + (f": {item.error}" if item.error else "")))

    run = BulkTransitions(svc).run(operation, targets, on_item=narrate, reason=reason)
    if as_json:
        print_json(run.to_json())
    else:
        table = Table("change", "outcome", "now", "error", title=f"{operation}: {len(run.items)} changes")
        for item in run.items:
            now = f"v{item.result.change.version} {item.result.change.status.value}" if item.result else ""
            table.add_row(
                item.change_id, item.outcome.value if item.outcome else "", now, escape(item.error or "")
            )
        stdout.print(table)
    if run.ok:
        return
    again = [i for i in run.failed if i.result is None or ARCHIVE in i.result.failed]
    partial = [i for i in run.failed if i not in again]
    hints = []
    if again:
        pins = " ".join(f"{i.change_id}@{i.version}" if i.version else i.change_id for i in again)
        hints.append(f"retry those with `changeconsole change {operation} {pins}`")
    for item in partial:
        assert item.result is not None
        hints.append(
            f"`changeconsole change resend {item.change_id} --customers {','.join(item.result.failed)}`"
        )
    raise OperationFailed(f"{len(run.failed)} of {len(run.items)} did not succeed; " + "; ".join(hints))


approve_cmd = _transition_command("approve", ChangeStatus.APPROVED)
complete_cmd = _transition_command("complete", ChangeStatus.COMPLETED)
cancel_cmd = _transition_command("cancel", ChangeStatus.CANCELLED)


@change_group.command("resend")
@aws_options
@click.argument("change_id", metavar="ID")
@click.option("--customers", metavar="a,b,…", help="Only these customers [default: all targeted].")
@wait_option
@timeout_option
@json_option
@handle_errors
def resend_cmd(change_id: str, customers: str | None, wait: bool, timeout: float, as_json: bool) -> None:
    """Send the current version's event again (e.g. to customers whose trigger failed)."""
    codes = parse_customers(customers)
    svc = _service()
    result = _fanout(f"resending {change_id}", lambda p: svc.resend(change_id, customers=codes, progress=p))
    _transition_output(result, as_json=as_json, wait=wait, timeout=timeout, action=f"resend {change_id}")


@change_group.command("resend-unknown")
@aws_options
@click.argument("change_id", metavar="ID")
@click.option(
    "--customer",
    "customers",
    metavar="CODE",
    multiple=True,
    help="Only this customer (repeatable) [default: every customer of the change].",
)
@click.option("--version", "version", type=click.IntRange(min=1), help="Only this version [default: all].")
@click.option(
    "--event", type=click.Choice([e.value for e in EmailEvent]), help="Only this event (with --version)."
)
@click.option("--dry-run", is_flag=True, help="Show what would be resent; change nothing.")
@click.option(
    "--yes", is_flag=True, help="Do not ask (required without a terminal): recipients may get it twice."
)
@json_option
@handle_errors
def resend_unknown_cmd(
    change_id: str,
    customers: tuple[str, ...],
    version: int | None,
    event: str | None,
    dry_run: bool,
    yes: bool,
    as_json: bool,
) -> None:
    """Send again to recipients whose outcome is unknown (a worker stopped mid-send).

    Such a recipient may or may not have received the email: resending may deliver it twice. Only
    recipients still `unknown` are resent; a worker then sends to them alone.
    """
    if not CHANGE_ID_RE.match(change_id):
        raise BadInput(f"{change_id!r} is not a change id (CHG-…)")
    if event is not None and version is None:
        raise BadInput("--event needs --version")
    st = state()
    if st.readonly and not dry_run:
        raise BadInput("read-only: resend-unknown is disabled (--readonly)")
    config = st.config()
    strangers = sorted(set(customers) - set(config.customer_mappings))
    if strangers:
        raise BadInput(f"unknown customer(s): {', '.join(strangers)}")
    svc = ResendService(st.aws(), config, authz=st.reader())
    scope: dict[str, Any] = {
        "customers": sorted(set(customers)) or None,
        "version": version,
        "event": EmailEvent(event) if event else None,
    }
    unknown = svc.unknown(change_id, **scope)
    if not as_json:
        if unknown:
            stdout.print(_unknown_table(change_id, unknown))
        else:
            stderr.print(f"no unknown recipients for {escape(change_id)}")
    if unknown and not dry_run and not yes:
        question = f"{DUPLICATE_WARNING} Resend to {len(unknown)} recipient(s) of {change_id}?"
        if not _can_ask():
            raise BadInput(f"refusing without --yes (no terminal to ask): {DUPLICATE_WARNING}")
        if not click.confirm(question, default=False, err=True):
            stderr.print("nothing resent")
            if as_json:
                print_json(_resend_json(change_id, unknown, None, dry_run=dry_run))
            return
    result: ResendResult | None = None
    if unknown:
        # Exactly the recipients listed (and confirmed), not any that became unknown since.
        selection: dict[DeliveryKey, list[str]] = {}
        for u in unknown:
            selection.setdefault(u.key, []).append(u.email)
        result = svc.resend_keys(change_id, selection, dry_run=dry_run)
    elif not dry_run:
        result = svc.resend(change_id, **scope)  # re-triggers an earlier resend whose trigger failed
    if as_json:
        print_json(_resend_json(change_id, unknown, result, dry_run=dry_run))
    elif result is not None:
        _narrate_resend(result)
    if result is not None and not result.ok:
        failed = [d.customer for d in result.deliveries if not d.ok]
        raise OperationFailed(f"re-trigger failed for {', '.join(failed)}; run resend-unknown again")


def _can_ask() -> bool:
    """Only a person at a terminal can confirm a resend that may duplicate emails."""
    return sys.stdin.isatty() and sys.stderr.isatty()


def _unknown_table(change_id: str, unknown: list[UnknownRecipient]) -> Table:
    table = Table(title=f"{change_id}: recipients with unknown outcome", title_justify="left")
    for name in ("customer", "version", "event", "recipient", "since", "error"):
        table.add_column(name)
    for u in unknown:
        table.add_row(
            u.customer,
            str(u.version),
            u.event.value,
            escape(u.email),
            escape(u.marked_at or u.started_at or "-"),
            escape(u.error or ""),
        )
    return table


def _resend_json(
    change_id: str, unknown: list[UnknownRecipient], result: ResendResult | None, *, dry_run: bool
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "change_id": change_id,
        "dry_run": dry_run,
        "operator": None,
        "requested_at": None,
        "resent": 0,
        "refused": 0,
        "ok": True,
        "audit_key": None,
        "deliveries": [],
    }
    if result is not None:
        data.update(result.to_json())
    data["unknown"] = [u.model_dump(mode="json") for u in unknown]
    return data


def _narrate_resend(result: ResendResult) -> None:
    verb = "would resend" if result.dry_run else "resent"
    for d in result.deliveries:
        where = f"{d.customer} v{d.version} {d.event.value}"
        if d.resend:
            stderr.print(
                f"{escape(where)}: {verb} {len(d.resend)} recipient(s): {escape(', '.join(d.resend))}"
            )
        if d.retriggered_pending:
            stderr.print(f"{escape(where)}: re-triggered an earlier resend still waiting for a worker")
        for addr, why in sorted(d.refused.items()):
            stderr.print(f"[yellow]{escape(where)}: not resent {escape(addr)}: {escape(why)}[/]")
        if d.trigger_error:
            stderr.print(f"[red]{escape(where)}: trigger failed: {escape(d.trigger_error)}[/]")
    if result.dry_run:
        stderr.print(f"dry run: {result.resent} recipient(s) would be resent; nothing changed")
    else:
        stderr.print(
            f"{result.resent} recipient(s) resent by {escape(result.operator)}; {result.refused} refused"
        )


@change_group.command("list")
@aws_options
@click.option("--status", type=click.Choice([s.value for s in ChangeStatus]), help="Only this status.")
@click.option("--customer", metavar="CODE", help="Only changes targeting this customer.")
@click.option("--search", metavar="TEXT", help="Text in id, title, reason, tickets, impact, people.")
@click.option("--from", "start_from", metavar="DATE", help="Window starts on/after (YYYY-MM-DD or RFC 3339).")
@click.option("--to", "start_to", metavar="DATE", help="Window starts on/before (YYYY-MM-DD or RFC 3339).")
@click.option("--since", metavar="DATE", help="Active since: last changed on/after DATE.")
@click.option("--until", metavar="DATE", help="Active until: created on/before DATE.")
@click.option(
    "--operator", metavar="NAME", help="Created, submitted, approved or last changed by NAME (part)."
)
@click.option("--ticket", metavar="TICKET", help="ServiceNow or Jira ticket (part of it).")
@click.option(
    "--mine", is_flag=True, help="Yours: created, submitted or approved by you, or yours to act on next."
)
@click.option("--filter", "filter_name", metavar="NAME", help="Start from saved filter NAME (`filter list`).")
@click.option("--save-filter", "save_as", metavar="NAME", help="Save these conditions as filter NAME.")
@json_option
@handle_errors
def list_cmd(
    status: str | None,
    customer: str | None,
    search: str | None,
    start_from: str | None,
    start_to: str | None,
    since: str | None,
    until: str | None,
    operator: str | None,
    ticket: str | None,
    mine: bool,
    filter_name: str | None,
    save_as: str | None,
    as_json: bool,
) -> None:
    """List changes, newest first."""
    saved = SavedFilters()
    given = ChangeQuery(
        text=search or "",
        status=status,
        customer=customer,
        operator=operator,
        ticket=ticket,
        since=parse_date(since, end=False),
        until=parse_date(until, end=True),
        start_from=parse_date(start_from, end=False),
        start_to=parse_date(start_to, end=True),
        mine=mine,
    )
    query = saved.get(filter_name).merged(given) if filter_name else given
    if save_as:
        saved.save(save_as, query)
        stderr.print(f"saved filter {escape(save_as)}: {escape(query.describe())}")
    svc = _service()
    me = svc.operator if query.mine else None
    now = datetime.now(UTC)
    rows = [r for r in svc.list(**query.index_filters()) if query.matches(r, me=me, now=now)]
    if as_json:
        data: dict[str, Any] = {"count": len(rows), "changes": [r.to_json() for r in rows]}
        if me is not None:
            for row, item in zip(rows, data["changes"], strict=True):
                item["mine"] = my_relation(row, me, now)
        print_json(data)
        return
    # The id is what operators copy: never wrapped or cut. The title gives way (it wraps); on a narrow
    # terminal (or a pipe, 80 columns) the columns least needed are left out rather than squashed.
    id_width = max((len(r.change_id) for r in rows), default=2)
    optional = {"start": 19, "customers": 16, "by": 12}  # width each takes, left out in this order
    base = id_width + 11 + 3 + 14 + 19 + (12 if me is not None else 0)  # status, v, title, modified
    shown_cols = list(optional)
    while shown_cols and stdout.width - base < sum(optional[c] for c in shown_cols):
        shown_cols.pop(0)
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("id", no_wrap=True, min_width=id_width)
    table.add_column("status", no_wrap=True)
    table.add_column("v", no_wrap=True)
    table.add_column("title", ratio=1, min_width=12)
    if "customers" in shown_cols:
        table.add_column("customers", min_width=8, max_width=24)
    if "start" in shown_cols:
        table.add_column("start", no_wrap=True)
    table.add_column("modified", no_wrap=True)
    if "by" in shown_cols:
        table.add_column("by", min_width=6, max_width=24)
    if me is not None:
        table.add_column("yours", no_wrap=True)
    for r in rows:
        cells = [r.change_id, r.status.value, str(r.version), escape(r.title)]
        if "customers" in shown_cols:
            more = f" +{len(r.customers) - 3}" if len(r.customers) > 3 else ""
            cells.append(", ".join(r.customers[:3]) + more)
        if "start" in shown_cols:
            cells.append(_short_time(r.implementation_start))
        cells.append(_short_time(r.modified_at))
        if "by" in shown_cols:
            cells.append(escape(r.modified_by or r.created_by or ""))  # a draft saved once: its creator
        if me is not None:
            cells.append(my_relation(r, me, now) or "")
        table.add_row(*cells)
    stdout.print(table)
    stderr.print(f"{len(rows)} change(s)" + ("" if query.empty else f" · {escape(query.describe())}"))


_LONG_FIELDS = ("changeReason", "implementationPlan", "testPlan", "customerImpact", "rollbackPlan")


@change_group.command("schema")
@click.option("--markdown", is_flag=True, help="The format's document instead (docs/change-format.md).")
@handle_errors
def schema_cmd(markdown: bool) -> None:
    """Print the JSON Schema of a change file (what draft, submit and show --json read and write)."""
    if markdown:
        click.echo(changeformat.markdown(), nl=False)
    else:
        print_json(changeformat.json_schema())


@change_group.command("template")
@aws_options
@click.option(
    "--customer",
    "customers",
    multiple=True,
    metavar="CODE",
    help="A customer it targets (repeat) [default: the config's first customer].",
)
@handle_errors
def template_cmd(customers: tuple[str, ...]) -> None:
    """Print a valid change file to start from (a window a week ahead): edit it, then draft or submit."""
    codes = list(customers)
    if not codes:
        try:
            codes = sorted(state().config().customer_mappings)[:1]
        except ConfigError:
            codes = []
        if not codes:
            codes = ["acme"]
            stderr.print("no config to take a customer from: `acme` is a placeholder, set `customers`")
    print_json(changeformat.template(codes))
    stderr.print(
        "edit it (docs/change-format.md says what each field means), then: "
        "changeconsole change draft FILE (or submit FILE)"
    )


@change_group.command("show")
@aws_options
@click.argument("change_id", metavar="ID")
@click.option("--version", "version", type=click.IntRange(min=1), help="This version [default: current].")
@json_option
@handle_errors
def show_cmd(change_id: str, version: int | None, as_json: bool) -> None:
    """Show a change (the current version, or --version N)."""
    svc = _service()
    change = svc.get_version(change_id, version) if version else svc.load(change_id)
    data = change.to_json_dict()
    if as_json:
        print_json(data)
        return
    table = Table("field", "value", box=None, show_header=False, title=change.change_id, title_justify="left")
    for key, value in data.items():
        if key in _LONG_FIELDS or key == "modifications" or value in (None, "", [], {}):
            continue
        shown = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
        table.add_row(f"[bold]{key}[/]", escape(shown))
    stdout.print(table)
    for key in _LONG_FIELDS:
        if data.get(key):
            stdout.print(f"\n[bold]{key}[/]")
            stdout.print(str(data[key]), markup=False)


@change_group.command("history")
@aws_options
@click.argument("change_id", metavar="ID")
@click.option(
    "--diff", "diff", nargs=2, type=click.IntRange(min=1), metavar="A B", help="Diff version A → B."
)
@json_option
@handle_errors
def history_cmd(change_id: str, diff: tuple[int, int] | None, as_json: bool) -> None:
    """Every version of a change, or the field-by-field diff of two versions."""
    svc = _service()
    if diff:
        a, b = diff
        diffs = svc.diff(change_id, a, b)
        if as_json:
            print_json({"change_id": change_id, "a": a, "b": b, "diffs": [d.to_json() for d in diffs]})
            return
        table = Table("field", f"v{a}", f"v{b}", title=f"{change_id}: v{a} → v{b}", title_justify="left")
        for d in diffs:
            if d.unified is None:
                table.add_row(d.field, escape(_short(d.old)), escape(_short(d.new)))
            else:
                table.add_row(d.field, "[dim](long text, see below)[/]", "")
        stdout.print(table)
        unified = [d.unified for d in diffs if d.unified]
        if unified:
            stdout.print(Syntax("\n".join(unified), "diff", theme="ansi_dark", word_wrap=True))
        if not diffs:
            stderr.print("no differences")
        return
    versions = svc.history(change_id)
    if as_json:
        print_json({"change_id": change_id, "versions": [_version_json(v) for v in versions]})
        return
    table = Table("version", "status", "at", "by", "what", title=change_id, title_justify="left")
    for v in versions:
        info = _version_json(v)
        table.add_row(
            str(v.version), v.status.value, info["at"] or "", escape(info["by"] or ""), info["what"] or ""
        )
    stdout.print(table)


def _version_json(change: Change) -> dict[str, Any]:
    mod = change.modifications[-1] if change.modifications else None
    return {
        "version": change.version,
        "status": change.status.value,
        "at": change.modified_at or change.created_at,
        "by": change.modified_by or change.created_by,
        "what": mod.modification_type if mod else None,
    }


def _short(value: Any, limit: int = 60) -> str:
    text = "—" if value is None else (", ".join(map(str, value)) if isinstance(value, list) else str(value))
    return text if len(text) <= limit else text[: limit - 1] + "…"


@change_group.command("duplicate")
@aws_options
@click.argument("change_id", metavar="ID")
@json_option
@handle_errors
def duplicate_cmd(change_id: str, as_json: bool) -> None:
    """Copy a change into a new draft. Prints the new id."""
    copy = _service().duplicate(change_id)
    if as_json:
        print_json({"change_id": copy.change_id, "duplicated_from": change_id, "change": copy.to_json_dict()})
        return
    stdout.print(copy.change_id, markup=False)
    stderr.print(f"new draft {escape(copy.change_id)} copied from {escape(change_id)}")


@change_group.command("delete")
@aws_options
@click.argument("change_id", metavar="ID")
@json_option
@handle_errors
def delete_cmd(change_id: str, as_json: bool) -> None:
    """Soft-delete a draft or cancelled change (moved under deleted/)."""
    _service().delete(change_id)
    if as_json:
        print_json({"change_id": change_id, "deleted": True})
        return
    stderr.print(f"deleted {escape(change_id)} (kept under deleted/)")


# -- status ------------------------------------------------------------------------------------
@click.command("status")
@aws_options
@click.argument("change_id", metavar="ID")
@click.option("--version", "version", type=click.IntRange(min=1), help="This version [default: newest].")
@click.option(
    "--event", type=click.Choice([e.value for e in EmailEvent]), help="This event (with --version)."
)
@click.option("--watch", is_flag=True, help="Refresh until every customer is final.")
@click.option("--timeout", type=click.FloatRange(min=0), default=None, help="Seconds --watch waits at most.")
@json_option
@handle_errors
def status_cmd(
    change_id: str, version: int | None, event: str | None, watch: bool, timeout: float | None, as_json: bool
) -> None:
    """Per-customer delivery status of a change's newest (or chosen) version and event."""
    if not CHANGE_ID_RE.match(change_id):
        raise BadInput(f"{change_id!r} is not a change id (CHG-…)")
    store = _status_store()
    records = _round(store, change_id, version, EmailEvent(event) if event else None)
    failure = None
    if watch and records:
        first = records[0]
        customers = sorted(r.customer for r in records)
        with DeliveryNarrator(customers) as narrator:
            try:
                records = wait_for_final(
                    store,
                    change_id,
                    first.version,
                    first.event,
                    customers,
                    timeout if timeout is not None else float("inf"),
                    on_update=narrator,
                    settling=_reconciling(change_id, first.version, first.event),
                )
            except WaitTimeout as exc:
                records = exc.records
                failure = f"timed out: {exc}"
        if failure is None and any(r.state is not DeliveryState.SENT for r in records):
            not_sent = [r.customer for r in records if r.state is not DeliveryState.SENT]
            failure = f"{len(not_sent)} customer(s) did not reach sent: {', '.join(not_sent)}"
    counts = StatusStore.aggregate(records)
    if as_json:
        print_json(
            {
                "change_id": change_id,
                "version": records[0].version if records else None,
                "event": records[0].event.value if records else None,
                "counts": counts,
                "all_final": StatusStore.all_final(records),
                "records": [_record_json(r) for r in records],
            }
        )
    elif not records:
        stderr.print(f"no deliveries recorded for {escape(change_id)}")
    else:
        title = f"{change_id} v{records[0].version} {records[0].event.value}"
        stdout.print(delivery_table({r.customer: r for r in records}, title=title))
        stderr.print(", ".join(f"{n} {s}" for s, n in counts.items() if n))
    if failure:
        raise OperationFailed(failure)


def _round(
    store: StatusStore, change_id: str, version: int | None, event: EmailEvent | None
) -> list[DeliveryRecord]:
    if version is None:
        if event is not None:
            raise BadInput("--event needs --version")
        records = store.latest_round(change_id)
    else:
        records = store.records(change_id, version=version, event=event)
        notices = [r for r in records if r.event is not EmailEvent.REMOVED]
        if event is None and notices:
            newest = max(r.event.value for r in notices)
            records = [r for r in records if r.event.value in (newest, EmailEvent.REMOVED.value)]
    return sorted(records, key=lambda r: r.customer)
