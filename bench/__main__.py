"""``python -m bench [BENCH ...] [--sizes 30,300]`` (BENCH: see ``BENCHES``).

Each bench starts its own moto server in a separate process on 127.0.0.1 (so the CPU measured is
ours), prints a table and merges its numbers into ``bench/results/latest.json``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .common import BenchResult, log, machine_info, print_table, write_results

BENCHES = (
    "fanout",
    "scale",
    "throughput",
    "pickup",
    "console",
    "listing",
    "dashboard",
    "pollmodels",
    "opcost",
)
# Run by default (no names given); pollmodels is the one-off comparison behind the polling model,
# opcost the moto CPU per call behind "Calls per customer" (docs/performance.md).
DEFAULT = tuple(b for b in BENCHES if b not in ("pollmodels", "opcost"))


def _runner(name: str) -> Callable[..., BenchResult]:
    if name == "fanout":
        from .fanout import run
    elif name == "throughput":
        from .throughput import run
    elif name == "pickup":
        from .pickup import run
    elif name == "console":
        from .console import run
    elif name == "dashboard":
        from .dashboard import run
    elif name == "scale":
        from .scale import run
    elif name == "pollmodels":
        from .pollmodels import run
    elif name == "opcost":
        from .opcost import run
    else:
        from .listing import run
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("benches", nargs="*", metavar="BENCH", help="any of: " + ", ".join(BENCHES))
    parser.add_argument(
        "--sizes", default="30,300", help="fan-out customer counts (default 30,300; add 1000)"
    )
    parser.add_argument("--shards", default="1,4", help="scale: worker shard counts (default 1,4)")
    parser.add_argument(
        "--transport",
        choices=("sqs-direct", "s3-events"),
        default="sqs-direct",
        help="scale and pickup: how the fan-out rings each queue, every row alike (default sqs-direct: "
        "docs/capacity.md's shape past 100 customers; fanout always measures s3-events)",
    )
    parser.add_argument("--recipients", type=int, default=5, help="recipients per customer (fan-out)")
    parser.add_argument(
        "--concurrency", type=int, default=None, help="worker concurrency (default: worker's)"
    )
    parser.add_argument("--queues", type=int, default=300, help="idle queues for the pickup bench")
    parser.add_argument("--probes", type=int, default=60, help="pickup probes")
    parser.add_argument("--messages", type=int, default=300, help="throughput: messages to drain")
    parser.add_argument("--rows", type=int, default=1000, help="console: customer rows")
    parser.add_argument("--seconds", type=float, default=15.0, help="console: seconds to watch")
    parser.add_argument(
        "--changes",
        type=int,
        default=None,
        help="listing: changes in the index (5000); dashboard: a year's changes (260)",
    )
    parser.add_argument("--out", default=None, help="results JSON (default bench/results/latest.json)")
    args = parser.parse_args(argv)
    names = args.benches or list(DEFAULT)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        parser.error(f"unknown bench(es) {', '.join(unknown)}; choose from {', '.join(BENCHES)}")
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    os.environ.setdefault("CHANGECONSOLE_OPERATOR", "bench")
    info = machine_info()
    log(f"machine: {info['cpu']} x{info['cores']}, {info['memory_gib']} GiB, Python {info['python']}")
    options: dict[str, Any] = {
        "sizes": [int(s) for s in str(args.sizes).split(",") if s.strip()],
        "recipients": args.recipients,
        "shard_counts": [int(s) for s in str(args.shards).split(",") if s.strip()],
        "transport": args.transport,
        "concurrency": args.concurrency,
        "queues": args.queues,
        "probes": args.probes,
        "messages": args.messages,
        "rows": args.rows,
        "seconds": args.seconds,
        **({"changes": args.changes} if args.changes is not None else {}),
        # Long benches save each finished size as they go, so a stopped run keeps what it measured.
        "save": lambda partial: write_results([partial], Path(args.out) if args.out else None),
    }
    results: list[BenchResult] = []
    failed = False
    path = None
    for name in names:
        started = time.perf_counter()
        log(f"{name}: start")
        try:
            result = _runner(name)(**options)
        except Exception as exc:  # one bench failing still reports the others
            traceback.print_exc()
            result = BenchResult(name, skipped=f"failed: {type(exc).__name__}: {exc}")
            failed = True
        log(f"{name}: {time.perf_counter() - started:.0f}s")
        print_table(result)
        results.append(result)
        path = write_results(results, Path(args.out) if args.out else None)
    print(f"\nresults: {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
