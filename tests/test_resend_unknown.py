"""Operator resend of ``unknown`` recipients (services/resend.py) end to end against the local stack
(the ``unknown`` recipient comes from ``support.resend.partial_delivery``)."""

from __future__ import annotations

import json
from typing import Any

from changeconsole.models import TOPIC_APPROVAL, DeliveryState, EmailEvent, RecipientState, trigger_key
from changeconsole.services.aws import AwsFactory
from changeconsole.services.ledger import ClaimState, Ledger
from changeconsole.services.lifecycle import ChangeService
from changeconsole.services.resend import ResendService
from changeconsole.services.status import DeliveryKey, StatusStore
from support.mail import subscribed
from support.resend import CONTACTS, expected_recipients, partial_delivery, received, settled
from support.waiting import wait_until
from support.worker import running_worker


def test_resend_of_an_unknown_recipient_sends_it_exactly_once_and_the_delivery_becomes_sent(
    make_stack: Any, aws_factory: AwsFactory, moto_endpoint: str
) -> None:
    stack, change, key, lost, codes = partial_delivery(make_stack, aws_factory)
    config = stack.config
    ledger = Ledger(aws_factory, config)
    status = StatusStore(aws_factory, config)
    service = ResendService(aws_factory, config)
    bucket = config.s3_config.bucket_name
    s3 = aws_factory.client("s3")
    with running_worker(aws_factory, config):
        wait_until(
            lambda: (
                settled(aws_factory, config, change, codes[0], DeliveryState.PARTIAL)
                and settled(aws_factory, config, change, codes[1], DeliveryState.SENT)
            ),
            60,
            what="first delivery settled",
        )
        got = received(moto_endpoint, change)
        assert (lost, codes[0]) not in got, "the crashed send never reached SES"
        assert set(got) == expected_recipients(codes) - {(lost, codes[0])}
        assert set(got.values()) == {1}

        unknown = service.unknown(change.change_id)
        assert [(u.email.lower(), u.customer, u.version) for u in unknown] == [
            (lost, codes[0], change.version)
        ]
        assert unknown[0].error and "unknown" in unknown[0].error
        assert service.unknown(change.change_id, customers=[codes[1]]) == []

        # Dry run: reports, changes nothing (ledger, claim, record, no trigger, no audit).
        audits_before = s3.list_objects_v2(Bucket=bucket, Prefix="audit/resend-").get("KeyCount", 0)
        dry = service.resend(change.change_id, dry_run=True)
        assert dry.dry_run and dry.resent == 1 and dry.audit_key is None
        assert [d.resend for d in dry.deliveries] == [[lost]]
        assert ledger.recipients(key)[lost].state == RecipientState.UNKNOWN
        assert ledger.get_claim(key).state == ClaimState.DONE
        assert status.get(key).state is DeliveryState.PARTIAL  # type: ignore[union-attr]
        tkey = trigger_key(codes[0], change.change_id, change.version, EmailEvent.SUBMITTED)
        assert s3.list_objects_v2(Bucket=bucket, Prefix=tkey).get("KeyCount", 0) == 0
        assert s3.list_objects_v2(Bucket=bucket, Prefix="audit/").get("KeyCount", 0) >= audits_before

        # Refused: a recipient that was sent is not unknown; nothing is reopened.
        sent_addr = next(a for a, it in ledger.recipients(key).items() if it.state == RecipientState.SENT)
        refused = service.resend_delivery(key, [sent_addr, "nobody@example.invalid"])
        assert refused.resent == 0
        assert refused.deliveries[0].refused == {
            sent_addr: "is sent, not unknown",
            "nobody@example.invalid": "not a recipient of this delivery",
        }
        assert ledger.get_claim(key).state == ClaimState.DONE
        assert ledger.recipients(key)[sent_addr].state == RecipientState.SENT

        # The real resend: only the lost recipient gets an email, once; the record becomes sent.
        result = service.resend(change.change_id, customers=[codes[0]])
        assert result.resent == 1 and result.ok, result
        d = result.deliveries[0]
        assert d.triggered and d.resend == [lost] and not d.refused
        assert result.audit_key and result.audit_key.startswith("audit/")
        wait_until(
            lambda: settled(aws_factory, config, change, codes[0], DeliveryState.SENT),
            60,
            what="resent delivery sent",
        )
    got = received(moto_endpoint, change)
    assert set(got) == expected_recipients(codes)
    assert set(got.values()) == {1}, "the lost recipient got one email and nobody got a second"
    rec = status.get(key)
    assert rec is not None
    assert rec.recipients_sent == rec.recipients_total == len(subscribed(codes[0], CONTACTS, TOPIC_APPROVAL))
    assert rec.recipients_failed == 0
    assert getattr(rec, "resend_requested_by", None) == result.operator
    assert ledger.recipients(key)[lost].state == RecipientState.SENT
    audit = s3.get_object(Bucket=bucket, Key=result.audit_key)["Body"].read().decode()
    entry = json.loads(audit.splitlines()[0])
    assert (entry["type"], entry["action"], entry["result"]) == (
        "operator.action",
        "change.resend-unknown",
        "ok",
    )
    assert entry["customers"] == [codes[0]] and entry["change_id"] == change.change_id
    assert [d["recipients"] for d in entry["deliveries"]] == [[lost]]
    assert entry["operator"] == result.operator and entry["resent"] == 1
    # Nothing left to resend: a second resend does nothing.
    again = service.resend(change.change_id)
    assert again.resent == 0 and again.deliveries == []


