"""``local up`` and ``local outbox``: the embedded local AWS stack."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType

import click
from rich.table import Table

from ..config import local_config_path
from ..services.aws import LOCAL_HOST, LOCAL_PORT
from ..services.localstack import LocalServer, is_listening, provision_local
from ..services.outbox import read_outbox
from .common import (
    OperationFailed,
    aws_options,
    handle_errors,
    json_option,
    print_json,
    state,
    stderr,
    stdout,
)


@click.group("local")
def local_group() -> None:
    """The embedded local AWS stack (moto server on 127.0.0.1)."""


def wait_for_signal() -> None:
    """Block until Ctrl-C or SIGTERM."""
    stop = threading.Event()

    def handler(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for sig, prev in previous.items():
            signal.signal(sig, prev)


@local_group.command("up")
@click.option("--port", default=LOCAL_PORT, show_default=True, type=click.IntRange(1, 65535))
@click.option("--customers", "n_customers", default=6, show_default=True, type=click.IntRange(1, 5000))
@click.option("--contacts", "n_contacts", default=5, show_default=True, type=click.IntRange(0, 1000))
@click.option(
    "--config-out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help=f"Where to write config.json [default: {local_config_path()}]",
)
@handle_errors
def up(port: int, n_customers: int, n_contacts: int, config_out: Path | None) -> None:
    """Start (or reuse) the local stack, provision it and run until Ctrl-C."""
    server: LocalServer | None = None
    endpoint = f"http://{LOCAL_HOST}:{port}"
    if is_listening(LOCAL_HOST, port):
        stderr.print(f"reusing the local stack already listening at {endpoint}")
    else:
        try:
            server = LocalServer(port=port).start()
        except RuntimeError as exc:
            raise OperationFailed(str(exc)) from None
    try:
        result = provision_local(
            endpoint,
            customers=n_customers,
            contacts=n_contacts,
            config_path=config_out,
            progress=lambda msg: stderr.print(f"[dim]{msg}[/]"),
        )
        stdout.print(f"endpoint:    {endpoint}")
        stdout.print(f"config:      {result.config_path}")
        stdout.print(result.summary())
        stderr.print("try: [bold]changeconsole --local change list[/]   (Ctrl-C stops the stack)")
        if server is None:
            return
        wait_for_signal()
    finally:
        if server is not None:
            server.stop()
            stderr.print("local stack stopped")


@local_group.command("outbox")
@aws_options
@click.option("--customer", default=None, help="Only this customer's emails.")
@click.option("--change", "change_id", default=None, help="Only emails of this change id.")
@json_option
@handle_errors
def outbox(customer: str | None, change_id: str | None, as_json: bool) -> None:
    """List every email the local stack accepted."""
    st = state()
    st.local = True
    endpoint = st.endpoint() or f"http://{LOCAL_HOST}:{LOCAL_PORT}"
    if not is_listening(endpoint.split("//")[1].split(":")[0], int(endpoint.rsplit(":", 1)[1])):
        raise OperationFailed(f"no local stack at {endpoint}; start one with: changeconsole local up")
    mails = read_outbox(endpoint, customer=customer, change_id=change_id)
    if as_json:
        print_json([m.to_json() for m in mails])
        return
    table = Table("customer", "to", "event", "change", "v", "subject", box=None)
    for m in mails:
        table.add_row(
            m.customer or "?",
            ", ".join(m.to),
            m.event or "",
            m.change_id or "",
            str(m.version or ""),
            m.subject,
        )
    stdout.print(table)
    stderr.print(f"{len(mails)} email(s)")
