"""Fan-out: N customers x M recipients, submit → every customer ``sent``, against the bare API floor.

For each size N (the first N customers of one provisioned stack):

* **ours**: ``ChangeService.submit`` of one change to N customers, with the worker running in this
  process (``start_background``; moto runs in its own process). Every AWS call of both sides is
  recorded with botocore hooks, which gives the per-customer stage times — upload (submit start →
  the customer's trigger stored), pickup (trigger stored → the worker received the message), send
  (received → last email accepted), status (last email → message acknowledged) — and the call
  profile.
* **floor**: the same calls (counts per operation and stage, same body sizes), issued with plain
  boto3 at the same concurrency (bench/floor.py).
* **minimal floor**: only the calls a delivery cannot do without (put the trigger, receive, get it,
  assume the role, list contacts, send each email, delete message and trigger), plain boto3, same
  concurrency and email size.

All three run on the same moto process in the same run. Reports ours ÷ floor and ours ÷ minimal floor
end to end, per stage against the floor, CPU of both processes, and per-customer cost for the
linearity check.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from changeconsole.models import ALL_TOPICS, Change, Config, DeliveryState, Transport
from changeconsole.services.localstack import local_factory, provision_local
from changeconsole.services.status import StatusStore

from .common import (
    BenchResult,
    Call,
    CallRecorder,
    CountDown,
    CpuSample,
    MotoProcess,
    RecordingFactory,
    log,
    percentile,
    recording_factory,
)
from .floor import CallProfile, Floor

UPLOAD_THREADS = 16  # ChangeService / Fanout default


def bench_address(code: str, i: int) -> str:
    return f"bench{i:02d}@{code}.example.com"


def provision(
    endpoint: str, customers: int, recipients: int, workdir: Path, transport: Transport = "s3-events"
) -> Config:
    """The local stack with ``recipients`` contacts per customer, each opted in to every topic."""
    started = time.perf_counter()
    result = provision_local(
        endpoint,
        customers=customers,
        contacts=0,
        config_path=workdir / "config.json",
        threads=16,
        transport=transport,
    )
    config = result.config
    aws = local_factory(endpoint, max_attempts=3)

    def contacts(code: str) -> None:
        ses = aws.customer_client(config.customer(code), "sesv2")
        for i in range(recipients):
            ses.create_contact(
                ContactListName=config.contact_list_for(code),
                EmailAddress=bench_address(code, i),
                TopicPreferences=[{"TopicName": t, "SubscriptionStatus": "OPT_IN"} for t in ALL_TOPICS],
            )

    sqs = aws.client("sqs")

    def purge(code: str) -> None:
        # S3 sent an s3:TestEvent to every queue when the notifications were configured.
        mapping = config.customer(code)
        sqs.purge_queue(QueueUrl=f"{endpoint}/{mapping.queue_account}/{mapping.queue_name}")

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(contacts, sorted(config.customer_mappings)))
        if transport == "s3-events":
            list(pool.map(purge, sorted(config.customer_mappings)))
    log(
        f"fanout: provisioned {customers} customers x {recipients} contacts ({transport}) "
        f"in {time.perf_counter() - started:.0f}s"
    )
    return config


def make_change(codes: list[str]) -> Change:
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)
    text = "Rolling restart of the shared ingress tier with a kernel patch. " * 6
    return Change.model_validate(
        {
            "changeTitle": f"Ingress kernel patch for {len(codes)} customers",
            "changeReason": text,
            "implementationPlan": text,
            "testPlan": text,
            "customerImpact": "Up to 30 s of connection resets per node.",
            "rollbackPlan": text,
            "snowTicket": "CHG0042424",
            "customers": codes,
            "implementationStart": start.isoformat(),
            "implementationEnd": (start + timedelta(hours=2)).isoformat(),
            "timezone": "Europe/Berlin",
        }
    )


@contextlib.contextmanager
def worker_factories(recorder: CallRecorder) -> Iterator[None]:
    """The worker builds a second AwsFactory for SQS: make it a recording one too (bench-only)."""
    from changeconsole.worker import runtime

    original = runtime.AwsFactory

    def recording(settings: Any) -> RecordingFactory:
        return RecordingFactory(settings, recorder, "worker")

    runtime.AwsFactory = recording  # type: ignore[misc,assignment]
    try:
        yield
    finally:
        runtime.AwsFactory = original  # type: ignore[misc]


def _is_done(codes: set[str]) -> Any:
    def pred(call: Call) -> bool:
        return (
            call.role == "worker"
            and call.op in ("DeleteMessage", "DeleteMessageBatch")
            and call.customer in codes
            and call.status < 300
        )

    return pred


def stage_times(calls: list[Call], codes: list[str], t0: float) -> dict[str, dict[str, float]]:
    """Per customer: trigger stored, message received, last email, acknowledged."""
    out: dict[str, dict[str, float]] = {c: {} for c in codes}
    for call in calls:
        c = call.customer
        if c not in out:
            continue
        slot = out[c]
        if call.role == "submit" and call.op == "PutObject":
            # moto queues the S3 event while it stores the object, before it answers: the trigger
            # counts as stored when the PUT starts (the floor uses the same definition)
            slot["uploaded"] = max(slot.get("uploaded", 0.0), call.t - call.seconds)
        elif call.role == "worker" and call.op == "ReceiveMessage" and call.messages:
            slot.setdefault("received", call.t)
        elif call.role == "worker" and call.op == "SendEmail":
            slot["last_send"] = max(slot.get("last_send", 0.0), call.t)
        elif call.role == "worker" and call.op in ("DeleteMessage", "DeleteMessageBatch"):
            slot.setdefault("done", call.t)
    return out


def summarize_stages(times: dict[str, dict[str, float]], t0: float) -> dict[str, float]:
    def col(a: str | None, b: str) -> list[float]:
        vals = []
        for slot in times.values():
            if b in slot and (a is None or a in slot):
                vals.append(slot[b] - (slot[a] if a else t0))
        return vals

    stages = {
        "upload": col(None, "uploaded"),
        "pickup": col("uploaded", "received"),
        "send": col("received", "last_send"),
        "status": col("last_send", "done"),
    }
    out: dict[str, float] = {}
    for name, vals in stages.items():
        out[f"{name}_mean_s"] = sum(vals) / len(vals) if vals else float("nan")
        out[f"{name}_p95_s"] = percentile(vals, 0.95)
    done = [s["done"] for s in times.values() if "done" in s]
    out["e2e_s"] = (max(done) - t0) if done else float("nan")
    return out


def profile_of(calls: list[Call], codes: list[str], times: dict[str, dict[str, float]]) -> CallProfile:
    profile = CallProfile(customers=len(codes))
    trigger_sizes: list[int] = []
    object_sizes: list[int] = []
    email_sizes: list[int] = []
    for call in calls:
        op = (call.service, call.op)
        if call.op == "ReceiveMessage" and not call.messages:
            continue  # idle long polls are not part of the floor
        if call.role == "submit":
            profile.upload[op] += 1
            if call.op == "PutObject":
                (trigger_sizes if call.customer else object_sizes).append(call.size)
            continue
        if call.role != "worker":
            continue
        if call.op == "SendEmail":
            email_sizes.append(call.size)
        slot = times.get(call.customer or "", {})
        if "last_send" in slot and call.t > slot["last_send"]:
            profile.status[op] += 1
        else:
            profile.send[op] += 1
    if trigger_sizes:
        profile.trigger_size = int(sum(trigger_sizes) / len(trigger_sizes))
    if object_sizes:
        profile.object_size = int(sum(object_sizes) / len(object_sizes))
    if email_sizes:
        profile.email_size = int(sum(email_sizes) / len(email_sizes))
    return profile


def run_ours(
    moto: MotoProcess, config: Config, codes: list[str], recipients: int, concurrency: int | None
) -> tuple[dict[str, Any], CallProfile, list[str]]:
    from changeconsole.services.lifecycle import ChangeService
    from changeconsole.worker import WorkerOptions, start_background

    recorder = CallRecorder({config.customer(c).queue_name: c for c in config.customer_mappings})
    submit_aws = recording_factory(moto.endpoint, recorder, "submit")
    worker_aws = recording_factory(moto.endpoint, recorder, "worker")
    options = WorkerOptions(health_port=0, emit_emf=False, metrics_interval=3600, audit_interval=5)
    if concurrency:
        options.concurrency = concurrency
    service = ChangeService(submit_aws, config, operator="bench")
    problems: list[str] = []
    with worker_factories(recorder):
        handle = start_background(worker_aws, config, customers=codes, options=options)
    try:
        # The worker is polling every queue before the clock starts (as in production).
        change = make_change(codes)
        done = CountDown(recorder, len(codes), _is_done(set(codes)))
        recorder.clear()
        start = CpuSample.now(moto)
        result = service.submit(change)
        submitted = time.perf_counter()
        finished = done.wait(timeout=max(120.0, 2.0 * len(codes)))
        end = CpuSample.now(moto)
        calls = list(recorder.calls)
    finally:
        handle.stop(timeout=30)
    if not finished:
        problems.append(f"ours: only {len(done.seen)}/{len(codes)} customers acknowledged in time")
    if not result.ok:
        problems.append(f"ours: fan-out failed for {result.failed}")
    times = stage_times(calls, codes, start.wall)
    row = summarize_stages(times, start.wall)
    row["submit_s"] = submitted - start.wall
    cpu = end.since(start)
    row["ours_cpu_s"] = cpu["ours_cpu_s"]
    row["server_cpu_s"] = cpu["server_cpu_s"]
    # Verify: every customer sent, every recipient once.
    verify = StatusStore(local_factory(moto.endpoint), config)
    records = verify.records(result.change.change_id)
    states = Counter(r.state for r in records)
    row["sent"] = states.get(DeliveryState.SENT, 0)
    bad = [r for r in records if r.state is not DeliveryState.SENT or r.recipients_sent != recipients]
    if bad or len(records) != len(codes):
        problems.append(f"ours: {len(bad)} records not sentx{recipients} ({dict(states)})")
    sends = [c for c in calls if c.op == "SendEmail"]
    row["emails"] = len(sends)
    counts = Counter((c.service, c.op) for c in calls if not (c.op == "ReceiveMessage" and not c.messages))
    row["calls_per_customer"] = round(sum(counts.values()) / len(codes), 1)
    row["idle_polls"] = sum(1 for c in calls if c.op == "ReceiveMessage" and not c.messages)
    row["customer_client_cpu_s"] = worker_aws.client_cpu
    return row, profile_of(calls, codes, times), problems


def run_floor(
    moto: MotoProcess,
    config: Config,
    codes: list[str],
    recipients: int,
    profile: CallProfile,
    concurrency: int,
) -> tuple[dict[str, Any], list[str]]:
    floor = Floor(
        moto.endpoint,
        config,
        profile,
        recipients=recipients,
        upload_threads=UPLOAD_THREADS,
        worker_threads=concurrency,
        send_parallelism=4,
    )
    start = CpuSample.now(moto)
    times = floor.run(codes)
    cpu = CpuSample.now(moto).since(start)
    per: dict[str, dict[str, float]] = {}
    for c in codes:
        slot = {}
        for name, src in (
            ("uploaded", times.uploaded),
            ("received", times.received),
            ("last_send", times.last_send),
            ("done", times.done),
        ):
            if c in src:
                slot[name] = src[c]
        per[c] = slot
    row = summarize_stages(per, times.t0)
    row["ours_cpu_s"] = cpu["ours_cpu_s"]
    row["server_cpu_s"] = cpu["server_cpu_s"]
    problems = list(times.errors[:3])
    if times.skipped_ops:
        problems.append(f"floor: not replayed {dict(times.skipped_ops)}")
    want = profile.totals()
    got = times.calls
    missing = {f"{s}.{o}": n - got.get((s, o), 0) for (s, o), n in want.items() if got.get((s, o), 0) < n}
    if missing:
        problems.append(f"floor: fewer calls than ours: {missing}")
    return row, problems


def run(
    *,
    sizes: list[int],
    recipients: int = 5,
    concurrency: int | None = None,
    save: Any = None,
    **_: Any,
) -> BenchResult:
    from changeconsole.worker import WorkerOptions

    conc = concurrency or WorkerOptions().concurrency
    result = BenchResult("fanout", columns=COLUMNS)
    sizes = sorted(set(sizes))
    with tempfile.TemporaryDirectory() as tmp, MotoProcess() as moto:
        config = provision(moto.endpoint, max(sizes), recipients, Path(tmp))
        all_codes = sorted(config.customer_mappings)
        # Warm-up (not reported): imports, botocore models, first connections.
        run_ours(moto, config, all_codes[:2], recipients, conc)
        base_per_customer: float | None = None
        base_cpu: float | None = None
        for n in sizes:
            codes = all_codes[:n]
            log(f"fanout: ours, {n} customers x {recipients}")
            ours, profile, problems = run_ours(moto, config, codes, recipients, conc)
            log(f"fanout: ours {ours['e2e_s']:.1f}s; floor")
            floor, floor_problems = run_floor(moto, config, codes, recipients, profile, conc)
            log(f"fanout: floor {floor['e2e_s']:.1f}s; minimal floor")
            minimal_profile = CallProfile.minimal(n, recipients, profile.email_size)
            minimal, minimal_problems = run_floor(moto, config, codes, recipients, minimal_profile, conc)
            floor_problems += [p.replace("floor:", "minimal floor:") for p in minimal_problems]
            per_customer = ours["e2e_s"] / n
            cpu_per_customer = ours["ours_cpu_s"] / n
            base_per_customer = base_per_customer or per_customer
            base_cpu = base_cpu or cpu_per_customer
            row = {
                "customers": n,
                "recipients": recipients,
                "ours_s": ours["e2e_s"],
                "floor_s": floor["e2e_s"],
                "ratio": ours["e2e_s"] / floor["e2e_s"] if floor["e2e_s"] else float("nan"),
                "minimal_s": minimal["e2e_s"],
                "ratio_minimal": ours["e2e_s"] / minimal["e2e_s"] if minimal["e2e_s"] else float("nan"),
                "ms_per_customer": 1000 * per_customer,
                "cpu_ms_per_customer": 1000 * cpu_per_customer,
                "linearity": per_customer / base_per_customer,
                "ours_cpu_s": ours["ours_cpu_s"],
                "floor_cpu_s": floor["ours_cpu_s"],
                "server_cpu_s": ours["server_cpu_s"],
                "floor_server_cpu_s": floor["server_cpu_s"],
                "calls_per_customer": ours["calls_per_customer"],
                # + the trigger's put, the receive and the message's delete (the floor's own calls)
                "minimal_calls_per_customer": round(sum(minimal_profile.totals().values()) / n + 3, 1),
                "minimal_server_cpu_s": minimal["server_cpu_s"],
                "session_cpu_ms_per_customer": 1000 * ours["customer_client_cpu_s"] / n,
                "idle_polls": ours["idle_polls"],
                "emails": ours["emails"],
            }
            for stage in ("upload", "pickup", "send", "status"):
                row[f"{stage}_ours_s"] = ours[f"{stage}_mean_s"]
                row[f"{stage}_floor_s"] = floor[f"{stage}_mean_s"]
                row[f"{stage}_ours_p95_s"] = ours[f"{stage}_p95_s"]
            row["submit_returned_s"] = ours["submit_s"]
            row["profile"] = profile.to_json()
            result.rows.append(row)
            for p in problems + floor_problems:
                result.notes.append(f"n={n}: {p}")
            log(
                f"fanout: n={n} ours {ours['e2e_s']:.2f}s floor {floor['e2e_s']:.2f}s "
                f"ratio {row['ratio']:.2f}; minimal floor {minimal['e2e_s']:.2f}s "
                f"ratio {row['ratio_minimal']:.2f}"
            )
            if save is not None:
                save(result)
    result.notes.append(
        "stage columns are per-customer means: upload = submit start → trigger PUT starts; pickup → "
        "message received; send → last email accepted; status → message acknowledged"
    )
    return result


COLUMNS = [
    "customers",
    "ours_s",
    "floor_s",
    "ratio",
    "minimal_s",
    "ratio_minimal",
    "ms_per_customer",
    "cpu_ms_per_customer",
    "linearity",
    "upload_ours_s",
    "upload_floor_s",
    "pickup_ours_s",
    "pickup_floor_s",
    "send_ours_s",
    "send_floor_s",
    "status_ours_s",
    "status_floor_s",
    "ours_cpu_s",
    "floor_cpu_s",
    "server_cpu_s",
    "floor_server_cpu_s",
    "calls_per_customer",
    "minimal_calls_per_customer",
    "session_cpu_ms_per_customer",
]