def test_a_resend_pass_skips_contacts_who_subscribed_since_and_settles_unsubscribed_ones(
    make_stack: Any, aws_factory: AwsFactory, moto_endpoint: str
) -> None:
    """The reopened delivery sends to the reopened recipients only, never to a new subscriber."""
    stack, change, key, lost, codes = partial_delivery(make_stack, aws_factory)
    config = stack.config
    ledger = Ledger(aws_factory, config)
    mapping = config.customer(codes[0])
    ses = aws_factory.customer_client(mapping, "sesv2")
    list_name = config.contact_list_for(codes[0])
    with running_worker(aws_factory, config):
        wait_until(
            lambda: settled(aws_factory, config, change, codes[0], DeliveryState.PARTIAL),
            60,
            what="first delivery partial",
        )
        newcomer = f"newcomer@{codes[0]}.example.com"
        ses.create_contact(
            ContactListName=list_name,
            EmailAddress=newcomer,
            TopicPreferences=[{"TopicName": TOPIC_APPROVAL, "SubscriptionStatus": "OPT_IN"}],
        )
        result = ResendService(aws_factory, config).resend_delivery(key)
        assert result.resent == 1
        assert ledger.recipients(key)[lost].state in (RecipientState.RETRY, "sending", RecipientState.SENT)
        wait_until(
            lambda: settled(aws_factory, config, change, codes[0], DeliveryState.SENT),
            60,
            what="resent delivery sent",
        )
    got = received(moto_endpoint, change)
    assert got.get((lost, codes[0])) == 1
    assert (newcomer, codes[0]) not in got, "a contact who subscribed since is not part of the delivery"
    assert newcomer not in ledger.recipients(key)
    assert set(got.values()) == {1}


def test_resend_with_the_sqs_direct_transport_carries_that_versions_snapshot(
    make_stack: Any, aws_factory: AwsFactory, moto_endpoint: str
) -> None:
    stack, change, key, lost, codes = partial_delivery(make_stack, aws_factory)
    config = stack.config
    ledger = Ledger(aws_factory, config)
    direct = config.model_copy(update={"transport": "sqs-direct"})
    with running_worker(aws_factory, config):
        wait_until(
            lambda: settled(aws_factory, config, change, codes[0], DeliveryState.PARTIAL),
            60,
            what="first delivery partial",
        )
        result = ResendService(aws_factory, direct).resend(change.change_id, version=change.version)
        assert result.resent == 1 and result.deliveries[0].triggered
        tkey = trigger_key(codes[0], change.change_id, change.version, EmailEvent.SUBMITTED)
        s3 = aws_factory.client("s3")
        assert s3.list_objects_v2(Bucket=config.s3_config.bucket_name, Prefix=tkey).get("KeyCount", 0) == 0
        wait_until(
            lambda: settled(aws_factory, config, change, codes[0], DeliveryState.SENT),
            60,
            what="resent delivery sent",
        )
    got = received(moto_endpoint, change)
    assert set(got) == expected_recipients(codes) and set(got.values()) == {1}
    assert got[(lost, codes[0])] == 1 and ledger.recipients(key)[lost].state == RecipientState.SENT


