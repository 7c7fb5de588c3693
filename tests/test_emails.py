"""Email rendering: escaping, subject hygiene, schedule, branding, hidden block, MIME, calendar parts."""

from __future__ import annotations

import email
import email.policy
import importlib.resources
from email.message import EmailMessage
from typing import Any

import icalendar
import pytest

from changeconsole.models import HDR_CHANGE, HDR_CUSTOMER, HDR_EVENT, HDR_VERSION, Change, Config, EmailEvent
from changeconsole.services import emails
from changeconsole.services.localstack import build_local_config
from support.changes import change_doc

EVIL = '<script>alert("x")</script><img src=x onerror=alert(1)>'


@pytest.fixture
def config() -> Config:
    raw = build_local_config(2, endpoint="http://127.0.0.1:1")
    raw["branding"] = {
        "provider_name": "Example MSP",
        "accent_color": "#aa3300",
        "footer": "Example MSP <24x7>",
        "logo_url": "https://cdn.example.com/logo.png",
    }
    return Config.model_validate(raw)


def _change(**extra: Any) -> Change:
    return Change.model_validate(change_doc(["acme"], **extra))


def _parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def _message(config: Config, change: Change, event: EmailEvent, **kw: Any) -> EmailMessage:
    bodies = emails.render_bodies(change, event, config.customer("acme"), config, invite=kw.get("ics_method"))
    msg = emails.build_message(
        bodies,
        change,
        event,
        config.customer("acme"),
        config,
        recipient="a@acme.example.com",
        topic=kw.pop("topic", "aws-announce"),
        **kw,
    )
    return _parse(emails.raw_bytes(msg))


def _parts(msg: EmailMessage) -> dict[str, str]:
    out = {}
    for part in msg.walk():
        if not part.is_multipart():
            out[part.get_content_type()] = str(part.get_content())
    return out


@pytest.mark.parametrize(
    ("event", "action", "template_word"),
    [
        (EmailEvent.SUBMITTED, "Approval requested", "approve"),
        (EmailEvent.APPROVED, "Approved", "approved"),
        (EmailEvent.COMPLETED, "Completed", "completed"),
        (EmailEvent.CANCELLED, "Cancelled", "cancelled"),
        (EmailEvent.REMOVED, "No longer affects you", "no longer affects"),
    ],
)
def test_one_template_pair_per_event(
    config: Config, event: EmailEvent, action: str, template_word: str
) -> None:
    change = _change(status=event.value if event is not EmailEvent.REMOVED else "approved")
    bodies = emails.render_bodies(change, event, config.customer("acme"), config)
    # Issue 16: the action, the title, the change id and the customer, not an emoji and the title.
    assert bodies.subject == f"{action}: Patch the web fleet [{change.change_id}] — Acme Corporation"
    assert template_word in bodies.text and template_word in bodies.html
    assert "Acme Corporation" in bodies.text and "Acme Corporation" in bodies.html


def test_every_user_field_is_escaped_in_html(config: Config) -> None:
    change = _change(
        title=f"T {EVIL}",
        changeReason=f"R {EVIL}\nsecond line",
        implementationPlan=f"I {EVIL}",
        testPlan=f"P {EVIL}",
        customerImpact=f"C {EVIL}",
        rollbackPlan=f"B {EVIL}",
        snowTicket="<b>SNOW</b>",
        jiraTicket="<i>J</i>",
        submittedBy="<u>op</u>",
    )
    html = emails.render_bodies(change, EmailEvent.SUBMITTED, config.customer("acme"), config).html
    for raw in ("<script", "<img src=x", "<b>SNOW", "<i>J", "<u>op", "<24x7>"):
        assert raw not in html, raw
    assert html.count("&lt;script&gt;") == 7  # title x2 (title tag, heading), 5 long fields
    assert "R &lt;script&gt;" in html and "<br>\nsecond line" in html
    assert "&lt;b&gt;SNOW&lt;/b&gt;" in html and "Example MSP &lt;24x7&gt;" in html


