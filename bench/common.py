"""Shared bench plumbing: moto in its own process, call recording, CPU clocks, tables, results."""

from __future__ import annotations

import json
import os
import platform
import re
import resource
import socket
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from changeconsole.models import CustomerMapping
from changeconsole.services.aws import AwsFactory, AwsSettings
from changeconsole.services.localstack import is_listening

RESULTS_DIR = Path(__file__).resolve().parent / "results"
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- the local AWS stand-in in its own process ---------------------------------------------------------


class MotoProcess:
    """``python -m bench.motoproc`` on 127.0.0.1: its CPU is measured apart from ours."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> MotoProcess:
        env = dict(os.environ)
        env.setdefault("AWS_ACCESS_KEY_ID", "testing")
        env.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.motoproc", "--port", str(self.port)],
            cwd=Path(__file__).resolve().parent.parent,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while not is_listening("127.0.0.1", self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"moto server did not start on {self.endpoint}")
            time.sleep(0.05)
        return self

    def cpu_seconds(self) -> float:
        """user+system CPU of the moto process (Linux /proc; 0.0 elsewhere)."""
        if self.proc is None:
            return 0.0
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)

    def __enter__(self) -> MotoProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- CPU clocks --------------------------------------------------------------------------------------------


@dataclass
class CpuSample:
    wall: float
    ours: float  # this process (user+system, every thread)
    server: float  # the moto process

    @classmethod
    def now(cls, moto: MotoProcess | None) -> CpuSample:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return cls(time.perf_counter(), ru.ru_utime + ru.ru_stime, moto.cpu_seconds() if moto else 0.0)

    def since(self, start: CpuSample) -> dict[str, float]:
        return {
            "wall_s": self.wall - start.wall,
            "ours_cpu_s": self.ours - start.ours,
            "server_cpu_s": self.server - start.server,
        }


@contextmanager
def measured(moto: MotoProcess | None) -> Iterator[dict[str, float]]:
    out: dict[str, float] = {}
    start = CpuSample.now(moto)
    yield out
    out.update(CpuSample.now(moto).since(start))


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


# -- call recording -------------------------------------------------------------------------------------


@dataclass
class Call:
    t: float  # perf_counter when the response arrived
    seconds: float  # request duration as the client saw it
    role: str  # which factory made it ("submit", "worker", "floor", ...)
    service: str
    op: str
    customer: str | None
    status: int
    messages: int = 0  # ReceiveMessage: messages returned
    size: int = 0  # PutObject body / raw email bytes
    queue: str | None = None


_KEY_CUSTOMER = re.compile(r"^customers/([a-z0-9-]{2,50})/")


class CallRecorder:
    """Records every AWS call of the clients it is attached to (botocore event hooks).

    ``waiters`` are called with each Call, so a bench can wait on a condition instead of polling.
    """

    def __init__(self, queue_customers: dict[str, str] | None = None) -> None:
        self.calls: list[Call] = []
        self.queue_customers = dict(queue_customers or {})
        self._lock = threading.Lock()
        self._listeners: list[Callable[[Call], None]] = []

    def listen(self, fn: Callable[[Call], None]) -> None:
        with self._lock:
            self._listeners.append(fn)

    def unlisten(self, fn: Callable[[Call], None]) -> None:
        with self._lock:
            if fn in self._listeners:
                self._listeners.remove(fn)

    def clear(self) -> None:
        with self._lock:
            self.calls = []

    def attach(self, client: Any, role: str, holder: dict[str, str | None]) -> None:
        service = client.meta.service_model.service_name

        def before(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
            context["_bench"] = (time.perf_counter(), params)

        def after(http_response: Any, parsed: dict[str, Any], model: Any, context: dict[str, Any], **_: Any):
            now = time.perf_counter()
            started, params = context.get("_bench", (now, {}))
            customer = holder.get("customer")
            queue = None
            size = 0
            messages = 0
            op = model.name
            if service == "s3":
                match = _KEY_CUSTOMER.match(str(params.get("Key", "")))
                if match and customer is None:
                    customer = match.group(1)
                body = params.get("Body")
                if isinstance(body, bytes | str):
                    size = len(body)
            elif service == "sqs":
                url = params.get("QueueUrl")
                if isinstance(url, str):
                    queue = url.rsplit("/", 1)[-1]
                    customer = customer or self.queue_customers.get(queue)
                if op == "ReceiveMessage":
                    messages = len(parsed.get("Messages", []) or [])
                elif op == "DeleteMessageBatch":
                    messages = len(params.get("Entries", []) or [])
            elif service == "sesv2" and op == "SendEmail":
                raw = params.get("Content", {}).get("Raw", {}).get("Data")
                if isinstance(raw, bytes | str):
                    size = len(raw)
            call = Call(
                t=now,
                seconds=now - started,
                role=role,
                service=service,
                op=op,
                customer=customer,
                status=int(getattr(http_response, "status_code", 0) or 0),
                messages=messages,
                size=size,
                queue=queue,
            )
            with self._lock:
                self.calls.append(call)
                listeners = list(self._listeners)
            for fn in listeners:
                fn(call)

        client.meta.events.register("before-parameter-build", before)
        client.meta.events.register("after-call", after)

    # -- summaries -------------------------------------------------------------------------------
    def counts(self, role: str | None = None) -> Counter[tuple[str, str]]:
        with self._lock:
            calls = list(self.calls)
        out: Counter[tuple[str, str]] = Counter()
        for c in calls:
            if role is not None and c.role != role:
                continue
            if c.op == "ReceiveMessage" and c.messages == 0:
                out[(c.service, "ReceiveMessage(empty)")] += 1
            else:
                out[(c.service, c.op)] += 1
        return out

    def select(self, **match: Any) -> list[Call]:
        with self._lock:
            calls = list(self.calls)
        return [c for c in calls if all(getattr(c, k) == v for k, v in match.items())]


class RecordingFactory(AwsFactory):
    """An AwsFactory whose every client (central and per customer) reports to a CallRecorder."""

    def __init__(self, settings: AwsSettings, recorder: CallRecorder, role: str) -> None:
        self.recorder = recorder
        self.role = role
        self._holders: dict[int, dict[str, str | None]] = {}
        self._session_lock = threading.Lock()
        self.session_cpu = 0.0  # thread CPU inside customer_session (cache hits included, ~0)
        self.client_cpu = 0.0  # thread CPU inside customer_client (session + client creation)
        super().__init__(settings)

    def _make_client(self, session: Any, service: str, region: str | None = None) -> Any:
        client = super()._make_client(session, service, region)
        holder: dict[str, str | None] = {"customer": None}
        self._holders[id(client)] = holder
        self.recorder.attach(client, self.role, holder)
        return client

    def customer_session(self, customer: CustomerMapping) -> Any:
        # CPU this thread spends getting the customer's session (AssumeRole + a new botocore session
        # + its clients' models): measured apart, it is a large share of the per-customer cost.
        started = time.thread_time()
        try:
            return super().customer_session(customer)
        finally:
            spent = time.thread_time() - started
            with self._session_lock:
                self.session_cpu += spent

    def customer_client(self, customer: CustomerMapping, service: str) -> Any:
        started = time.thread_time()
        client = super().customer_client(customer, service)
        with self._session_lock:
            self.client_cpu += time.thread_time() - started
        holder = self._holders.get(id(client))
        if holder is not None:
            holder["customer"] = customer.customer_code
        return client

    def customer_send_client(self, customer: CustomerMapping) -> Any:
        client = super().customer_send_client(customer)
        holder = self._holders.get(id(client))
        if holder is not None:
            holder["customer"] = customer.customer_code
        return client


def recording_factory(endpoint: str, recorder: CallRecorder, role: str, **kwargs: Any) -> RecordingFactory:
    settings = AwsSettings(region="us-east-1", endpoint_url=endpoint, local=True, **kwargs)
    return RecordingFactory(settings, recorder, role)


class CountDown:
    """Wait until ``n`` calls matching a predicate were recorded (no polling)."""

    def __init__(self, recorder: CallRecorder, n: int, predicate: Callable[[Call], bool]) -> None:
        self.recorder = recorder
        self.n = n
        self.predicate = predicate
        self.seen: dict[str | None, Call] = {}
        self.done = threading.Event()
        self._lock = threading.Lock()
        recorder.listen(self._on_call)
        if n <= 0:
            self.done.set()

    def _on_call(self, call: Call) -> None:
        if not self.predicate(call):
            return
        with self._lock:
            self.seen.setdefault(call.customer, call)
            if len(self.seen) >= self.n:
                self.done.set()

    def wait(self, timeout: float) -> bool:
        try:
            return self.done.wait(timeout)
        finally:
            self.recorder.unlisten(self._on_call)


# -- results ----------------------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    versions = {}
    for mod in ("boto3", "botocore", "moto", "textual", "pydantic"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # pragma: no cover - informational only
            versions[mod] = "?"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": mem_gib,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        # Other work on the machine skews every number: the 1/5/15-minute load averages at write time.
        "loadavg": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }


@dataclass
class BenchResult:
    name: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: str | None = None
    columns: list[str] | None = None  # what the printed table shows (JSON keeps every key)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "rows": self.rows, "notes": self.notes, "skipped": self.skipped}


def fmt(value: Any) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        if abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.3f}" if abs(value) < 1 else f"{value:.2f}"
    return str(value)


def print_table(result: BenchResult, columns: list[str] | None = None) -> None:
    columns = columns or result.columns
    print(f"\n== {result.name} ==")
    if result.skipped:
        print(f"skipped: {result.skipped}")
        return
    if result.rows:
        cols = columns or [
            k
            for k in dict.fromkeys(k for row in result.rows for k in row)
            if not isinstance(result.rows[0].get(k), dict)
        ]
        widths = {c: max(len(c), *(len(fmt(r.get(c, ""))) for r in result.rows)) for c in cols}
        print("  ".join(c.rjust(widths[c]) for c in cols))
        for row in result.rows:
            print("  ".join(fmt(row.get(c, "")).rjust(widths[c]) for c in cols))
    for note in result.notes:
        print(f"  note: {note}")


def write_results(results: list[BenchResult], path: Path | None = None) -> Path:
    path = path or RESULTS_DIR / "latest.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    previous: dict[str, Any] = {}
    if path.exists():
        try:
            previous = json.loads(path.read_text()).get("benches", {})
        except (ValueError, OSError):
            previous = {}
    # Running one bench alone keeps the others' latest numbers.
    benches = dict(previous)
    benches.update({r.name: r.to_json() for r in results})
    doc = {"machine": machine_info(), "benches": benches}
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    return path


def grouped(calls: list[Call], key: Callable[[Call], Any]) -> dict[Any, list[Call]]:
    out: dict[Any, list[Call]] = defaultdict(list)
    for c in calls:
        out[key(c)].append(c)
    return out
