"""What customers receive is safe: user text is escaped in HTML, cannot inject headers, and oversize input
is refused before anything is stored or sent."""

from __future__ import annotations

import email
import email.policy
import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from changeconsole.cli import main
from changeconsole.models import (
    FINAL_STATES,
    MAX_LONG_TEXT,
    MAX_TICKET,
    MAX_TITLE,
    Change,
    DeliveryState,
    EmailEvent,
)
from changeconsole.services import emails
from changeconsole.services.aws import AwsFactory
from changeconsole.services.lifecycle import ChangeService
from changeconsole.services.status import StatusStore
from changeconsole.worker import WorkerOptions, start_background
from support.changes import END, START
from support.mail import outbox
from support.waiting import wait_until

PAYLOAD = "<script>alert('x')</script><img src=x onerror=alert(1)>\"'><svg onload=alert(2)> {{7*7}} &amp;"
SHORT = "<script>x</script>\"'><b>"  # fits a ticket (64)
OPERATOR = "<img src=x onerror=alert(9)>"
# Regression: Python < 3.11.10's email package decodes an RFC 2047 encoded word found in a header value
# and writes its CR/LF raw (CVE-2024-6923); emails.py neutralises "=?" in user text (fixed in 2f47d13).
ENCODED_WORD_TITLES = [
    "Patch =?utf-8?q?=0D=0ABcc:_attacker@evil.example?=",
    "Patch =?utf-8?b?DQpCY2M6IGF0dGFja2VyQGV2aWwuZXhhbXBsZQ==?=",
]
FORBIDDEN_TAGS = {"script", "svg", "iframe", "object", "embed", "img", "form", "input", "math", "base"}


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))


def assert_inert_html(html: str) -> None:
    parser = _Tags()
    parser.feed(html)
    for tag, attrs in parser.tags:
        assert tag not in FORBIDDEN_TAGS, f"<{tag}> in the HTML part"
        for name, value in attrs:
            assert not name.startswith("on"), f"event handler attribute {name} on <{tag}>"
            if name in ("href", "src", "action") and value:
                assert not value.strip().lower().startswith(("javascript:", "data:", "vbscript:")), value
    assert "&lt;script&gt;" in html, "user text is shown, escaped"


def assert_clean_headers(raw: str) -> email.message.Message:
    msg = email.message_from_string(raw, policy=email.policy.default)
    keys = [k.lower() for k in msg]
    for one in ("subject", "from", "to", "message-id", "x-changeconsole-change"):
        assert keys.count(one) == 1, (one, keys)
    assert "bcc" not in keys and "cc" not in keys, keys
    assert "\n" not in str(msg["Subject"]) and "\r" not in str(msg["Subject"])
    return msg


@pytest.mark.timeout(240)
def test_html_and_script_in_every_user_field_arrive_escaped(
    make_stack: Any, aws_factory: AwsFactory, moto_endpoint: str
) -> None:
    stack = make_stack(customers=2, contacts=5)
    raw_config = stack.config.to_json_dict()
    first = sorted(raw_config["customer_mappings"])[0]
    raw_config["customer_mappings"][first]["customer_name"] = PAYLOAD
    raw_config["branding"] = {"provider_name": PAYLOAD, "footer": PAYLOAD}
    config = type(stack.config).model_validate(raw_config)
    codes = sorted(config.customer_mappings)
    fields = {
        "changeTitle": PAYLOAD,
        "changeReason": PAYLOAD + "\nsecond line " + PAYLOAD,
        "implementationPlan": PAYLOAD,
        "testPlan": PAYLOAD,
        "customerImpact": PAYLOAD,
        "rollbackPlan": PAYLOAD,
        "snowTicket": SHORT,
        "jiraTicket": SHORT,
        "customers": codes,
        "implementationStart": START,
        "implementationEnd": END,
        "include_meeting": True,
        "meeting_metadata": {"location": PAYLOAD, "join_url": "javascript:alert(1)"},
    }
    service = ChangeService(aws_factory, config, operator=OPERATOR)
    status = StatusStore(aws_factory, config)
    options = WorkerOptions(
        poll_wait=1, visibility_timeout=10, backoff_base=0.5, health_port=0, emit_emf=False
    )

    def step(result: Any) -> Change:
        """One lifecycle step, delivered before the next (a notice due only while it is current)."""
        change = result.change
        wait_until(
            lambda: (
                (recs := status.records(change.change_id, version=change.version))
                and len(recs) == len(result.customers)
                and all(r.state in FINAL_STATES for r in recs)
            ),
            60,
            f"v{change.version} delivered",
        )
        return change

    handle = start_background(aws_factory, config, options=options)
    try:
        one = step(service.submit(Change.model_validate(fields)))
        step(service.approve(one.change_id))
        step(service.complete(one.change_id))
        two = step(service.submit(Change.model_validate(fields)))
        # Removing a notified customer sends it the "no longer affects you" notice.
        two = step(service.edit(two.model_copy(update={"customers": codes[:1]})))
        step(service.approve(two.change_id))
        step(service.cancel(two.change_id))
    finally:
        handle.stop(timeout=10)
    recs = status.records(one.change_id) + status.records(two.change_id)
    assert {r.state for r in recs} == {DeliveryState.SENT}
    mails = outbox(moto_endpoint)
    assert {m.event for m in mails} == {e.value for e in EmailEvent}
    for mail in mails:
        assert_clean_headers(mail.raw)
        assert_inert_html(mail.html)
        assert "{{7*7}}" in mail.text and "{{7*7}}" in mail.html  # data, never evaluated as a template
        assert "javascript:" not in mail.html.lower()


