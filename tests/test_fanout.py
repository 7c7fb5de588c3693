"""Fan-out: one trigger per targeted customer, queued records first, progress, partial failure + retry,
and the sqs-direct transport."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from changeconsole.models import ChangeStatus, DeliveryState, EmailEvent, shard_of, trigger_key
from changeconsole.services.doorbell import rung_customer
from changeconsole.services.fanout import (
    ARCHIVE,
    DIRECT_INLINE_LIMIT,
    DestinationState,
    ProgressEvent,
    payload_key,
)
from changeconsole.services.lifecycle import ChangeService
from changeconsole.services.provision import Provisioner
from changeconsole.services.status import DeliveryKey
from support.aws import bucket_keys
from support.changes import make_change, receive_triggers, triggers_by_customer

PUT_HOOK = "provide-client-params.s3.PutObject"


@pytest.fixture
def stack(make_stack):
    return make_stack(customers=8, contacts=0)


@pytest.fixture
def codes(stack) -> list[str]:
    return sorted(stack.config.customer_mappings)


@pytest.fixture
def svc(stack, aws_factory) -> ChangeService:
    return ChangeService(aws_factory, stack.config, operator="alice")


class PutHook:
    """Watch (and optionally break) PutObject calls of the shared S3 client."""

    def __init__(self, s3: Any, fail_key: str | None = None, on_put: Any = None) -> None:
        self.s3, self.fail_key, self.on_put = s3, fail_key, on_put
        self.keys: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, params: dict[str, Any], **_: Any) -> None:
        key = params.get("Key", "")
        with self._lock:
            self.keys.append(key)
        if self.on_put is not None:
            self.on_put(key)
        if key == self.fail_key:
            raise ConnectionError(f"injected failure for {key}")

    def __enter__(self) -> PutHook:
        self.s3.meta.events.register(PUT_HOOK, self)
        return self

    def __exit__(self, *_: object) -> None:
        self.s3.meta.events.unregister(PUT_HOOK, self)


def test_submit_to_5_of_8_sends_exactly_5_triggers(svc, stack, aws_factory, codes) -> None:
    targets = [codes[i] for i in (0, 2, 3, 5, 7)]
    events: list[ProgressEvent] = []
    result = svc.submit(make_change(codes), customers=targets, progress=events.append)
    assert result.ok and result.failed == [] and result.customers == targets
    cid, version = result.change.change_id, result.change.version
    found = triggers_by_customer(aws_factory, stack.config, {c: 1 for c in targets})
    for code, triggers in found.items():
        if code not in targets:
            assert triggers == [], f"{code} was not targeted but got {triggers}"
            continue
        assert len(triggers) == 1, code
        t = triggers[0]
        assert (t.customer, t.change_id, t.version, t.event) == (code, cid, version, EmailEvent.SUBMITTED)
        assert t.key == trigger_key(code, cid, version, EmailEvent.SUBMITTED)
    body = aws_factory.client("s3").get_object(
        Bucket=stack.config.s3_config.bucket_name, Key=found[targets[0]][0].key
    )
    assert json.loads(body["Body"].read()) == result.change.to_json_dict()
    records = svc.status.records(cid, version=version, event=EmailEvent.SUBMITTED)
    assert sorted(r.customer for r in records) == targets
    assert {r.state for r in records} == {DeliveryState.QUEUED}
    # Progress: every destination goes pending → uploading → done, the archive before any customer.
    for dest in [ARCHIVE, *targets]:
        seq = [e.state for e in events if e.destination == dest]
        assert seq == [DestinationState.PENDING, DestinationState.UPLOADING, DestinationState.DONE], dest
    first_customer_upload = next(
        i for i, e in enumerate(events) if e.destination != ARCHIVE and e.state is DestinationState.UPLOADING
    )
    archive_done = events.index(ProgressEvent(ARCHIVE, DestinationState.DONE))
    assert archive_done < first_customer_upload


def test_queued_record_exists_before_each_trigger_upload(svc, aws_factory, codes) -> None:
    draft = svc.save_draft(make_change(codes[:4]))
    seen: dict[str, bool] = {}

    def check(key: str) -> None:
        if key.startswith("customers/"):
            code = key.split("/")[1]
            record = svc.status.get(DeliveryKey(draft.change_id, 2, EmailEvent.SUBMITTED, code))
            seen[code] = record is not None and record.state is DeliveryState.QUEUED

    with PutHook(aws_factory.client("s3"), on_put=check):
        assert svc.submit(draft.change_id).ok
    assert seen == {c: True for c in codes[:4]}


def test_two_quick_transitions_both_arrive(svc, stack, aws_factory, codes) -> None:
    targets = codes[:3]
    cid = svc.submit(make_change(targets)).change.change_id
    svc.approve(cid)
    found = triggers_by_customer(aws_factory, stack.config, {c: 2 for c in targets})
    for code in targets:
        got = sorted((t.version, t.event.value) for t in found[code] if t.event)
        assert got == [(2, "submitted"), (3, "approved")], code
    for code in codes[3:]:
        assert found[code] == []


def test_cancel_and_complete_write_new_versions_and_triggers(svc, stack, aws_factory, codes) -> None:
    a = svc.submit(make_change(codes[:2])).change.change_id
    b = svc.submit(make_change(codes[2:4])).change.change_id
    svc.approve(b)
    cancelled = svc.cancel(a)
    completed = svc.complete(b)
    assert (cancelled.change.version, cancelled.event) == (3, EmailEvent.CANCELLED)
    assert (completed.change.version, completed.event) == (4, EmailEvent.COMPLETED)
    keys = set(bucket_keys(aws_factory, stack.config, "customers/"))
    for code in codes[:2]:
        assert trigger_key(code, a, 3, EmailEvent.CANCELLED) in keys
    for code in codes[2:4]:
        assert trigger_key(code, b, 4, EmailEvent.COMPLETED) in keys


def test_one_failed_upload_is_reported_and_retry_sends_only_it(svc, stack, aws_factory, codes) -> None:
    targets = codes[:5]
    draft = svc.save_draft(make_change(targets))
    broken = targets[2]
    bad_key = trigger_key(broken, draft.change_id, 2, EmailEvent.SUBMITTED)
    s3 = aws_factory.client("s3")
    with PutHook(s3, fail_key=bad_key):
        result = svc.submit(draft.change_id)
    assert not result.ok and result.failed == [broken]
    assert "injected failure" in result.errors[broken]
    assert result.states[ARCHIVE] is DestinationState.DONE
    assert all(result.states[c] is DestinationState.DONE for c in targets if c != broken)
    first = triggers_by_customer(aws_factory, stack.config, {c: 1 for c in targets if c != broken})
    assert first[broken] == []
    events: list[ProgressEvent] = []
    with PutHook(s3) as watch:
        retried = svc.retry(result, progress=events.append)
    assert retried.ok and retried.failed == []
    # Neither the archive nor the other customers again (only the retry's audit record besides).
    assert [k for k in watch.keys if not k.startswith("audit/")] == [bad_key]
    assert {e.destination for e in events} == {broken}
    again = triggers_by_customer(aws_factory, stack.config, {broken: 1})
    assert [len(again[c]) for c in codes] == [1 if c == broken else 0 for c in codes]
    assert result.failed == [broken]  # the earlier result is left as it was


def test_failed_archive_write_sends_nothing_and_retry_resumes(svc, stack, aws_factory, codes) -> None:
    draft = svc.save_draft(make_change(codes[:3]))
    s3 = aws_factory.client("s3")
    with PutHook(s3, fail_key=f"archive/{draft.change_id}.json"):
        result = svc.submit(draft.change_id)
    assert result.failed == [ARCHIVE]
    assert all(result.states[c] is DestinationState.PENDING for c in codes[:3])
    assert bucket_keys(aws_factory, stack.config, "customers/") == []
    assert svc.status.records(draft.change_id) == []
    assert svc.load(draft.change_id).status is ChangeStatus.DRAFT  # the draft is still there
    retried = svc.retry(result)
    assert retried.ok and svc.load(draft.change_id).status is ChangeStatus.SUBMITTED
    found = triggers_by_customer(aws_factory, stack.config, {c: 1 for c in codes[:3]})
    assert [len(found[c]) for c in codes[:3]] == [1, 1, 1]


def test_retry_after_an_archive_write_that_did_land(svc, aws_factory, codes) -> None:
    """A write reported failed but stored (e.g. a timeout on the reply) is recognised, not a conflict."""
    draft = svc.save_draft(make_change(codes[:1]))
    s3 = aws_factory.client("s3")
    archive_key = f"archive/{draft.change_id}.json"

    def fail_after(http_response: Any = None, parsed: Any = None, model: Any = None, **_: Any) -> None:
        if model is not None and model.name == "PutObject" and archive_key in str(http_response.url):
            raise ConnectionError("reply lost")

    s3.meta.events.register("after-call.s3.PutObject", fail_after)
    try:
        result = svc.submit(draft.change_id)
    finally:
        s3.meta.events.unregister("after-call.s3.PutObject", fail_after)
    assert result.failed == [ARCHIVE]
    retried = svc.retry(result)
    assert retried.ok, retried.errors


def _direct(stack: Any, doorbell: bool = False) -> Any:
    """The stack's config on sqs-direct (``doorbell``: ringing, its queues provisioned by the test)."""
    config = stack.config
    return config.model_copy(
        update={
            "transport": "sqs-direct",
            "doorbell": config.doorbell.model_copy(update={"enabled": doorbell}),
        }
    )


