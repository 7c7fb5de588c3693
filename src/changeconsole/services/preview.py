"""See a notice as one customer's recipients will, and send a test of it to yourself.

``preview`` renders, through ``notices.prepare_notice`` (the function the worker sends with), the email
one customer would get for one event of a change: subject, text, HTML and calendar parts of the MIME
message itself, and who would receive it (its subscribed contacts after ``restricted_recipients``,
with counts per topic). A change that has not taken the event's step yet (a draft previewed as its
approval request, a submitted change as its approved notice) is shown as that step would archive it:
the next version, stamped now by the operator.

``test_send`` sends that email through the customer's own SES account to one address the operator
gives, marked as a test (subject prefix and the ``X-Changeconsole-Test`` header). It is never recorded
as a delivery (no status record, no ledger item). Both act as the operator in the customer's account:
a preview is a read the authorization point decides (``change.preview``, scoped to the customer); a
test send is ``change.test-send``, decided and audited there (``services/authz``).
"""

from __future__ import annotations

import email
import email.policy
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from email.message import EmailMessage
from typing import Any

from email_validator import EmailNotValidError, validate_email
from markdownify import markdownify

from ..errors import InputError, OperationError, describe
from ..models import (
    HDR_TEST,
    TOPIC_CALENDAR,
    Change,
    ChangeStatus,
    Config,
    EmailEvent,
    OperatorAction,
    iso_utc,
    utcnow,
)
from . import emails
from .authz import Authorizer
from .aws import AwsFactory
from .contacts import ContactListResolver
from .ledger import Ledger
from .lifecycle import EVENT_OF_STATUS, STAMPS
from .notices import Notice, PreparedNotice, Told, prepare_notice

TEST_PREFIX = "[TEST] "
PLACEHOLDER_RECIPIENT = "recipient@example.invalid"  # the sample's To when nobody is subscribed
STATUS_OF_EVENT = {event: status for status, event in EVENT_OF_STATUS.items()}


class PreviewRefused(InputError):
    title = "Cannot preview"


class TestSendFailed(OperationError):
    title = "Test not sent"


def default_event(change: Change) -> EmailEvent:
    """The notice a change's current state sends (a draft: its approval request)."""
    return EVENT_OF_STATUS.get(change.status, EmailEvent.SUBMITTED)


def as_sent(change: Change, event: EmailEvent, *, operator: str, now: datetime) -> Change:
    """``change`` as the archive will hold it when ``event`` goes out: unchanged when its state already
    sends ``event`` (or for a removal notice), else the next version in the event's state, stamped."""
    if event is EmailEvent.REMOVED or EVENT_OF_STATUS.get(change.status) is event:
        return change
    target = STATUS_OF_EVENT[event]
    at, by = STAMPS[target]
    stamp = iso_utc(now)
    data = change.to_json_dict()
    data.update(
        status=target.value,
        prior_status=change.status.value,
        version=change.version + 1,
        modifiedAt=stamp,
        modifiedBy=operator,
        **{at: stamp, by: operator},
    )
    data.setdefault("createdAt", stamp)
    data.setdefault("createdBy", operator)
    return Change.model_validate(data)


def html_as_text(html: str) -> str:
    """The HTML part as readable text (Markdown: headings, emphasis, links and tables kept)."""
    text = markdownify(html, heading_style="ATX", strip=["img"])
    lines = [line.rstrip() for line in text.splitlines()]
    out: list[str] = []
    for line in lines:  # at most one blank line in a row
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip() + "\n"


@dataclass(frozen=True)
class PreviewRecipient:
    address: str
    topics: list[str]
    calendar: bool  # gets the calendar part


@dataclass
class Preview:
    """The email of (change, customer, event) and who would receive it."""

    change_id: str
    version: int
    status: str  # the change's state when the email goes out
    event: str
    customer: str
    customer_name: str
    contact_list: str
    sender: str
    topics: list[str]  # the email's topic first
    calendar_method: str | None
    recipients: list[PreviewRecipient]
    per_topic: dict[str, int]
    total_contacts: int
    excluded_by_whitelist: int
    restricted: bool  # the customer has a restricted_recipients whitelist
    projected: bool  # the change was moved to the event's state for the preview
    sample_to: str  # the recipient whose copy the parts below are
    subject: str
    headers: dict[str, str]
    text: str
    html: str
    calendar: str | None
    attachments: list[str] = field(default_factory=list)
    raw: bytes = b""

    @property
    def html_text(self) -> str:
        return html_as_text(self.html)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("raw")
        data["recipients"] = [asdict(r) for r in self.recipients]
        return data


