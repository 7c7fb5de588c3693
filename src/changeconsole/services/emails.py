"""Change notice emails: Jinja2 templates (autoescaped HTML + text), raw MIME, calendar invites.

One template pair per event under ``changeconsole/templates/``. Every user-entered value is escaped
in HTML; header values are stripped of control characters (no header injection). Each email carries
the hidden machine-readable block: ``X-Changeconsole-*`` headers mirrored in a hidden HTML element.
"""

from __future__ import annotations

import email.policy
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from functools import lru_cache
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import icalendar
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape

from ..models import (
    HDR_CHANGE,
    HDR_CUSTOMER,
    HDR_EVENT,
    HDR_VERSION,
    Change,
    ChangeStatus,
    Config,
    CustomerMapping,
    EmailEvent,
)

# Control characters, DEL, C1 controls and Unicode line/paragraph separators.
_HEADER_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


@dataclass(frozen=True)
class EventStyle:
    emoji: str
    label: str
    template: str


EVENT_STYLES: dict[EmailEvent, EventStyle] = {
    EmailEvent.SUBMITTED: EventStyle("📋", "Approval requested", "approval_request"),
    EmailEvent.APPROVED: EventStyle("✅", "Approved", "approved"),
    EmailEvent.COMPLETED: EventStyle("🏁", "Completed", "completed"),
    EmailEvent.CANCELLED: EventStyle("🚫", "Cancelled", "cancelled"),
    EmailEvent.REMOVED: EventStyle("🔕", "No longer affects you", "removed"),
}

# SMTP line endings; headers fold only past RFC 5322's hard limit (a folded List-Unsubscribe breaks).
MIME_POLICY = email.policy.SMTP.clone(max_line_length=998)

DASH = "\u2013"
ICS_REQUEST = "REQUEST"
ICS_CANCEL = "CANCEL"


# Put between "=" and "?" so user text never forms an RFC 2047 encoded word: Python before 3.11.10
# decodes one in a header value and writes its CR/LF raw when serializing (CVE-2024-6923).
_WORD_JOINER = "\u2060"


def clean_header(value: str, limit: int = 900) -> str:
    """One header-safe line: control characters become spaces, whitespace collapsed, no encoded words."""
    line = " ".join(_HEADER_UNSAFE.sub(" ", value).split())[:limit]
    return line.replace("=?", f"={_WORD_JOINER}?")


REVISED_LABEL = "Approval requested (revised)"


def subject_for(
    change: Change, event: EmailEvent, customer: CustomerMapping, *, revision: Revision | None = None
) -> str:
    """``Approval requested: <title> [CHG-…] — <customer>``: what happened, to which change, for whom
    (the id in brackets: mail filters and threads key on it). Control characters stripped."""
    label = REVISED_LABEL if revision is not None else EVENT_STYLES[event].label
    title = " ".join(change.title.split())[:200]
    return clean_header(f"{label}: {title} [{change.change_id}] — {customer.customer_name}", 400)


# What a customer reads as changed, by JSON field (an allow-list: lifecycle stamps, the customer list
# (other customers' codes) and keys of other systems never reach a customer's email).
NOTICE_FIELDS: dict[str, str] = {
    "changeTitle": "Title",
    "implementationStart": "Implementation window",
    "implementationEnd": "Implementation window",
    "timezone": "Time zone",
    "snowTicket": "ServiceNow ticket",
    "jiraTicket": "Jira ticket",
    "changeReason": "Reason",
    "customerImpact": "Customer impact",
    "implementationPlan": "Implementation plan",
    "testPlan": "Test plan",
    "rollbackPlan": "Rollback plan",
    "include_meeting": "Calendar invite",
    "meeting_metadata": "Meeting details",
}


@dataclass(frozen=True)
class Revision:
    """A resubmitted change told to a customer the earlier version targeted: the version it replaces,
    whether that one was approved (its approval, and invite, no longer stand) and what changed
    (None: not recorded)."""

    replaces: int
    approval_void: bool
    changed: tuple[str, ...] | None


def revision_of(change: Change, customer: str) -> Revision | None:
    """What ``change`` (a submitted version after a submitted or approved one) revises for ``customer``,
    from the archive record alone (its last modification: ``changed_fields``, ``added_customers``), so
    every recipient, retry and redrive of the notice reads the same. None: not a revision for it."""
    if change.status is not ChangeStatus.SUBMITTED or change.prior_status not in (
        ChangeStatus.SUBMITTED,
        ChangeStatus.APPROVED,
    ):
        return None
    mod = next(
        (m for m in reversed(change.modifications) if (m.model_extra or {}).get("version") == change.version),
        None,
    )
    extra = (mod.model_extra or {}) if mod is not None else {}
    added = extra.get("added_customers")
    if isinstance(added, list) and customer in added:
        return None  # its first request: it never saw the earlier version
    fields = extra.get("changed_fields")
    changed: tuple[str, ...] | None = None
    if isinstance(fields, list):
        changed = tuple(dict.fromkeys(label for key, label in NOTICE_FIELDS.items() if key in fields))
    return Revision(
        replaces=change.version - 1,
        approval_void=change.prior_status is ChangeStatus.APPROVED,
        changed=changed,
    )


