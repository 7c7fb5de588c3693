"""``contacts list|add|update|remove|import|export|sync-identity-center`` and ``topics apply``.

Contacts live in each customer's own SES account (reached through its role). stdout is data
(``--json`` shapes in docs/cli-json.md), stderr narrates; exit 0 ok, 1 operation failed (an AWS
failure, also one that stopped an import part-way), 2 bad input (also: invalid rows in an import,
an unknown topic or contact, a mutating command in ``--readonly``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from ..services.contact_admin import (
    DEFAULT_RATE,
    ContactBook,
    ContactView,
    ImportReport,
    TopicInfo,
)
from ..services.contacts import OPT_IN
from ..services.identity_center import IdentityCenterSync
from ..services.topics import (
    DEFAULT_TOPICS,
    TopicSpec,
    TopicsReport,
    apply_topics_for,
    load_topics_file,
)
from .common import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    BadInput,
    OperationFailed,
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

rate_option = click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_RATE,
    show_default=True,
    help="Contact API calls per second (SES allows 1/s per account unless raised).",
)


def _book(code: str, rate: float | None = DEFAULT_RATE) -> ContactBook:
    st = state()
    return ContactBook(st.aws(), st.config(), code, rate=rate, authz=st.reader())


def _cell(view: ContactView, topic: TopicInfo) -> str:
    explicit = view.preferences.get(topic.name)
    receives = view.subscribed.get(topic.name, False)
    if view.unsubscribe_all:
        return "[dim]unsub[/]"
    mark = "[green]in[/]" if receives else "[red]out[/]"
    return mark if explicit else f"[dim]({'in' if receives else 'out'})[/]"


def _prefs(
    opt_in: tuple[str, ...], opt_out: tuple[str, ...], default: tuple[str, ...] = ()
) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for topics, status in ((opt_in, OPT_IN), (opt_out, "OPT_OUT"), (default, None)):
        for topic in topics:
            if topic in out:
                raise BadInput(f"topic {topic} given twice")
            out[topic] = status
    return out


@click.group("contacts")
def contacts_group() -> None:
    """A customer's contacts and topic preferences, in its own SES account."""


@contacts_group.command("list")
@aws_options
@click.argument("code")
@click.option("--filter", "text", metavar="TEXT", help="Only addresses containing TEXT.")
@click.option("--topic", metavar="TOPIC", help="Only contacts who receive TOPIC.")
@json_option
@handle_errors
def list_cmd(code: str, text: str | None, topic: str | None, as_json: bool) -> None:
    """Every contact of CODE's list with, per topic, an explicit preference or the default."""
    book = _book(code)
    topics, views = book.views()
    if topic is not None and topic not in {t.name for t in topics}:
        raise BadInput(f"unknown topic {topic!r} (the list has {', '.join(t.name for t in topics)})")
    if text:
        views = [v for v in views if text.casefold() in v.email.casefold()]
    if topic:
        views = [v for v in views if v.subscribed.get(topic)]
    if as_json:
        print_json(
            {
                "customer": code,
                "contact_list": book.choice.to_json(),
                "topics": [
                    {"name": t.name, "display_name": t.display_name, "default": t.default} for t in topics
                ],
                "contacts": [v.to_json() for v in views],
            }
        )
        return
    table = Table("email", *(t.name for t in topics), box=None)
    for view in views:
        table.add_row(escape(view.email), *(_cell(view, t) for t in topics))
    stdout.print(table)
    defaults = ", ".join(f"{t.name} {t.default}" for t in topics)
    stderr.print(
        f"{len(views)} contact(s) in {book.list_name} ({book.choice.reason}); "
        f"(in)/(out): no preference, the topic default applies ({defaults})"
    )


