"""Poison messages and isolation attacks against a running worker: never sent, each dead-lettered at once
with a typed reason (DLQ ``cc-reason``), and the legitimate traffic next to them still delivered."""

from __future__ import annotations

import json
from typing import Any

import pytest

from changeconsole.models import (
    TOPIC_APPROVAL,
    Change,
    DeliveryState,
    EmailEvent,
    direct_message,
    new_change_id,
    trigger_key,
)
from changeconsole.services.aws import AwsFactory
from changeconsole.services.lifecycle import ChangeService
from changeconsole.services.status import StatusStore
from changeconsole.worker import WorkerOptions, start_background
from support.changes import END, START
from support.mail import email_keys, outbox, subscribed
from support.waiting import wait_until

CONTACTS = 5


def _doc(customers: list[str], title: str = "Isolation probe", **extra: Any) -> dict[str, Any]:
    doc = Change.model_validate(
        {
            "changeId": new_change_id(),
            "changeTitle": title,
            "customers": customers,
            "implementationStart": START,
            "implementationEnd": END,
            "status": "submitted",
            "version": 2,
        }
    ).to_json_dict()
    doc.update(extra)
    return doc


def _s3_event(bucket: str, key: str) -> str:
    return json.dumps(
        {
            "Records": [
                {
                    "eventVersion": "2.1",
                    "eventSource": "aws:s3",
                    "eventName": "ObjectCreated:Put",
                    "s3": {"bucket": {"name": bucket}, "object": {"key": key, "size": 10}},
                }
            ]
        }
    )


