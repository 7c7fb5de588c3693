"""The worker on the local stack (in-process, real boto3 over HTTP to moto): delivery end to end."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from changeconsole.models import (
    TOPIC_ANNOUNCE,
    TOPIC_APPROVAL,
    Config,
    DeliveryState,
    EmailEvent,
    direct_message,
)
from changeconsole.services.aws import AwsFactory
from changeconsole.services.ledger import Ledger
from changeconsole.services.lifecycle import ChangeService
from changeconsole.services.status import DeliveryKey
from changeconsole.worker.processor import Outcome, OutcomeKind, Result
from support.aws import attrs, bucket_keys, dlq_messages, queue_depth, queue_url, send_raw
from support.changes import CHANGE_ID, change_doc, make_change
from support.mail import outbox, per_recipient, subscribed
from support.waiting import stall, wait_until
from support.worker import archive, final, put_trigger, record, records, running_worker, submit


def _error_response(status: int, code: str) -> tuple[AWSResponse, dict[str, Any]]:
    http = AWSResponse("https://injected.invalid/", status, {}, None)
    parsed = {
        "Error": {"Code": code, "Message": f"injected {code}"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return http, parsed


def test_submit_reaches_exactly_the_subscribed_recipients_of_the_targeted_customers(
    make_stack: Any, aws_factory: AwsFactory, moto_endpoint: str
) -> None:
    stack = make_stack(customers=6, contacts=5)
    config = stack.config
    codes = sorted(config.customer_mappings)
    targeted, others = codes[:4], codes[4:]
    doc = change_doc(targeted)
    with running_worker(aws_factory, config) as worker:
        submit(aws_factory, config, doc)
        wait_until(lambda: final(aws_factory, config, targeted), 30, what="all targeted final")
        wait_until(lambda: worker.stats["results"].get("sent", 0) >= len(targeted), 10)
        stats = worker.stats
    expected = {
        (addr.lower(), CHANGE_ID, 2, "submitted", code)
        for code in targeted
        for addr in subscribed(code, 5, TOPIC_APPROVAL)
    }
    mails = outbox(moto_endpoint, CHANGE_ID)
    counts = per_recipient(mails)
    assert set(counts) == expected
    assert all(n == 1 for n in counts.values())
    assert not any(m.customer in others for m in mails)
    for m in mails:
        assert m.text.strip() and m.html.strip(), "both parts"
        name = config.customer(m.customer or "").customer_name
        assert m.subject == f"Approval requested: Patch the web fleet [{CHANGE_ID}] — {name}"
        assert m.headers["X-Changeconsole-Customer"] == m.customer
        assert m.to[0].endswith(f"@{m.customer}.example.com")
        assert "List-Unsubscribe" in m.headers
        assert 'id="changeconsole-meta"' in m.html and f'data-customer="{m.customer}"' in m.html
    recs = records(aws_factory, config)
    for code in targeted:
        r = recs[(2, "submitted", code)]
        assert r.state is DeliveryState.SENT
        assert r.recipients_total == r.recipients_sent == len(subscribed(code, 5, TOPIC_APPROVAL))
        assert len(r.message_ids) == r.recipients_sent and r.worker_id == worker.worker_id
    assert not any(k[2] in others for k in recs)
    assert bucket_keys(aws_factory, config, "customers/") == [], "triggers deleted"
    assert all(queue_depth(aws_factory, config, c) == 0 for c in targeted)
    assert stats["emails_sent"] == len(expected), stats
    assert stats["dead_lettered"] == 0
    # Audit: one email.sent event per email, as JSON lines under audit/.
    audit_keys = wait_until(lambda: bucket_keys(aws_factory, config, "audit/"), 10, what="audit objects")
    lines = []
    for key in audit_keys:
        body = (
            aws_factory.client("s3").get_object(Bucket=config.s3_config.bucket_name, Key=key)["Body"].read()
        )
        lines += [json.loads(line) for line in body.decode().splitlines()]
    sent = [e for e in lines if e["type"] == "email.sent"]
    assert len(sent) == len(expected)
    assert all(e["customer"] and e["change_id"] == CHANGE_ID and e["message_id"] and e["ts"] for e in sent)


def test_duplicate_events_and_redelivered_messages_do_not_resend(
    make_stack: Any, aws_factory: AwsFactory, moto_endpoint: str
) -> None:
    stack = make_stack(customers=2, contacts=5)
    config = stack.config
    code = sorted(config.customer_mappings)[0]
    doc = change_doc([code])
    put_trigger(aws_factory, config, doc, code)
    sqs = aws_factory.client("sqs")
    url = queue_url(aws_factory, config, code)
    held: list[dict[str, Any]] = []

    def s3_event() -> str | None:
        held.extend(sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []))
        return next((m["Body"] for m in held if '"Records"' in m["Body"]), None)

    body = wait_until(s3_event, 5, what="the S3 event")
    for m in held:
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
    for _ in range(3):  # the same S3 event delivered four times in all
        sqs.send_message(QueueUrl=url, MessageBody=body)
    with running_worker(aws_factory, config) as worker:
        wait_until(lambda: final(aws_factory, config, [code]), 30)
        wait_until(lambda: worker.stats["duplicates"] >= 3, 30, what="every copy handled")
        # The same trigger written again (a retried fan-out): a new S3 event, a settled delivery.
        put_trigger(aws_factory, config, doc, code)
        wait_until(lambda: worker.stats["duplicates"] >= 4, 30, what="re-uploaded trigger handled")
        wait_until(lambda: queue_depth(aws_factory, config, code) == 0, 10)
        stats = worker.stats
    counts = per_recipient(outbox(moto_endpoint, CHANGE_ID))
    assert len(counts) == len(subscribed(code, 5, TOPIC_APPROVAL))
    assert set(counts.values()) == {1}
    assert stats["duplicates"] >= 4
    assert record(aws_factory, config, code).state is DeliveryState.SENT  # type: ignore[union-attr]
    assert bucket_keys(aws_factory, config, "customers/") == []


def test_an_event_older_than_one_already_sent_is_superseded(
    make_stack: Any, aws_factory: AwsFactory, moto_endpoint: str
) -> None:
    stack = make_stack(customers=2, contacts=5)
    config = stack.config
    code = sorted(config.customer_mappings)[0]
    approved = change_doc([code], version=3, status="approved")
    submitted = change_doc([code], version=2, status="submitted")
    with running_worker(aws_factory, config):
        put_trigger(aws_factory, config, approved, code)
        wait_until(lambda: final(aws_factory, config, [code], 3, "approved"), 30)
        put_trigger(aws_factory, config, submitted, code)
        wait_until(lambda: final(aws_factory, config, [code], 2, "submitted"), 30)
    old = record(aws_factory, config, code, 2, "submitted")
    assert old is not None and old.state is DeliveryState.SUPERSEDED
    assert "version 3" in (old.last_error or "")
    mails = outbox(moto_endpoint, CHANGE_ID)
    assert {m.event for m in mails} == {"approved"}
    assert len(mails) == len(subscribed(code, 5, TOPIC_ANNOUNCE))
    assert bucket_keys(aws_factory, config, "customers/") == []


def test_poison_messages_go_to_the_customers_dlq_with_a_reason(
    make_stack: Any, aws_factory: AwsFactory, moto_endpoint: str
) -> None:
    stack = make_stack(customers=3, contacts=5)
    config = stack.config
    a, b, c = sorted(config.customer_mappings)
    # 1. not JSON
    send_raw(aws_factory, config, a, "{not json")
    # 2. a direct trigger in a's queue that names b
    other = change_doc([b])
    send_raw(aws_factory, config, a, direct_message(b, CHANGE_ID, 2, EmailEvent.SUBMITTED, change=other))
    # 3. a trigger under a's prefix whose change does not target a
    put_trigger(aws_factory, config, change_doc([b], change_id="CHG-2026-03-01T10-00-00-bbbbbb"), a)
    # 4. an invalid change (no title) for c
    bad = change_doc([c], change_id="CHG-2026-03-01T10-00-00-cccccc")
    del bad["changeTitle"]
    put_trigger(aws_factory, config, bad, c)
    # 5. S3's test event needs no delivery
    send_raw(aws_factory, config, c, json.dumps({"Event": "s3:TestEvent", "Bucket": "x"}))
    with running_worker(aws_factory, config) as worker:
        wait_until(lambda: worker.stats["dead_lettered"] >= 4 and worker.stats["ignored"] >= 1, 30)
        wait_until(lambda: queue_depth(aws_factory, config, a) + queue_depth(aws_factory, config, c) == 0, 10)
    dead_a = [attrs(m) for m in dlq_messages(aws_factory, config, a)]
    dead_c = [attrs(m) for m in dlq_messages(aws_factory, config, c)]
    assert sorted(x["cc-reason"] for x in dead_a) == [
        "isolation_violation",
        "isolation_violation",
        "malformed_message",
    ]
    assert [x["cc-reason"] for x in dead_c] == ["invalid_change"]
    for x in dead_a + dead_c:
        for name in ("cc-detail", "cc-customer", "cc-failed-at", "cc-source-message-id", "cc-worker"):
            assert x.get(name), name
        assert x["cc-receive-count"] == "1"
    assert {x["cc-customer"] for x in dead_a} == {a}
    invalid = dead_c[0]
    assert invalid["cc-change-id"] == "CHG-2026-03-01T10-00-00-cccccc" and invalid["cc-event"] == "submitted"
    rec = record(aws_factory, config, c, change_id="CHG-2026-03-01T10-00-00-cccccc")
    assert rec is not None and rec.state is DeliveryState.DEAD_LETTERED
    assert (rec.last_error or "").startswith("invalid_change")
    # The body is kept as it was, for redrive.
    raw = dlq_messages(aws_factory, config, a)
    assert "{not json" in [m["Body"] for m in raw]
    assert outbox(moto_endpoint, change_id=CHANGE_ID) == []
    assert not records(aws_factory, config, CHANGE_ID), "an isolation violation writes no record of b"


def test_a_customer_whose_role_cannot_be_assumed_fails_alone(
    make_stack: Any, aws_factory: AwsFactory, moto_endpoint: str
) -> None:
    stack = make_stack(customers=3, contacts=5)
    config = stack.config
    codes = sorted(config.customer_mappings)
    broken = codes[1]
    broken_arn = config.customer(broken).ses_role_arn

    def deny(params: dict[str, Any], **_: Any) -> Any:
        body = params.get("body")
        if isinstance(body, dict) and body.get("RoleArn") == broken_arn:
            return _error_response(403, "AccessDenied")
        return None

    aws_factory.forget_customer(broken)
    aws_factory.client("sts").meta.events.register("before-call.sts.AssumeRole", deny)
    doc = change_doc(codes)
    with running_worker(aws_factory, config):
        submit(aws_factory, config, doc)
        wait_until(lambda: final(aws_factory, config, codes), 30)
    recs = records(aws_factory, config)
    assert recs[(2, "submitted", broken)].state is DeliveryState.DEAD_LETTERED
    assert (recs[(2, "submitted", broken)].last_error or "").startswith("role_unavailable")
    for code in codes:
        if code != broken:
            assert recs[(2, "submitted", code)].state is DeliveryState.SENT
    dead = [attrs(m) for m in dlq_messages(aws_factory, config, broken)]
    assert [d["cc-reason"] for d in dead] == ["role_unavailable"]
    assert "AccessDenied" in dead[0]["cc-detail"]
    assert {m.customer for m in outbox(moto_endpoint, CHANGE_ID)} == set(codes) - {broken}
    # The trigger stays for a redrive once the role is fixed.
    assert bucket_keys(aws_factory, config, f"customers/{broken}/")


def test_ses_throttling_backs_off_that_customer_only_and_sends_once(
    make_stack: Any, aws_factory: AwsFactory, moto_endpoint: str
) -> None:
    stack = make_stack(customers=3, contacts=5)
    config = stack.config
    codes = sorted(config.customer_mappings)
    slow = codes[0]
    throttled = {"left": 2}
    lock = threading.Lock()

    def throttle(**_: Any) -> Any:
        with lock:
            if throttled["left"] > 0:
                throttled["left"] -= 1
                return _error_response(429, "TooManyRequestsException")
        return None

    ses = aws_factory.customer_send_client(config.customer(slow))
    ses.meta.events.register("before-call.sesv2.SendEmail", throttle)
    doc = change_doc(codes)
    started = time.monotonic()
    with running_worker(aws_factory, config, send_parallelism=1) as worker:
        submit(aws_factory, config, doc)
        wait_until(lambda: final(aws_factory, config, codes[1:]), 30)
        others_done = time.monotonic() - started
        wait_until(lambda: final(aws_factory, config, [slow]), 30)
        stats = worker.stats
    recs = records(aws_factory, config)
    assert all(recs[(2, "submitted", c)].state is DeliveryState.SENT for c in codes)
    assert recs[(2, "submitted", slow)].attempts >= 2
    assert all(recs[(2, "submitted", c)].attempts == 1 for c in codes[1:])
    assert stats["retried"] >= 1
    assert others_done < 10
    counts = per_recipient(outbox(moto_endpoint, CHANGE_ID))
    assert set(counts.values()) == {1}
    assert len(counts) == sum(len(subscribed(c, 5, TOPIC_APPROVAL)) for c in codes)


def test_persistent_transient_failure_is_dead_lettered_with_a_truthful_record(
    make_stack: Any, aws_factory: AwsFactory, moto_endpoint: str
) -> None:
    stack = make_stack(customers=2, contacts=5)
    config = stack.config
    code = sorted(config.customer_mappings)[0]
    ses = aws_factory.customer_send_client(config.customer(code))
    ses.meta.events.register(
        "before-call.sesv2.SendEmail", lambda **_: _error_response(503, "ServiceUnavailable")
    )
    with running_worker(aws_factory, config):
        submit(aws_factory, config, change_doc([code]))
        wait_until(lambda: final(aws_factory, config, [code]), 40)
    rec = record(aws_factory, config, code)
    assert rec is not None and rec.state is DeliveryState.DEAD_LETTERED
    assert rec.attempts == config.max_receive_count
    assert "retries_exhausted" in (rec.last_error or "") and "ServiceUnavailable" in (rec.last_error or "")
    dead = [attrs(m) for m in dlq_messages(aws_factory, config, code)]
    assert [d["cc-reason"] for d in dead] == ["retries_exhausted"]
    assert dead[0]["cc-receive-count"] == str(config.max_receive_count)
    assert outbox(moto_endpoint, CHANGE_ID) == []
    # Nothing was sent and every recipient may be retried after a redrive.
    key = DeliveryKey(CHANGE_ID, 2, EmailEvent.SUBMITTED, code)
    states = {r.state for r in Ledger(aws_factory, config).recipients(key).values()}
    assert states <= {"retry"}


def test_a_long_delivery_keeps_its_message_invisible(
    make_stack: Any, aws_factory: AwsFactory, moto_endpoint: str
) -> None:
    stack = make_stack(customers=1, contacts=10)
    config = stack.config
    code = sorted(config.customer_mappings)[0]
    ses = aws_factory.customer_send_client(config.customer(code))

    ses.meta.events.register("before-call.sesv2.SendEmail", stall(0.8))
    expected = subscribed(code, 10, TOPIC_APPROVAL)
    assert len(expected) * 0.8 > 3  # longer than the visibility timeout below
    with running_worker(
        aws_factory, config, visibility_timeout=2, claim_lease=2.0, send_parallelism=1
    ) as worker:
        submit(aws_factory, config, change_doc([code]))
        wait_until(lambda: final(aws_factory, config, [code]), 40)
        stats = worker.stats
    assert stats["received"] - stats["ignored"] == 1, "never redelivered while being worked on"
    rec = record(aws_factory, config, code)
    assert rec is not None and rec.state is DeliveryState.SENT and rec.attempts == 1
    assert len(per_recipient(outbox(moto_endpoint, CHANGE_ID))) == len(expected)


def test_restricted_recipients_whitelist_is_case_insensitive_and_fail_closed(
    make_stack: Any, aws_factory: AwsFactory, moto_endpoint: str
) -> None:
    stack = make_stack(customers=2, contacts=5)
    raw = stack.config.to_json_dict()
    a, b = sorted(raw["customer_mappings"])
    allowed = sorted(subscribed(a, 5, TOPIC_APPROVAL))[0]
    raw["customer_mappings"][a]["restricted_recipients"] = [allowed.upper(), "stranger@elsewhere.example.com"]
    # b's whitelist names nobody subscribed: nobody gets anything.
    raw["customer_mappings"][b]["restricted_recipients"] = ["nobody@elsewhere.example.com"]
    config = Config.model_validate(raw)
    with running_worker(aws_factory, config):
        submit(aws_factory, config, change_doc([a, b]))
        wait_until(lambda: final(aws_factory, config, [a, b]), 30)
    mails = outbox(moto_endpoint, CHANGE_ID)
    assert [m.to for m in mails] == [[allowed]]
    assert record(aws_factory, config, a).state is DeliveryState.SENT  # type: ignore[union-attr]
    rec_b = record(aws_factory, config, b)
    assert rec_b is not None and rec_b.state is DeliveryState.SKIPPED and rec_b.recipients_total == 0


def test_user_text_arrives_escaped_in_html(
    make_stack: Any, aws_factory: AwsFactory, moto_endpoint: str
) -> None:
    stack = make_stack(customers=1, contacts=5)
    config = stack.config
    code = sorted(config.customer_mappings)[0]
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    fields = {
        name: f"{name} {evil}"
        for name in ("changeReason", "implementationPlan", "testPlan", "customerImpact", "rollbackPlan")
    }
    doc = change_doc(
        [code],
        title=f"Title {evil}",
        snowTicket="<b>SNOW</b>",
        jiraTicket="<i>JIRA</i>",
        submittedBy="<script>op</script>",
        **fields,
    )
    with running_worker(aws_factory, config):
        submit(aws_factory, config, doc)
        wait_until(lambda: final(aws_factory, config, [code]), 30)
    mails = outbox(moto_endpoint, CHANGE_ID)
    assert mails
    for m in mails:
        assert "<script" not in m.html and "<img" not in m.html and "<b>SNOW" not in m.html
        assert m.html.count("&lt;script&gt;") >= 7
        assert "&lt;b&gt;SNOW&lt;/b&gt;" in m.html
        assert m.subject.startswith(f"Approval requested: Title {evil} [{CHANGE_ID}] — ")
        assert evil in m.text  # plain text stays as written


def test_calendar_invites_keep_one_uid_with_rising_sequence_and_cancel(
    make_stack: Any, aws_factory: AwsFactory, moto_endpoint: str
) -> None:
    stack = make_stack(customers=1, contacts=5)
    config = stack.config
    code = sorted(config.customer_mappings)[0]
    steps = [
        change_doc([code], version=3, status="approved", include_meeting=True),
        change_doc([code], version=5, status="approved", include_meeting=True),
        change_doc([code], version=6, status="cancelled", include_meeting=True, approved=True),
    ]
    with running_worker(aws_factory, config):
        for doc in steps:
            put_trigger(aws_factory, config, doc, code)
            wait_until(lambda doc=doc: final(aws_factory, config, [code], doc["version"], doc["status"]), 30)
    invites = []
    for m in outbox(moto_endpoint, CHANGE_ID):
        assert m.attachments in ([], ["invite.ics"])
        if not m.attachments:
            continue
        ics = m.raw.split("BEGIN:VCALENDAR", 1)[1]
        invites.append((m.version, m.to[0], ics))
    assert invites
    uids = {line for _, _, ics in invites for line in ics.splitlines() if line.startswith("UID:")}
    assert uids == {f"UID:{CHANGE_ID}@changeconsole"}
    by_version: dict[int | None, set[str]] = {}
    for version, _to, ics in invites:
        seq = next(line for line in ics.splitlines() if line.startswith("SEQUENCE:"))
        method = next(line for line in ics.splitlines() if line.startswith("METHOD:"))
        assert seq == f"SEQUENCE:{version}"
        by_version.setdefault(version, set()).add(method)
    assert by_version == {3: {"METHOD:REQUEST"}, 5: {"METHOD:REQUEST"}, 6: {"METHOD:CANCEL"}}
    # Only contacts subscribed to aws-calendar get the calendar part.
    calendar = subscribed(code, 5, "aws-calendar")
    assert {to for _, to, _ in invites} == calendar


def test_a_cancellation_never_approved_has_no_invite_and_goes_to_approval_subscribers(
    make_stack: Any, aws_factory: AwsFactory, moto_endpoint: str
) -> None:
    stack = make_stack(customers=1, contacts=5)
    config = stack.config
    code = sorted(config.customer_mappings)[0]
    with running_worker(aws_factory, config):
        for doc in (
            change_doc([code], version=2, status="submitted", include_meeting=True),
            change_doc([code], version=3, status="cancelled", include_meeting=True),
        ):
            put_trigger(aws_factory, config, doc, code)
            wait_until(lambda doc=doc: final(aws_factory, config, [code], doc["version"], doc["status"]), 30)
    mails = [m for m in outbox(moto_endpoint, CHANGE_ID) if m.event == "cancelled"]
    assert {m.to[0] for m in mails} == subscribed(code, 5, TOPIC_APPROVAL)
    assert all(m.attachments == [] for m in mails)
    assert all(m.subject.startswith("Cancelled: ") for m in mails)


def test_direct_transport_messages_are_delivered(
    make_stack: Any, aws_factory: AwsFactory, moto_endpoint: str
) -> None:
    stack = make_stack(customers=1, contacts=5)
    config = stack.config
    code = sorted(config.customer_mappings)[0]
    doc = change_doc([code])
    archive(aws_factory, config, doc)
    with running_worker(aws_factory, config):
        send_raw(
            aws_factory, config, code, direct_message(code, CHANGE_ID, 2, EmailEvent.SUBMITTED, change=doc)
        )
        wait_until(
            lambda: record(aws_factory, config, code) is not None and final(aws_factory, config, [code]), 30
        )
    assert record(aws_factory, config, code).state is DeliveryState.SENT  # type: ignore[union-attr]
    assert len(outbox(moto_endpoint, CHANGE_ID)) == len(subscribed(code, 5, TOPIC_APPROVAL))


@pytest.mark.parametrize("flood", [40])
def test_a_flood_for_one_customer_does_not_starve_the_others(
    make_stack: Any, aws_factory: AwsFactory, moto_endpoint: str, flood: int
) -> None:
    stack = make_stack(customers=4, contacts=1)
    config = stack.config
    codes = sorted(config.customer_mappings)
    busy, quiet = codes[0], codes[1:]
    ses = aws_factory.customer_send_client(config.customer(busy))
    ses.meta.events.register("before-call.sesv2.SendEmail", stall(0.2))
    for i in range(flood):
        doc = change_doc([busy], change_id=f"CHG-2026-03-01T10-00-00-f{i:05d}")
        put_trigger(aws_factory, config, doc, busy)
    with running_worker(aws_factory, config, concurrency=4, send_parallelism=1) as worker:
        wait_until(lambda: worker.stats["busy"] > 0, 10)
        submit(aws_factory, config, change_doc(quiet))
        wait_until(lambda: final(aws_factory, config, quiet), 30)
        busy_left = flood - worker.stats["processed"]
    # Ordering, not timing: the quiet customers were done while the flood still had work left.
    assert busy_left > 0, "the quiet customers waited for the flood to drain"


def test_a_message_claimed_elsewhere_on_its_last_receive_is_requeued_not_dead_lettered(
    make_stack: Any, aws_factory: AwsFactory, moto_endpoint: str
) -> None:
    stack = make_stack(customers=1, contacts=5)
    config = stack.config
    code = sorted(config.customer_mappings)[0]
    key = DeliveryKey(CHANGE_ID, 2, EmailEvent.SUBMITTED, code)
    other = Ledger(aws_factory, config, claim_lease=600)
    assert other.claim(key, "another-worker").acquired
    put_trigger(aws_factory, config, change_doc([code]), code)
    sqs = aws_factory.client("sqs")
    url = queue_url(aws_factory, config, code)
    for _ in range(config.max_receive_count - 1):  # use up all receives but the last
        msgs = wait_until(
            lambda: sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"), 5
        )
        for msg in msgs:
            sqs.change_message_visibility(
                QueueUrl=url, ReceiptHandle=msg["ReceiptHandle"], VisibilityTimeout=0
            )
    with running_worker(aws_factory, config) as worker:
        wait_until(lambda: worker.stats["results"].get("busy", 0) >= 1, 20, what="claimed elsewhere")
        other.finish_claim(key, "another-worker", done=True)  # the other worker finishes the delivery
        wait_until(lambda: worker.stats["duplicates"] >= 1, 30, what="the requeued copy settled")
        wait_until(lambda: queue_depth(aws_factory, config, code) == 0, 10)
    assert dlq_messages(aws_factory, config, code) == []
    assert outbox(moto_endpoint, CHANGE_ID) == []


def test_a_full_backlog_leaves_messages_in_sqs_and_no_customer_waits_behind_it(
    make_stack: Any, aws_factory: AwsFactory
) -> None:
    stack = make_stack(customers=8, contacts=1)
    config = stack.config
    codes = sorted(config.customer_mappings)
    per_queue = 5
    sqs = aws_factory.client("sqs")
    for code in codes:  # the notification set-up's s3:TestEvent
        sqs.purge_queue(QueueUrl=queue_url(aws_factory, config, code))
    gate = threading.Event()
    seen: list[str] = []

    def blocked(m: Any) -> Outcome:
        seen.append(m.message_id)
        gate.wait(60)
        return Outcome(OutcomeKind.DELETE, Result.IGNORED)

    with running_worker(aws_factory, config, concurrency=1, max_waiting=2) as handle:
        worker = handle.worker
        worker.processor.process = blocked  # type: ignore[method-assign]
        for code in codes:
            for i in range(per_queue):
                send_raw(aws_factory, config, code, json.dumps({"Event": "s3:TestEvent", "n": i}))
        # Every customer gets a message (none waits behind another's backlog), then polling pauses.
        wait_until(
            lambda: (
                worker.scheduler.waiting >= worker.options.backlog_cap
                and all(worker.scheduler.active(c) > 0 for c in codes)
                and worker._in_receive == 0
            ),
            30,
            what="backlog full with every customer holding one",
        )
        held = worker.stats()["received"]
        assert held <= worker.options.backlog_cap + 2 * len(codes) < per_queue * len(codes), held
        visible = sum(
            int(
                sqs.get_queue_attributes(
                    QueueUrl=queue_url(aws_factory, config, c), AttributeNames=["ApproximateNumberOfMessages"]
                )["Attributes"]["ApproximateNumberOfMessages"]
            )
            for c in codes
        )
        assert visible == per_queue * len(codes) - held  # the rest stays in SQS, visible to other replicas
        gate.set()
        wait_until(lambda: worker.stats()["deleted"] == per_queue * len(codes), 60, what="all processed")
        assert worker.stats()["received"] == per_queue * len(codes)  # nothing came back twice
    assert len(seen) == len(set(seen)) == per_queue * len(codes)


def test_an_approved_change_edited_then_cancelled_updates_and_cancels_its_invite(
    make_stack: Any, aws_factory: AwsFactory, moto_endpoint: str
) -> None:
    """Issue 16: the resubmission says it replaces the approved version and what changed, and the
    calendar invite its approval sent is cancelled (same UID, higher SEQUENCE) to the calendar
    subscribers; re-approval sends the updated invite; the cancellation its reason and a CANCEL."""
    stack = make_stack(customers=1, contacts=5)
    config = stack.config
    code = sorted(config.customer_mappings)[0]
    svc = ChangeService(aws_factory, config, operator="alice")
    draft = svc.save_draft(make_change([code], include_meeting=True))
    cid = draft.change_id

    def step(run: Any, version: int, event: str) -> None:
        run()
        wait_until(lambda: final(aws_factory, config, [code], version, event, cid), 30, what=f"v{version}")

    with running_worker(aws_factory, config):
        step(lambda: svc.submit(cid), 2, "submitted")
        step(lambda: svc.approve(cid), 3, "approved")
        edited = svc.load(cid).model_copy(update={"implementation_plan": "1. drain\n2. patch twice"})
        step(lambda: svc.edit(edited.model_copy(update={"implementation_start": "2030-03-02T22:00:00Z",
                                                        "implementation_end": "2030-03-03T02:00:00Z"})),
             4, "submitted")  # fmt: skip
        step(lambda: svc.approve(cid), 5, "approved")
        step(lambda: svc.cancel(cid, reason="Vendor postponed the firmware"), 6, "cancelled")
    mails = outbox(moto_endpoint, cid)
    calendar = subscribed(code, 5, "aws-calendar")
    revised = [m for m in mails if m.version == 4]
    assert revised and all(m.subject.startswith("Approval requested (revised): ") for m in revised)
    for m in revised:
        text = " ".join(m.text.split())
        assert "it replaces version 3" in text and "That approval no longer stands" in text
        assert "What changed: Implementation window, Implementation plan." in text, text
    methods: dict[int | None, set[str]] = {}
    for m in mails:
        if "BEGIN:VCALENDAR" not in m.raw:
            continue
        ics = m.raw.split("BEGIN:VCALENDAR", 1)[1]
        assert f"UID:{cid}@changeconsole" in ics and f"SEQUENCE:{m.version}" in ics
        assert m.to[0].lower() in calendar
        methods.setdefault(m.version, set()).add(next(x for x in ics.splitlines() if x.startswith("METHOD:")))
    assert methods == {
        3: {"METHOD:REQUEST"},
        4: {"METHOD:CANCEL"},
        5: {"METHOD:REQUEST"},
        6: {"METHOD:CANCEL"},
    }
    assert {m.to[0].lower() for m in revised if "BEGIN:VCALENDAR" in m.raw} == calendar
    cancelled = [m for m in mails if m.version == 6]
    assert cancelled and all("Reason: Vendor postponed the firmware" in m.text for m in cancelled)