@pytest.mark.parametrize(
    "bad", ["A\r\nBcc: evil@example.com", "A\nBcc: evil@example.com", "A\u2028Bcc: x@y", "A\x00\x1b"]
)
def test_subject_control_characters_are_stripped(config: Config, bad: str) -> None:
    change = _change().model_copy(update={"title": bad})  # bypasses validation, as a corrupt snapshot would
    subject = emails.subject_for(change, EmailEvent.SUBMITTED, config.customer("acme"))
    assert not any(ch in subject for ch in "\r\n\x00\x1b\u2028")
    msg = _message(config, change, EmailEvent.SUBMITTED, topic="aws-approval")
    assert msg["Bcc"] is None
    assert str(msg["Subject"]).startswith("Approval requested: A")
    assert len(msg.get_all("Subject") or []) == 1


@pytest.mark.parametrize(
    "title",
    [
        "Patch =?utf-8?q?=0D=0ABcc:_attacker@evil.example?=",
        "Patch =?utf-8?b?DQpCY2M6IGF0dGFja2VyQGV2aWwuZXhhbXBsZQ==?=",
    ],
)
def test_encoded_words_in_user_text_cannot_inject_headers(config: Config, title: str) -> None:
    change = _change(title=title)  # the model accepts these titles
    msg = _message(config, change, EmailEvent.SUBMITTED, topic="aws-approval")
    assert msg["Bcc"] is None and len(msg.get_all("Subject") or []) == 1
    assert "\n" not in str(msg["Subject"]) and "\r" not in str(msg["Subject"])
    shown = str(msg["Subject"]).replace("\u2060", "")
    assert shown == f"Approval requested: {title} [{change.change_id}] — Acme Corporation"  # as typed


def test_schedule_in_the_change_timezone_with_abbreviation_and_utc(config: Config) -> None:
    winter = emails.schedule_of(_change())
    assert winter is not None
    assert (
        winter.local_start == "Thu 31 Jan 2030, 23:00 CET"
        and winter.local_end == "Fri 01 Feb 2030, 01:00 CET"
    )
    assert winter.utc_start == "Thu 31 Jan 2030, 22:00 UTC"
    summer = emails.schedule_of(
        _change(
            implementationStart="2030-07-01T08:00:00Z",
            implementationEnd="2030-07-01T09:00:00Z",
            timezone="America/New_York",
        )
    )
    assert summer is not None and summer.local_start == "Mon 01 Jul 2030, 04:00 EDT"
    text = emails.render_bodies(_change(), EmailEvent.SUBMITTED, config.customer("acme"), config).text
    assert "23:00 CET" in text and "22:00 UTC" in text and "Europe/Berlin" in text
    unscheduled = _change(implementationStart=None, implementationEnd=None)
    assert emails.schedule_of(unscheduled) is None
    assert (
        "not scheduled"
        in emails.render_bodies(unscheduled, EmailEvent.SUBMITTED, config.customer("acme"), config).text
    )


def test_branding_link_and_hidden_block(config: Config) -> None:
    msg = _message(config, _change(), EmailEvent.SUBMITTED, topic="aws-approval")
    parts = _parts(msg)
    html, text = parts["text/html"], parts["text/plain"]
    link = "https://changes.msp.example.com/changes/CHG-2026-03-01T10-00-00-abc123"
    assert link in html and link in text
    assert "#aa3300" in html and 'src="https://cdn.example.com/logo.png"' in html
    assert msg[HDR_CHANGE] == "CHG-2026-03-01T10-00-00-abc123"
    assert (msg[HDR_VERSION], msg[HDR_EVENT], msg[HDR_CUSTOMER]) == ("2", "submitted", "acme")
    assert 'id="changeconsole-meta"' in html and "display:none" in html
    for attr in (
        'data-change-id="CHG-2026-03-01T10-00-00-abc123"',
        'data-version="2"',
        'data-event="submitted"',
        'data-customer="acme"',
    ):
        assert attr in html
    assert msg["From"].addresses[0].addr_spec == config.sender_for("acme")
    assert msg["From"].addresses[0].display_name == "Example MSP"
    assert msg["List-Unsubscribe"].startswith("<mailto:") and "aws-approval" in msg["List-Unsubscribe"]


