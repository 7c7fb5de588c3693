"""Unknown recipients resolved without an operator: by their SES event, else sent again after the
grace period (``unknown_policy: resend``) or held (``hold``)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from changeconsole.models import TOPIC_APPROVAL, DeliveryState, EmailEvent, RecipientState
from changeconsole.services.audit import AuditLog
from changeconsole.services.aws import AwsFactory
from changeconsole.services.events import RECONCILER, Reconciler, new_token
from changeconsole.services.ledger import Ledger, delivery_pk, rcpt_sk
from changeconsole.services.status import DeliveryKey, StatusStore, to_item
from support.events import noted, publish, with_events
from support.mail import subscribed
from support.resend import CONTACTS, received, settled, submitted_change
from support.waiting import wait_until
from support.worker import record, running_worker


def _crashed_send(aws: AwsFactory, config: Any, key: DeliveryKey, email: str, token: str) -> None:
    """What a worker SIGKILLed inside its SES window leaves: ``sending`` with its claim token, lease out."""
    item = {
        "pk": delivery_pk(key),
        "sk": rcpt_sk(email),
        "state": "sending",
        "owner": "dead-worker/0123456789ab",
        "email": email,
        "claim_token": token,
        "lease_until": time.time() - 60,
        "started_at": "2026-03-01T10:00:00Z",
        "expires_at": int(time.time()) + 86400,
    }
    aws.client("dynamodb").put_item(TableName=config.ledger_table_name, Item=to_item(item))


def _partial(make_stack: Any, aws: AwsFactory, **events: Any) -> tuple[Any, Any, DeliveryKey, str, str]:
    """One customer; one recipient left by a "crashed" send. (config, change, key, address, token)."""
    stack = make_stack(customers=1, contacts=CONTACTS)
    config = with_events(stack.config, **events)
    (code,) = config.customer_mappings
    change = submitted_change(aws, config, [code])
    key = DeliveryKey(change.change_id, change.version, EmailEvent.SUBMITTED, code)
    lost = sorted(subscribed(code, CONTACTS, TOPIC_APPROVAL))[0].lower()
    token = new_token()
    _crashed_send(aws, config, key, lost, token)
    return config, change, key, lost, token


def _reconciler(aws: AwsFactory, config: Any, clock: Any = time.time) -> Reconciler:
    return Reconciler(
        aws,
        config,
        ledger=Ledger(aws, config),
        status=StatusStore(aws, config),
        audit=AuditLog(aws, config, source="worker"),
        send_trigger=lambda key: pytest.fail(f"nothing may be resent: {key}"),
        clock=clock,
    )


def test_the_send_event_arriving_within_the_grace_period_makes_it_sent_and_nothing_is_resent(
    make_stack: Any, aws_factory: AwsFactory
) -> None:
    config, change, key, lost, token = _partial(make_stack, aws_factory, unknown_grace_seconds=600)
    ledger = Ledger(aws_factory, config)
    with running_worker(aws_factory, config):
        wait_until(lambda: settled(aws_factory, config, change, key.customer, DeliveryState.PARTIAL), 30)
        mark = ledger.recipient(key, lost)
        assert mark is not None and mark.state is RecipientState.UNKNOWN
        assert publish(aws_factory, config, noted(config, key, lost, token), ("Send", "Delivery")) == 2
        wait_until(lambda: settled(aws_factory, config, change, key.customer, DeliveryState.SENT), 30)
    mark = ledger.recipient(key, lost)
    assert mark is not None and mark.state is RecipientState.SENT and mark.message_id == "local-msg-1"
    rec = record(aws_factory, config, key.customer, change.version, "submitted", change.change_id)
    assert rec is not None and rec.recipients_failed == 0 and rec.recipients_sent == rec.recipients_total

    # Long after the grace period: nothing left to resend, and the reconcile item goes.
    report = _reconciler(aws_factory, config, clock=lambda: time.time() + 601).run_once()
    assert report.resent == [] and report.held == []
    assert ledger.reconciles() == []
    assert (lost, key.customer) not in received(aws_factory.settings.endpoint_url or "", change)


def test_with_no_event_by_the_end_of_the_grace_period_it_is_sent_again_once_and_a_late_event_changes_nothing(
    make_stack: Any, aws_factory: AwsFactory
) -> None:
    config, change, key, lost, token = _partial(make_stack, aws_factory, unknown_grace_seconds=2)
    endpoint = aws_factory.settings.endpoint_url or ""
    ledger = Ledger(aws_factory, config)
    with running_worker(aws_factory, config):
        wait_until(lambda: settled(aws_factory, config, change, key.customer, DeliveryState.PARTIAL), 30)
        wait_until(lambda: settled(aws_factory, config, change, key.customer, DeliveryState.SENT), 30)
        wait_until(lambda: ledger.reconciles() == [], 15, "the reconcile item dropped")
        # The dead send's event arrives late, after the resend: no third email, no change.
        publish(aws_factory, config, noted(config, key, lost, token), ("Send", "Delivery"))
        wait_until(lambda: _events_done(aws_factory, config), 15, "the late events consumed")
    got = received(endpoint, change)
    wanted = {(a, key.customer) for a in subscribed(key.customer, CONTACTS, TOPIC_APPROVAL)}
    assert set(got) == wanted and set(got.values()) == {1}
    mark = ledger.recipient(key, lost)
    assert mark is not None and mark.state is RecipientState.SENT and mark.claim_token != token
    marker = ledger.resend_marker(key)
    assert marker is not None and marker.resend_by == RECONCILER and marker.recipients == (lost,)


def test_two_reconcilers_never_both_reopen(make_stack: Any, aws_factory: AwsFactory) -> None:
    config, change, key, lost, _token = _partial(make_stack, aws_factory, unknown_grace_seconds=600)
    ledger = Ledger(aws_factory, config)
    with running_worker(aws_factory, config):
        wait_until(lambda: settled(aws_factory, config, change, key.customer, DeliveryState.PARTIAL), 30)
    (item,) = ledger.reconciles()
    first = ledger.auto_reopen(item, key, [lost], by=RECONCILER, resend_id="r1", next_due=time.time())
    second = ledger.auto_reopen(item, key, [lost], by=RECONCILER, resend_id="r2", next_due=time.time())
    assert (first, second) == (True, False)
    (again,) = ledger.reconciles()
    assert again.resent == {lost}
    mark = ledger.recipient(key, lost)
    assert mark is not None and mark.state is RecipientState.RETRY and mark.auto_resends == 1
    assert _reconciler(aws_factory, config)._hold_reason(key, []) is not None


def _died_again(aws: AwsFactory, config: Any, key: DeliveryKey) -> None:
    """What the resend leaves when its worker is SIGKILLed inside the SES call too, once another worker
    settled the delivery: the reopened recipient ``unknown`` again, the claim ``done``, due to reconcile."""
    ddb = aws.client("dynamodb")
    for addr, mark in Ledger(aws, config).recipients(key).items():
        if mark.state is RecipientState.RETRY:
            ddb.update_item(
                TableName=config.ledger_table_name,
                Key={"pk": {"S": delivery_pk(key)}, "sk": {"S": rcpt_sk(addr)}},
                UpdateExpression="SET #s = :u, claim_token = :t",
                ExpressionAttributeNames={"#s": "state"},
                ExpressionAttributeValues={":u": {"S": "unknown"}, ":t": {"S": new_token()}},
            )
    ddb.update_item(
        TableName=config.ledger_table_name,
        Key={"pk": {"S": delivery_pk(key)}, "sk": {"S": "CLAIM"}},
        UpdateExpression="SET #s = :d",
        ExpressionAttributeNames={"#s": "state"},
        ExpressionAttributeValues={":d": {"S": "done"}},
    )
    Ledger(aws, config).note_unknown(key, time.time())


def test_each_resend_that_itself_ends_unknown_earns_one_more_up_to_the_limit_then_it_is_held(
    make_stack: Any, aws_factory: AwsFactory
) -> None:
    config, change, key, lost, _token = _partial(
        make_stack, aws_factory, unknown_grace_seconds=600, max_auto_resends=2
    )
    ledger = Ledger(aws_factory, config)
    with running_worker(aws_factory, config):
        wait_until(lambda: settled(aws_factory, config, change, key.customer, DeliveryState.PARTIAL), 30)
    rung: list[DeliveryKey] = []
    reconciler = Reconciler(
        aws_factory,
        config,
        ledger=ledger,
        status=StatusStore(aws_factory, config),
        audit=AuditLog(aws_factory, config, source="worker"),
        send_trigger=rung.append,
        clock=lambda: time.time() + 601,
    )
    for n in (1, 2):
        assert reconciler.run_once().resent == [f"{delivery_pk(key)}: {lost}"], n
        mark = ledger.recipient(key, lost)
        assert mark is not None and mark.state is RecipientState.RETRY and mark.auto_resends == n
        _died_again(aws_factory, config, key)
    report = reconciler.run_once()
    assert report.resent == [] and report.held == [f"{delivery_pk(key)}: {lost}"]
    assert rung == [key, key] and ledger.reconciles() == []
    rec = record(aws_factory, config, key.customer, change.version, "submitted", change.change_id)
    assert rec is not None and "sent again 2 time(s)" in (rec.last_error or "")
    mark = ledger.recipient(key, lost)
    assert mark is not None and mark.state is RecipientState.UNKNOWN


def test_hold_policy_leaves_unknown_recipients_to_an_operator(
    make_stack: Any, aws_factory: AwsFactory
) -> None:
    config, change, key, lost, _token = _partial(
        make_stack, aws_factory, unknown_grace_seconds=1, unknown_policy="hold"
    )
    ledger = Ledger(aws_factory, config)
    with running_worker(aws_factory, config):
        wait_until(lambda: settled(aws_factory, config, change, key.customer, DeliveryState.PARTIAL), 30)
        wait_until(lambda: ledger.reconciles() == [], 15, "the held delivery's reconcile item dropped")
    rec = record(aws_factory, config, key.customer, change.version, "submitted", change.change_id)
    assert rec is not None and rec.state is DeliveryState.PARTIAL
    assert "resend-unknown" in (rec.last_error or "")
    mark = ledger.recipient(key, lost)
    assert mark is not None and mark.state is RecipientState.UNKNOWN
    assert (lost, key.customer) not in received(aws_factory.settings.endpoint_url or "", change)


def _events_done(aws: AwsFactory, config: Any) -> bool:
    sqs = aws.client("sqs")
    url = sqs.get_queue_url(QueueName=config.events.queue_name)["QueueUrl"]
    attrs = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return (
        attrs["ApproximateNumberOfMessages"] == "0" and attrs["ApproximateNumberOfMessagesNotVisible"] == "0"
    )
