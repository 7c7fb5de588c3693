"""``local up`` and ``local outbox``: the embedded local AWS stack."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import click
from rich.markup import escape
from rich.table import Table

from ..config import ConfigError, local_config_path
from ..models import Config, Transport
from ..services.aws import LOCAL_ENDPOINT, LOCAL_HOST, LOCAL_PORT, AwsSettings
from ..services.event_relay import LocalEventRelay
from ..services.localstack import LocalServer, LocalStackResult, is_listening, local_factory, provision_local
from ..services.localstate import Autosaver, keep_local_data, state_path
from ..services.localstate import reset as reset_local_data
from ..services.outbox import read_outbox
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

if TYPE_CHECKING:
    from ..worker import WorkerHandle
    from ..worker.supervisor import ShardSupervisor


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
@click.option("--with-worker", is_flag=True, help="Also run the queue worker in this process (until Ctrl-C).")
@click.option(
    "--shards",
    default=None,
    type=click.IntRange(1, 64),
    help="With --with-worker: run N worker processes (`worker --shard K/N`) under a supervisor instead "
    "(the config's worker_shards is N).",
)
@click.option(
    "--transport",
    type=click.Choice(["s3-events", "sqs-direct"]),
    default="s3-events",
    show_default=True,
    help="How a fan-out reaches the customer queues; sqs-direct also provisions the shards' doorbell queues.",
)
@handle_errors
def up(
    port: int,
    n_customers: int,
    n_contacts: int,
    config_out: Path | None,
    with_worker: bool,
    shards: int | None,
    transport: Transport,
) -> None:
    """Start (or reuse) the local stack, provision it and run until Ctrl-C."""
    if shards is not None and not with_worker:
        raise BadInput("--shards needs --with-worker")
    server: LocalServer | None = None
    worker: WorkerHandle | None = None
    supervisor: ShardSupervisor | None = None
    saver: Autosaver | None = None
    relay: LocalEventRelay | None = None
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
            transport=transport,
            worker_shards=shards or 1,
        )
        if server is not None:  # a stack of ours: its data comes back, and is kept
            saver, _ = keep_local_data(
                result.config, endpoint, progress=lambda msg: stderr.print(f"[dim]{escape(msg)}[/]")
            )
        stdout.print(f"endpoint:    {endpoint}")
        stdout.print(f"config:      {result.config_path}")
        if saver is not None:
            stdout.print(f"data:        {saver.state.path}")
        stdout.print(result.summary())
        if config_out is None and port == LOCAL_PORT:
            hint = "changeconsole --local change list"
        else:
            hint = f"changeconsole --config {result.config_path} --endpoint-url {endpoint} change list"
        stderr.print(f"try: [bold]{hint}[/]   (Ctrl-C stops the stack)")
        if server is not None:
            relay = LocalEventRelay(local_factory(endpoint), result.config).start()
            stderr.print("local SES event relay running (Send, Delivery, Bounce, Complaint → events queue)")
        else:
            stderr.print("no SES events: the local event relay runs in the process that runs the stack")
        if with_worker and shards:
            supervisor = _start_shards(endpoint, result, shards)
        elif with_worker:
            worker = _start_worker(endpoint, result.config)
        if server is None and worker is None and supervisor is None:
            return
        wait_for_signal()
    finally:
        if relay is not None:
            relay.stop()
        if supervisor is not None:
            codes = supervisor.stop(timeout=LOCAL_SHUTDOWN + 10)
            stderr.print(f"worker shards stopped (exit codes {codes})")
        if worker is not None:
            worker.stop(timeout=5.0)
            stderr.print(f"worker stopped ({worker.stats.get('emails_sent', 0)} email(s) sent)")
        if saver is not None:
            saved = saver.stop()
            if saved is not None:
                stderr.print(f"local data saved to {saved.path} ({saved.text()})")
            else:
                stderr.print(f"[yellow]warning:[/] local data not saved: {escape(saver.error or '?')}")
        if server is not None:
            server.stop()
            stderr.print("local stack stopped")


def _worker_warnings_to_stderr() -> None:
    """The worker's (and the shard supervisor's) warnings and errors on stderr, as JSON lines."""
    from ..worker.observe import JsonFormatter

    worker_log = logging.getLogger("changeconsole.worker")
    if not any(isinstance(h, logging.StreamHandler) for h in worker_log.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
        handler.setLevel(logging.WARNING)
        worker_log.addHandler(handler)


def _start_worker(endpoint: str, config: Config) -> WorkerHandle:
    """The queue worker in threads of this process; its warnings and errors go to stderr as JSON."""
    from ..worker import start_background

    _worker_warnings_to_stderr()
    handle = start_background(local_factory(endpoint), config)
    stderr.print(f"worker running in this process for {len(handle.customers)} customer queue(s)")
    return handle


# Local shards: a killed shard's messages come back within 30 s and its claims within 60 s.
LOCAL_SHUTDOWN = 5.0
LOCAL_SHARD_ARGS = ("--health-port", "0", "--no-emf", "--visibility-timeout", "30", "--claim-lease", "60")


def _start_shards(endpoint: str, result: LocalStackResult, n: int) -> ShardSupervisor:
    """N ``changeconsole worker --shard K/N`` processes against the local stack; their JSON logs (warnings
    and up) go to this stderr, and a shard that dies is restarted."""
    from ..models import shard_of
    from ..worker.supervisor import ShardSupervisor

    args = [
        "--config",
        str(result.config_path),
        "--endpoint-url",
        endpoint,
        *LOCAL_SHARD_ARGS,
        "--shutdown-timeout",
        str(LOCAL_SHUTDOWN),
        "--log-level",
        "warning",
    ]
    _worker_warnings_to_stderr()
    supervisor = ShardSupervisor(n, worker_args=args).start()
    counts = [0] * n
    for code in result.config.customer_mappings:
        counts[shard_of(code, n)] += 1
    for k, (pid, count) in enumerate(zip(supervisor.pids(), counts, strict=True)):
        stderr.print(f"worker shard {k}/{n}: pid {pid}, {count} customer queue(s)")
    return supervisor


@local_group.command("outbox")
@aws_options
@click.option("--customer", default=None, help="Only this customer's emails.")
@click.option("--change", "change_id", default=None, help="Only emails of this change id.")
@json_option
@handle_errors
def outbox(customer: str | None, change_id: str | None, as_json: bool) -> None:
    """List every email the local stack accepted (at the endpoint every command uses: --endpoint-url,
    the local config's, AWS_ENDPOINT_URL, else the default local port)."""
    st = state()
    st.local = True
    endpoint = AwsSettings.resolve(endpoint_url=st.endpoint(), local=True).endpoint_url or LOCAL_ENDPOINT
    where = urlsplit(endpoint)
    if not is_listening(where.hostname or LOCAL_HOST, where.port or 80):
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


@local_group.command("reset")
@aws_options
@handle_errors
def reset_cmd() -> None:
    """Delete the local stack's saved data (changes, tables, contacts): the next start is empty."""
    st = state()
    st.local = True
    try:
        endpoint = st.endpoint() or f"http://{LOCAL_HOST}:{LOCAL_PORT}"
    except ConfigError:  # no local config yet: the default endpoint
        endpoint = f"http://{LOCAL_HOST}:{LOCAL_PORT}"
    parts = urlsplit(endpoint)
    if is_listening(parts.hostname or LOCAL_HOST, parts.port or LOCAL_PORT):
        raise OperationFailed(
            f"a local stack is running at {endpoint}: quit it first (it saves its data when it stops), "
            "then run `changeconsole local reset`"
        )
    path = state_path()
    if reset_local_data(path):
        stdout.print(f"deleted the saved local data at {path}")
    else:
        stderr.print(f"no saved local data at {path}: nothing to delete")