def test_no_link_without_portal_and_unsafe_logo_is_dropped(config: Config) -> None:
    raw = config.to_json_dict()
    raw["email_config"].pop("portal_base_url")
    raw["branding"]["logo_url"] = "javascript:alert(1)"
    plain = Config.model_validate(raw)
    html = emails.render_bodies(_change(), EmailEvent.SUBMITTED, plain.customer("acme"), plain).html
    assert "/changes/" not in html and "javascript:" not in html and "<img" not in html


def test_send_arguments_are_raw_mime_with_list_management(config: Config) -> None:
    change = _change()
    bodies = emails.render_bodies(change, EmailEvent.SUBMITTED, config.customer("acme"), config)
    msg = emails.build_message(
        bodies,
        change,
        EmailEvent.SUBMITTED,
        config.customer("acme"),
        config,
        recipient="a@acme.example.com",
        topic="aws-approval",
    )
    kwargs = emails.send_kwargs(
        msg,
        sender="s@x.example.com",
        recipient="a@acme.example.com",
        list_name="changeconsole",
        topic="aws-approval",
    )
    assert kwargs["ListManagementOptions"] == {
        "ContactListName": "changeconsole",
        "TopicName": "aws-approval",
    }
    assert kwargs["Destination"] == {"ToAddresses": ["a@acme.example.com"]}
    raw = kwargs["Content"]["Raw"]["Data"]
    assert isinstance(raw, bytes) and b"\r\n" in raw
    parsed = _parse(raw)
    assert parsed.get_content_type() == "multipart/alternative"
    assert set(_parts(parsed)) == {"text/plain", "text/html"}


def _calendar(msg: EmailMessage) -> tuple[str, icalendar.Calendar]:
    for part in msg.walk():
        if part.get_content_type() == "text/calendar":
            assert part.get_filename() == "invite.ics"
            return part.get_param("method"), icalendar.Calendar.from_ical(part.get_content())
    raise AssertionError("no calendar part")


def test_calendar_request_and_cancel_share_one_uid(config: Config) -> None:
    uids, seqs = set(), []
    for version, status, method in (
        (3, "approved", "REQUEST"),
        (5, "approved", "REQUEST"),
        (6, "cancelled", "CANCEL"),
    ):
        change = _change(
            version=version,
            status=status,
            include_meeting=True,
            approved=True,
            meeting_metadata={"join_url": "https://meet.example.com/abc"},
        )
        ics = emails.calendar_invite(
            change,
            method=method,
            organizer="s@x.example.com",
            attendee="a@acme.example.com",
            link="https://x.example.com/c",
        )
        msg = _message(config, change, EmailEvent(status), ics=ics, ics_method=method)
        assert msg.get_content_type() == "multipart/mixed"
        part_method, cal = _calendar(msg)
        assert part_method == method and str(cal["METHOD"]) == method
        event = cal.walk("VEVENT")[0]
        uids.add(str(event["UID"]))
        seqs.append(int(event["SEQUENCE"]))
        assert str(event["STATUS"]) == ("CANCELLED" if method == "CANCEL" else "CONFIRMED")
        assert event.decoded("DTSTART").isoformat() == "2030-01-31T22:00:00+00:00"
        assert str(event["LOCATION"]) == "https://meet.example.com/abc"
        assert "a@acme.example.com" in str(event["ATTENDEE"])
    assert uids == {"CHG-2026-03-01T10-00-00-abc123@changeconsole"}
    assert seqs == [3, 5, 6]


def test_templates_ship_as_package_data() -> None:
    folder = importlib.resources.files("changeconsole").joinpath("templates")
    names = {p.name for p in folder.iterdir()}
    for style in emails.EVENT_STYLES.values():
        assert {f"{style.template}.html", f"{style.template}.txt"} <= names
    assert {"base.html", "base.txt"} <= names
    env = emails.environment()
    assert env.autoescape("x.html") and not env.autoescape("x.txt")