@dataclass
class TestSend:
    change_id: str
    version: int
    event: str
    customer: str
    to: str
    subject: str
    sender: str
    message_id: str
    audit_key: str | None
    operator: str
    outside_whitelist: bool  # the customer restricts recipients and ``to`` is not one of them

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _parts(msg: EmailMessage) -> tuple[str, str, str | None, list[str]]:
    """(text, HTML, calendar, attachment names) of a message, read back from its bytes (lines end in
    ``\n`` here; the bytes sent end them in CRLF)."""
    parsed = email.message_from_bytes(emails.raw_bytes(msg), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    text = html = ""
    calendar: str | None = None
    names: list[str] = []
    for part in parsed.walk():
        if part.is_multipart():
            continue
        ctype = part.get_content_type()
        content = str(part.get_content()).replace("\r\n", "\n")
        if ctype == "text/calendar":
            calendar = content
            names.append(part.get_filename() or "invite.ics")
        elif ctype == "text/plain" and not text:
            text = content
        elif ctype == "text/html" and not html:
            html = content
    return text, html, calendar, names


class PreviewService:
    def __init__(
        self,
        aws: AwsFactory,
        config: Config,
        *,
        authz: Authorizer | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.aws = aws
        self.config = config
        self.authz = authz or Authorizer(aws, config, via="api")
        self.clock = clock or utcnow
        self.ledger = Ledger(aws, config)

    def _prepare(
        self, change: Change, customer: str, event: EmailEvent | None
    ) -> tuple[PreparedNotice, bool]:
        if customer not in self.config.customer_mappings:
            raise PreviewRefused(f"unknown customer {customer!r}")
        event = event or default_event(change)
        if event is not EmailEvent.REMOVED and customer not in change.customers:
            targeted = ", ".join(change.customers)
            raise PreviewRefused(
                f"{change.change_id} does not target {customer} (it targets {targeted}); "
                "preview one of those, or the removal notice (event removed)"
            )
        sent = as_sent(change, event, operator=self.authz.operator.name, now=self.clock())
        latest = (
            self.ledger.latest(change.change_id, customer)
            if change.status is not ChangeStatus.DRAFT
            else None
        )
        told = Told(latest.topics, latest.invite_version) if latest else Told()
        mapping = self.config.customer(customer)
        ses = self.aws.customer_client(mapping, "sesv2")
        prepared = prepare_notice(
            ses,
            self.config,
            sent,
            event,
            customer,
            told,
            contact_lists=ContactListResolver(self.config, ttl=0),
        )
        return prepared, sent is not change

    def preview(self, change: Change, customer: str, event: EmailEvent | None = None) -> Preview:
        """The email ``customer`` would get for ``event`` (default: what the change's state sends)."""
        self.authz.require(OperatorAction.CHANGE_PREVIEW, [customer], change_id=change.change_id)
        prepared, projected = self._prepare(change, customer, event)
        notice, audience, plan = prepared.notice, prepared.audience, prepared.plan
        recipients = [
            PreviewRecipient(
                address,
                [t for t in plan.topics if t in audience.recipients[address]],
                plan.ics_method is not None and TOPIC_CALENDAR in audience.recipients[address],
            )
            for address in audience.addresses()
        ]
        per_topic = Counter(t for r in recipients for t in r.topics)
        sample = next((r for r in recipients if r.calendar), recipients[0] if recipients else None)
        to = sample.address if sample else PLACEHOLDER_RECIPIENT
        addressed = notice.addressed(to, set(sample.topics) if sample else {plan.topic})
        text, html, calendar, names = _parts(addressed.message)
        mapping = self.config.customer(customer)
        return Preview(
            change_id=notice.change.change_id,
            version=notice.change.version,
            status=notice.change.status.value,
            event=plan.event.value,
            customer=customer,
            customer_name=mapping.customer_name,
            contact_list=prepared.list_name,
            sender=notice.sender,
            topics=list(plan.topics),
            calendar_method=plan.ics_method,
            recipients=recipients,
            per_topic={t: per_topic.get(t, 0) for t in plan.topics},
            total_contacts=audience.total_contacts,
            excluded_by_whitelist=audience.excluded_by_whitelist,
            restricted=bool(mapping.restricted_recipients),
            projected=projected,
            sample_to=to,
            subject=str(addressed.message["Subject"]),
            headers={k: str(v) for k, v in addressed.message.items()},
            text=text,
            html=html,
            calendar=calendar,
            attachments=names,
            raw=emails.raw_bytes(addressed.message),
        )

    def test_send(self, change: Change, customer: str, to: str, event: EmailEvent | None = None) -> TestSend:
        """Send the previewed email to ``to`` only, through the customer's SES account, as a test."""
        try:
            address = validate_email(to.strip(), check_deliverability=False).normalized
        except EmailNotValidError as exc:
            raise PreviewRefused(f"not an email address: {to!r} ({exc})") from None
        with self.authz.act(
            OperatorAction.CHANGE_TEST_SEND,
            [customer],
            change_id=change.change_id,
            version=change.version,
            recipient=address,
        ) as record:
            prepared, _ = self._prepare(change, customer, event)
            notice = prepared.notice
            record.update(version=notice.change.version, event=notice.plan.event.value)
            msg = test_message(notice, address)
            mapping = self.config.customer(customer)
            try:
                resp = self.aws.customer_send_client(mapping).send_email(
                    FromEmailAddress=notice.sender,
                    Destination={"ToAddresses": [address]},
                    Content={"Raw": {"Data": emails.raw_bytes(msg)}},
                )
            except Exception as exc:
                raise TestSendFailed(f"the test to {address} was not sent: {describe(exc)}") from exc
            message_id = str(resp.get("MessageId", ""))
            key = record.finish(message_id=message_id)
        allowed = {a.casefold() for a in mapping.restricted_recipients or []}
        return TestSend(
            change_id=notice.change.change_id,
            version=notice.change.version,
            event=notice.plan.event.value,
            customer=customer,
            to=address,
            subject=str(msg["Subject"]),
            sender=notice.sender,
            message_id=message_id,
            audit_key=key,
            operator=self.authz.operator.name,
            outside_whitelist=bool(allowed) and address.casefold() not in allowed,
        )


def test_message(notice: Notice, address: str) -> EmailMessage:
    """The notice addressed to ``address`` (with every part, the calendar's too), marked as a test."""
    msg = notice.addressed(address, set(notice.plan.topics)).message
    msg.replace_header("Subject", emails.clean_header(TEST_PREFIX + str(msg["Subject"]), 400))
    msg[HDR_TEST] = "true"
    return msg