def change_link(config: Config, change_id: str) -> str | None:
    base = config.email_config.portal_base_url
    return f"{base}/changes/{quote(change_id, safe='')}" if base else None


def calendar_uid(change_id: str) -> str:
    """One stable UID per change: every version updates (or cancels) the same calendar event."""
    return f"{change_id}@changeconsole"


@dataclass(frozen=True)
class Schedule:
    tz: str
    local_start: str
    local_end: str
    utc_start: str
    utc_end: str

    @property
    def local_line(self) -> str:
        return f"{self.local_start} {DASH} {self.local_end}"

    @property
    def utc_line(self) -> str:
        return f"{self.utc_start} {DASH} {self.utc_end}"


def _local(dt: datetime, zone: ZoneInfo) -> str:
    loc = dt.astimezone(zone)
    return f"{loc:%a %d %b %Y, %H:%M} {loc.tzname() or zone.key}"


def schedule_of(change: Change) -> Schedule | None:
    """The window in the change's timezone (with its abbreviation) and in UTC."""
    start, end = change.start_dt, change.end_dt
    if start is None or end is None:
        return None
    zone = ZoneInfo(change.timezone)
    return Schedule(
        tz=change.timezone,
        local_start=_local(start, zone),
        local_end=_local(end, zone),
        utc_start=f"{start.astimezone(UTC):%a %d %b %Y, %H:%M} UTC",
        utc_end=f"{end.astimezone(UTC):%a %d %b %Y, %H:%M} UTC",
    )