@pytest.mark.parametrize(
    "title",
    [
        "Patch\r\nBcc: attacker@evil.example",
        "Patch\nX-Injected: yes",
        "Patch\rTo: attacker@evil.example",
        "Patch\x00Bcc: attacker@evil.example",
    ],
)
def test_cr_lf_in_titles_is_refused_by_the_model(title: str) -> None:
    with pytest.raises(ValidationError) as info:
        Change.model_validate({"changeTitle": title, "customers": ["acme"]})
    assert any(e["loc"] == ("changeTitle",) for e in info.value.errors())


@pytest.mark.parametrize(
    "title",
    [
        "Patch\u2028Bcc: attacker@evil.example",
        "Patch\u2029Bcc: attacker@evil.example",
        "Patch\x85Bcc: attacker@evil.example",
        *ENCODED_WORD_TITLES,
        "Patch " + "x" * (MAX_TITLE - 6),
    ],
)
def test_titles_the_model_accepts_still_cannot_inject_headers(title: str) -> None:
    """Line separators the model lets through are made one header-safe line in the email."""
    config_doc = {
        "aws_region": "us-east-1",
        "s3_config": {"bucket_name": "changeconsole-local-metadata"},
        "email_config": {"sender_address": "notices@msp.example.com"},
        "customer_mappings": {
            "acme": {
                "customer_code": "acme",
                "customer_name": "Acme\r\nBcc: x@evil.example",
                "ses_role_arn": "arn:aws:iam::210000000001:role/ses",
                "sqs_queue_arn": "arn:aws:sqs:us-east-1:123456789012:changeconsole-acme",
            }
        },
        "branding": {"provider_name": "MSP\r\nBcc: y@evil.example"},
    }
    from changeconsole.models import Config

    config = Config.model_validate(config_doc)
    change = Change.model_validate(
        {"changeTitle": title, "customers": ["acme"], "implementationStart": START, "implementationEnd": END}
    )
    mapping = config.customer("acme")
    for event in EmailEvent:
        bodies = emails.render_bodies(change, event, mapping, config)
        msg = emails.build_message(
            bodies, change, event, mapping, config, recipient="alex.ng@acme.example.com", topic="aws-approval"
        )
        assert_clean_headers(emails.raw_bytes(msg).decode("utf-8", "replace"))
        # A recipient address (customer-side data) carrying a header is refused, never written.
        try:
            msg = emails.build_message(
                bodies,
                change,
                event,
                mapping,
                config,
                recipient="alex.ng@acme.example.com\r\nBcc: z@evil.example",
                topic="aws-approval",
            )
        except ValueError:
            continue
        parsed = assert_clean_headers(emails.raw_bytes(msg).decode("utf-8", "replace"))
        assert "evil.example" not in str(parsed["To"])


def _oversize_cases() -> list[tuple[str, dict[str, Any]]]:
    base: dict[str, Any] = {"changeTitle": "ok", "customers": ["acme"]}
    return [
        ("changeTitle", {**base, "changeTitle": "x" * (MAX_TITLE + 1)}),
        ("changeReason", {**base, "changeReason": "x" * (MAX_LONG_TEXT + 1)}),
        ("implementationPlan", {**base, "implementationPlan": "x" * (MAX_LONG_TEXT + 1)}),
        ("rollbackPlan", {**base, "rollbackPlan": "x" * (MAX_LONG_TEXT + 1)}),
        ("snowTicket", {**base, "snowTicket": "x" * (MAX_TICKET + 1)}),
        ("jiraTicket", {**base, "jiraTicket": "x" * (MAX_TICKET + 1)}),
        ("createdBy", {**base, "createdBy": "x" * 257}),
        ("customers", {**base, "customers": [f"c{i:04d}" for i in range(5001)]}),
    ]


@pytest.mark.parametrize(("field", "doc"), _oversize_cases(), ids=[c[0] for c in _oversize_cases()])
def test_oversize_fields_are_rejected_with_their_name(field: str, doc: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as info:
        Change.model_validate(doc)
    assert field in {str(e["loc"][0]) for e in info.value.errors()}


def test_oversize_draft_is_refused_by_the_cli_and_nothing_is_stored(
    make_stack: Any, aws_factory: AwsFactory, moto_endpoint: str, tmp_path: Path
) -> None:
    stack = make_stack(customers=1, contacts=1)
    code = sorted(stack.config.customer_mappings)[0]
    doc = {
        "changeTitle": "x" * (MAX_TITLE + 1),
        "changeReason": "y" * (MAX_LONG_TEXT + 5),
        "customers": [code],
    }
    path = tmp_path / "change.json"
    path.write_text(json.dumps(doc))
    args = ["--config", str(stack.config_path), "--endpoint-url", moto_endpoint, "change", "draft", str(path)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    keys = (
        aws_factory.client("s3")
        .list_objects_v2(Bucket=stack.config.s3_config.bucket_name)
        .get("Contents", [])
    )
    assert not [k["Key"] for k in keys if k["Key"].startswith(("drafts/", "archive/", "customers/"))]
