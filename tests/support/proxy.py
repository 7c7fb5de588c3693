"""An HTTP proxy between a worker and moto: it forwards every call, counts the SQS long polls under way,
and holds the calls to one AWS service unanswered (the worker then waits inside that call, at a known
point, until it is killed). Only the test's side changes: the worker runs as shipped.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "server", "date"})


def _service(authorization: str) -> str:
    """The service a SigV4 ``Authorization`` header is signed for (``Credential=…/region/ses/…``)."""
    credential = authorization.partition("Credential=")[2].split(",")[0]
    parts = credential.split("/")
    return parts[3] if len(parts) > 3 else ""


def _queue_name(body: bytes) -> str:
    """The queue a ReceiveMessage call names (JSON or query protocol): the last part of its URL."""
    try:
        url = str(json.loads(body).get("QueueUrl") or "")
    except ValueError:
        url = (parse_qs(body.decode("utf-8", "replace")).get("QueueUrl") or [""])[0]
    return url.rstrip("/").rpartition("/")[2]


class Proxy:
    def __init__(self, upstream: str, *, hold_service: str | None = None) -> None:
        target = urlsplit(upstream)
        self.host, self.port = target.hostname or "127.0.0.1", target.port or 80
        self.hold_service = hold_service
        self.held = 0  # calls held so far
        self.polls = 0  # SQS ReceiveMessage calls under way
        self.polls_by_queue: Counter[str] = Counter()  # long polls started, per queue name
        self.taken = 0  # messages the ReceiveMessage calls took (whether or not their caller still lives)
        self.lock = threading.Lock()
        self.released = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: object) -> None:
                pass

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                service = _service(self.headers.get("Authorization", ""))
                if proxy.hold_service and service == proxy.hold_service:
                    with proxy.lock:
                        proxy.held += 1
                    proxy.released.wait()
                    self.close_connection = True
                    return
                poll = "ReceiveMessage" in self.headers.get("X-Amz-Target", "") or b"ReceiveMessage" in body
                with proxy.lock:
                    proxy.polls += poll
                    if poll:
                        proxy.polls_by_queue[_queue_name(body)] += 1
                try:
                    conn = http.client.HTTPConnection(proxy.host, proxy.port, timeout=120)
                    headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    conn.close()
                finally:
                    with proxy.lock:
                        proxy.polls -= poll
                if poll:
                    with proxy.lock:
                        proxy.taken += data.count(b'"ReceiptHandle"')
                self.send_response(resp.status, resp.reason)
                for name, value in resp.getheaders():
                    if name.lower() not in _HOP:
                        self.send_header(name, value)
                length = resp.getheader("Content-Length") if self.command == "HEAD" else None
                self.send_header("Content-Length", length or str(len(data)))
                try:
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                except OSError:  # the caller was killed meanwhile
                    self.close_connection = True

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _forward

        return Handler

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def proxy(upstream: str, *, hold_service: str | None = None) -> Iterator[Proxy]:
    p = Proxy(upstream, hold_service=hold_service)
    thread = threading.Thread(target=p.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield p
    finally:
        p.close()
        thread.join(10)