def test_sqs_direct_transport_embeds_or_references_the_snapshot(stack, aws_factory, codes) -> None:
    config = _direct(stack)
    svc = ChangeService(aws_factory, config, operator="alice")
    lookups: list[str] = []
    sqs = aws_factory.client("sqs")

    def count(params: dict[str, Any], **_: Any) -> None:
        lookups.append(params["QueueName"])

    hook = "provide-client-params.sqs.GetQueueUrl"
    targets = [codes[i] for i in (1, 2, 4, 6, 7)]
    sqs.meta.events.register(hook, count)
    try:
        small = svc.submit(make_change(codes), customers=targets)
        again = svc.approve(small.change.change_id)
    finally:
        sqs.meta.events.unregister(hook, count)
    assert small.ok and again.ok
    assert sorted(lookups) == sorted(config.customer(c).queue_name for c in targets)  # then cached
    found = triggers_by_customer(aws_factory, config, {c: 2 for c in targets})
    for code in codes:
        triggers = sorted(found[code], key=lambda t: t.version or 0)
        assert len(triggers) == (2 if code in targets else 0), code
        for t, result in zip(triggers, (small, again), strict=False):
            assert (t.source, t.customer, t.event) == ("direct", code, result.event)
            assert t.version == result.change.version and t.change == result.change.to_json_dict()
    assert bucket_keys(aws_factory, config, "customers/") == []
    # Over the inline limit: an S3 reference to payloads/.
    text = "€" * 20_000  # 60 KB of UTF-8 per field
    big = make_change(
        targets[:2],
        changeReason=text,
        implementationPlan=text,
        testPlan=text,
        rollbackPlan=text,
        customerImpact=text,
    )
    assert len(big.to_json().encode()) > DIRECT_INLINE_LIMIT
    large = svc.submit(big)
    assert large.ok
    for code in targets[:2]:
        [t] = receive_triggers(aws_factory, config, code, 1)
        key = payload_key(code, big.change_id, 2, EmailEvent.SUBMITTED)
        assert (t.change, t.bucket, t.key) == (None, config.s3_config.bucket_name, key)
        obj = aws_factory.client("s3").get_object(Bucket=t.bucket, Key=key)
        assert json.loads(obj["Body"].read()) == large.change.to_json_dict()
    records = svc.status.records(big.change_id)
    assert sorted(r.customer for r in records) == targets[:2]


