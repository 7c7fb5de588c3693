"""``customer add|verify|remove``: onboard, check and offboard customers by command.

stdout is data (``--json`` shapes in docs/cli-json.md), stderr narrates; exit 0 ok, 1 operation
failed (also: ``verify`` found a failing check, ``add`` could not set up the customer's side), 2 bad
input (also: ``remove`` refused while deliveries are in flight or the DLQ holds messages).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from ..services.customer_admin import (
    FAIL,
    OK,
    WARN,
    CustomerAdmin,
    CustomerVerifier,
    NewCustomer,
    VerifyReport,
)
from ..services.topics import load_topics_file
from .common import (
    EXIT_BAD_INPUT,
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
from .shards import shard_label, shards_option

_STYLE = {OK: "green", WARN: "yellow", FAIL: "red", "skipped": "dim"}


def _admin() -> CustomerAdmin:
    st = state()
    return CustomerAdmin(st.aws(), st.config_source.path, authz=st.reader())


def verify_table(reports: list[VerifyReport]) -> Table:
    table = Table("customer", "check", "status", "detail", box=None)
    for report in reports:
        for check in report.checks:
            colour = _STYLE.get(check.status, "white")
            table.add_row(report.customer, check.name, f"[{colour}]{check.status}[/]", escape(check.detail))
    return table


@click.group("customer")
def customer_group() -> None:
    """Customers of the config: add (onboard), verify, remove."""


@customer_group.command("add")
@aws_options
@click.argument("code")
@click.option("--name", required=True, help="Customer name (customer_name).")
@click.option("--role-arn", required=True, help="The SES role in the customer's account (ses_role_arn).")
@click.option("--environment", default="production", show_default=True)
@click.option("--region", help="The customer's SES region (default: aws_region).")
@click.option("--queue-arn", help="Its trigger queue (default: named like the other customers').")
@click.option("--contact-list", help="contact_list_name (default: the account's own list).")
@click.option("--sender", help="sender_address for this customer (default: email_config.sender_address).")
@click.option("--external-id", help="ses_external_id the role's trust policy requires.")
@click.option("--restricted", metavar="A,B", help="restricted_recipients: only these addresses receive.")
@click.option(
    "--topics",
    "topics_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="SESConfig.json for the contact list's topics (default: the three change topics).",
)
@shards_option
@json_option
@handle_errors
def add_cmd(
    code: str,
    name: str,
    role_arn: str,
    environment: str,
    region: str | None,
    queue_arn: str | None,
    contact_list: str | None,
    sender: str | None,
    external_id: str | None,
    restricted: str | None,
    topics_file: Path | None,
    shards: int | None,
    as_json: bool,
) -> None:
    """Onboard CODE: queue, DLQ and notification; config.json (atomic, with a backup); its contact
    list's topics; then verify. Re-running it finishes a partial onboarding."""
    refuse_readonly("customer add")
    new = NewCustomer(
        code=code,
        name=name,
        role_arn=role_arn,
        environment=environment,
        region=region,
        queue_arn=queue_arn,
        contact_list_name=contact_list,
        sender_address=sender,
        external_id=external_id,
        restricted_recipients=[a.strip() for a in (restricted or "").split(",") if a.strip()],
    )
    topics = load_topics_file(topics_file) if topics_file else None
    report = _admin().add(new, topics=topics)
    if as_json:
        data = report.to_json()
        if shards:
            data["shard"] = shard_label(code, shards)
        print_json(data)
    else:
        if shards:
            label = shard_label(code, shards)
            stderr.print(f"{code} is served by worker shard {label} (worker --shard {label})")
        for action in report.provision:
            if action.result != "unchanged":
                stderr.print(f"{action.kind} {action.name}: {action.result} {escape(action.detail)}")
        where = f" (backup {report.backup})" if report.backup else ""
        stderr.print(f"config {report.config_path}: {report.config_result}{where}")
        if report.identity:
            stderr.print(f"local stack: SES identity {report.identity} created in the customer's account")
        if report.topics:
            changed = [f"{t.topic} {t.result}" for t in report.topics.topics if t.result != "unchanged"]
            stderr.print(
                f"contact list {report.topics.list_name}: {', '.join(changed) or 'topics unchanged'}"
            )
        if report.verify:
            stdout.print(verify_table([report.verify]))
    if report.topics_error:
        stderr.print(
            f"[red]customer side not set up:[/] {escape(report.topics_error)}; the config and queues are in "
            f"place: run `changeconsole customer add {code} …` again (or `topics apply {code} FILE`) once "
            "the role works"
        )
    if not report.ok:
        raise SystemExit(EXIT_FAILED)


@customer_group.command("verify")
@aws_options
@click.argument("code", required=False)
@click.option("--all", "all_customers", is_flag=True, help="Every customer of the config.")
@json_option
@handle_errors
def verify_cmd(code: str | None, all_customers: bool, as_json: bool) -> None:
    """Check a customer's side, read-only: role, SES identity, production access, quota, contact list
    (which one and why), topics, subscribers, queue, DLQ, notification. Exit 1 when a check fails."""
    if bool(code) == all_customers:
        raise BadInput("give a customer CODE or --all")
    st = state()
    config = st.config()
    if code:
        config.customer(code)
    verifier = CustomerVerifier(st.aws(), config, authz=st.reader())
    reports = verifier.verify_all(None if all_customers else [str(code)])
    if as_json:
        print_json({"customers": [r.to_json() for r in reports], "ok": all(r.ok for r in reports)})
    else:
        stdout.print(verify_table(reports))
        for r in reports:
            colour = _STYLE[r.status]
            stderr.print(f"{r.customer}: [{colour}]{r.status}[/] — {escape(r.summary())}")
    if not all(r.ok for r in reports):
        raise SystemExit(EXIT_FAILED)


@customer_group.command("remove")
@aws_options
@click.argument("code")
@click.option(
    "--force", is_flag=True, help="Even with deliveries in flight or messages in its DLQ (exported first)."
)
@click.option("--dry-run", is_flag=True, help="Say what would happen; change nothing.")
@click.option("--yes", is_flag=True, help="Do not ask (required without a terminal).")
@json_option
@handle_errors
def remove_cmd(code: str, force: bool, dry_run: bool, yes: bool, as_json: bool) -> None:
    """Offboard CODE: its mapping leaves config.json (backup kept), its notification, queue and DLQ are
    deleted. The archive (changes, versions, audit) and the customer's own contacts are kept."""
    if not dry_run:
        refuse_readonly("customer remove")
        if not yes:
            if not (sys.stdin.isatty() and sys.stderr.isatty()):
                raise BadInput("refusing without --yes (no terminal to ask)")
            if not click.confirm(f"Remove customer {code} (queue and DLQ deleted)?", default=False, err=True):
                raise SystemExit(EXIT_BAD_INPUT)
    report = _admin().remove(code, force=force, dry_run=dry_run)
    if as_json:
        print_json(report.to_json())
        return
    if dry_run:
        stderr.print(
            f"dry run: {code} would be removed ({report.in_flight} in flight, {report.queued} queued, "
            f"{report.dead_lettered} dead-lettered); nothing was changed"
        )
        return
    if report.dlq_export:
        stderr.print(f"DLQ exported to {report.dlq_export}")
    stderr.print(
        f"removed {code}: config backup {report.backup}; queues deleted: "
        f"{', '.join(report.deleted_queues) or 'none'}; the archive and the customer's contacts are kept"
    )
