"""A delivery left ``partial`` by a recipient whose outcome is ``unknown``, produced deterministically.

Before any worker runs, the recipient's ledger item is written as ``sending`` by a dead worker whose
lease has expired: exactly what a worker SIGKILLed between the mark and the SES call leaves behind.
The worker then records it ``unknown``, never sends it, and the delivery ends ``partial``.
"""

from __future__ import annotations

import time
from typing import Any

from changeconsole.models import TOPIC_APPROVAL, Change, DeliveryState, EmailEvent
from changeconsole.services.aws import AwsFactory
from changeconsole.services.ledger import ClaimState, Ledger, delivery_pk, rcpt_sk
from changeconsole.services.lifecycle import ChangeService
from changeconsole.services.status import DeliveryKey, to_item

from .mail import outbox, per_recipient, subscribed
from .worker import record

CONTACTS = 8


def crashed_send(aws: AwsFactory, config: Any, key: DeliveryKey, email: str) -> None:
    """The ledger mark a worker killed inside its SES window leaves: ``sending``, lease expired."""
    item = {
        "pk": delivery_pk(key),
        "sk": rcpt_sk(email),
        "state": "sending",
        "owner": "dead-worker/0123456789ab",
        "email": email,
        "lease_until": time.time() - 60,
        "started_at": "2026-03-01T10:00:00Z",
        "expires_at": int(time.time()) + 86400,
    }
    aws.client("dynamodb").put_item(TableName=config.ledger_table_name, Item=to_item(item))


def submitted_change(aws: AwsFactory, config: Any, customers: list[str]) -> Change:
    """A change submitted the real way (archive + fan-out), with no worker running yet."""
    change = Change.model_validate(
        {
            "changeTitle": "Resend test",
            "customers": customers,
            "implementationStart": "2030-01-31T22:00:00Z",
            "implementationEnd": "2030-02-01T00:00:00Z",
        }
    )
    result = ChangeService(aws, config, operator="tester").submit(change)
    assert result.ok, result.errors
    return result.change


def partial_delivery(make_stack: Any, aws: AwsFactory) -> tuple[Any, Change, DeliveryKey, str, list[str]]:
    """Two customers; one recipient of the first left ``unknown`` by a "crashed" send.

    Returns (stack, change, key of the partial delivery, the lost address, customer codes); the caller
    runs the worker.
    """
    stack = make_stack(customers=2, contacts=CONTACTS)
    config = stack.config
    codes = sorted(config.customer_mappings)
    change = submitted_change(aws, config, codes)
    key = DeliveryKey(change.change_id, change.version, EmailEvent.SUBMITTED, codes[0])
    lost = sorted(subscribed(codes[0], CONTACTS, TOPIC_APPROVAL))[0].lower()
    crashed_send(aws, config, key, lost)
    return stack, change, key, lost, codes


def settled(aws: AwsFactory, config: Any, change: Change, code: str, state: DeliveryState) -> bool:
    """The delivery record is in ``state`` and its ledger claim is done: the worker writes the record's
    outcome before it settles the claim, and a resend refuses a delivery whose claim is not done yet."""
    r = record(aws, config, code, change.version, "submitted", change.change_id)
    if r is None or r.state is not state:
        return False
    claim = Ledger(aws, config).get_claim(
        DeliveryKey(change.change_id, change.version, EmailEvent.SUBMITTED, code)
    )
    return claim is not None and claim.state is ClaimState.DONE


def expected_recipients(codes: list[str]) -> set[tuple[str, str]]:
    return {(a.lower(), c) for c in codes for a in subscribed(c, CONTACTS, TOPIC_APPROVAL)}


def received(endpoint: str, change: Change) -> dict[tuple[str, str], int]:
    return {
        (to, cu or ""): n
        for (to, _c, _v, _e, cu), n in per_recipient(outbox(endpoint, change.change_id)).items()
    }
