"""Shared helpers of the DLQ tests (no tests here): put dead-lettered messages on a DLQ, read queues."""

from __future__ import annotations

import json
from typing import Any

from changeconsole.models import Config, EmailEvent, direct_message
from changeconsole.services.aws import AwsFactory

CHANGE_ID = "CHG-2026-01-31T22-00-00-abc123"


def dead_letter_attributes(code: str, *, reason: str = "role_assume_failed", n: int = 0) -> dict[str, Any]:
    """The ten String attributes the worker sets when it dead-letters (docs/architecture.md)."""
    values = {
        "cc-reason": reason,
        "cc-detail": f"AccessDenied assuming the SES role of {code} (#{n})",
        "cc-customer": code,
        "cc-change-id": CHANGE_ID,
        "cc-version": "2",
        "cc-event": "approved",
        "cc-failed-at": "2026-02-01T10:00:00Z",
        "cc-source-message-id": f"src-{n}",
        "cc-receive-count": "1",
        "cc-worker": "worker-1",
    }
    return {k: {"DataType": "String", "StringValue": v} for k, v in values.items()}


def trigger_body(code: str, n: int = 0, *, change_id: str = CHANGE_ID) -> str:
    change = {"object_type": "change", "changeId": change_id, "changeTitle": f"Patch window {n}"}
    return direct_message(code, change_id, 2, EmailEvent.APPROVED, change=change)


def queue_url(aws: AwsFactory, name: str) -> str:
    return str(aws.client("sqs").get_queue_url(QueueName=name)["QueueUrl"])


def put_dead_letters(
    aws: AwsFactory, config: Config, code: str, count: int, *, reason: str = "role_assume_failed"
) -> list[str]:
    """``count`` messages on the customer's DLQ as the worker leaves them; returns their ids in order."""
    sqs = aws.client("sqs")
    url = queue_url(aws, config.customer(code).dlq_name)
    ids = []
    for n in range(count):
        resp = sqs.send_message(
            QueueUrl=url,
            MessageBody=trigger_body(code, n),
            MessageAttributes=dead_letter_attributes(code, reason=reason, n=n),
        )
        ids.append(resp["MessageId"])
    return ids


def drain(aws: AwsFactory, name: str) -> list[dict[str, Any]]:
    """Receive (and delete) everything on a queue; returns the raw messages."""
    sqs = aws.client("sqs")
    url = queue_url(aws, name)
    out: list[dict[str, Any]] = []
    while True:
        resp = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=0,
            VisibilityTimeout=30,
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
        )
        msgs = resp.get("Messages", [])
        if not msgs:
            return out
        out.extend(msgs)
        sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)],
        )


def visible(aws: AwsFactory, name: str) -> int:
    attrs = aws.client("sqs").get_queue_attributes(
        QueueUrl=queue_url(aws, name), AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"])


def audit_events(aws: AwsFactory, config: Config) -> list[dict[str, Any]]:
    s3 = aws.client("s3")
    bucket = config.s3_config.bucket_name
    events = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="audit/"):
        for obj in page.get("Contents", []):
            body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read().decode()
            events.extend(json.loads(line) | {"_key": obj["Key"]} for line in body.splitlines() if line)
    return events


def empty_stack(aws: AwsFactory, config: Config) -> None:
    """Every queue of the config empty, no audit events or export records (a fresh start per test)."""
    for mapping in config.customer_mappings.values():
        for name in (mapping.queue_name, mapping.dlq_name):
            drain(aws, name)  # not PurgeQueue: once per 60 s per queue
    s3 = aws.client("s3")
    bucket = config.s3_config.bucket_name
    for prefix in ("audit/", "dlq-exports/"):
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                s3.delete_object(Bucket=bucket, Key=obj["Key"])