def test_sqs_direct_failure_for_one_queue_and_retry(stack, aws_factory, codes) -> None:
    config = _direct(stack)
    svc = ChangeService(aws_factory, config, operator="alice")
    sqs = aws_factory.client("sqs")
    broken = codes[1]
    broken_url = svc.fanout.queue_url(broken)

    def fail(params: dict[str, Any], **_: Any) -> None:
        if params.get("QueueUrl") == broken_url:
            raise ConnectionError("queue unreachable")

    sqs.meta.events.register("provide-client-params.sqs.SendMessage", fail)
    try:
        result = svc.submit(make_change(codes[:3]))
    finally:
        sqs.meta.events.unregister("provide-client-params.sqs.SendMessage", fail)
    assert result.failed == [broken]
    retried = svc.retry(result)
    assert retried.ok
    found = triggers_by_customer(aws_factory, config, {c: 1 for c in codes[:3]})
    assert [len(found[c]) for c in codes[:3]] == [1, 1, 1]


def test_unknown_customer_in_a_transition_fails_that_destination_only(svc, stack, aws_factory, codes) -> None:
    cid = svc.submit(make_change(codes[:2])).change.change_id
    smaller = stack.config.model_copy(
        update={
            "customer_mappings": {k: v for k, v in stack.config.customer_mappings.items() if k != codes[1]}
        }
    )
    result = ChangeService(aws_factory, smaller, operator="alice").approve(cid)
    assert result.failed == [codes[1]] and "unknown customer" in result.errors[codes[1]]
    keys = bucket_keys(aws_factory, stack.config, f"customers/{codes[1]}/")
    assert not [k for k in keys if "approved" in k]


