"""Entry point: ``changeconsole`` (TUI by default), ``--worker``, and the scriptable CLI."""

from __future__ import annotations

import sys

import click

from .. import __version__
from .audit_cmd import audit_group, whoami_cmd
from .change_cmd import change_group, status_cmd
from .common import CliState, aws_options
from .config_cmd import config_group, provision_cmd
from .contacts_cmd import contacts_group, topics_group
from .customer_cmd import customer_group
from .dlq_cmd import dlq_group
from .local_cmd import local_group
from .migrate_cmd import migrate_group, reindex_cmd
from .notice_cmd import new_cmd, preview_cmd, test_send_cmd
from .report_cmd import filter_group, report_cmd
from .template_cmd import template_group
from .worker_cmd import worker_cmd


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@aws_options
@click.option("--readonly", is_flag=True, help="Console: hide and refuse every mutating action.")
@click.option("--worker", "as_worker", is_flag=True, help="Run the headless queue worker (= `worker`).")
@click.version_option(__version__, "--version", prog_name="changeconsole")
@click.pass_context
def main(ctx: click.Context, readonly: bool, as_worker: bool) -> None:
    """changeconsole: send change notices to many customer AWS organisations.

    With no command it opens the operator console.
    """
    st = ctx.ensure_object(CliState)
    st.readonly = readonly
    if ctx.invoked_subcommand is not None:
        return
    if as_worker:  # reached only when called without run()'s argv rewrite
        ctx.invoke(worker_cmd)
        return
    from ..app import run_console  # Textual is imported only here

    sys.exit(run_console(st))


def run(argv: list[str] | None = None) -> None:
    """Console-script entry: ``--worker`` anywhere before a command means the ``worker`` command."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "--worker" in args:
        idx = args.index("--worker")
        args = [*args[:idx], "worker", *args[idx + 1 :]]
    main.main(args=args, prog_name="changeconsole")


main.add_command(config_group)
main.add_command(provision_cmd)
main.add_command(local_group)
main.add_command(change_group)
main.add_command(status_cmd)
main.add_command(worker_cmd)
main.add_command(dlq_group)
main.add_command(contacts_group)
main.add_command(topics_group)
main.add_command(customer_group)
main.add_command(migrate_group)
change_group.add_command(reindex_cmd)
main.add_command(audit_group)
main.add_command(whoami_cmd)
main.add_command(template_group)
main.add_command(report_cmd)
main.add_command(filter_group)
change_group.add_command(preview_cmd)
change_group.add_command(test_send_cmd)
change_group.add_command(new_cmd)