@pytest.mark.timeout(240)
def test_poison_and_isolation_attacks_are_dead_lettered_with_a_reason_and_never_sent(
    make_stack: Any, aws_factory: AwsFactory, moto_endpoint: str
) -> None:
    stack = make_stack(customers=3, contacts=CONTACTS)
    config = stack.config
    a, b, c = sorted(config.customer_mappings)
    bucket = config.s3_config.bucket_name
    s3 = aws_factory.client("s3")
    sqs = aws_factory.client("sqs")

    def url(code: str, dlq: bool = False) -> str:
        m = config.customer(code)
        return str(sqs.get_queue_url(QueueName=m.dlq_name if dlq else m.queue_name)["QueueUrl"])

    attacks: dict[str, tuple[str, str]] = {}  # label → (change id or "", expected cc-reason)

    def archived(doc: dict[str, Any]) -> dict[str, Any]:
        """The archive record the worker decides from (a trigger's own snapshot is never used)."""
        s3.put_object(Bucket=bucket, Key=f"archive/{doc['changeId']}.json", Body=json.dumps(doc).encode())
        return doc

    # 1. A trigger for customer A placed under B's prefix (the S3 event lands in B's queue).
    doc = archived(_doc([a]))
    s3.put_object(
        Bucket=bucket,
        Key=trigger_key(b, doc["changeId"], 2, EmailEvent.SUBMITTED),
        Body=json.dumps(doc).encode(),
    )
    attacks["A's change under B's prefix"] = (doc["changeId"], "isolation_violation")
    # 2. A direct message in B's queue whose change does not list B.
    doc = archived(_doc([a, c]))
    sqs.send_message(
        QueueUrl=url(b), MessageBody=direct_message(b, doc["changeId"], 2, EmailEvent.SUBMITTED, change=doc)
    )
    attacks["change not listing the queue's customer"] = (doc["changeId"], "isolation_violation")
    # 3. A direct message in B's queue naming customer A.
    doc = _doc([a, b])
    sqs.send_message(
        QueueUrl=url(b), MessageBody=direct_message(a, doc["changeId"], 2, EmailEvent.SUBMITTED, change=doc)
    )
    attacks["direct message naming another customer"] = (doc["changeId"], "isolation_violation")
    # 4. An S3 event from another bucket.
    doc = _doc([b])
    sqs.send_message(
        QueueUrl=url(b),
        MessageBody=_s3_event("attacker-bucket", trigger_key(b, doc["changeId"], 2, EmailEvent.SUBMITTED)),
    )
    attacks["event from a foreign bucket"] = (doc["changeId"], "isolation_violation")
    # 5. A direct S3 reference outside payloads/B/ (another customer's payload).
    doc = _doc([a, b])
    sqs.send_message(
        QueueUrl=url(b),
        MessageBody=direct_message(
            b,
            doc["changeId"],
            2,
            EmailEvent.SUBMITTED,
            bucket=bucket,
            key=f"payloads/{a}/{doc['changeId']}/v0002-submitted.json",
        ),
    )
    attacks["payload reference into A's prefix"] = (doc["changeId"], "isolation_violation")
    # Poison: not JSON, not an object, neither shape, a bad key, an invalid change in the archive (dates,
    # size, HTML is fine but an oversized title is not), a key with path traversal.
    poison = {
        "not JSON": ("{not json", "malformed_message"),
        "JSON array": ("[1, 2, 3]", "malformed_message"),
        "unknown shape": (json.dumps({"hello": "world"}), "malformed_message"),
        "bad trigger key": (_s3_event(bucket, f"customers/{b}/../{a}/x.json"), "invalid_trigger_key"),
    }
    bad_dates = archived(_doc([b], implementationEnd="2020-01-01T00:00:00Z"))
    poison["end before start"] = (
        direct_message(b, bad_dates["changeId"], 2, EmailEvent.SUBMITTED, change=bad_dates),
        "invalid_change",
    )
    huge = archived(_doc([b], changeTitle="<b>x</b>" * 5000))
    poison["oversized title"] = (
        direct_message(b, huge["changeId"], 2, EmailEvent.SUBMITTED, change=huge),
        "invalid_change",
    )
    for label, (body, reason) in poison.items():
        sqs.send_message(QueueUrl=url(b), MessageBody=body)
        cid = json.loads(body).get("changeId", "") if body.startswith('{"kind"') else ""
        attacks[label] = (cid, reason)

    # Legitimate traffic alongside: one change to all three customers.
    service = ChangeService(aws_factory, config, operator="reliability")
    good = service.submit(
        Change.model_validate(
            {
                "changeTitle": "Legit",
                "customers": [a, b, c],
                "implementationStart": START,
                "implementationEnd": END,
            }
        )
    )
    assert good.ok
    status = StatusStore(aws_factory, config)

    def dlq() -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while batch := sqs.receive_message(
            QueueUrl=url(b, dlq=True),
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
            VisibilityTimeout=60,
        ).get("Messages", []):
            out += batch
        for m in out:
            sqs.change_message_visibility(
                QueueUrl=url(b, dlq=True), ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
            )
        return out

    options = WorkerOptions(
        poll_wait=1, visibility_timeout=10, backoff_base=0.5, health_port=0, emit_emf=False
    )
    handle = start_background(aws_factory, config, options=options)
    try:
        wait_until(
            lambda: (
                all(r.state is DeliveryState.SENT for r in status.records(good.change.change_id))
                and len(status.records(good.change.change_id)) == 3
            ),
            timeout=60,
            what="the legitimate change sent",
        )
        dead = wait_until(
            lambda: (lambda d: d if len(d) >= len(attacks) else None)(dlq()), 60, "every attack dead-lettered"
        )
    finally:
        handle.stop(timeout=10)

    reasons = sorted(m["MessageAttributes"]["cc-reason"]["StringValue"] for m in dead)
    assert reasons == sorted(r for _, r in attacks.values()), reasons
    for m in dead:
        attrs = {k: v.get("StringValue") for k, v in m["MessageAttributes"].items()}
        assert attrs.get("cc-customer") in (b, None, ""), attrs
        assert attrs.get("cc-detail"), attrs  # a one-line reason for the operator
    # Never sent: the only emails are the legitimate change's, each subscribed recipient once.
    counts = email_keys(outbox(moto_endpoint))
    assert all(n == 1 for n in counts.values())
    assert {cid for (cid, *_rest) in counts} == {good.change.change_id}
    for code in (a, b, c):
        got = {to for (_cid, _v, _e, cu, to) in counts if cu == code}
        assert got == subscribed(code, CONTACTS, TOPIC_APPROVAL)
    # Nothing is left in the queues of A and C's DLQ.
    for code in (a, c):
        assert not sqs.receive_message(QueueUrl=url(code, dlq=True)).get("Messages")
