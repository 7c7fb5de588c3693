"""One dead-lettered message (as received, or read back from an export) and the filter over them."""

from __future__ import annotations

import fnmatch
import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ...models import (
    InvalidChange,
    InvalidTriggerKey,
    IsolationViolation,
    MalformedMessage,
    OversizedMessage,
    PermanentMessageError,
    Trigger,
    UnknownCustomer,
    iso_utc,
    parse_queue_message,
)
from .attributes import (
    CHANGE_ID,
    CUSTOMER,
    DETAIL,
    EVENT,
    FAILED_AT,
    MARKER_COUNT,
    REASON,
    RECEIVE_COUNT,
    VERSION,
    attr_from_json,
    attr_text,
    attr_to_json,
    unpack_attributes,
)

EXPORT_SCHEMA = "changeconsole.dlq-export/1"

# Reasons a redrive does not cure. The message itself is at fault: the worker dead-letters it again.
RECURS_ALWAYS: dict[str, str] = {
    PermanentMessageError.reason: "the message is not a valid trigger",
    MalformedMessage.reason: "the message body is not valid JSON of a known shape",
    OversizedMessage.reason: "the message is over the size limit",
    InvalidTriggerKey.reason: "its S3 key is not a trigger key",
    InvalidChange.reason: "the change it carries is not valid",
    IsolationViolation.reason: "it names another customer than its queue (isolation violation)",
}
# Config of the customer at fault (cc-reason values the worker writes): again until that is fixed.
RECURS_UNTIL_FIXED: dict[str, str] = {
    UnknownCustomer.reason: "its customer is not in the config",
    "role_unavailable": "the customer's SES role cannot be assumed",
    "ses_unavailable": "the customer's SES account refuses to send",
    "contact_list_missing": "the customer's SES contact list is missing",
    # Workers died working on it (e.g. out of memory): again until what kills them is fixed.
    "worker_crashes": "every worker that took over its delivery had died holding it",
    "receives_exhausted": "workers died with it before they claimed its delivery",
}


def recurrence(reason: str) -> str | None:
    """Why redriving a message dead-lettered for ``reason`` dead-letters it again, if it will."""
    if reason in RECURS_ALWAYS:
        return f"{RECURS_ALWAYS[reason]}: it will dead-letter again"
    if reason in RECURS_UNTIL_FIXED:
        return f"{RECURS_UNTIL_FIXED[reason]}: it dead-letters again until that is fixed"
    return None