def test_resend_sends_the_current_event_again(svc, stack, aws_factory, codes) -> None:
    cid = svc.submit(make_change(codes[:3])).change.change_id
    triggers_by_customer(aws_factory, stack.config, {c: 1 for c in codes[:3]})
    result = svc.resend(cid, customers=[codes[1]])
    assert result.ok and result.customers == [codes[1]] and ARCHIVE not in result.states
    found = triggers_by_customer(aws_factory, stack.config, {codes[1]: 1})
    assert [len(found[c]) for c in codes[:3]] == [0, 1, 0]


def test_sqs_direct_rings_each_customers_shard_doorbell_in_batches(stack, aws_factory, codes) -> None:
    config = _direct(stack, doorbell=True).model_copy(update={"worker_shards": 2})
    Provisioner(aws_factory, config).doorbells()
    svc = ChangeService(aws_factory, config, operator="alice")
    sqs = aws_factory.client("sqs")
    batches: list[tuple[str, int]] = []

    def count(params: dict[str, Any], **_: Any) -> None:
        batches.append((params["QueueUrl"].rsplit("/", 1)[1], len(params["Entries"])))

    hook = "provide-client-params.sqs.SendMessageBatch"
    sqs.meta.events.register(hook, count)
    try:
        result = svc.submit(make_change(codes))
    finally:
        sqs.meta.events.unregister(hook, count)
    assert result.ok
    rung: dict[str, list[str]] = {}
    for k in range(2):
        url = svc.fanout.doorbell.queue_url(k)
        while msgs := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
            rung.setdefault(config.doorbell_queue(k), []).extend(rung_customer(m["Body"]) for m in msgs)
            sqs.delete_message_batch(
                QueueUrl=url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)],
            )
    want: dict[str, list[str]] = {}
    for code in codes:
        want.setdefault(config.doorbell_queue(shard_of(code, 2)), []).append(code)
    assert {q: sorted(c) for q, c in rung.items()} == {q: sorted(c) for q, c in want.items()}
    per_queue = {q: [n for name, n in batches if name == q] for q in want}
    assert all(sum(ns) == len(want[q]) and len(ns) <= 1 + len(want[q]) // 10 for q, ns in per_queue.items())
