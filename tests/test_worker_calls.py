"""How many AWS calls one customer's delivery costs, fan-out and worker together (issue 15): counted with
botocore hooks on every client while ``ChangeService.submit`` (what ``change submit`` runs) fans a change
out to three customers and an in-process worker delivers it. Pinned per customer, so the chain cannot
silently grow back; docs/performance.md ("Calls per customer") explains each call.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from changeconsole.models import Change, Config, DeliveryState
from changeconsole.services.lifecycle import ChangeService
from changeconsole.services.localstack import local_factory
from changeconsole.services.status import StatusStore
from changeconsole.worker import processor
from support.aws import queue_url
from support.iam import Call, Recorder
from support.waiting import wait_until
from support.worker import running_worker

# The calls of one customer's delivery that do not depend on its recipients. Fan-out: the ``queued``
# record, the trigger. Worker: receive, archive read, lane lock, claim, role, contact list (one
# GetContactList: name and topic defaults), contacts, outcome record, claim done, trigger delete,
# lane release, message delete. A delivery lasting ``PROCESSING_AFTER`` also writes "processing".
FIXED_CALLS = 14
PER_RECIPIENT = 3  # marked sending, SendEmail, its answer recorded


def budget(recipients: int) -> int:
    """Calls allowed for one customer with ``recipients`` subscribed."""
    return FIXED_CALLS + PER_RECIPIENT * recipients


def customer_of(call: Call, config: Config) -> str | None:
    """The customer a call is made for; None for what one change shares (archive, index, audit)."""
    if call.customer is not None:  # made through the customer's assumed role
        return call.customer
    for code, mapping in config.customer_mappings.items():
        if call.service == "sts" and call.params.get("RoleArn") == mapping.ses_role_arn:
            return code
        if call.service == "sqs" and str(call.params.get("QueueUrl", "")).endswith(f"/{mapping.queue_name}"):
            return code
        if call.service == "s3" and str(call.params.get("Key", "")).startswith(f"customers/{code}/"):
            return code
        # status and ledger items end their keys in the customer's code: ...#v0002#submitted#acme
        if call.service == "dynamodb" and f'#{code}"' in json.dumps(call.params, default=str):
            return code
    return None


def status_writes(calls: list[Call], state: DeliveryState) -> int:
    return sum(
        1
        for c in calls
        if c.operation == "UpdateItem"
        and {"S": state.value} in c.params["ExpressionAttributeValues"].values()
    )


@pytest.mark.parametrize("lasting", [False, True], ids=["quick", "lasting"])
def test_one_customers_delivery_costs_a_pinned_number_of_calls(
    make_stack: Any, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, lasting: bool
) -> None:
    """``lasting``: every delivery counts as one that lasts (``PROCESSING_AFTER`` 0): its record says
    "processing" first (one more write); otherwise none does, whatever this machine's speed."""
    monkeypatch.setattr(processor, "PROCESSING_AFTER", 0.0 if lasting else 3600.0)
    config = make_stack(customers=3, contacts=5).config
    codes = sorted(config.customer_mappings)
    status = StatusStore(local_factory(moto_endpoint, max_attempts=1), config)
    for code in codes:  # the s3:TestEvent of each notification configuration is not a delivery
        status.aws.client("sqs").purge_queue(QueueUrl=queue_url(status.aws, config, code))
    status.aws.client("dynamodb")  # the test's own reads are made before recording starts
    recorder = Recorder(lambda: "delivery")
    recorder.install(monkeypatch)
    aws = local_factory(moto_endpoint, max_attempts=1)
    change = Change.model_validate(
        {
            "changeTitle": "Count the calls",
            "customers": codes,
            "implementationStart": "2030-03-01T22:00:00Z",
            "implementationEnd": "2030-03-02T02:00:00Z",
        }
    )
    # Visibility 120 s: the heartbeat (every 30 s) renews no lease during these deliveries.
    with running_worker(
        local_factory(moto_endpoint, max_attempts=1), config, visibility_timeout=120
    ) as worker:
        # Every queue is polled before the count starts (as in production): startup is not a delivery.
        def polled() -> bool:
            seen = {customer_of(c, config) for c in list(recorder.calls) if c.operation == "ReceiveMessage"}
            return set(codes) <= seen

        wait_until(polled, 30, what="every queue polled")
        with recorder.seen:
            recorder.calls.clear()
        change_id = ChangeService(aws, config, operator="calls").submit(change).change.change_id

        def done() -> bool:
            records = status.records(change_id)
            acked = {customer_of(c, config) for c in recorder.calls if c.operation == "DeleteMessageBatch"}
            return len(records) == len(codes) and all(r.is_final for r in records) and set(codes) <= acked

        wait_until(done, 60, what="every delivery final and acknowledged")
        calls = list(recorder.calls)
        received = worker.stats["received"]
    records = status.records(change_id)
    assert {r.customer: r.state for r in records} == {c: DeliveryState.SENT for c in codes}
    # Either way the record learns when the attempt started, and counts it once.
    assert all(r.attempts == 1 and r.started_at for r in records), records
    assert status_writes(calls, DeliveryState.PROCESSING) == (len(codes) if lasting else 0)
    # One receive per delivery (no redelivery); the receives themselves are long polls, mostly idle.
    assert received == len(codes), received
    per: dict[str | None, Counter[str]] = {}
    for call in calls:
        if call.operation == "ReceiveMessage":
            continue
        per.setdefault(customer_of(call, config), Counter())[f"{call.service}.{call.operation}"] += 1
    # The worker reads the change's archive record once per delivery (its key names no customer).
    archive_reads = sum(
        1 for c in calls if c.operation == "GetObject" and c.params.get("Key") == f"archive/{change_id}.json"
    )
    assert archive_reads == len(codes) + 1, per.get(None)  # and the submit's own read
    for code in codes:
        ops = per.get(code, Counter()) + Counter({"s3.GetObject": 1, "sqs.ReceiveMessage": 1})
        recipients = ops["sesv2.SendEmail"]
        assert recipients == 3, ops  # the local stack's approval subscribers of 5 contacts
        breakdown = ", ".join(f"{op} {n}" for op, n in sorted(ops.items()))
        allowed = budget(recipients) + (1 if lasting else 0)
        assert sum(ops.values()) <= allowed, f"{code}: {sum(ops.values())} calls: {breakdown}"
