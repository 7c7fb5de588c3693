"""``config validate`` and ``provision``."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.table import Table

from ..config import config_problems
from ..services.provision import operator_roles_report, provision
from .common import (
    EXIT_BAD_INPUT,
    aws_options,
    handle_errors,
    json_option,
    print_json,
    state,
    stderr,
    stdout,
)
from .shards import shard_map, shards_option


@click.group("config")
def config_group() -> None:
    """Inspect and validate config.json."""


@config_group.command("validate")
@aws_options
@json_option
def validate(as_json: bool) -> None:
    """Check config.json; exit 2 listing every problem with its JSON path."""
    source = state().config_source
    try:
        text = source.path.read_text(encoding="utf-8")
    except OSError as exc:
        problems = [{"path": "$", "message": f"cannot read {source.path}: {exc.strerror}"}]
    else:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            problems = [
                {"path": "$", "message": f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"}
            ]
        else:
            problems = config_problems(raw)
    if as_json:
        print_json(
            {"path": str(source.path), "origin": source.origin, "valid": not problems, "problems": problems}
        )
    elif problems:
        stderr.print(f"[red]{source.path}[/] ({source.origin}): {len(problems)} problem(s)")
        for p in problems:
            stdout.print(f"{p['path']}: {p['message']}", markup=False)
    else:
        cfg = json.loads(text)
        stderr.print(
            f"[green]valid[/] {source.path} ({source.origin}): "
            f"{len(cfg.get('customer_mappings', {}))} customers"
        )
    if problems:
        raise SystemExit(EXIT_BAD_INPUT)


@click.command("provision")
@aws_options
@click.option("--dry-run", is_flag=True, help="Show what would change; change nothing.")
@shards_option
@json_option
@handle_errors
def provision_cmd(dry_run: bool, shards: int | None, as_json: bool) -> None:
    """Create or verify the central resources (bucket, queues, DLQs, notifications, tables, audit
    retention, SES events topic and queue) and each customer's SES configuration set, and report the
    operator roles (their permission sets are Terraform's); with --shards, which worker shard serves
    each customer."""
    st = state()
    config = st.config()
    if shards and config.uses_doorbell and shards != config.worker_shards:
        stderr.print(
            f"[yellow]warning:[/] --shards {shards} but config.json worker_shards is "
            f"{config.worker_shards}: the doorbell queues are provisioned for {config.worker_shards}, "
            f"and workers of --shard K/{shards} poll every queue (doorbell.off)"
        )
    actions = provision(st.aws(), config, dry_run=dry_run)
    roles = operator_roles_report(st.aws(), config)
    # "skipped" (e.g. SES event destinations where the endpoint has none) and "failed" change nothing
    changed = [a for a in actions if a.result in ("created", "updated", "would-create", "would-update")]
    by_shard = shard_map(config.customer_mappings, shards) if shards else None
    if as_json:
        out: dict[str, Any] = {
            "dry_run": dry_run,
            "changed": len(changed),
            "actions": [a.__dict__ for a in actions],
            "operator_roles": [r.__dict__ for r in roles],
        }
        if by_shard is not None:
            out["shards"] = by_shard
        print_json(out)
        return
    table = Table("kind", "name", "result", "detail", box=None)
    for a in actions:
        colour = {"unchanged": "dim", "skipped": "yellow", "failed": "bold red"}.get(a.result, "green")
        table.add_row(a.kind, a.name, f"[{colour}]{a.result}[/]", a.detail)
    stdout.print(table)
    if roles:
        roles_table = Table("operator role", "principals", "scope", "actions", "Identity Center", box=None)
        for r in roles:
            roles_table.add_row(
                r.name, ", ".join(r.principals), r.scope, ", ".join(r.actions), "; ".join(r.notes)
            )
        stdout.print(roles_table)
    else:
        stderr.print("[yellow]no operator roles configured: every operator may do everything[/]")
    if by_shard is not None:
        shard_table = Table("customer", "worker shard", box=None)
        for code, shard in by_shard.items():
            shard_table.add_row(code, shard)
        stdout.print(shard_table)
    skipped = [a for a in actions if a.result == "skipped"]
    if not changed and skipped:
        stderr.print(
            f"nothing to change: {len(actions) - len(skipped)} resources match the config; "
            f"{len(skipped)} skipped ({skipped[0].detail})"
        )
    elif not changed:
        stderr.print(f"nothing to change: all {len(actions)} resources match the config")
    else:
        verb = "would change" if dry_run else "changed"
        stderr.print(f"{verb} {len(changed)} of {len(actions)} resources")
