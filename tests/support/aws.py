"""A local stack's queues, bucket and audit objects, read the way tests need them."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from typing import Any

from changeconsole.models import Config
from changeconsole.services.aws import AwsFactory


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(url: str, timeout: float = 2.0) -> tuple[int, dict[str, Any]]:
    """(status, JSON body) of a GET; (0, {}) when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, {}


def url_of(aws: AwsFactory, name: str) -> str:
    return str(aws.client("sqs").get_queue_url(QueueName=name)["QueueUrl"])


def queue_url(aws: AwsFactory, config: Config, code: str, *, dlq: bool = False) -> str:
    """URL of a customer's queue (or its DLQ)."""
    mapping = config.customer(code)
    return url_of(aws, mapping.dlq_name if dlq else mapping.queue_name)


def send_raw(aws: AwsFactory, config: Config, code: str, body: str) -> None:
    aws.client("sqs").send_message(QueueUrl=queue_url(aws, config, code), MessageBody=body)


def dlq_messages(aws: AwsFactory, config: Config, code: str) -> list[dict[str, Any]]:
    """Every message in the customer's DLQ (received, then made visible again)."""
    sqs = aws.client("sqs")
    url = queue_url(aws, config, code, dlq=True)
    out: list[dict[str, Any]] = []
    for _ in range(10):
        resp = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], VisibilityTimeout=2
        )
        msgs = resp.get("Messages", [])
        if not msgs:
            break
        out.extend(msgs)
    for m in out:
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
    return out


def attrs(message: dict[str, Any]) -> dict[str, str]:
    """A received message's String attributes."""
    return {k: v.get("StringValue", "") for k, v in (message.get("MessageAttributes") or {}).items()}


def queue_depth(aws: AwsFactory, config: Config, code: str, *, dlq: bool = False) -> int:
    """Visible plus in-flight messages of a customer's queue (or DLQ)."""
    resp = aws.client("sqs").get_queue_attributes(
        QueueUrl=queue_url(aws, config, code, dlq=dlq),
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(resp["ApproximateNumberOfMessages"]) + int(resp["ApproximateNumberOfMessagesNotVisible"])


def visible(aws: AwsFactory, name: str) -> int:
    """Visible messages of the queue ``name``."""
    resp = aws.client("sqs").get_queue_attributes(
        QueueUrl=url_of(aws, name), AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(resp["ApproximateNumberOfMessages"])


def drain(aws: AwsFactory, name: str) -> list[dict[str, Any]]:
    """Receive (and delete) everything on the queue ``name``; returns the raw messages."""
    sqs = aws.client("sqs")
    url = url_of(aws, name)
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


def bucket_keys(aws: AwsFactory, config: Config, prefix: str = "") -> list[str]:
    s3 = aws.client("s3")
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=config.s3_config.bucket_name, Prefix=prefix
    ):
        keys.extend(o["Key"] for o in page.get("Contents", []))
    return sorted(keys)


def data_keys(aws: AwsFactory, config: Config, prefix: str = "") -> list[str]:
    """The bucket's keys except the audit trail's (what an action wrote, besides its audit record)."""
    return [k for k in bucket_keys(aws, config, prefix) if not k.startswith("audit/")]


def audit_events(aws: AwsFactory, config: Config) -> list[dict[str, Any]]:
    """Every audit event in the bucket, each with the key of its object as ``_key``."""
    s3 = aws.client("s3")
    bucket = config.s3_config.bucket_name
    events = []
    for key in bucket_keys(aws, config, "audit/"):
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
        events.extend(json.loads(line) | {"_key": key} for line in body.splitlines() if line)
    return events


def empty_stack(aws: AwsFactory, config: Config) -> None:
    """Every queue of the config empty, no audit events or export records (a fresh start per test)."""
    for mapping in config.customer_mappings.values():
        for name in (mapping.queue_name, mapping.dlq_name):
            drain(aws, name)  # not PurgeQueue: once per 60 s per queue
    s3 = aws.client("s3")
    bucket = config.s3_config.bucket_name
    for prefix in ("audit/", "dlq-exports/"):
        for key in bucket_keys(aws, config, prefix):
            s3.delete_object(Bucket=bucket, Key=key)
