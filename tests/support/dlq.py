"""Messages on a customer's DLQ as the worker leaves them."""

from __future__ import annotations

from typing import Any

from changeconsole.models import Config, EmailEvent, direct_message
from changeconsole.services.aws import AwsFactory
from changeconsole.services.dlq import attributes

from .aws import url_of

CHANGE_ID = "CHG-2026-01-31T22-00-00-abc123"


def worker_attributes(code: str, *, reason: str = "role_assume_failed", n: int = 0) -> dict[str, Any]:
    """The ten String attributes the worker sets when it dead-letters (docs/architecture.md)."""
    return attributes.dead_letter_attributes(
        {},
        reason=reason,
        detail=f"AccessDenied assuming the SES role of {code} (#{n})",
        customer=code,
        change_id=CHANGE_ID,
        version=2,
        event="approved",
        failed_at="2026-02-01T10:00:00Z",
        source_message_id=f"src-{n}",
        receive_count=1,
        worker="worker-1",
    )


def trigger_body(code: str, n: int = 0, *, change_id: str = CHANGE_ID) -> str:
    change = {"object_type": "change", "changeId": change_id, "changeTitle": f"Patch window {n}"}
    return direct_message(code, change_id, 2, EmailEvent.APPROVED, change=change)


def put_dead_letters(
    aws: AwsFactory, config: Config, code: str, count: int, *, reason: str = "role_assume_failed"
) -> list[str]:
    """``count`` messages on the customer's DLQ as the worker leaves them; returns their ids in order."""
    sqs = aws.client("sqs")
    url = url_of(aws, config.customer(code).dlq_name)
    ids = []
    for n in range(count):
        resp = sqs.send_message(
            QueueUrl=url,
            MessageBody=trigger_body(code, n),
            MessageAttributes=worker_attributes(code, reason=reason, n=n),
        )
        ids.append(resp["MessageId"])
    return ids