@contacts_group.command("add")
@aws_options
@click.argument("code")
@click.argument("email")
@click.option("--opt-in", multiple=True, metavar="TOPIC", help="Explicit OPT_IN (repeatable).")
@click.option("--opt-out", multiple=True, metavar="TOPIC", help="Explicit OPT_OUT (repeatable).")
@click.option("--unsubscribe-all", is_flag=True, help="Receives nothing at all.")
@json_option
@handle_errors
def add_cmd(
    code: str,
    email: str,
    opt_in: tuple[str, ...],
    opt_out: tuple[str, ...],
    unsubscribe_all: bool,
    as_json: bool,
) -> None:
    """Add EMAIL to CODE's list (topics not named follow their default)."""
    refuse_readonly("contacts add")
    contact = _book(code).add(email, _prefs(opt_in, opt_out), unsubscribe_all=unsubscribe_all)
    if as_json:
        print_json(
            {
                "customer": code,
                "email": contact.email,
                "result": "created",
                "preferences": contact.preferences,
            }
        )
    else:
        stderr.print(f"added {escape(contact.email)} to {code}")


@contacts_group.command("update")
@aws_options
@click.argument("code")
@click.argument("email")
@click.option("--opt-in", multiple=True, metavar="TOPIC", help="Explicit OPT_IN (repeatable).")
@click.option("--opt-out", multiple=True, metavar="TOPIC", help="Explicit OPT_OUT (repeatable).")
@click.option("--default", "use_default", multiple=True, metavar="TOPIC", help="No preference: the default.")
@click.option("--unsubscribe-all/--no-unsubscribe-all", default=None, help="Set or clear UnsubscribeAll.")
@json_option
@handle_errors
def update_cmd(
    code: str,
    email: str,
    opt_in: tuple[str, ...],
    opt_out: tuple[str, ...],
    use_default: tuple[str, ...],
    unsubscribe_all: bool | None,
    as_json: bool,
) -> None:
    """Change EMAIL's topic preferences on CODE's list."""
    refuse_readonly("contacts update")
    prefs = _prefs(opt_in, opt_out, use_default)
    if not prefs and unsubscribe_all is None:
        raise BadInput("nothing to change: give --opt-in, --opt-out, --default or --[no-]unsubscribe-all")
    _before, after, changes = _book(code).update(email, prefs, unsubscribe_all=unsubscribe_all)
    if as_json:
        print_json(
            {
                "customer": code,
                "email": after.email,
                "result": "updated" if changes else "unchanged",
                "changes": changes,
                "preferences": after.preferences,
                "unsubscribe_all": after.unsubscribe_all,
            }
        )
    elif changes:
        stderr.print(f"updated {escape(after.email)}: {escape('; '.join(changes))}")
    else:
        stderr.print(f"{escape(after.email)}: nothing to change")


@contacts_group.command("remove")
@aws_options
@click.argument("code")
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask (required without a terminal).")
@json_option
@handle_errors
def remove_cmd(code: str, email: str, yes: bool, as_json: bool) -> None:
    """Delete EMAIL from CODE's list (its preferences go with it)."""
    refuse_readonly("contacts remove")
    if not yes:
        if not (sys.stdin.isatty() and sys.stderr.isatty()):
            raise BadInput("refusing without --yes (no terminal to ask)")
        if not click.confirm(f"Remove {email} from {code}'s contacts?", default=False, err=True):
            raise SystemExit(EXIT_BAD_INPUT)
    before = _book(code).remove(email)
    if as_json:
        print_json(
            {"customer": code, "email": before.email, "result": "removed", "preferences": before.preferences}
        )
    else:
        stderr.print(f"removed {escape(before.email)} from {code}")


