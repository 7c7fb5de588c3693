"""Preview as the customer and test send, on the local stack: what is previewed is what the worker sends."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from changeconsole.models import HDR_TEST, TOPIC_ANNOUNCE, TOPIC_APPROVAL, TOPIC_CALENDAR, Change, Config
from changeconsole.services import notices, preview
from changeconsole.services.authz import Authorizer
from changeconsole.services.aws import AwsFactory
from changeconsole.services.ledger import Ledger
from changeconsole.services.preview import PreviewRefused, PreviewService
from changeconsole.services.status import StatusStore
from changeconsole.worker import processor
from support.aws import audit_events
from support.changes import CHANGE_ID, change_doc
from support.cli import Cli
from support.mail import outbox, subscribed
from support.waiting import wait_until
from support.worker import final, running_worker, submit


def _restrict(config: Config, code: str, allowed: list[str]) -> Config:
    """``config`` with ``code`` limited to ``allowed`` recipients (restricted_recipients)."""
    raw = config.to_json_dict()
    raw["customer_mappings"][code]["restricted_recipients"] = allowed
    return Config.model_validate(raw)


def _lf(text: str) -> str:
    return text.replace("\r\n", "\n")


def _without_stamp(ics: str) -> str:
    return re.sub(r"DTSTAMP:[0-9TZ]+\r?\n", "", ics)


def test_worker_and_preview_share_one_decision() -> None:
    assert processor.prepare_notice is notices.prepare_notice
    assert preview.prepare_notice is notices.prepare_notice


def test_preview_is_exactly_what_the_worker_sends(
    make_stack: Any, aws_factory: AwsFactory, moto_endpoint: str
) -> None:
    stack = make_stack(customers=3, contacts=5)
    codes = sorted(stack.config.customer_mappings)
    a, b = codes[0], codes[1]
    announce_a = sorted(subscribed(a, 5, TOPIC_ANNOUNCE))
    config = _restrict(stack.config, a, [announce_a[0].upper()])  # case-insensitive whitelist
    doc = change_doc([a, b], status="approved", version=3, include_meeting=True, approved=True)
    change = Change.model_validate(doc)
    service = PreviewService(aws_factory, config, authz=Authorizer(aws_factory, config, operator="alice"))
    previews = {code: service.preview(change, code) for code in (a, b)}

    # Who: the subscribed contacts of each customer's own account, after the whitelist.
    pa, pb = previews[a], previews[b]
    assert [r.address.lower() for r in pa.recipients] == [announce_a[0]]
    assert pa.restricted and pa.excluded_by_whitelist == len(announce_a) - 1
    expected_b = subscribed(b, 5, TOPIC_ANNOUNCE) | subscribed(b, 5, TOPIC_CALENDAR)
    assert {r.address.lower() for r in pb.recipients} == expected_b
    assert pb.per_topic == {
        TOPIC_ANNOUNCE: len(subscribed(b, 5, TOPIC_ANNOUNCE)),
        TOPIC_CALENDAR: len(subscribed(b, 5, TOPIC_CALENDAR)),
    }
    assert pb.customer_name == config.customer(b).customer_name
    assert pb.customer_name in pb.text and pa.customer_name in pa.text
    assert pb.calendar_method == "REQUEST" and pb.calendar is not None

    with running_worker(aws_factory, config):
        submit(aws_factory, config, doc)
        wait_until(lambda: final(aws_factory, config, [a, b], 3, "approved"), 30, what="both customers final")
    mails = outbox(moto_endpoint, CHANGE_ID)
    for code, p in previews.items():
        sent = {m.to[0].lower(): m for m in mails if m.customer == code}
        assert set(sent) == {r.address.lower() for r in p.recipients}
        for r in p.recipients:
            assert bool(sent[r.address.lower()].attachments) is r.calendar
        mail = sent[p.sample_to.lower()]
        assert mail.subject == p.subject
        assert _lf(mail.text) == p.text
        assert _lf(mail.html) == p.html
        for name in ("From", "List-Unsubscribe", "X-Changeconsole-Version", "X-Changeconsole-Event"):
            assert mail.headers[name] == p.headers[name]
        if p.calendar is not None:
            raw = mail.raw.split("BEGIN:VCALENDAR", 1)[1].split("END:VCALENDAR", 1)[0]
            shown = p.calendar.split("BEGIN:VCALENDAR", 1)[1].split("END:VCALENDAR", 1)[0]
            assert _without_stamp(_lf(raw.replace("=\r\n", ""))) == _without_stamp(shown)


def test_a_step_not_taken_yet_is_shown_as_it_will_be_archived(
    make_stack: Any, aws_factory: AwsFactory
) -> None:
    stack = make_stack(customers=2, contacts=5)
    code = sorted(stack.config.customer_mappings)[0]
    service = PreviewService(
        aws_factory, stack.config, authz=Authorizer(aws_factory, stack.config, operator="carol")
    )
    submitted = Change.model_validate(change_doc([code], version=2))
    approved = service.preview(submitted, code, preview.EmailEvent.APPROVED)
    assert approved.projected and approved.version == 3 and approved.status == "approved"
    assert "Approved by carol" in approved.text
    assert {r.address.lower() for r in approved.recipients} == subscribed(code, 5, TOPIC_ANNOUNCE)
    draft = Change.model_validate({**change_doc([code], version=1, status="draft")})
    request = service.preview(draft, code)
    assert request.event == "submitted" and request.version == 2 and request.topics == [TOPIC_APPROVAL]
    assert {r.address.lower() for r in request.recipients} == subscribed(code, 5, TOPIC_APPROVAL)
    as_is = service.preview(submitted, code)
    assert not as_is.projected and as_is.version == 2


def test_preview_refuses_a_customer_the_change_does_not_target(
    make_stack: Any, aws_factory: AwsFactory
) -> None:
    stack = make_stack(customers=2, contacts=2)
    a, b = sorted(stack.config.customer_mappings)
    change = Change.model_validate(change_doc([a]))
    service = PreviewService(
        aws_factory, stack.config, authz=Authorizer(aws_factory, stack.config, operator="alice")
    )
    with pytest.raises(PreviewRefused, match="does not target"):
        service.preview(change, b)
    with pytest.raises(PreviewRefused, match="unknown customer"):
        service.preview(change, "nobody")
    removed = service.preview(change, b, preview.EmailEvent.REMOVED)  # the removal notice may go to b
    assert removed.event == "removed"


def test_cli_preview_as_two_customers_and_a_test_send(
    make_stack: Any, aws_factory: AwsFactory, moto_endpoint: str, tmp_path: Path
) -> None:
    stack = make_stack(customers=3, contacts=5)
    a, b = sorted(stack.config.customer_mappings)[:2]
    cli = Cli(stack, tmp_path)
    path = cli.file(change_doc([a, b], version=1, status="draft"))
    html = tmp_path / "notice.html"
    first = cli.json("change", "preview", path, "--customer", a, "--html", str(html))
    second = cli.json("change", "preview", path, "--customer", b)
    assert first["customer"] == a and second["customer"] == b
    assert first["customer_name"] in first["text"] and second["customer_name"] in second["text"]
    assert {r["address"].lower() for r in first["recipients"]} == subscribed(a, 5, TOPIC_APPROVAL)
    assert {r["address"].lower() for r in second["recipients"]} == subscribed(b, 5, TOPIC_APPROVAL)
    assert html.read_text(encoding="utf-8") == first["html"]
    human = cli("change", "preview", path, "--customer", b)
    assert human.exit_code == 0 and second["customer_name"] in human.stdout
    assert cli("change", "preview", path, "--customer", "nobody").exit_code == 2

    bad = cli("change", "test-send", path, "--customer", a, "--to", "not-an-address")
    assert bad.exit_code == 2
    sent = cli.json("change", "test-send", path, "--customer", a, "--to", "me@operator.example.org")
    assert sent["to"] == "me@operator.example.org" and sent["message_id"] and sent["audit_key"]
    mails = [m for m in outbox(moto_endpoint, CHANGE_ID) if "me@operator.example.org" in m.to]
    assert len(mails) == 1
    mail = mails[0]
    assert mail.subject.startswith("[TEST] ") and mail.headers[HDR_TEST] == "true"
    assert mail.customer == a and _lf(mail.text) == first["text"]
    assert len(outbox(moto_endpoint, CHANGE_ID)) == 1, "nobody else got anything"
    # Never a delivery: no status record, no ledger item; audited by the authorization point.
    assert StatusStore(aws_factory, stack.config).records(CHANGE_ID) == []
    assert Ledger(aws_factory, stack.config).latest(CHANGE_ID, a) is None
    [entry] = [
        e
        for e in audit_events(aws_factory, stack.config)
        if e.get("type") == "operator.action" and e.get("action") == "change.test-send"
    ]
    assert entry["result"] == "ok" and entry["customers"] == [a] and entry["change_id"] == CHANGE_ID
    assert entry["message_id"] == sent["message_id"] and entry["recipient"] == "me@operator.example.org"
    assert sent["audit_key"] == entry["_key"]
