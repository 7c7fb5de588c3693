"""SES events: tags on every send, the worker's event stage, refusals, idempotence and reputation."""

from __future__ import annotations

import json
from typing import Any

import pytest

from changeconsole.models import TOPIC_APPROVAL, EmailEvent, RecipientState
from changeconsole.services.audit import AuditLog
from changeconsole.services.aws import AwsFactory
from changeconsole.services.contacts import ContactListResolver
from changeconsole.services.event_relay import LocalEventRelay, ses_events
from changeconsole.services.events import (
    EventRecorder,
    EventRefused,
    Outcome,
    OutcomeStore,
    decode_tag,
    encode_tag,
    new_token,
    parse_event,
)
from changeconsole.services.ledger import Ledger
from changeconsole.services.provision import provision
from changeconsole.services.status import DeliveryKey, StatusStore
from support.events import noted, sns_body, with_events
from support.mail import subscribed
from support.resend import CONTACTS, submitted_change
from support.waiting import wait_until
from support.worker import record, running_worker

SIM = "simulator.amazonses.com"


@pytest.mark.parametrize(
    "value", ["CHG-2026-03-01T10-00-00-abc123", "a b/c:d", "b64-looks-encoded", "ünïcødé", "x" * 180]
)
def test_tag_values_are_what_ses_accepts_and_decode_back(value: str) -> None:
    encoded = encode_tag(value)
    assert all(c.isascii() and (c.isalnum() or c in "_-") for c in encoded) and len(encoded) <= 256
    assert decode_tag(encoded) == value


def test_events_in_aws_shape_inside_the_sns_envelope_are_read() -> None:
    from changeconsole.services.event_relay import NotedSend

    send = NotedSend("210000000001", "m-1", "a@x.example", ("bounce@" + SIM,), "changeconsole", {}, "t")
    kinds = [e["eventType"] for e in ses_events(send, "us-east-1")]
    assert kinds == ["Send", "Bounce"]
    bounce = parse_event(sns_body(ses_events(send, "us-east-1")[1], "sns-42"))
    assert bounce.outcome is Outcome.BOUNCED and bounce.event_id == "sns-42"
    assert bounce.mail.sending_account == "210000000001"
    with pytest.raises(EventRefused):
        parse_event("{not json")


def _recorder(aws: AwsFactory, config: Any) -> tuple[EventRecorder, AuditLog, list[tuple[str, str]]]:
    counted: list[tuple[str, str]] = []
    audit = AuditLog(aws, config, source="worker")
    recorder = EventRecorder(
        aws,
        config,
        ledger=Ledger(aws, config),
        status=StatusStore(aws, config),
        audit=audit,
        count=lambda c, m: counted.append((c, m)),
    )
    return recorder, audit, counted


def _audited(aws: AwsFactory, config: Any, key: str) -> list[dict[str, Any]]:
    body = aws.client("s3").get_object(Bucket=config.s3_config.bucket_name, Key=key)["Body"].read()
    return [json.loads(line) for line in body.decode().splitlines()]


def test_every_send_carries_the_configuration_set_and_tags_and_its_events_arrive(
    make_stack: Any, aws_factory: AwsFactory
) -> None:
    stack = make_stack(customers=2, contacts=CONTACTS)
    config = stack.config
    codes = sorted(config.customer_mappings)
    actions = provision(aws_factory, config)
    by_kind = {(a.kind, a.name): a.result for a in actions}
    assert by_kind[("events_queue", config.events.queue_name)] == "unchanged"  # provisioned by the stack
    assert by_kind[("configuration_set", f"{codes[0]}:changeconsole")] == "unchanged"
    assert by_kind[("event_destination", f"{codes[0]}:changeconsole")] == "skipped"  # moto has none
    ses = aws_factory.customer_client(config.customer(codes[0]), "sesv2")
    ses.get_configuration_set(ConfigurationSetName=config.events.configuration_set)

    with LocalEventRelay(aws_factory, config) as relay, running_worker(aws_factory, config):
        change = submitted_change(aws_factory, config, codes)
        key = DeliveryKey(change.change_id, change.version, EmailEvent.SUBMITTED, codes[0])
        wanted = subscribed(codes[0], CONTACTS, TOPIC_APPROVAL)
        outcomes = OutcomeStore(aws_factory, config)
        wait_until(
            lambda: (
                {a for a, o in outcomes.outcomes(key).items() if o.outcome is Outcome.DELIVERED} == wanted
            ),
            30,
            "every recipient delivered",
        )
    assert relay.published >= 2 * len(wanted)
    marks = Ledger(aws_factory, config).recipients(key)
    assert all(m.claim_token and m.state is RecipientState.SENT for m in marks.values())
    assert {o.seen for o in outcomes.outcomes(key).values()} == {(Outcome.SENT, Outcome.DELIVERED)}
    rep = outcomes.reputation(codes[0])
    assert (rep.sends, rep.delivered, rep.bounces, rep.complaints) == (len(wanted), len(wanted), 0, 0)