def _print_import(report: ImportReport, as_json: bool) -> None:
    if as_json:
        print_json(report.to_json())
    else:
        table = Table("line", "email", "result", "detail", box=None)
        style = {"created": "green", "updated": "cyan", "unchanged": "dim", "invalid": "red", "failed": "red"}
        for row in report.rows:
            colour = style.get(row.result, "yellow")
            table.add_row(str(row.line), escape(row.email), f"[{colour}]{row.result}[/]", escape(row.detail))
        stdout.print(table)
        counts = ", ".join(f"{n} {k}" for k, n in report.counts().items() if n)
        verb = "dry run (nothing written)" if report.dry_run else f"{report.applied} row(s) written"
        stderr.print(f"{report.contact_list} of {report.customer}: {counts or 'no rows'}; {verb}")
    if report.error:
        stderr.print(
            f"[red]stopped:[/] {escape(report.error)}; rows before it were applied, rows after it were not "
            "attempted; fix the cause and run the same file again (applied rows come back unchanged)"
        )
    if report.audit_key is None and report.applied:
        stderr.print("[yellow]warning:[/] the audit record could not be written to S3 (see the log)")
    if report.error:
        raise SystemExit(EXIT_FAILED)
    if any(r.result == "invalid" for r in report.rows):
        raise SystemExit(EXIT_BAD_INPUT)


@contacts_group.command("import")
@aws_options
@click.argument("code")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Show what would change; change nothing.")
@rate_option
@json_option
@handle_errors
def import_cmd(code: str, file: Path, dry_run: bool, rate: float, as_json: bool) -> None:
    """Upsert the contacts of a CSV file (header: email[,unsubscribe_all][,<topic>…]).

    Per row: created, updated, unchanged or invalid (with why). Topic cells are OPT_IN, OPT_OUT or
    empty for the topic default; columns not in the file are left as they are. Exit 2 when any row
    is invalid (valid rows are still applied), 1 when AWS stopped the import part-way.
    """
    if not dry_run:
        refuse_readonly("contacts import")
    try:
        text = sys.stdin.read() if str(file) == "-" else file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot read {file}: {exc}") from None
    with progress_bar(f"import {code}", enabled=not as_json) as progress:
        report = _book(code, rate).import_csv(text, dry_run=dry_run, progress=progress)
    _print_import(report, as_json)


@contacts_group.command("export")
@aws_options
@click.argument("code")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@json_option
@handle_errors
def export_cmd(code: str, file: Path, as_json: bool) -> None:
    """Write CODE's contacts to FILE as CSV (the import format; '-' for stdout)."""
    text, count = _book(code).export_csv()
    if str(file) == "-":
        sys.stdout.write(text)
        return
    try:
        file.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise OperationFailed(f"cannot write {file}: {exc.strerror}") from None
    if as_json:
        print_json({"customer": code, "path": str(file), "contacts": count})
    else:
        stderr.print(f"wrote {count} contact(s) of {code} to {file}")


def _topics_from(path: Path | None) -> list[TopicSpec]:
    if path is not None:
        return load_topics_file(path)
    configured = (state().config().model_extra or {}).get("topics_file")
    if configured:
        base = state().config_source.path.parent
        return load_topics_file((base / str(configured)).expanduser())
    return list(DEFAULT_TOPICS)


@contacts_group.command("sync-identity-center")
@aws_options
@click.argument("code")
@click.option(
    "--topics",
    "topics_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="SESConfig.json with OptInRoles (default: config topics_file, else the built-in topics).",
)
@click.option("--dry-run", is_flag=True, help="Show who would be added; add nobody.")
@rate_option
@json_option
@handle_errors
def sync_identity_center_cmd(
    code: str, topics_file: Path | None, dry_run: bool, rate: float, as_json: bool
) -> None:
    """Add the members of CODE's configured Identity Center groups as contacts.

    New contacts are opted in to default-OPT_IN topics and to the topics whose OptInRoles name their
    group's role; existing contacts are left as they are.
    """
    if not dry_run:
        refuse_readonly("contacts sync-identity-center")
    st = state()
    topics = _topics_from(topics_file)
    with progress_bar(f"identity center {code}", enabled=not as_json) as progress:
        report = IdentityCenterSync(st.aws(), st.config(), code, rate=rate, authz=st.reader()).run(
            topics, dry_run=dry_run, progress=progress
        )
    if as_json:
        print_json(report.to_json())
    else:
        table = Table("user", "email", "roles", "topics", "result", "detail", box=None)
        for u in report.users:
            table.add_row(
                escape(u.user),
                escape(u.email),
                ", ".join(u.roles),
                ", ".join(u.topics),
                u.result,
                escape(u.detail),
            )
        stdout.print(table)
        counts = ", ".join(f"{n} {k}" for k, n in report.counts().items() if n) or "no users"
        stderr.print(
            f"{code} ({report.identity_store_id} → {report.contact_list}): {counts}"
            + (" (dry run)" if dry_run else "")
        )
    for group in report.missing_groups:
        stderr.print(f"[yellow]warning:[/] no Identity Center group named {escape(group)}")
    if report.not_on_list:
        stderr.print(f"[yellow]warning:[/] topics not on the list, skipped: {', '.join(report.not_on_list)}")
    if report.error:
        stderr.print(f"[red]stopped:[/] {escape(report.error)}")
        raise SystemExit(EXIT_FAILED)
    if report.missing_groups:
        raise SystemExit(EXIT_BAD_INPUT)


