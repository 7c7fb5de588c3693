"""A moto server in its own process, so the CPU the bench measures is ours, not the stand-in's.

Run: ``python -m bench.motoproc --port 4599`` (127.0.0.1 only; stops on SIGTERM/SIGINT).
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=args.port, verbose=False)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server.start()
    stop.wait()
    server.stop()


if __name__ == "__main__":
    main()
