"""DlqService against moto's server (real boto3 clients over HTTP)."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from changeconsole.models import Config
from changeconsole.services.aws import AwsFactory
from changeconsole.services.dlq import (
    MARKER_BY,
    MARKER_COUNT,
    MAX_MESSAGE_ATTRIBUTES,
    PACKED_ATTRIBUTE,
    DlqInputError,
    DlqMessage,
    DlqService,
    MessageFilter,
    PurgeRefused,
    RateLimiter,
    RedriveProgress,
    fit_attributes,
    native_unsupported,
    redrive_attributes,
    string_attr,
    unpack_attributes,
)
from changeconsole.services.localstack import local_factory, provision_local, reset
from changeconsole.services.provision import sqs_max_receive_count
from support.aws import audit_events, drain, empty_stack, url_of, visible
from support.dlq import put_dead_letters, trigger_body, worker_attributes

CODE_ENV = "CHANGECONSOLE_OPERATOR"


class FakeClock:
    """Monotonic clock whose sleep advances it: rate limits are checked without sleeping."""

    def __init__(self) -> None:
        self.t = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds


@pytest.fixture(scope="module")
def _module_stack(moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Config:
    """One provisioned stack for this module (provisioning is the slow part); each test starts empty."""
    reset(moto_endpoint)
    path = tmp_path_factory.mktemp("dlq-stack") / "config.json"
    return provision_local(moto_endpoint, customers=2, contacts=1, config_path=path).config


@pytest.fixture
def stack(_module_stack: Config, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> tuple[Config, str]:
    monkeypatch.setenv(CODE_ENV, "ops-alice")
    config = _module_stack
    aws = local_factory(moto_endpoint, max_attempts=1)
    empty_stack(aws, config)
    return config, sorted(config.customer_mappings)[0]


@pytest.fixture
def svc(stack: tuple[Config, str], aws_factory: AwsFactory) -> DlqService:
    return DlqService(aws_factory, stack[0])


def dlq_name(config: Config, code: str) -> str:
    return config.customer(code).dlq_name


def source_name(config: Config, code: str) -> str:
    return config.customer(code).queue_name


# -- reading ----------------------------------------------------------------------------------------


def test_sqs_redrive_by_max_receive_count_reaches_the_dlq_and_is_explained(
    stack: tuple[Config, str], aws_factory: AwsFactory, svc: DlqService
) -> None:
    config, code = stack
    sqs = aws_factory.client("sqs")
    url = url_of(aws_factory, source_name(config, code))
    sqs.send_message(QueueUrl=url, MessageBody="{not json", MessageAttributes={"origin": string_attr("t")})
    for _ in range(sqs_max_receive_count(config)):  # receives no worker acted on
        got = sqs.receive_message(QueueUrl=url, VisibilityTimeout=0, WaitTimeSeconds=0)
        assert len(got.get("Messages", [])) == 1
    assert sqs.receive_message(QueueUrl=url, VisibilityTimeout=0, WaitTimeSeconds=0).get("Messages") is None

    peek = svc.peek(code)
    assert [m.body for m in peek.messages] == ["{not json"]
    msg = peek.messages[0]
    assert msg.reason == "max_receive_count"
    assert "maxReceiveCount" in msg.detail
    assert msg.attrs == {"origin": "t"}
    assert msg.receive_count > sqs_max_receive_count(config)
    assert msg.sent_at is not None and msg.first_seen is not None
    assert peek.age_source == "peek" and peek.oldest_age_seconds is not None


def test_peek_shows_reason_attributes_and_releases_messages(
    stack: tuple[Config, str], aws_factory: AwsFactory, svc: DlqService
) -> None:
    config, code = stack
    ids = put_dead_letters(aws_factory, config, code, 3)
    peek = svc.peek(code, max_messages=2)
    assert peek.depth == 3 and peek.scanned == 2 and len(peek.messages) == 2
    assert {m.message_id for m in peek.messages} <= set(ids)
    m = peek.messages[0]
    assert m.reason == "role_assume_failed"
    assert m.detail.startswith("AccessDenied assuming the SES role")
    assert m.change_id == "CHG-2026-01-31T22-00-00-abc123" and m.event == "approved" and m.version == "2"
    assert m.source_receive_count == 1 and m.receive_count == 1
    assert json.loads(m.body)["change"]["changeTitle"].startswith("Patch window")
    # Released at once: all three are visible again (not after the 15 s peek visibility).
    assert visible(aws_factory, dlq_name(config, code)) == 3
    # Peeking again raises the receive count: the documented cost of looking.
    again = {x.message_id: x.receive_count for x in svc.peek(code, max_messages=10).messages}
    assert again[m.message_id] == 2


def test_peek_cap_is_enforced(svc: DlqService, stack: tuple[Config, str]) -> None:
    with pytest.raises(DlqInputError):
        svc.peek(stack[1], max_messages=0)
    with pytest.raises(DlqInputError):
        svc.peek(stack[1], max_messages=100_000)


def test_filter_by_attribute_and_body_text(
    stack: tuple[Config, str], aws_factory: AwsFactory, svc: DlqService
) -> None:
    config, code = stack
    put_dead_letters(aws_factory, config, code, 2, reason="role_assume_failed")
    put_dead_letters(aws_factory, config, code, 1, reason="isolation_violation")
    assert {m.reason for m in svc.peek(code, filter="cc-reason=isolation_violation").messages} == {
        "isolation_violation"
    }
    assert len(svc.peek(code, filter="cc-reason=ROLE_*").messages) == 2
    assert len(svc.peek(code, filter="reason=isolation*").messages) == 1
    aws_factory.client("sqs").send_message(
        QueueUrl=url_of(aws_factory, dlq_name(config, code)), MessageBody='{"note": "Needle-42 here"}'
    )
    assert [m.body for m in svc.peek(code, filter="needle-42").messages] == ['{"note": "Needle-42 here"}']
    assert len(svc.peek(code, filter="window").messages) == 3
    assert svc.peek(code, filter="no-such-text").messages == []
    # terms are ANDed
    assert len(svc.peek(code, filter="cc-reason=role_assume_failed cc-source-message-id=src-1").messages) == 1


def test_summaries_report_depth_per_customer(
    stack: tuple[Config, str], aws_factory: AwsFactory, svc: DlqService
) -> None:
    config, code = stack
    put_dead_letters(aws_factory, config, code, 2)
    rows = {s.customer: s for s in svc.summaries()}
    assert set(rows) == set(config.customer_mappings)
    assert rows[code].depth == 2 and rows[code].error is None
    other = next(c for c in rows if c != code)
    assert rows[other].depth == 0
    # moto publishes no SQS metrics: the age is unknown, and the source says where it would come from.
    assert rows[code].age_source in ("cloudwatch", "unavailable")


# -- redrive ------------------------------------------------------------------------------------------


def test_redrive_selected_ids_moves_only_those_with_marker(
    stack: tuple[Config, str], aws_factory: AwsFactory, svc: DlqService
) -> None:
    config, code = stack
    ids = put_dead_letters(aws_factory, config, code, 4)
    chosen = [ids[1], ids[3]]
    result = svc.redrive(code, message_ids=chosen)
    assert result.ok and result.mode == "manual"
    assert sorted(result.moved) == sorted(chosen) and result.moved_count == 2
    moved = drain(aws_factory, source_name(config, code))
    assert len(moved) == 2
    originals = {trigger_body(code, n) for n in (1, 3)}
    assert {m["Body"] for m in moved} == originals
    for m in moved:
        attrs = {k: v["StringValue"] for k, v in m["MessageAttributes"].items()}
        full = {k: v["StringValue"] for k, v in unpack_attributes(m["MessageAttributes"]).items()}
        assert len(attrs) <= MAX_MESSAGE_ATTRIBUTES
        assert full[MARKER_COUNT] == "1" and full[MARKER_BY] == "ops-alice"
        assert full["cc-redriven-at"].endswith("Z")
        assert full["cc-reason"] == "role_assume_failed"  # original attributes survive (packed)
    left = {m["MessageId"] for m in drain(aws_factory, dlq_name(config, code))}
    assert left == {ids[0], ids[2]}


def test_redrive_unknown_id_is_reported_and_nothing_else_moves(
    stack: tuple[Config, str], aws_factory: AwsFactory, svc: DlqService
) -> None:
    config, code = stack
    ids = put_dead_letters(aws_factory, config, code, 2)
    result = svc.redrive(code, message_ids=["no-such-id", ids[0]])
    assert result.not_found == ["no-such-id"] and result.moved == [ids[0]] and not result.ok
    assert visible(aws_factory, dlq_name(config, code)) == 1


def test_redrive_needs_a_selection(svc: DlqService, stack: tuple[Config, str]) -> None:
    with pytest.raises(DlqInputError):
        svc.redrive(stack[1])
    with pytest.raises(DlqInputError):
        svc.redrive(stack[1], message_ids=["a"], all_messages=True)


def test_dry_run_moves_nothing(stack: tuple[Config, str], aws_factory: AwsFactory, svc: DlqService) -> None:
    config, code = stack
    ids = put_dead_letters(aws_factory, config, code, 3)
    result = svc.redrive(code, all_messages=True, dry_run=True)
    assert result.mode == "dry-run" and result.moved == [] and result.moved_count == 0
    assert sorted(m.message_id for m in result.would_move) == sorted(ids)
    assert visible(aws_factory, dlq_name(config, code)) == 3
    assert visible(aws_factory, source_name(config, code)) == 0
    selected = svc.redrive(code, message_ids=[ids[2]], dry_run=True)
    assert [m.message_id for m in selected.would_move] == [ids[2]]
    assert visible(aws_factory, dlq_name(config, code)) == 3


def test_redrive_all_falls_back_from_native_move_on_moto(
    stack: tuple[Config, str], aws_factory: AwsFactory, svc: DlqService
) -> None:
    config, code = stack
    ids = put_dead_letters(aws_factory, config, code, 12)
    seen: list[RedriveProgress] = []
    result = svc.redrive(code, all_messages=True, progress=seen.append)
    assert result.mode == "manual"
    assert result.fallback_reason is not None and "500" in result.fallback_reason
    assert sorted(result.moved) == sorted(ids) and result.ok
    assert seen[-1].status == "done" and seen[-1].moved == 12 and seen[0].total == 12
    assert visible(aws_factory, dlq_name(config, code)) == 0
    assert len(drain(aws_factory, source_name(config, code))) == 12
    # The verdict is remembered: the next redrive-all does not ask the endpoint again.
    put_dead_letters(aws_factory, config, code, 1)
    assert svc.redrive(code, all_messages=True).fallback_reason == result.fallback_reason


def test_redrive_all_leaves_messages_that_arrive_during_the_redrive(
    stack: tuple[Config, str], aws_factory: AwsFactory
) -> None:
    config, code = stack
    put_dead_letters(aws_factory, config, code, 3)
    svc = DlqService(aws_factory, config)
    late: list[str] = []

    def progress(p: RedriveProgress) -> None:
        if p.moved and not late:  # a redriven message failing again, dead-lettered anew
            late.extend(put_dead_letters(aws_factory, config, code, 1))

    svc.wall_clock = lambda: datetime(2000, 1, 1, tzinfo=UTC)  # type: ignore[method-assign]
    assert svc.redrive(code, all_messages=True, progress=progress).moved == []  # all "newer" than cutoff
    svc = DlqService(aws_factory, config)
    result = svc.redrive(code, all_messages=True, rate=3, progress=progress)
    assert result.moved_count == 3 and late and late[0] not in result.moved
    assert [m["MessageId"] for m in drain(aws_factory, dlq_name(config, code))] == late


def test_redrive_twice_counts_redrives(
    stack: tuple[Config, str], aws_factory: AwsFactory, svc: DlqService
) -> None:
    config, code = stack
    put_dead_letters(aws_factory, config, code, 1)
    svc.redrive(code, all_messages=True)
    first = drain(aws_factory, source_name(config, code))[0]
    # the worker fails again and dead-letters the redriven message with the attributes it carried
    sqs = aws_factory.client("sqs")
    sqs.send_message(
        QueueUrl=url_of(aws_factory, dlq_name(config, code)),
        MessageBody=first["Body"],
        MessageAttributes=first["MessageAttributes"],
    )
    peeked = svc.peek(code).messages[0]
    assert peeked.redrive_count == 1 and peeked.reason == "role_assume_failed"
    svc.redrive(code, all_messages=True)
    second = drain(aws_factory, source_name(config, code))[0]
    full = unpack_attributes(second["MessageAttributes"])
    assert full[MARKER_COUNT]["StringValue"] == "2"
    assert full["cc-detail"]["StringValue"] == worker_attributes(code)["cc-detail"]["StringValue"]


def test_rate_limit_is_respected_without_sleeping(stack: tuple[Config, str], aws_factory: AwsFactory) -> None:
    config, code = stack
    put_dead_letters(aws_factory, config, code, 23)
    clock = FakeClock()
    svc = DlqService(aws_factory, config, monotonic=clock.monotonic, sleep=clock.sleep)
    timeline: list[tuple[float, int]] = []
    start = clock.t
    result = svc.redrive(
        code, all_messages=True, rate=5, progress=lambda p: timeline.append((clock.t - start, p.moved))
    )
    assert result.moved_count == 23
    # 5 msgs/s in batches of 5: never more than rate*t + one batch sent by time t
    assert all(moved <= 5 * t + 5 for t, moved in timeline)
    assert sum(clock.slept) == pytest.approx((23 - 3) / 5)  # the last batch of 3 goes at t=4 s
    assert max(clock.slept) <= 0.25  # sleeps in slices so cancel is noticed


def test_rate_limiter_alone() -> None:
    clock = FakeClock()
    limiter = RateLimiter(2, monotonic=clock.monotonic, sleep=clock.sleep)
    stamps = []
    for _ in range(5):
        assert limiter.acquire(1)
        stamps.append(clock.t - 1000.0)
    assert stamps == pytest.approx([0, 0.5, 1.0, 1.5, 2.0])
    cancel = threading.Event()
    cancel.set()
    assert not limiter.acquire(1, cancel)
    with pytest.raises(DlqInputError):
        RateLimiter(0)


def test_cancel_stops_between_batches_and_loses_nothing(
    stack: tuple[Config, str], aws_factory: AwsFactory
) -> None:
    config, code = stack
    put_dead_letters(aws_factory, config, code, 10)
    clock = FakeClock()
    svc = DlqService(aws_factory, config, monotonic=clock.monotonic, sleep=clock.sleep)
    cancel = threading.Event()

    def progress(p: RedriveProgress) -> None:
        if p.moved >= 2:
            cancel.set()

    result = svc.redrive(code, all_messages=True, rate=2, progress=progress, cancel=cancel)
    assert result.cancelled and result.moved_count == 2
    assert visible(aws_factory, source_name(config, code)) == 2
    assert visible(aws_factory, dlq_name(config, code)) == 8  # released at once, not after 120 s


# -- native move task (a stub endpoint that supports it) -------------------------------------------------


class NativeSqs:
    """Just the three move-task operations, as AWS answers them."""

    def __init__(self, total: int, *, fail_code: str | None = None, status: int = 400) -> None:
        self.total = total
        self.moved = 0
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.cancelled = False
        self.fail_code, self.fail_status = fail_code, status

    def _fail(self, op: str) -> None:
        if self.fail_code:
            raise ClientError(
                {
                    "Error": {"Code": self.fail_code, "Message": "x"},
                    "ResponseMetadata": {"HTTPStatusCode": self.fail_status},
                },
                op,
            )

    def list_message_move_tasks(self, **kw: Any) -> dict[str, Any]:
        self.calls.append(("list", kw))
        self._fail("ListMessageMoveTasks")
        if not any(c[0] == "start" for c in self.calls):
            return {"Results": []}
        if not self.cancelled:
            self.moved = min(self.total, self.moved + 4)
        status = "CANCELLED" if self.cancelled else ("COMPLETED" if self.moved >= self.total else "RUNNING")
        return {
            "Results": [
                {
                    "TaskHandle": "h-1",
                    "Status": status,
                    "ApproximateNumberOfMessagesMoved": self.moved,
                    "ApproximateNumberOfMessagesToMove": self.total,
                }
            ]
        }

    def start_message_move_task(self, **kw: Any) -> dict[str, Any]:
        self.calls.append(("start", kw))
        return {"TaskHandle": "h-1"}

    def cancel_message_move_task(self, **kw: Any) -> dict[str, Any]:
        self.calls.append(("cancel", kw))
        self.cancelled = True
        return {"ApproximateNumberOfMessagesMoved": self.moved}


def test_native_move_task_with_progress_rate_and_audit(
    stack: tuple[Config, str], aws_factory: AwsFactory
) -> None:
    config, code = stack
    clock = FakeClock()
    svc = DlqService(aws_factory, config, monotonic=clock.monotonic, sleep=clock.sleep)
    fake = NativeSqs(10)
    svc.native_sqs = lambda: fake  # type: ignore[method-assign]
    seen: list[RedriveProgress] = []
    result = svc.redrive(code, all_messages=True, rate=50, progress=seen.append)
    assert result.mode == "native" and result.moved_count == 10 and result.ok
    start = next(kw for op, kw in fake.calls if op == "start")
    customer = config.customer(code)
    assert start == {
        "SourceArn": customer.effective_dlq_arn,
        "DestinationArn": customer.sqs_queue_arn,
        "MaxNumberOfMessagesPerSecond": 50,
    }
    assert [p.moved for p in seen] == [4, 8, 10] and seen[-1].status == "completed"
    assert clock.slept == [svc.native_poll_seconds] * 2
    event = next(e for e in audit_events(aws_factory, config) if e["action"] == "dlq.redrive")
    assert event["mode"] == "native" and event["count"] == 10 and event["native_task"]["handle"] == "h-1"


def test_native_move_task_cancel(stack: tuple[Config, str], aws_factory: AwsFactory) -> None:
    config, code = stack
    clock = FakeClock()
    svc = DlqService(aws_factory, config, monotonic=clock.monotonic, sleep=clock.sleep)
    fake = NativeSqs(100)
    svc.native_sqs = lambda: fake  # type: ignore[method-assign]
    cancel = threading.Event()
    result = svc.redrive(
        code, all_messages=True, cancel=cancel, progress=lambda p: cancel.set() if p.moved >= 8 else None
    )
    assert result.cancelled and result.native_task is not None
    assert result.native_task["status"] == "CANCELLED"
    assert [op for op, _ in fake.calls].count("cancel") == 1


def test_native_errors_are_classified_by_code_not_text(
    stack: tuple[Config, str], aws_factory: AwsFactory
) -> None:
    config, code = stack

    def err(code_: str, status: int, message: str = "whatever") -> ClientError:
        return ClientError(
            {"Error": {"Code": code_, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}},
            "StartMessageMoveTask",
        )

    assert native_unsupported(err("500", 500, "<html>Internal Server Error")) is not None
    assert native_unsupported(err("AWS.SimpleQueueService.UnsupportedOperation", 400)) is not None
    assert native_unsupported(err("InternalFailure", 500)) is not None
    assert native_unsupported(err("AccessDenied", 403, "not implemented")) is None
    assert native_unsupported(err("ThrottlingException", 400, "UnsupportedOperation")) is None
    # A permission problem is raised, not silently turned into a manual move.
    svc = DlqService(aws_factory, config)
    svc.native_sqs = lambda: NativeSqs(1, fail_code="AccessDenied", status=403)  # type: ignore[method-assign]
    put_dead_letters(aws_factory, config, code, 1)
    with pytest.raises(ClientError):
        svc.redrive(code, all_messages=True)
    assert visible(aws_factory, dlq_name(config, code)) == 1


# -- export / import / purge ----------------------------------------------------------------------------


def _snapshot(raw: list[dict[str, Any]]) -> list[tuple[str, str]]:
    out = []
    for m in raw:
        attrs = {
            k: (v["DataType"], v.get("StringValue"), v.get("BinaryValue"))
            for k, v in m.get("MessageAttributes", {}).items()
        }
        out.append((m["Body"], repr(sorted(attrs.items()))))
    return sorted(out)


def test_export_purge_import_round_trip_loses_nothing(
    stack: tuple[Config, str], aws_factory: AwsFactory, svc: DlqService, tmp_path: Path
) -> None:
    config, code = stack
    put_dead_letters(aws_factory, config, code, 3)
    sqs = aws_factory.client("sqs")
    dlq_url = url_of(aws_factory, dlq_name(config, code))
    sqs.send_message(
        QueueUrl=dlq_url,
        MessageBody='{"odd": "ünïcode ✓"}',
        MessageAttributes={
            "bin": {"DataType": "Binary", "BinaryValue": b"\x00\xffraw"},
            "num": {"DataType": "Number", "StringValue": "42"},
            "custom": {"DataType": "String.note", "StringValue": "x"},
        },
    )
    before = svc.peek(code, max_messages=100).messages
    path = tmp_path / "out" / "acme.jsonl"
    exported = svc.export_jsonl(code, path)
    assert exported.count == 4 and exported.recorded
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert {line["message_id"] for line in lines} == {m.message_id for m in before}
    assert all(line["receive_count"] >= 1 and line["sent_at"] for line in lines)
    assert visible(aws_factory, dlq_name(config, code)) == 4  # the export released them

    purged = svc.purge(code)
    assert purged.mode == "export" and sorted(purged.deleted) == sorted(exported.message_ids)
    assert visible(aws_factory, dlq_name(config, code)) == 0
    with pytest.raises(PurgeRefused):  # the export was used up by that purge
        svc.purge(code)

    imported = svc.import_jsonl(code, path, to="dlq")
    assert imported.ok and len(imported.sent) == 4
    after = drain(aws_factory, dlq_name(config, code))
    expected = [{"Body": m.body, "MessageAttributes": m.message_attributes} for m in before]
    assert _snapshot(after) == _snapshot(expected)


def test_import_twice_into_the_dlq_duplicates_nothing(
    stack: tuple[Config, str], aws_factory: AwsFactory, svc: DlqService, tmp_path: Path
) -> None:
    config, code = stack
    put_dead_letters(aws_factory, config, code, 2)
    path = tmp_path / "x.jsonl"
    svc.export_jsonl(code, path)
    result = svc.import_jsonl(code, path)  # still all there
    assert result.sent == {} and len(result.skipped_present) == 2
    assert visible(aws_factory, dlq_name(config, code)) == 2


def test_import_to_source_is_a_redrive(
    stack: tuple[Config, str], aws_factory: AwsFactory, svc: DlqService, tmp_path: Path
) -> None:
    config, code = stack
    put_dead_letters(aws_factory, config, code, 2)
    path = tmp_path / "x.jsonl"
    svc.export_jsonl(code, path)
    svc.purge(code)
    result = svc.import_jsonl(code, path, to="source")
    assert len(result.sent) == 2
    got = drain(aws_factory, source_name(config, code))
    assert all(unpack_attributes(m["MessageAttributes"])[MARKER_COUNT]["StringValue"] == "1" for m in got)


def test_import_rejects_bad_lines_and_other_customers_without_sending(
    stack: tuple[Config, str], aws_factory: AwsFactory, svc: DlqService, tmp_path: Path
) -> None:
    config, code = stack
    other = next(c for c in config.customer_mappings if c != code)
    put_dead_letters(aws_factory, config, other, 1)
    theirs = tmp_path / "theirs.jsonl"
    svc.export_jsonl(other, theirs)
    with pytest.raises(DlqInputError) as info:
        svc.import_jsonl(code, theirs)
    assert "exported from customer" in info.value.problems[0]["message"]
    bad = tmp_path / "bad.jsonl"
    good_line = theirs.read_text().splitlines()[0].replace(f'"customer": "{other}"', f'"customer": "{code}"')
    bad.write_text(good_line + "\n{oops\n" + json.dumps({"schema": "nope"}) + "\n")
    with pytest.raises(DlqInputError) as info:
        svc.import_jsonl(code, bad)
    assert [p["path"] for p in info.value.problems] == ["line 2", "line 3"]
    assert visible(aws_factory, dlq_name(config, code)) == 0  # nothing was sent, not even line 1
    with pytest.raises(DlqInputError):
        svc.import_jsonl(code, tmp_path / "missing.jsonl")


def test_purge_is_refused_without_export_or_yes(
    stack: tuple[Config, str], aws_factory: AwsFactory, svc: DlqService, tmp_path: Path
) -> None:
    config, code = stack
    put_dead_letters(aws_factory, config, code, 2)
    with pytest.raises(PurgeRefused):
        svc.purge(code)
    assert visible(aws_factory, dlq_name(config, code)) == 2
    # an export whose file changed afterwards does not count
    path = tmp_path / "x.jsonl"
    svc.export_jsonl(code, path)
    path.write_text(path.read_text() + "\n")
    with pytest.raises(PurgeRefused, match="changed"):
        svc.purge(code)
    path.unlink()
    with pytest.raises(PurgeRefused, match="not readable"):
        svc.purge(code)
    assert visible(aws_factory, dlq_name(config, code)) == 2
    result = svc.purge(code, yes=True)
    assert result.mode == "all" and len(result.deleted) == 2
    assert visible(aws_factory, dlq_name(config, code)) == 0


def test_purge_after_export_keeps_later_arrivals(
    stack: tuple[Config, str], aws_factory: AwsFactory, svc: DlqService, tmp_path: Path
) -> None:
    config, code = stack
    exported_ids = put_dead_letters(aws_factory, config, code, 2)
    svc.export_jsonl(code, tmp_path / "x.jsonl")
    late = put_dead_letters(aws_factory, config, code, 1)
    result = svc.purge(code)
    assert sorted(result.deleted) == sorted(exported_ids) and result.kept == late
    assert [m["MessageId"] for m in drain(aws_factory, dlq_name(config, code))] == late


def test_every_action_is_audited(
    stack: tuple[Config, str], aws_factory: AwsFactory, svc: DlqService, tmp_path: Path
) -> None:
    config, code = stack
    ids = put_dead_letters(aws_factory, config, code, 2)
    svc.peek(code)
    svc.redrive(code, message_ids=[ids[0]], dry_run=True)
    svc.redrive(code, message_ids=[ids[0]])
    svc.export_jsonl(code, tmp_path / "a.jsonl")
    svc.purge(code)
    svc.import_jsonl(code, tmp_path / "a.jsonl")
    events = audit_events(aws_factory, config)
    by_action = {e["action"]: e for e in events}
    assert set(by_action) == {
        f"dlq.{a}" for a in ("peek", "redrive-dry-run", "redrive", "export", "purge", "import")
    }
    for e in events:
        assert e["operator"] == "ops-alice" and e["customers"] == [code] and e["result"] == "ok"
        assert e["type"] == "operator.action" and e["via"] == "api"
        assert e["_key"].startswith("audit/") and e["_key"].split("/")[-1].startswith("api-")
        assert e["_key"].endswith(".jsonl") and len(e["_key"].split("/")) == 5
    assert by_action["dlq.redrive"]["message_ids"] == [ids[0]] and by_action["dlq.redrive"]["count"] == 1
    assert by_action["dlq.purge"]["message_ids"] == [ids[1]]


# -- pure helpers ------------------------------------------------------------------------------------------


def test_fit_attributes_stays_within_the_sqs_limit_and_unpacks() -> None:
    original = worker_attributes("acme")  # the worker's ten
    at = datetime(2026, 2, 1, 12, 0, tzinfo=UTC)
    out = redrive_attributes(original, at=at, by="bob")
    assert len(out) <= MAX_MESSAGE_ATTRIBUTES and PACKED_ATTRIBUTE in out
    full = unpack_attributes(out)
    assert {k: v for k, v in full.items() if k in original} == original
    assert full["cc-redriven-at"]["StringValue"] == "2026-02-01T12:00:00Z"
    small = {"a": string_attr("1")}
    assert fit_attributes(small, {"m": string_attr("x")}) == {"a": string_attr("1"), "m": string_attr("x")}
    many = {f"x{i}": string_attr(str(i)) for i in range(9)}
    packed = fit_attributes(many, {"m1": string_attr("1"), "m2": string_attr("2")})
    assert len(packed) == 3
    assert unpack_attributes(packed) == {**many, "m1": string_attr("1"), "m2": string_attr("2")}


def test_message_filter_terms() -> None:
    msg = DlqMessage(
        message_id="id-1",
        body='{"kind": "x", "title": "Patch Window"}',
        message_attributes=worker_attributes("acme", reason="isolation_violation"),
    )
    assert MessageFilter("patch").matches(msg)
    assert MessageFilter("cc-reason=isolation_violation").matches(msg)
    assert MessageFilter("CC-REASON=Isolation*").matches(msg)
    assert not MessageFilter("cc-reason=isolation").matches(msg)  # no wildcard: whole value
    assert MessageFilter("reason=isolation_violation event=approved").matches(msg)
    assert not MessageFilter("patch nothing-else").matches(msg)
    assert MessageFilter("id=id-1").matches(msg)