# -- topics --------------------------------------------------------------------------------------


@click.group("topics")
def topics_group() -> None:
    """Topics of customers' contact lists, from a SESConfig.json file."""


def _topics_table(reports: list[TopicsReport]) -> Table:
    table = Table("customer", "contact list", "topic", "result", "changes", box=None)
    style = {"created": "green", "updated": "cyan", "unchanged": "dim", "kept": "yellow"}
    for r in reports:
        for t in r.topics:
            colour = style.get(t.result, "white")
            table.add_row(
                r.customer, r.list_name, t.topic, f"[{colour}]{t.result}[/]", escape("; ".join(t.changes))
            )
    return table


@topics_group.command("apply")
@aws_options
@click.argument("args", nargs=-1, metavar="CODE|--all FILE")
@click.option("--all", "all_customers", is_flag=True, help="Every customer of the config.")
@click.option("--dry-run", is_flag=True, help="Report the drift; change nothing.")
@json_option
@handle_errors
def apply_cmd(args: tuple[str, ...], all_customers: bool, dry_run: bool, as_json: bool) -> None:
    """Give CODE's (or every customer's) contact list the topics of FILE (SESConfig.json format).

    Per topic: created, updated (default, display name or description differ), unchanged, or kept
    (on the list but not in the file: never removed). Exit 1 when any customer failed.
    """
    if len(args) != (1 if all_customers else 2):
        raise BadInput("give a customer CODE and FILE, or --all and FILE")
    code, file = (None, Path(args[0])) if all_customers else (args[0], Path(args[1]))
    if not dry_run:
        refuse_readonly("topics apply")
    specs = load_topics_file(file)
    st = state()
    config = st.config()
    codes = sorted(config.customer_mappings) if all_customers else [str(code)]
    for c in codes:
        config.customer(c)
    run = apply_topics_for(st.aws(), config, codes, specs, dry_run=dry_run, authz=st.reader())
    reports, failures = run.reports, run.failed
    if as_json:
        print_json(
            {
                "dry_run": dry_run,
                "file": str(file),
                "customers": [r.to_json() for r in reports],
                "failed": [{"customer": c, "error": e} for c, e in failures.items()],
                "audit_keys": run.audit_keys,
            }
        )
    else:
        stdout.print(_topics_table(reports))
        for r in reports:
            if r.list_created:
                stderr.print(
                    f"{r.customer}: contact list {r.list_name} {'would be ' if dry_run else ''}created"
                )
            if r.missing_event_topics:
                stderr.print(
                    f"[yellow]warning:[/] {r.customer}: no {', '.join(r.missing_event_topics)} on the list: "
                    "those notices reach nobody"
                )
        drift = sum(1 for r in reports if r.changed)
        verb = "would change" if dry_run else "changed"
        stderr.print(f"{verb} {drift} of {len(reports)} contact list(s)")
    for c, e in failures.items():
        stderr.print(f"[red]failed:[/] {c}: {escape(e)}")
    if failures:
        raise SystemExit(EXIT_FAILED)