def _resubmitted(**mod: Any) -> Change:
    """v4: an approved v3 edited back to submitted, with its modification as the service writes it."""
    modification = {
        "timestamp": "2026-03-02T10:00:00Z",
        "user_id": "operator",
        "modification_type": "edited",
        "version": 4,
        "from_status": "approved",
        "to_status": "submitted",
        "changed_fields": ["customers", "implementationPlan", "implementationStart", "implementationEnd"],
    } | mod
    doc = change_doc(["acme", "globex"], version=4, prior_status="approved", approved=True)
    return Change.model_validate(doc | {"modifications": [modification]})


def test_a_resubmission_says_what_it_replaces_and_what_changed(config: Config) -> None:
    bodies = emails.render_bodies(_resubmitted(), EmailEvent.SUBMITTED, config.customer("acme"), config)
    assert bodies.subject.startswith("Approval requested (revised): Patch the web fleet [")
    for text in (bodies.text, " ".join(bodies.html.split())):
        assert "it replaces version 3" in text
        assert "That approval no longer stands" in text
        assert "What changed: Implementation window, Implementation plan." in text
        assert "globex" not in text  # the customer list is not what a customer is told (isolation)


def test_a_customer_added_by_the_edit_gets_a_first_request(config: Config) -> None:
    change = _resubmitted(added_customers=["acme"])
    bodies = emails.render_bodies(change, EmailEvent.SUBMITTED, config.customer("acme"), config)
    assert bodies.subject.startswith("Approval requested: ")
    assert "replaces" not in bodies.text


def test_a_resubmission_of_a_submitted_change_keeps_no_approval_to_void(config: Config) -> None:
    change = _resubmitted(from_status="submitted", changed_fields=["changeTitle"])
    change = change.model_copy(update={"prior_status": "submitted"})
    revision = emails.revision_of(change, "acme")
    assert revision == emails.Revision(replaces=3, approval_void=False, changed=("Title",))
    unrecorded = _resubmitted(changed_fields=None)
    assert emails.revision_of(unrecorded, "acme") == emails.Revision(3, True, None)
    assert (
        "What changed"
        not in emails.render_bodies(unrecorded, EmailEvent.SUBMITTED, config.customer("acme"), config).text
    )


def test_cancellation_tells_the_reason_escaped(config: Config) -> None:
    mod = {
        "timestamp": "2026-03-02T10:00:00Z",
        "user_id": "operator",
        "modification_type": "cancelled",
        "version": 5,
        "reason": f"Vendor {EVIL}",
    }
    change = _change(status="cancelled", version=5, approved=True, modifications=[mod])
    bodies = emails.render_bodies(change, EmailEvent.CANCELLED, config.customer("acme"), config)
    assert f"Reason: Vendor {EVIL}" in bodies.text
    assert "Reason: Vendor &lt;script&gt;" in bodies.html and "<script" not in bodies.html


def test_meeting_details_in_the_notice_and_the_invite(config: Config) -> None:
    meta = {
        "organizer": "cab.chair@msp.example.com",
        "join_url": "https://meet.example.com/j/123?pwd=a&b=c",
        "start_time": "2030-01-31T22:00:00Z",
        "end_time": "2030-01-31T22:45:00Z",
        "meeting_id": "graph-abc",  # the running system's key: kept, not ours to read
    }
    change = _change(status="approved", version=3, include_meeting=True, meeting_metadata=meta)
    bodies = emails.render_bodies(
        change, EmailEvent.APPROVED, config.customer("acme"), config, invite="REQUEST"
    )
    assert "Meeting:   Thu 31 Jan 2030, 23:00 CET \u2013 23:45" in bodies.text
    assert "https://meet.example.com/j/123?pwd=a&b=c" in bodies.text
    assert 'href="https://meet.example.com/j/123?pwd=a&amp;b=c"' in bodies.html
    assert "organized by cab.chair@msp.example.com" in bodies.text
    ics = emails.calendar_invite(
        change, method="REQUEST", organizer="sender@x.example.com", attendee=None, link=None
    )
    event = icalendar.Calendar.from_ical(ics).walk("VEVENT")[0]
    assert event.decoded("DTEND").isoformat() == "2030-01-31T22:45:00+00:00"
    assert "cab.chair@msp.example.com" in str(event["ORGANIZER"])
    assert str(event["LOCATION"]) == meta["join_url"]
