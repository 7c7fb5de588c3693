"""Every email the local stack accepted, parsed from moto's data API."""

from __future__ import annotations

import email
import email.policy
from dataclasses import asdict, dataclass, field
from email.message import EmailMessage
from typing import Any

from ..models import HDR_CHANGE, HDR_CUSTOMER, HDR_EVENT, HDR_VERSION
from .localstack import moto_data


@dataclass
class OutboxEmail:
    id: str
    source: str
    to: list[str]
    subject: str
    customer: str | None
    change_id: str | None
    version: int | None
    event: str | None
    text: str
    html: str
    attachments: list[str] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    raw: str = ""

    def to_json(self, *, with_raw: bool = False) -> dict[str, Any]:
        data = asdict(self)
        if not with_raw:
            data.pop("raw")
        return data


def _part_text(part: EmailMessage) -> str:
    try:
        return str(part.get_content())
    except (LookupError, KeyError):
        payload = part.get_payload(decode=True)
        return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""


def parse_raw(message_id: str, source: str, destinations: list[str], raw: str) -> OutboxEmail:
    msg = email.message_from_string(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    text = html = ""
    attachments: list[str] = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        ctype = part.get_content_type()
        filename = part.get_filename()
        if filename or ctype == "text/calendar":
            attachments.append(filename or "invite.ics")
            if ctype != "text/calendar" or filename:
                continue
        if ctype == "text/plain" and not text:
            text = _part_text(part)
        elif ctype == "text/html" and not html:
            html = _part_text(part)
    version = msg.get(HDR_VERSION)
    to = sorted({str(a).strip() for a in destinations}) or [str(msg.get("To", ""))]
    return OutboxEmail(
        id=message_id,
        source=source,
        to=to,
        subject=str(msg.get("Subject", "")),
        customer=msg.get(HDR_CUSTOMER),
        change_id=msg.get(HDR_CHANGE),
        version=int(version) if version and str(version).isdigit() else None,
        event=msg.get(HDR_EVENT),
        text=text,
        html=html,
        attachments=attachments,
        headers={k: str(v) for k, v in msg.items()},
        raw=raw,
    )


def read_outbox(
    endpoint: str, *, customer: str | None = None, change_id: str | None = None
) -> list[OutboxEmail]:
    """Raw sends are parsed whole; simple sends (HTML only in moto) are listed as they are."""
    ses = moto_data(endpoint).get("ses", {})
    mails: list[OutboxEmail] = []
    for item in ses.get("RawMessage", []):
        mails.append(
            parse_raw(item["id"], item.get("source", ""), item.get("destinations", []), item["raw_data"])
        )
    for item in ses.get("Message", []):
        dest = item.get("destinations", {})
        to = [*dest.get("ToAddresses", []), *dest.get("CcAddresses", [])] if isinstance(dest, dict) else []
        mails.append(
            OutboxEmail(
                id=item.get("id", ""),
                source=item.get("source", ""),
                to=to,
                subject=item.get("subject", ""),
                customer=None,
                change_id=None,
                version=None,
                event=None,
                text="",
                html=item.get("body", ""),
            )
        )
    if customer:
        mails = [m for m in mails if m.customer == customer]
    if change_id:
        mails = [m for m in mails if m.change_id == change_id]
    return mails