def test_reopen_flips_only_recipients_still_unknown_and_only_a_settled_delivery(
    make_stack: Any, aws_factory: AwsFactory
) -> None:
    """The ledger transaction itself: conditional on each recipient being unknown and the claim done."""
    stack = make_stack(customers=1, contacts=0)
    ledger = Ledger(aws_factory, stack.config)
    key = DeliveryKey("CHG-2026-03-01T10-00-00-led123", 1, EmailEvent.SUBMITTED, "acme")
    a, b, c = "a@acme.example.com", "b@acme.example.com", "c@acme.example.com"
    assert ledger.claim(key, "w1").acquired
    for addr in (a, b, c):
        assert ledger.begin_send(key, addr, "w1").outcome == "go"
    ledger.record_failure(key, a, "w1", RecipientState.UNKNOWN, "ReadTimeoutError")
    ledger.record_failure(key, b, "w1", RecipientState.UNKNOWN, "ReadTimeoutError")
    ledger.record_sent(key, c, "w1", "msg-c")

    # The worker still owns the delivery: nothing is reopened.
    plan = ledger.plan_resend(key)
    assert plan.eligible == [] and set(plan.refused) == {a, b}
    busy = ledger.reopen_for_resend(key, [a], by="op", resend_id="r0")
    assert busy.reopened == [] and "claim in_progress" in busy.refused[a]
    assert ledger.recipients(key)[a].state == RecipientState.UNKNOWN

    assert ledger.finish_claim(key, "w1", done=True, result="partial")
    # Asked for a sent recipient too (as if it changed after planning): the transaction fails, that
    # one is refused, and the rest goes through in a retried transaction.
    out = ledger.reopen_for_resend(key, [a, c, b], by="op", resend_id="r1")
    assert sorted(out.reopened) == [a, b]
    assert out.refused == {c: "is sent, not unknown"}
    items = ledger.recipients(key)
    assert {x: items[x].state for x in (a, b, c)} == {
        a: RecipientState.RETRY,
        b: RecipientState.RETRY,
        c: RecipientState.SENT,
    }
    assert items[a].resend_by == "op" and items[a].resend_at
    claim = ledger.get_claim(key)
    assert claim is not None and claim.state == "released" and claim.resend_by == "op"
    marker = ledger.resend_marker(key)
    assert marker is not None and marker.resend_id == "r1" and marker.resend_by == "op"
    # The next claim is a resend-only pass, and stays one after a worker dies mid-pass.
    first = ledger.claim(key, "w2")
    assert first.acquired and first.resend_only
    assert ledger.finish_claim(key, "w2", done=False)
    again = ledger.claim(key, "w3")
    assert again.acquired and again.resend_only
    # A second reopen while the first is unsettled is refused (the claim is no longer done).
    assert ledger.reopen_for_resend(key, [a], by="op", resend_id="r2").reopened == []


def test_a_resend_of_a_version_the_change_has_left_is_refused(
    make_stack: Any, aws_factory: AwsFactory, moto_endpoint: str
) -> None:
    """Only what the current archive version makes due is ever sent: an unknown recipient of an older
    version is not resent (its notice is out of date), and nothing is reopened."""
    stack, change, key, lost, codes = partial_delivery(make_stack, aws_factory)
    config = stack.config
    ledger = Ledger(aws_factory, config)
    with running_worker(aws_factory, config):
        wait_until(lambda: settled(aws_factory, config, change, codes[0], DeliveryState.PARTIAL), 60)
    ChangeService(aws_factory, config, operator="cab").approve(change.change_id)
    result = ResendService(aws_factory, config).resend_delivery(key)
    assert result.resent == 0
    why = f"superseded: version {change.version + 1} (approved) is current; only the current version is sent"
    assert result.deliveries[0].refused == {lost: why}
    assert ledger.recipients(key)[lost].state == RecipientState.UNKNOWN
    assert ledger.get_claim(key).state == ClaimState.DONE