def test_an_event_of_another_account_or_naming_another_customer_is_refused_and_recorded(
    make_stack: Any, aws_factory: AwsFactory
) -> None:
    stack = make_stack(customers=2, contacts=2)
    config = stack.config
    a, b = sorted(config.customer_mappings)
    key = DeliveryKey("CHG-2026-03-01T10-00-00-abc123", 1, EmailEvent.SUBMITTED, a)
    ledger = Ledger(aws_factory, config)
    token = new_token()
    assert ledger.begin_send(key, "x@a.example", "w1", token=token).outcome == "go"
    recorder, audit, counted = _recorder(aws_factory, config)

    other_account = noted(config, key, "x@a.example", token, account=config.customer(b).account_id)
    names_other = noted(
        config,
        DeliveryKey(key.change_id, 1, key.event, b),
        "x@a.example",
        token,
        account=config.customer(a).account_id,
    )
    stranger = noted(config, key, "x@a.example", token, account="999999999999")
    results = [
        recorder.handle(sns_body(ses_events(s, "us-east-1")[0], f"sns-{i}"))
        for i, s in enumerate((other_account, names_other, stranger))
    ]
    assert [r.result for r in results] == ["refused:wrong_account"] * 3
    untagged = recorder.handle(sns_body({"eventType": "Send", "mail": {"sendingAccountId": "1"}}))
    assert untagged.result == "refused:untagged"

    mark = ledger.recipient(key, "x@a.example")
    assert mark is not None and mark.state is RecipientState.SENDING  # never applied
    assert not OutcomeStore(aws_factory, config).outcomes(key)
    # counted under the customer the tags claim (its alarm), or "-" when they claim none
    assert counted == [
        (a, "EventsRefused"),
        (b, "EventsRefused"),
        (a, "EventsRefused"),
        ("-", "EventsRefused"),
    ]
    entries = _audited(aws_factory, config, audit.flush() or "")
    refused = [e for e in entries if e["type"] == "ses_event.refused"]
    assert [e["reason"] for e in refused] == ["wrong_account"] * 3 + ["untagged"]
    assert refused[0]["sending_account"] == config.customer(b).account_id
    assert refused[1]["customer_tag"] == b and refused[1]["sending_account"] == config.customer(a).account_id


def test_duplicate_events_are_idempotent(make_stack: Any, aws_factory: AwsFactory) -> None:
    stack = make_stack(customers=1, contacts=2)
    config = stack.config
    (code,) = config.customer_mappings
    key = DeliveryKey("CHG-2026-03-01T10-00-00-abc123", 1, EmailEvent.SUBMITTED, code)
    ledger = Ledger(aws_factory, config)
    token = new_token()
    ledger.begin_send(key, "x@a.example", "w1", token=token)
    recorder, _audit, _counted = _recorder(aws_factory, config)
    send, delivery = ses_events(noted(config, key, "x@a.example", token), "us-east-1")
    first = [recorder.handle(sns_body(send, "s1")).result, recorder.handle(sns_body(delivery, "d1")).result]
    again = [recorder.handle(sns_body(send, "s1")).result, recorder.handle(sns_body(delivery, "d1")).result]
    assert first == ["applied", "applied"] and again == ["duplicate", "duplicate"]
    mark = ledger.recipient(key, "x@a.example")
    assert mark is not None and mark.state is RecipientState.SENT and mark.message_id == "local-msg-1"
    rep = OutcomeStore(aws_factory, config).reputation(code)
    assert (rep.sends, rep.delivered) == (1, 1)


@pytest.mark.parametrize(
    ("box", "policy", "outcome"),
    [("bounce", "opt_out_topic", Outcome.BOUNCED), ("complaint", "unsubscribe_all", Outcome.COMPLAINED)],
)
def test_hard_bounce_and_complaint_update_the_contact_and_check_suppression(
    make_stack: Any, aws_factory: AwsFactory, box: str, policy: str, outcome: Outcome
) -> None:
    stack = make_stack(customers=1, contacts=2)
    config = with_events(stack.config, reputation_policy=policy)
    (code,) = config.customer_mappings
    ses = aws_factory.customer_client(config.customer(code), "sesv2")
    list_name = ContactListResolver(config).name(ses, code)
    address = f"{box}@{SIM}"
    ses.create_contact(
        ContactListName=list_name,
        EmailAddress=address,
        TopicPreferences=[{"TopicName": TOPIC_APPROVAL, "SubscriptionStatus": "OPT_IN"}],
    )
    with LocalEventRelay(aws_factory, config), running_worker(aws_factory, config):
        change = submitted_change(aws_factory, config, [code])
        key = DeliveryKey(change.change_id, change.version, EmailEvent.SUBMITTED, code)
        outcomes = OutcomeStore(aws_factory, config)
        seen = wait_until(
            lambda: (
                (o := outcomes.outcomes(key).get(address)) and o.outcome is outcome and o.suppressed and o
            ),
            30,
            f"{box} recorded",
        )
        contact = wait_until(
            lambda: (
                (c := ses.get_contact(ContactListName=list_name, EmailAddress=address))
                and (c.get("UnsubscribeAll") or _pref(c, TOPIC_APPROVAL) == "OPT_OUT")
                and c
            ),
            10,
            "the contact updated",
        )
    assert seen.suppressed == "unavailable"  # moto has no account-level suppression list
    if policy == "unsubscribe_all":
        assert contact["UnsubscribeAll"] is True
    else:
        assert _pref(contact, TOPIC_APPROVAL) == "OPT_OUT" and not contact.get("UnsubscribeAll")
    rep = outcomes.reputation(code)
    assert (rep.bounces, rep.complaints) == ((1, 0) if box == "bounce" else (0, 1))
    assert rep.warning  # one in a handful of sends is far above SES's warning levels
    rec = record(aws_factory, config, code, change.version, "submitted", change.change_id)
    assert rec is not None and rec.state.value == "sent"  # SES accepted it: the send itself succeeded


def _pref(contact: dict[str, Any], topic: str) -> str | None:
    for p in contact.get("TopicPreferences", []):
        if p["TopicName"] == topic:
            return str(p["SubscriptionStatus"])
    return None
