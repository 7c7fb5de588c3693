"""Helpers of the worker tests (imported by tests/test_worker_*.py; holds no tests itself).

Triggers are created the way the fan-out does it: a ``queued`` delivery record, then the change
snapshot at ``models.trigger_key`` (the S3 event then lands in the customer's queue).
"""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from changeconsole.models import (
    Config,
    DeliveryRecord,
    EmailEvent,
    trigger_key,
)
from changeconsole.services.aws import AwsFactory
from changeconsole.services.localstack import TOPIC_DEFAULTS, contact_address, contact_profile
from changeconsole.services.outbox import OutboxEmail, read_outbox
from changeconsole.services.status import DeliveryKey, StatusStore
from changeconsole.worker import WorkerHandle, WorkerOptions, start_background

CHANGE_ID = "CHG-2026-03-01T10-00-00-abc123"

# Fast settings: short polls, visibility and backoff so retries happen within a test.
FAST = {
    "poll_wait": 1,
    "visibility_timeout": 20,
    "backoff_base": 1.0,
    "backoff_cap": 2.0,
    "claim_lease": 5.0,
    "send_lease": 3.0,
    "ack_linger": 0.01,
    "metrics_interval": 3600.0,
    "audit_interval": 0.5,
}


def wait_until(pred: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05, what: str = "") -> Any:
    """Poll ``pred`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or pred}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def change_doc(
    customers: list[str],
    *,
    change_id: str = CHANGE_ID,
    version: int = 2,
    status: str = "submitted",
    title: str = "Patch the web fleet",
    include_meeting: bool = False,
    approved: bool = False,
    **extra: Any,
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "object_type": "change",
        "changeId": change_id,
        "changeTitle": title,
        "changeReason": "Security fixes",
        "implementationPlan": "1. drain\n2. patch\n3. reboot",
        "customers": sorted(customers),
        "implementationStart": "2030-01-31T22:00:00Z",
        "implementationEnd": "2030-02-01T00:00:00Z",
        "timezone": "Europe/Berlin",
        "include_meeting": include_meeting,
        "status": status,
        "version": version,
        "submittedAt": "2026-03-01T10:00:00Z",
        "submittedBy": "operator",
    }
    if approved or status in ("approved", "completed"):
        doc["approvedAt"] = "2026-03-01T11:00:00Z"
        doc["approvedBy"] = "cab"
    doc.update(extra)
    return doc


def put_trigger(
    aws: AwsFactory, config: Config, doc: dict[str, Any], customer: str, event: EmailEvent | None = None
) -> str:
    """What the fan-out does for one customer: queued record, then the trigger object."""
    event = event or EmailEvent(doc["status"])
    key = DeliveryKey(doc["changeId"], int(doc["version"]), event, customer)
    StatusStore(aws, config).put_queued(key)
    s3_key = trigger_key(customer, doc["changeId"], int(doc["version"]), event)
    aws.client("s3").put_object(
        Bucket=config.s3_config.bucket_name, Key=s3_key, Body=json.dumps(doc).encode("utf-8")
    )
    return s3_key


def submit(aws: AwsFactory, config: Config, doc: dict[str, Any], customers: list[str] | None = None) -> None:
    for code in customers or doc["customers"]:
        put_trigger(aws, config, doc, code)


def queue_url(aws: AwsFactory, config: Config, code: str, *, dlq: bool = False) -> str:
    m = config.customer(code)
    name = m.dlq_name if dlq else m.queue_name
    return str(aws.client("sqs").get_queue_url(QueueName=name)["QueueUrl"])


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
    return {k: v.get("StringValue", "") for k, v in (message.get("MessageAttributes") or {}).items()}


def queue_depth(aws: AwsFactory, config: Config, code: str, *, dlq: bool = False) -> int:
    resp = aws.client("sqs").get_queue_attributes(
        QueueUrl=queue_url(aws, config, code, dlq=dlq),
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(resp["ApproximateNumberOfMessages"]) + int(resp["ApproximateNumberOfMessagesNotVisible"])


def records(
    aws: AwsFactory, config: Config, change_id: str = CHANGE_ID
) -> dict[tuple[int, str, str], DeliveryRecord]:
    return {(r.version, r.event.value, r.customer): r for r in StatusStore(aws, config).records(change_id)}


def record(
    aws: AwsFactory,
    config: Config,
    customer: str,
    version: int = 2,
    event: str = "submitted",
    change_id: str = CHANGE_ID,
) -> DeliveryRecord | None:
    return records(aws, config, change_id).get((version, event, customer))


def final(
    aws: AwsFactory,
    config: Config,
    customers: list[str],
    version: int = 2,
    event: str = "submitted",
    change_id: str = CHANGE_ID,
) -> bool:
    recs = records(aws, config, change_id)
    return all((r := recs.get((version, event, c))) is not None and r.is_final for c in customers)


def subscribed(code: str, n_contacts: int, topic: str) -> set[str]:
    """The oracle: who receives ``topic`` per the local stack's contact profiles (not our code)."""
    out = set()
    for i in range(n_contacts):
        prefs, unsubscribe_all = contact_profile(i)
        if unsubscribe_all:
            continue
        status = prefs.get(topic, TOPIC_DEFAULTS[topic])
        if status == "OPT_IN":
            out.add(contact_address(code, i))
    return out


def outbox(endpoint: str, change_id: str = CHANGE_ID) -> list[OutboxEmail]:
    # moto's data API can fail (HTTP 500) while other requests change its models: read again.
    for _ in range(20):
        try:
            return read_outbox(endpoint, change_id=change_id)
        except urllib.error.HTTPError:
            time.sleep(0.05)
    return read_outbox(endpoint, change_id=change_id)


def per_recipient(mails: list[OutboxEmail]) -> Counter[tuple[str, str, int | None, str | None, str | None]]:
    """(recipient, change, version, event, customer) → number of emails."""
    counts: Counter[tuple[str, str, int | None, str | None, str | None]] = Counter()
    for m in mails:
        for to in m.to:
            counts[(to.lower(), m.change_id or "", m.version, m.event, m.customer)] += 1
    return counts


@contextmanager
def running_worker(aws: AwsFactory, config: Config, **overrides: Any) -> Iterator[WorkerHandle]:
    opts = {**FAST, **overrides}
    customers = opts.pop("customers", None)
    handle = start_background(aws, config, customers=customers, options=WorkerOptions(**opts))
    try:
        yield handle
    finally:
        handle.stop(timeout=10)


def http_get(url: str, timeout: float = 2.0) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, {}
