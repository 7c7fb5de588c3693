"""Worker parts without AWS: sharding, error classification, backoff, DLQ attributes, scheduler, ops."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from changeconsole.models import Config, InvalidChange, IsolationViolation, MalformedMessage, UnknownCustomer
from changeconsole.services.dlq.attributes import (
    dead_letter_attributes,
    redrive_attributes,
    requeue_attributes,
    retry_counters,
    unpack_attributes,
)
from changeconsole.services.localstack import build_local_config
from changeconsole.worker import WorkerOptions, assign_customers, parse_shard, shard_of
from changeconsole.worker.errors import backoff_delay, classify
from changeconsole.worker.health import HealthServer
from changeconsole.worker.observe import JsonFormatter, Metrics
from changeconsole.worker.processor import InFlight
from changeconsole.worker.runtime import FairScheduler, poll_wait_of
from support.aws import free_port, http_get
from support.waiting import wait_until


@pytest.fixture
def config() -> Config:
    return Config.model_validate(build_local_config(40, endpoint="http://127.0.0.1:1"))


# -- sharding ---------------------------------------------------------------------------------


def test_parse_shard() -> None:
    assert parse_shard("0/3") == (0, 3)
    assert parse_shard("2/3") == (2, 3)
    for bad in ("3/3", "-1/3", "1/0", "x", "1/", "1-3"):
        with pytest.raises(ValueError):
            parse_shard(bad)


def test_shards_split_customers_without_overlap(config: Config) -> None:
    every = assign_customers(config)
    assert every == sorted(config.customer_mappings)
    for n in (1, 2, 3, 7):
        parts = [assign_customers(config, shard=(k, n)) for k in range(n)]
        flat = [c for p in parts for c in p]
        assert sorted(flat) == every and len(flat) == len(set(flat))
    assert assign_customers(config, ["globex", "acme"], (0, 1)) == ["acme", "globex"]
    with pytest.raises(UnknownCustomer):
        assign_customers(config, ["nope"])


def test_shard_hash_is_stable_across_processes(config: Config) -> None:
    codes = sorted(config.customer_mappings)
    here = [shard_of(c, 5) for c in codes]
    script = (
        "import json,sys; from changeconsole.worker import shard_of; "
        f"print(json.dumps([shard_of(c, 5) for c in {codes!r}]))"
    )
    for seed in ("1", "12345"):
        out = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed},
        )
        assert json.loads(out.stdout) == here
    assert len(set(here)) == 5  # 40 codes land on every shard


# -- errors -------------------------------------------------------------------------------------


def _client_error(code: str, status: int = 400, op: str = "SendEmail") -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, op
    )


@pytest.mark.parametrize(
    ("exc", "stage", "kind", "reason", "flags"),
    [
        (
            _client_error("AccessDenied", 403, "AssumeRole"),
            "assume_role",
            "permanent",
            "role_unavailable",
            "",
        ),
        (_client_error("AccessDenied", 403, "AssumeRole"), "send", "permanent", "role_unavailable", ""),
        (
            _client_error("Throttling", 400, "AssumeRole"),
            "assume_role",
            "transient",
            "throttled",
            "throttled",
        ),
        (_client_error("TooManyRequestsException", 429), "send", "transient", "throttled", "throttled"),
        (_client_error("ThrottlingException", 400, "PutItem"), "central", "transient", "throttled", ""),
        (_client_error("InternalFailure", 500), "send", "transient", "aws_error", ""),
        (_client_error("ServiceUnavailable", 503, "GetObject"), "central", "transient", "aws_error", ""),
        (_client_error("MessageRejected"), "send", "permanent", "recipient_rejected", "recipient"),
        (_client_error("AccountSuspendedException"), "send", "permanent", "ses_unavailable", ""),
        (_client_error("AccessDeniedException", 403), "send", "permanent", "ses_unavailable", ""),
        (
            _client_error("NotFoundException", 404, "ListContacts"),
            "contacts",
            "permanent",
            "contact_list_missing",
            "",
        ),
        (_client_error("AccessDenied", 403, "GetObject"), "central", "transient", "aws_error", ""),
        (ReadTimeoutError(endpoint_url="x"), "send", "transient", "aws_timeout", "ambiguous"),
        (ReadTimeoutError(endpoint_url="x"), "central", "transient", "aws_timeout", ""),
        (EndpointConnectionError(endpoint_url="x"), "send", "transient", "aws_unreachable", ""),
        (ConnectTimeoutError(endpoint_url="x"), "send", "transient", "aws_unreachable", ""),
        (NoCredentialsError(), "central", "transient", "aws_client_error", ""),
        (MalformedMessage("bad"), "", "permanent", "malformed_message", ""),
        (IsolationViolation("x"), "", "permanent", "isolation_violation", ""),
        (InvalidChange("x"), "", "permanent", "invalid_change", ""),
        (KeyError("boom"), "central", "transient", "internal_error", ""),
    ],
)
def test_errors_are_classified_by_type(
    exc: BaseException, stage: str, kind: str, reason: str, flags: str
) -> None:
    f = classify(exc, stage)
    assert (f.kind, f.reason) == (kind, reason)
    assert f.throttled is (flags == "throttled")
    assert f.ambiguous is (flags == "ambiguous")
    assert f.recipient_only is (flags == "recipient")
    assert "\n" not in f.detail


def test_backoff_grows_with_receive_count_is_jittered_and_capped() -> None:
    import random

    rng = random.Random(7)
    for count in range(1, 12):
        ceiling = min(900, 30 * 2 ** (count - 1))
        values = {backoff_delay(count, 30, 900, rng) for _ in range(50)}
        assert all(ceiling // 2 <= v <= ceiling for v in values)
        if ceiling >= 60:
            assert len(values) > 1
    assert backoff_delay(50, 30, 900) <= 900
    assert backoff_delay(1, 0.5, 900) >= 1


# -- DLQ attributes -----------------------------------------------------------------------------


def _cc() -> dict[str, Any]:
    return {
        "reason": "invalid_change",
        "detail": "line one\nline two",
        "customer": "acme",
        "change_id": "CHG-2026-03-01T10-00-00-abc123",
        "version": 2,
        "event": "submitted",
        "failed_at": "2026-03-01T10:00:00Z",
        "source_message_id": "m-1",
        "receive_count": 1,
        "worker": "w-1",
    }


def test_dlq_attributes_fit_sqs_limit_and_keep_the_redrive_marker() -> None:
    plain = dead_letter_attributes({}, **_cc())
    assert len(plain) == 10 and plain["cc-detail"]["StringValue"] == "line one line two"
    assert plain["cc-version"]["StringValue"] == "2" and plain["cc-receive-count"]["StringValue"] == "1"
    assert dead_letter_attributes({}, **{**_cc(), "change_id": None}).get("cc-change-id") is None
    redriven = {
        **plain,
        "cc-redriven-at": {"DataType": "String", "StringValue": "2026-03-02T00:00:00Z"},
        "cc-redrive-count": {"DataType": "String", "StringValue": "1"},
        "cc-redriven-by": {"DataType": "String", "StringValue": "ops"},
    }
    again = dead_letter_attributes(redriven, **{**_cc(), "reason": "role_unavailable"})
    assert len(again) <= 10
    assert again["cc-reason"]["StringValue"] == "role_unavailable"
    packed = json.loads(again["cc-packed"]["StringValue"])
    assert packed["cc-redrive-count"]["StringValue"] == "1" and "cc-redriven-by" in packed
    # Packed once more, the earlier packing is expanded rather than nested.
    third = dead_letter_attributes(again, **_cc())
    inner = json.loads(third["cc-packed"]["StringValue"])
    assert "cc-packed" not in inner and inner["cc-redrive-count"]["StringValue"] == "1"


def test_retry_counters_ride_on_copies_within_the_limit_and_are_dropped_by_dead_letter_and_redrive() -> None:
    # An S3 event message carries no attributes: a copy gets only the counters that are not 0.
    first = requeue_attributes({}, failures=0, crashes=2)
    assert first == {"cc-crashes": {"DataType": "String", "StringValue": "2"}}
    assert retry_counters(first) == (0, 2)
    again = requeue_attributes(first, failures=1, crashes=3)
    assert retry_counters(again) == (1, 3) and len(again) == 2
    # A message already holding 10 attributes: they go packed, the counters fit next to them.
    own = {f"a{i}": {"DataType": "String", "StringValue": str(i)} for i in range(10)}
    copy = requeue_attributes(own, failures=2, crashes=1)
    assert len(copy) <= 10 and retry_counters(copy) == (2, 1)
    assert unpack_attributes(copy) == {**own, **requeue_attributes({}, failures=2, crashes=1)}
    # Neither a dead letter nor a redrive keeps them: a redriven message starts with full budgets.
    assert retry_counters(dead_letter_attributes(copy, **_cc())) == (0, 0)
    assert retry_counters(redrive_attributes(copy, at=datetime(2026, 3, 3, tzinfo=UTC), by="ops")) == (0, 0)
    # Garbage reads as 0, never as a negative or a crash.
    junk = {
        "cc-failures": {"DataType": "String", "StringValue": "-4"},
        "cc-crashes": {"DataType": "String", "StringValue": "x"},
    }
    assert retry_counters(junk) == (0, 0)


def test_a_message_counts_receives_without_outcome_and_failed_attempts_apart() -> None:
    m = InFlight("acme", "url", "m-1", "r-1", "{}", 3, time.time(), failures=1, carried_unfinished=4)
    assert (m.unfinished, m.attempt, m.receives) == (6, 2, 8)
    fresh = InFlight("acme", "url", "m-2", "r-2", "{}", 1, time.time())
    assert (fresh.unfinished, fresh.attempt, fresh.receives) == (0, 1, 1)


# -- scheduling ---------------------------------------------------------------------------------


def _msg(customer: str, n: int) -> InFlight:
    return InFlight(customer, "url", f"{customer}-{n}", f"r-{customer}-{n}", "{}", 1, time.time())


def test_fair_scheduler_caps_each_customer_and_never_starves_the_others() -> None:
    started: list[str] = []
    release = threading.Event()
    lock = threading.Lock()

    def run(m: InFlight) -> None:
        with lock:
            started.append(m.message_id)
        release.wait(5)

    sched = FairScheduler(threads=3, cap=2, run=run)
    sched.start()
    for i in range(20):
        sched.submit(_msg("flood", i))
    sched.submit(_msg("quiet", 0))
    wait_until(lambda: len(started) >= 3, 5, what="three runs started", interval=0.01)
    assert sorted(started) == ["flood-0", "flood-1", "quiet-0"]  # the flood holds at most 2 threads
    assert sched.active("flood") == 20 and sched.active("quiet") == 1
    pending = sched.take_pending()
    assert len(pending) == 18 and {m.customer for m in pending} == {"flood"}
    release.set()
    assert sched.wait_idle(5)
    sched.stop()


# -- operability ----------------------------------------------------------------------------------


def test_json_log_lines_carry_fields_and_never_let_them_replace_the_basics() -> None:
    record = logging.LogRecord(
        "changeconsole.worker", logging.INFO, __file__, 1, "delivery.finished", None, None
    )
    record.cc = {"customer": "acme", "change_id": "CHG-x", "msg": "spoof", "event": "submitted"}
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "delivery.finished" and line["level"] == "info"
    assert line["customer"] == "acme" and line["event"] == "submitted" and line["ts"].endswith("+00:00")


def test_metrics_are_emf_documents_per_customer(config: Config) -> None:
    out = io.StringIO()
    metrics = Metrics(config, emf_stream=out, worker_id="w-1")
    metrics.count("acme", "MessagesProcessed")
    metrics.count("acme", "EmailsSent", 3)
    metrics.latency("acme", 0.25)
    metrics.message_age("acme", 1.5)
    metrics.count("globex", "MessagesDeadLettered")
    docs = metrics.flush()
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines == docs and [d["Customer"] for d in docs] == ["acme", "globex"]
    acme = docs[0]
    spec = acme["_aws"]["CloudWatchMetrics"][0]
    assert spec["Namespace"] == "ChangeConsole" and spec["Dimensions"] == [["Customer"]]
    names = {m["Name"] for m in spec["Metrics"]}
    assert {"MessagesProcessed", "MessagesFailed", "MessagesDeadLettered", "EmailsSent"} <= names
    assert {"ProcessingLatency", "OldestMessageAge"} <= names
    assert (
        acme["EmailsSent"] == 3 and acme["ProcessingLatency"] == [250.0] and acme["OldestMessageAge"] == 1.5
    )
    assert metrics.flush() == []  # reset after a flush


def test_health_server_answers_200_or_503() -> None:
    state = {"ok": True}
    port = free_port()
    server = HealthServer(
        "127.0.0.1", port, health=lambda: (state["ok"], {"x": 1}), ready=lambda: (False, {"why": "stopping"})
    ).start()
    try:
        assert http_get(f"http://127.0.0.1:{port}/healthz") == (200, {"ok": True, "x": 1})
        assert http_get(f"http://127.0.0.1:{port}/readyz") == (503, {"ok": False, "why": "stopping"})
        state["ok"] = False
        assert http_get(f"http://127.0.0.1:{port}/healthz")[0] == 503
        assert http_get(f"http://127.0.0.1:{port}/other")[0] == 404
    finally:
        server.stop()


def test_options_defaults() -> None:
    opts = WorkerOptions()
    assert opts.poll_wait == 20 and opts.shutdown_timeout == 25 and opts.backoff_cap == 900
    assert opts.customer_cap == 4 and opts.prefetch == 10
    assert WorkerOptions(concurrency=2).customer_cap == 1
    assert WorkerOptions(per_customer=12).prefetch == 12
    assert WorkerOptions(visibility_timeout=120).heartbeat_every == 30
    assert opts.backlog_cap == 32 and WorkerOptions(concurrency=2).backlog_cap == 10
    assert WorkerOptions(max_waiting=3).backlog_cap == 3


def test_shared_pollers_long_poll_a_share_of_the_wait_never_below_two_seconds() -> None:
    opts = WorkerOptions(poll_wait=20)
    assert [poll_wait_of(opts, n) for n in (1, 2, 4, 30)] == [20, 10, 5, 2]
    assert poll_wait_of(WorkerOptions(poll_wait=1), 3) == 1
    assert poll_wait_of(WorkerOptions(drain=True), 1) == 1


def test_fair_scheduler_counts_waiting_messages_and_reports_each_start() -> None:
    gate = threading.Event()
    starts: list[int] = []
    sched = FairScheduler(threads=1, cap=1, run=lambda m: gate.wait(10), on_start=lambda: starts.append(1))
    sched.start()
    try:
        sched.submit(_msg("a", 0))
        assert wait_until(lambda: sched.busy == 1, 5)  # a is running: nothing waits
        assert sched.waiting == 0 and len(starts) == 1
        sched.submit(_msg("b", 0))
        sched.submit(_msg("c", 0))
        assert sched.waiting == 2
        gate.set()
        assert sched.wait_idle(5)
        assert sched.waiting == 0 and len(starts) == 3
    finally:
        gate.set()
        sched.stop()


def test_fair_scheduler_reports_a_customer_idle_once_nothing_of_it_waits_or_runs() -> None:
    gate = threading.Event()
    idle: list[str] = []
    sched = FairScheduler(threads=2, cap=1, run=lambda m: gate.wait(10), on_idle=idle.append)
    sched.start()
    try:
        sched.submit(_msg("a", 0))
        sched.submit(_msg("a", 1))  # waits behind a-0 (cap 1)
        sched.submit(_msg("b", 0))
        assert wait_until(lambda: sched.busy == 2, 5)
        assert idle == []
        gate.set()
        assert wait_until(lambda: len(idle) == 2, 5)  # called after the scheduler's lock is let go
        assert sorted(idle) == ["a", "b"]  # a once, after its second message, not after the first
    finally:
        gate.set()
        sched.stop()


def test_metrics_go_to_cloudwatch_when_enabled(aws_factory: Any) -> None:
    raw = build_local_config(2, endpoint="http://127.0.0.1:1")
    raw["metrics"] = {"namespace": "CCTest", "cloudwatch": True}
    metrics = Metrics(Config.model_validate(raw), aws=aws_factory, worker_id="w-1")
    metrics.count("acme", "EmailsSent", 2)
    metrics.latency("acme", 0.1)
    metrics.flush()
    listed = aws_factory.client("cloudwatch").list_metrics(Namespace="CCTest")["Metrics"]
    names = {m["MetricName"] for m in listed}
    assert {"EmailsSent", "ProcessingLatency", "OldestMessageAge"} <= names
    assert all(m["Dimensions"] == [{"Name": "Customer", "Value": "acme"}] for m in listed)
