"""``changeconsole worker`` (= ``changeconsole --worker``): the headless queue worker.

Never imports Textual. Logs are JSON lines on stderr; CloudWatch EMF metric lines go to stdout.
SIGTERM/SIGINT: stop receiving, finish in-flight work up to ``--shutdown-timeout``, release the
rest, exit 0. ``--drain``: exit 0 once every assigned queue is empty.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

import click

from ..models import UnknownCustomer
from .common import EXIT_OK, BadInput, aws_options, handle_errors, state


@click.command("worker")
@aws_options
@click.option(
    "--customer", "customers", multiple=True, metavar="CODE", help="Serve only this customer (repeat)."
)
@click.option(
    "--shard", default=None, metavar="K/N", help="Serve customers whose stable hash % N == K (0-based)."
)
@click.option(
    "--concurrency",
    default=16,
    show_default=True,
    type=click.IntRange(1, 512),
    help="Deliveries processed at once.",
)
@click.option(
    "--per-customer",
    default=None,
    type=click.IntRange(1, 512),
    help="Deliveries of one customer at once [default: concurrency/4].",
)
@click.option(
    "--health-port",
    default=8080,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port of /healthz and /readyz (0 disables).",
)
@click.option("--health-host", default="0.0.0.0", show_default=True, help="Address of the health endpoints.")
@click.option("--drain", is_flag=True, help="Exit 0 once every assigned queue is empty.")
@click.option(
    "--shutdown-timeout",
    default=25.0,
    show_default=True,
    type=click.FloatRange(0, 3600),
    help="Seconds to finish in-flight work after SIGTERM/SIGINT.",
)
@click.option(
    "--poll-wait", default=20, show_default=True, type=click.IntRange(0, 20), help="SQS long-poll seconds."
)
@click.option(
    "--visibility-timeout",
    default=120,
    show_default=True,
    type=click.IntRange(5, 43200),
    help="Seconds a received message stays hidden (extended while it is worked on).",
)
@click.option(
    "--backoff-base",
    default=30.0,
    show_default=True,
    type=click.FloatRange(0.5, 900),
    help="First transient retry after about this many seconds (doubles per receive, jittered).",
)
@click.option(
    "--claim-lease",
    default=300.0,
    show_default=True,
    type=click.FloatRange(1, 86400),
    help="Seconds a crashed worker's delivery claim blocks others.",
)
@click.option(
    "--metrics-interval",
    default=60.0,
    show_default=True,
    type=click.FloatRange(1, 3600),
    help="Seconds between metric flushes.",
)
@click.option("--no-emf", is_flag=True, help="Do not print CloudWatch EMF metric lines on stdout.")
@click.option(
    "--log-level", default="info", show_default=True, type=click.Choice(["debug", "info", "warning", "error"])
)
@handle_errors
def worker_cmd(
    customers: tuple[str, ...],
    shard: str | None,
    concurrency: int,
    per_customer: int | None,
    health_port: int,
    health_host: str,
    drain: bool,
    shutdown_timeout: float,
    poll_wait: int,
    visibility_timeout: int,
    backoff_base: float,
    claim_lease: float,
    metrics_interval: float,
    no_emf: bool,
    log_level: str,
) -> None:
    """Deliver change notices from the customer queues (headless, for containers)."""
    # Imported here so other commands start fast; none of it imports Textual.
    from ..worker.observe import configure_json_logging, event
    from ..worker.options import WorkerOptions, assign_customers, parse_shard
    from ..worker.runtime import Worker

    configure_json_logging(getattr(logging, log_level.upper()))
    st = state()
    config = st.config()
    try:
        shard_k_n = parse_shard(shard) if shard else None
        codes = assign_customers(config, list(customers) or None, shard_k_n)
    except (ValueError, UnknownCustomer) as exc:
        raise BadInput(str(exc)) from None
    options = WorkerOptions(
        customers=list(customers) or None,
        shard=shard_k_n,
        concurrency=concurrency,
        per_customer=per_customer,
        poll_wait=poll_wait,
        visibility_timeout=visibility_timeout,
        backoff_base=backoff_base,
        claim_lease=claim_lease,
        # A send mark expires no later than the claim, so a retaken delivery settles it at once.
        send_lease=min(120.0, claim_lease),
        shutdown_timeout=shutdown_timeout,
        drain=drain,
        health_port=health_port,
        health_host=health_host,
        metrics_interval=metrics_interval,
        emit_emf=not no_emf,
    )
    if not codes:
        event(logging.WARNING, "worker.no_customers", shard=shard)
    worker = Worker(st.aws(), config, options)
    stop = threading.Event()
    signals = {"count": 0}

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        signals["count"] += 1
        event(logging.INFO, "worker.signal", signal=signal.Signals(signum).name, count=signals["count"])
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    try:
        worker.start()
    except OSError as exc:  # e.g. the health port is taken
        raise BadInput(f"cannot start the worker: {exc}") from None
    while not stop.wait(0.25):
        if drain and worker.drained():
            event(logging.INFO, "worker.drained", customers=len(codes))
            break
    worker.stop(shutdown_timeout)
    raise SystemExit(EXIT_OK)