def _nl2br(value: Any) -> Markup:
    """Escape, then keep line breaks."""
    lines = str(value or "").splitlines()
    return Markup("<br>\n").join(escape(line) for line in lines)


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("changeconsole", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html", "xml"), default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["nl2br"] = _nl2br
    return env


@dataclass(frozen=True)
class Bodies:
    subject: str
    text: str
    html: str


def _safe_url(url: str | None) -> str | None:
    return url if url and re.match(r"^https?://[^\s\"'<>]+$", url) else None


def render_bodies(
    change: Change,
    event: EmailEvent,
    customer: CustomerMapping,
    config: Config,
    *,
    invite: str | None = None,
) -> Bodies:
    """Subject, text and HTML of one event's email for one customer.

    ``invite``: ``REQUEST``/``CANCEL`` when a calendar part rides along (mentioned in the text).
    """
    style = EVENT_STYLES[event]
    branding = config.branding
    revision = revision_of(change, customer.customer_code) if event is EmailEvent.SUBMITTED else None
    subject = subject_for(change, event, customer, revision=revision)
    meeting = change.meeting
    context = {
        "change": change,
        "event": event.value,
        "label": REVISED_LABEL if revision is not None else style.label,
        "emoji": style.emoji,
        "customer_code": customer.customer_code,
        "customer_name": customer.customer_name,
        "environment": customer.environment,
        "provider": branding.provider_name,
        "accent": branding.accent_color,
        "footer": branding.footer,
        "logo_url": _safe_url(branding.logo_url),
        "link": change_link(config, change.change_id),
        "schedule": schedule_of(change),
        "invite": invite,
        "subject": subject,
        "revision": revision,
        "meeting": meeting if change.include_meeting else None,
        "meeting_window": meeting_window(change) if change.include_meeting else None,
        "cancel_reason": change.cancel_reason,
    }
    env = environment()
    text = env.get_template(f"{style.template}.txt").render(context)
    html = env.get_template(f"{style.template}.html").render(context)
    return Bodies(subject=subject, text=text, html=html)


def meeting_window(change: Change) -> str | None:
    """The meeting's own time in the change's zone, when it is not the whole window."""
    meeting = change.meeting
    if meeting.start is None or meeting.end is None:
        return None
    zone = ZoneInfo(change.timezone)
    return f"{_local(meeting.start, zone)} {DASH} {meeting.end.astimezone(zone):%H:%M}"


def calendar_invite(
    change: Change, *, method: str, organizer: str, attendee: str | None, link: str | None
) -> bytes:
    """An iCalendar object: METHOD REQUEST (SEQUENCE = version) or CANCEL for the same UID.

    The meeting details of ``meeting_metadata`` apply: its organizer (else ``organizer``, the
    sender), its own start and end (else the change's window), its join URL or location."""
    meeting = change.meeting
    window = meeting.window(change)
    if window is None:
        raise ValueError("a calendar invite needs implementationStart and implementationEnd")
    start, end = window
    cal = icalendar.Calendar()
    cal.add("prodid", "-//changeconsole//change notices//EN")
    cal.add("version", "2.0")
    cal.add("method", method)
    ev = icalendar.Event()
    ev.add("uid", calendar_uid(change.change_id))
    ev.add("sequence", change.version)
    ev.add("dtstamp", datetime.now(UTC))
    ev.add("dtstart", start.astimezone(UTC))
    ev.add("dtend", end.astimezone(UTC))
    ev.add("summary", clean_header(change.title, 400))
    description = change.reason or change.title
    if meeting.join_url:
        description = f"Join: {meeting.join_url}\n\n{description}"
    if link:
        description = f"{description}\n\n{link}"
    ev.add("description", description[:4000])
    ev.add("status", "CANCELLED" if method == ICS_CANCEL else "CONFIRMED")
    if link:
        ev.add("url", link)
    if meeting.place:
        ev.add("location", clean_header(meeting.place, 500))
    org = icalendar.vCalAddress(f"mailto:{meeting.organizer or organizer}")
    ev.add("organizer", org)
    if attendee:
        att = icalendar.vCalAddress(f"mailto:{attendee}")
        att.params["ROLE"] = icalendar.vText("REQ-PARTICIPANT")
        att.params["RSVP"] = icalendar.vText("FALSE")
        ev.add("attendee", att, encode=False)
    cal.add_component(ev)
    return bytes(cal.to_ical())


def list_unsubscribe(config: Config, customer: str, topic: str) -> str:
    address = str(config.email_config.reply_to or config.sender_for(customer))
    return f"<mailto:{address}?subject={quote(f'unsubscribe {customer} {topic}')}>"


def build_message(
    bodies: Bodies,
    change: Change,
    event: EmailEvent,
    customer: CustomerMapping,
    config: Config,
    *,
    recipient: str,
    topic: str,
    ics: bytes | None = None,
    ics_method: str | None = None,
) -> EmailMessage:
    """The MIME message: text + HTML alternatives, plus an ``invite.ics`` part when given."""
    code = customer.customer_code
    sender = config.sender_for(code)
    msg = EmailMessage(policy=MIME_POLICY)
    msg["Subject"] = bodies.subject
    domain = sender.rpartition("@")[2]
    msg["From"] = Address(display_name=clean_header(config.branding.provider_name, 100), addr_spec=sender)
    msg["To"] = Address(addr_spec=clean_header(recipient, 320))
    if config.email_config.reply_to:
        msg["Reply-To"] = str(config.email_config.reply_to)
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = f"<{uuid.uuid4().hex}.{change.change_id.lower()}@{domain or 'changeconsole'}>"
    msg[HDR_CHANGE] = change.change_id
    msg[HDR_VERSION] = str(change.version)
    msg[HDR_EVENT] = event.value
    msg[HDR_CUSTOMER] = code
    msg["List-Unsubscribe"] = list_unsubscribe(config, code, topic)
    msg.set_content(bodies.text, cte="quoted-printable")
    msg.add_alternative(bodies.html, subtype="html", cte="quoted-printable")
    if ics is not None:
        msg.add_attachment(
            ics.decode("utf-8"),
            subtype="calendar",
            filename="invite.ics",
            params={"method": ics_method or ICS_REQUEST},
        )
    return msg


def raw_bytes(msg: EmailMessage) -> bytes:
    return msg.as_bytes(policy=MIME_POLICY)


def send_kwargs(
    msg: EmailMessage,
    *,
    sender: str,
    recipient: str,
    list_name: str,
    topic: str,
    configuration_set: str | None = None,
    tags: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """Arguments of ``sesv2.send_email`` for one recipient (raw MIME + SES list management; the
    configuration set and email tags its SES events carry, ``services.events.email_tags``)."""
    kwargs: dict[str, Any] = {
        "FromEmailAddress": sender,
        "Destination": {"ToAddresses": [recipient]},
        "Content": {"Raw": {"Data": raw_bytes(msg)}},
        "ListManagementOptions": {"ContactListName": list_name, "TopicName": topic},
    }
    if configuration_set:
        kwargs["ConfigurationSetName"] = configuration_set
    if tags:
        kwargs["EmailTags"] = tags
    return kwargs