def _ms_to_dt(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromtimestamp(int(value) / 1000, UTC)
    except (ValueError, OverflowError, OSError):
        return None


@dataclass
class DlqMessage:
    """One dead-lettered message as received (or as read back from an export)."""

    message_id: str
    body: str
    attributes: dict[str, str] = field(default_factory=dict)  # SQS system attributes
    message_attributes: dict[str, dict[str, Any]] = field(default_factory=dict)  # as SQS returns them
    md5_of_body: str | None = None
    receipt_handle: str | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_sqs(cls, raw: dict[str, Any]) -> DlqMessage:
        return cls(
            message_id=raw["MessageId"],
            body=raw.get("Body", ""),
            attributes=dict(raw.get("Attributes") or {}),
            message_attributes={k: dict(v) for k, v in (raw.get("MessageAttributes") or {}).items()},
            md5_of_body=raw.get("MD5OfBody"),
            receipt_handle=raw.get("ReceiptHandle"),
        )

    # -- derived views ------------------------------------------------------------------------
    @property
    def attrs(self) -> dict[str, str]:
        """Message attributes as text, with packed originals expanded."""
        return {k: attr_text(v) for k, v in sorted(unpack_attributes(self.message_attributes).items())}

    def attr(self, name: str) -> str | None:
        return self.attrs.get(name)

    @property
    def reason(self) -> str:
        """The worker's typed reason, or what SQS's own redrive implies when none was recorded."""
        return self.attr(REASON) or "max_receive_count"

    @property
    def detail(self) -> str:
        recorded = self.attr(DETAIL)
        if recorded:
            return recorded
        if self.attr(REASON):
            return ""
        return "moved by SQS after maxReceiveCount receives; no reason recorded (crash or timeout?)"

    @property
    def receive_count(self) -> int:
        """ApproximateReceiveCount in the DLQ (every peek adds one)."""
        try:
            return int(self.attributes.get("ApproximateReceiveCount", "0"))
        except ValueError:
            return 0

    @property
    def source_receive_count(self) -> int | None:
        """Receives in the source queue when it was dead-lettered (``cc-receive-count``)."""
        value = self.attr(RECEIVE_COUNT)
        return int(value) if value and value.isdigit() else None

    @property
    def redrive_count(self) -> int:
        value = self.attr(MARKER_COUNT)
        return int(value) if value and value.isdigit() else 0

    @property
    def sent_at(self) -> datetime | None:
        return _ms_to_dt(self.attributes.get("SentTimestamp"))

    @property
    def first_received_at(self) -> datetime | None:
        return _ms_to_dt(self.attributes.get("ApproximateFirstReceiveTimestamp"))

    @property
    def first_seen(self) -> datetime | None:
        """When the message was first seen: the earlier of its first receive and its send time."""
        times = [t for t in (self.first_received_at, self.sent_at) if t is not None]
        return min(times) if times else None

    def body_json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    @property
    def change_id(self) -> str | None:
        return self.attr(CHANGE_ID) or self._trigger_field("change_id")

    @property
    def event(self) -> str | None:
        return self.attr(EVENT) or self._trigger_field("event")

    @property
    def version(self) -> str | None:
        value = self.attr(VERSION) or self._trigger_field("version")
        return str(value) if value is not None else None

    def _trigger_field(self, name: str) -> Any:
        try:
            parsed = parse_queue_message(self.body)
        except PermanentMessageError:
            return None
        if not isinstance(parsed, Trigger):
            return None
        value = getattr(parsed, name)
        return value.value if hasattr(value, "value") else value

    def content_key(self) -> str:
        """Identity of the content (body + message attributes), independent of ids and counts."""
        attrs = {k: attr_to_json(v) for k, v in sorted(self.message_attributes.items())}
        doc = json.dumps([self.body, attrs], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(doc.encode("utf-8", "surrogatepass")).hexdigest()

    # -- serialisation ----------------------------------------------------------------------------
    def to_json(self, *, body: bool = True) -> dict[str, Any]:
        """The CLI's ``--json`` shape of a message (docs/cli-json.md)."""
        data: dict[str, Any] = {
            "message_id": self.message_id,
            "reason": self.reason,
            "detail": self.detail,
            "customer": self.attr(CUSTOMER),
            "change_id": self.change_id,
            "version": self.version,
            "event": self.event,
            "failed_at": self.attr(FAILED_AT),
            "receive_count": self.receive_count,
            "source_receive_count": self.source_receive_count,
            "redrive_count": self.redrive_count,
            "sent_at": iso_utc(self.sent_at) if self.sent_at else None,
            "first_received_at": iso_utc(self.first_received_at) if self.first_received_at else None,
            "attributes": self.attrs,
            "system_attributes": dict(self.attributes),
        }
        if body:
            data["body"] = self.body
        return data

    def to_export(self, customer: str, queue: str, exported_at: datetime) -> dict[str, Any]:
        """One line of an export file: everything needed to put the message back exactly."""
        return {
            "schema": EXPORT_SCHEMA,
            "customer": customer,
            "queue": queue,
            "message_id": self.message_id,
            "md5_of_body": self.md5_of_body,
            "body": self.body,
            "attributes": dict(self.attributes),
            "message_attributes": {k: attr_to_json(v) for k, v in sorted(self.message_attributes.items())},
            "receive_count": self.receive_count,
            "sent_at": iso_utc(self.sent_at) if self.sent_at else None,
            "first_received_at": iso_utc(self.first_received_at) if self.first_received_at else None,
            "exported_at": iso_utc(exported_at),
        }

    @classmethod
    def from_export(cls, data: Any, where: str = "$") -> DlqMessage:
        if not isinstance(data, dict):
            raise ValueError(f"{where}: not a JSON object")
        if data.get("schema") != EXPORT_SCHEMA:
            raise ValueError(f"{where}: schema is {data.get('schema')!r}, expected {EXPORT_SCHEMA!r}")
        if not isinstance(data.get("message_id"), str) or not isinstance(data.get("body"), str):
            raise ValueError(f"{where}: message_id and body must be strings")
        raw_attrs = data.get("message_attributes") or {}
        if not isinstance(raw_attrs, dict):
            raise ValueError(f"{where}: message_attributes must be an object")
        system = data.get("attributes") or {}
        if not isinstance(system, dict):
            raise ValueError(f"{where}: attributes must be an object")
        return cls(
            message_id=data["message_id"],
            body=data["body"],
            attributes={str(k): str(v) for k, v in system.items()},
            message_attributes={
                str(k): attr_from_json(v, f"{where}.message_attributes.{k}") for k, v in raw_attrs.items()
            },
            md5_of_body=data.get("md5_of_body"),
        )


@dataclass(frozen=True)
class MessageFilter:
    """Whitespace-separated terms, all of which must match.

    ``name=pattern`` matches a message attribute (or system attribute, or ``reason``/``change``/
    ``event``/``id``) against a case-insensitive glob (``cc-reason=isolation_violation``,
    ``cc-detail=*AccessDenied*``); any other term is a case-insensitive substring of the body, the
    message id or any attribute value.
    """

    text: str

    @property
    def terms(self) -> list[str]:
        return self.text.split()

    def matches(self, message: DlqMessage) -> bool:
        if not self.text.strip():
            return True
        attrs = {k.casefold(): v for k, v in message.attrs.items()}
        attrs.update({k.casefold(): v for k, v in message.attributes.items()})
        attrs.update(
            {
                "reason": message.reason,
                "change": message.change_id or "",
                "event": message.event or "",
                "id": message.message_id,
            }
        )
        haystack = "\n".join([message.body, message.message_id, *message.attrs.values()]).casefold()
        for term in self.terms:
            name, sep, pattern = term.partition("=")
            if sep and name and name.casefold() in attrs:
                if not fnmatch.fnmatchcase(attrs[name.casefold()].casefold(), pattern.casefold()):
                    return False
            elif term.casefold() not in haystack:
                return False
        return True


def as_filter(value: str | MessageFilter | None) -> MessageFilter | None:
    if value is None or isinstance(value, MessageFilter):
        return value if (value is None or value.text.strip()) else None
    return MessageFilter(value) if value.strip() else None
