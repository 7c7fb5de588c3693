"""``changeconsole worker`` (= ``changeconsole --worker``): the headless queue worker.

Never imports Textual. Logs are JSON lines on stderr; CloudWatch EMF metric lines go to stdout.
SIGTERM/SIGINT: stop receiving, finish in-flight work up to ``--shutdown-timeout``, release the
rest, exit 0. ``--drain``: exit 0 once every assigned queue is empty: nothing visible, in flight (e.g.
held by a killed worker until its visibility ends) or delayed, as SQS counts them.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Any

import click

from ..models import UnknownCustomer
from .common import EXIT_OK, BadInput, F, aws_options, handle_errors, state


def _setting(flag: str, default: Any, kind: click.ParamType | None, help_text: str) -> Any:
    return click.option(flag, default=default, show_default=True, type=kind, help=help_text)


# Options passed to WorkerOptions as they are: each flag names its field; the defaults are the
# command's (kept here, not read from WorkerOptions, so other commands need not import the worker).
_SETTINGS = (
    _setting("--concurrency", 16, click.IntRange(1, 512), "Deliveries processed at once."),
    _setting(
        "--per-customer",
        None,
        click.IntRange(1, 512),
        "Deliveries of one customer at once [default: concurrency/4].",
    ),
    _setting("--health-port", 8080, click.IntRange(0, 65535), "Port of /healthz and /readyz (0 disables)."),
    _setting("--health-host", "0.0.0.0", None, "Address of the health endpoints."),
    click.option(
        "--drain",
        is_flag=True,
        help="Exit 0 once every assigned queue is empty, counting messages in flight and delayed.",
    ),
    _setting(
        "--shutdown-timeout",
        25.0,
        click.FloatRange(0, 3600),
        "Seconds to finish in-flight work after SIGTERM/SIGINT.",
    ),
    _setting("--poll-wait", 20, click.IntRange(0, 20), "SQS long-poll seconds."),
    _setting(
        "--visibility-timeout",
        120,
        click.IntRange(5, 43200),
        "Seconds a received message stays hidden (extended while it is worked on).",
    ),
    _setting(
        "--waiting-visibility-timeout",
        None,
        click.IntRange(5, 43200),
        "Seconds a received message waiting for a delivery thread is hidden for at each extension "
        "[default: 5 x visibility timeout, at most 900]; a worker killed holding it hides it this long.",
    ),
    _setting(
        "--backoff-base",
        30.0,
        click.FloatRange(0.5, 900),
        "First transient retry after about this many seconds (doubles per receive, jittered).",
    ),
    _setting(
        "--claim-lease",
        300.0,
        click.FloatRange(1, 86400),
        "Seconds a crashed worker's delivery claim (and its change+customer lane) blocks others.",
    ),
    _setting("--metrics-interval", 60.0, click.FloatRange(1, 3600), "Seconds between metric flushes."),
)


def _with_settings(fn: F) -> F:
    for option in reversed(_SETTINGS):
        fn = option(fn)
    return fn


@click.command("worker")
@aws_options
@click.option(
    "--customer", "customers", multiple=True, metavar="CODE", help="Serve only this customer (repeat)."
)
@click.option(
    "--shard", default=None, metavar="K/N", help="Serve customers whose stable hash % N == K (0-based)."
)
@_with_settings
@click.option("--no-emf", is_flag=True, help="Do not print CloudWatch EMF metric lines on stdout.")
@click.option(
    "--log-level", default="info", show_default=True, type=click.Choice(["debug", "info", "warning", "error"])
)
@handle_errors
def worker_cmd(
    customers: tuple[str, ...], shard: str | None, no_emf: bool, log_level: str, **settings: Any
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
        # A send mark expires no later than the claim, so a retaken delivery settles it at once.
        send_lease=min(120.0, settings["claim_lease"]),
        emit_emf=not no_emf,
        **settings,
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
    while not stop.wait(0.25 if options.drain else 5.0):  # a signal sets stop: no need to wake often
        if options.drain and worker.drained():
            event(logging.INFO, "worker.drained", customers=len(codes))
            break
    worker.stop(options.shutdown_timeout)
    raise SystemExit(EXIT_OK)
