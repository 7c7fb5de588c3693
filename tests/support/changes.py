"""Changes as the operator writes them and change documents as the fan-out stores them."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from changeconsole.models import Change, Config, Ignore, Trigger, parse_queue_message
from changeconsole.services.aws import AwsFactory

from .aws import queue_url

CHANGE_ID = "CHG-2026-03-01T10-00-00-abc123"
START = "2030-03-01T22:00:00Z"
END = "2030-03-02T02:00:00Z"


def change_data(customers: list[str], **overrides: Any) -> dict[str, Any]:
    """A new change's fields as the operator fills them in."""
    data: dict[str, Any] = {
        "changeTitle": "Rotate TLS certificates on the edge load balancers",
        "changeReason": "Certificates expire on 2030-03-15.",
        "implementationPlan": "1. Upload new certificate\n2. Switch listeners\n3. Verify",
        "testPlan": "curl every endpoint",
        "customerImpact": "None expected; connections may reset once.",
        "rollbackPlan": "Switch listeners back to the old certificate.",
        "snowTicket": "CHG0012345",
        "jiraTicket": "OPS-42",
        "customers": customers,
        "implementationStart": START,
        "implementationEnd": END,
        "timezone": "Europe/Berlin",
    }
    data.update(overrides)
    return data


def make_change(customers: list[str], **overrides: Any) -> Change:
    return Change.model_validate(change_data(customers, **overrides))


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
    """A stored change snapshot (what a trigger carries), ``submitted`` at version 2 by default."""
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


def receive_triggers(
    aws: AwsFactory, config: Config, code: str, expect: int, *, wait: int = 5, extra_wait: int = 1
) -> list[Trigger]:
    """Triggers in a customer's queue: waits (long polling) for ``expect`` of them, then once more
    ``extra_wait`` seconds for any surplus. ``s3:TestEvent`` messages are skipped."""
    sqs = aws.client("sqs")
    url = queue_url(aws, config, code)
    found: list[Trigger] = []

    def receive(seconds: int) -> int:
        msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=seconds).get(
            "Messages", []
        )
        for msg in msgs:
            parsed = parse_queue_message(msg["Body"])
            if not isinstance(parsed, Ignore):
                found.append(parsed)
        return len(msgs)

    while len(found) < expect:
        if receive(wait) == 0:
            break
    while receive(extra_wait):
        pass
    return found


def triggers_by_customer(
    aws: AwsFactory, config: Config, expect: dict[str, int], *, extra_wait: int = 1
) -> dict[str, list[Trigger]]:
    """``receive_triggers`` for every customer of the config at once (0 expected when not listed)."""
    codes = sorted(config.customer_mappings)
    with ThreadPoolExecutor(max_workers=len(codes)) as pool:
        results = pool.map(
            lambda c: receive_triggers(aws, config, c, expect.get(c, 0), extra_wait=extra_wait), codes
        )
        return dict(zip(codes, results, strict=True))
