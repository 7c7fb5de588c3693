"""Pydantic models of the deployed data: changes, config, delivery records, queue messages.

Every model keeps keys it does not know (``extra="allow"``) so stored JSON survives a round trip.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import string
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal
from urllib.parse import unquote_plus
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from .errors import ChangeconsoleError, InputError
from .models_legacy import upgrade_change

# \Z, not $: "$" also matches before a trailing newline.
CUSTOMER_CODE_RE = re.compile(r"^[a-z0-9-]{2,50}\Z")
# Ours (``new_change_id``), or the running system portal's CHG-<uuid> (kept as is: it names S3 keys).
CHANGE_ID_RE = re.compile(
    r"^CHG-(?:\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-[0-9a-z]{6}"
    r"|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})\Z"
)
ROLE_ARN_RE = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}):role/[\w+=,.@/-]{1,512}\Z")
QUEUE_ARN_RE = re.compile(r"^arn:aws[a-z-]*:sqs:([a-z0-9-]+):(\d{12}):([\w-]{1,80})\Z")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_BASE36 = string.digits + string.ascii_lowercase

# Length limits (characters) of user-entered text fields.
MAX_TITLE = 200
MAX_TICKET = 64
MAX_LONG_TEXT = 20_000
MAX_USER = 256
MAX_CUSTOMERS = 5_000
# Largest queue message body we parse (SQS allows up to 1 MiB).
MAX_MESSAGE_BYTES = 1024 * 1024
# Largest change document we read (a change file, an archive record).
MAX_CHANGE_BYTES = 5 * 1024 * 1024
# Versions are written zero-padded to VERSION_DIGITS in trigger keys and delivery sort keys, which sort
# as text: a version must fit in those digits.
VERSION_DIGITS = 4
MAX_VERSION = 10**VERSION_DIGITS - 1


def version_tag(version: int) -> str:
    """``v0007``: a version as trigger keys and delivery sort keys write it."""
    return f"v{version:0{VERSION_DIGITS}d}"


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso_utc(value: datetime) -> str:
    """RFC 3339 UTC with a trailing Z and second precision (four-digit year, even before 1000)."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="seconds") + "Z"


def new_change_id(now: datetime | None = None) -> str:
    """``CHG-<UTC yyyy-mm-ddTHH-MM-SS>-<6 base36>``."""
    stamp = iso_utc(now or utcnow())[:-1].replace(":", "-")
    suffix = "".join(secrets.choice(_BASE36) for _ in range(6))
    return f"CHG-{stamp}-{suffix}"


class ChangeStatus(StrEnum):
    DRAFT = "draft"
    SUBMITTED = "submitted"
    APPROVED = "approved"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


# Allowed status changes. Editing an approved change moves it back to submitted.
TRANSITIONS: dict[ChangeStatus, frozenset[ChangeStatus]] = {
    ChangeStatus.DRAFT: frozenset({ChangeStatus.SUBMITTED}),
    ChangeStatus.SUBMITTED: frozenset({ChangeStatus.APPROVED, ChangeStatus.CANCELLED}),
    ChangeStatus.APPROVED: frozenset(
        {ChangeStatus.COMPLETED, ChangeStatus.CANCELLED, ChangeStatus.SUBMITTED}
    ),
    ChangeStatus.COMPLETED: frozenset(),
    ChangeStatus.CANCELLED: frozenset(),
}
DELETABLE: frozenset[ChangeStatus] = frozenset({ChangeStatus.DRAFT, ChangeStatus.CANCELLED})


class IllegalTransition(InputError):
    def __init__(self, current: ChangeStatus, target: ChangeStatus) -> None:
        allowed = sorted(s.value for s in TRANSITIONS[current])
        self.current, self.target, self.allowed = current, target, allowed
        super().__init__(
            f"cannot move a {current.value} change to {target.value}; "
            f"allowed from {current.value}: {', '.join(allowed) or 'none (final state)'}"
        )


def check_transition(current: ChangeStatus, target: ChangeStatus) -> None:
    if target not in TRANSITIONS[current]:
        raise IllegalTransition(current, target)


class RecipientState(StrEnum):
    """One recipient's send of one delivery, as the worker's ledger records it (``services.ledger``)."""

    SENDING = "sending"  # marked right before the SES call (with a lease)
    SENT = "sent"
    RETRY = "retry"  # the SES call failed without sending (or an operator reopened it): may be sent
    FAILED = "failed"  # rejected by SES, or withdrawn: never sent
    # cut off between the mark and SES's answer: maybe sent. Its Send/Delivery event makes it sent; with
    # none after ``events.unknown_grace_seconds`` the reconciler sends it again (or holds it).
    UNKNOWN = "unknown"


# Allowed changes of a recipient's ledger item; ``None``: no item yet. Every conditional write of a
# recipient in the ledger is one of these (tests/test_ledger_transitions.py).
RECIPIENT_TRANSITIONS: dict[RecipientState | None, frozenset[RecipientState]] = {
    None: frozenset({RecipientState.SENDING}),
    # sent again; withdrawn; or its earlier send confirmed by that send's SES event
    RecipientState.RETRY: frozenset({RecipientState.SENDING, RecipientState.FAILED, RecipientState.SENT}),
    # the sender records SES's answer; a mark whose sender lost the delivery becomes unknown
    RecipientState.SENDING: frozenset(
        {RecipientState.SENT, RecipientState.RETRY, RecipientState.FAILED, RecipientState.UNKNOWN}
    ),
    # the sender, if still alive, records what happened over it (or its SES event does); the reconciler
    # or an operator reopens it (retry)
    RecipientState.UNKNOWN: frozenset(
        {RecipientState.SENT, RecipientState.RETRY, RecipientState.FAILED, RecipientState.UNKNOWN}
    ),
    RecipientState.SENT: frozenset(),
    RecipientState.FAILED: frozenset(),
}


class EmailEvent(StrEnum):
    """The status reached (each one sends an email), or ``removed``: the change no longer targets a
    customer that was notified of it."""

    SUBMITTED = "submitted"
    APPROVED = "approved"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    REMOVED = "removed"


TOPIC_APPROVAL = "aws-approval"
TOPIC_ANNOUNCE = "aws-announce"
TOPIC_CALENDAR = "aws-calendar"
ALL_TOPICS = (TOPIC_APPROVAL, TOPIC_ANNOUNCE, TOPIC_CALENDAR)


def topic_for(event: EmailEvent, *, ever_approved: bool = False) -> str:
    if event is EmailEvent.SUBMITTED:
        return TOPIC_APPROVAL
    if event is EmailEvent.CANCELLED:
        return TOPIC_ANNOUNCE if ever_approved else TOPIC_APPROVAL
    return TOPIC_ANNOUNCE


def _no_control(value: str | None, field: str) -> str | None:
    if value is not None and _CONTROL_RE.search(value):
        raise ValueError(f"{field} must be a single line without control characters")
    return value


def _parse_utc(value: Any) -> str | None:
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.strip().replace("z", "Z"))
        except ValueError as exc:
            raise ValueError(f"not an RFC 3339 timestamp: {value!r}") from exc
    else:
        raise ValueError("must be an RFC 3339 timestamp string")
    if dt.tzinfo is None:
        raise ValueError(
            f"timestamp {value!r} needs a UTC offset (e.g. 2026-01-31T22:00:00Z), "
            "or a timezone field (IANA) to read it in"
        )
    try:
        return iso_utc(dt)
    except OverflowError:
        raise ValueError(f"timestamp {value!r} is out of range") from None


class Modification(BaseModel):
    model_config = ConfigDict(extra="allow")

    timestamp: str = Field(max_length=64)
    user_id: str = Field(max_length=MAX_USER)
    modification_type: str = Field(max_length=64)


class Change(BaseModel):
    """A change notice in the deployed flat camelCase shape."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, validate_assignment=False)

    object_type: Literal["change"] = Field("change", description="Always `change`.")
    change_id: str = Field(
        default_factory=new_change_id,
        alias="changeId",
        description="`CHG-<UTC time of creation>-<6 random characters>`, e.g. "
        "`CHG-2026-01-31T22-00-00-abc123`; made up when absent.",
    )
    title: str = Field(
        alias="changeTitle",
        min_length=1,
        max_length=MAX_TITLE,
        description="One line: what is changed, as customers read it in the subject.",
    )
    reason: str = Field("", alias="changeReason", max_length=MAX_LONG_TEXT, description="Why.")
    implementation_plan: str = Field(
        "", alias="implementationPlan", max_length=MAX_LONG_TEXT, description="What is done, step by step."
    )
    test_plan: str = Field("", alias="testPlan", max_length=MAX_LONG_TEXT, description="How it is verified.")
    customer_impact: str = Field(
        "", alias="customerImpact", max_length=MAX_LONG_TEXT, description="What customers notice."
    )
    rollback_plan: str = Field(
        "", alias="rollbackPlan", max_length=MAX_LONG_TEXT, description="How it is undone if it fails."
    )
    snow_ticket: str = Field(
        "", alias="snowTicket", max_length=MAX_TICKET, description="ServiceNow ticket (one line)."
    )
    jira_ticket: str = Field(
        "", alias="jiraTicket", max_length=MAX_TICKET, description="Jira ticket (one line)."
    )
    customers: list[str] = Field(
        min_length=1,
        max_length=MAX_CUSTOMERS,
        description="Codes of the affected customers (`^[a-z0-9-]{2,50}$`, each a key of the config's "
        "`customer_mappings`); each gets its own email from its own SES account.",
    )
    implementation_start: str | None = Field(
        None,
        alias="implementationStart",
        description="Start of the window, RFC 3339 with an offset (stored in UTC, e.g. "
        "`2030-01-31T22:00:00Z`). Required to submit.",
    )
    implementation_end: str | None = Field(
        None,
        alias="implementationEnd",
        description="End of the window, after the start (same format). Required to submit.",
    )
    timezone: str = Field(
        "UTC",
        max_length=64,
        description="IANA zone the window is shown in (e.g. `Europe/London`); the times themselves are UTC.",
    )
    include_meeting: bool = Field(
        False, description="Attach a calendar invite to the approved notice (to `aws-calendar` subscribers)."
    )
    meeting_metadata: dict[str, Any] | None = Field(
        None,
        description="The invite's details, keys as the running system writes them: `organizer` (an "
        "email address; default: the sender), `join_url` (http/https) or `location` (a place), "
        "`start_time`/`end_time` (RFC 3339; default: the window). Other keys (`meeting_id`, "
        "`subject`, `attendees`…) are kept as they are.",
    )
    status: ChangeStatus = Field(
        ChangeStatus.DRAFT,
        description="Set by changeconsole as the change moves (draft → submitted → approved → completed; "
        "submitted or approved → cancelled); a file to submit is a draft.",
    )
    prior_status: ChangeStatus | None = Field(None, description="The status of the version before (set).")
    version: int = Field(
        1,
        ge=1,
        le=MAX_VERSION,
        description="Set: +1 on every archived write. A file of an archived change names the version it "
        "was exported at, so an edit never overwrites a newer one.",
    )
    created_at: str | None = Field(None, alias="createdAt", description="Set (RFC 3339, UTC).")
    created_by: str | None = Field(None, alias="createdBy", max_length=MAX_USER, description="Set.")
    modified_at: str | None = Field(None, alias="modifiedAt", description="Set.")
    modified_by: str | None = Field(None, alias="modifiedBy", max_length=MAX_USER, description="Set.")
    submitted_at: str | None = Field(None, alias="submittedAt", description="Set.")
    submitted_by: str | None = Field(None, alias="submittedBy", max_length=MAX_USER, description="Set.")
    approved_at: str | None = Field(None, alias="approvedAt", description="Set.")
    approved_by: str | None = Field(None, alias="approvedBy", max_length=MAX_USER, description="Set.")
    completed_at: str | None = Field(None, alias="completedAt", description="Set.")
    completed_by: str | None = Field(None, alias="completedBy", max_length=MAX_USER, description="Set.")
    cancelled_at: str | None = Field(None, alias="cancelledAt", description="Set.")
    cancelled_by: str | None = Field(None, alias="cancelledBy", max_length=MAX_USER, description="Set.")
    modifications: list[Modification] = Field(
        default_factory=list,
        description="Set: one entry per write (who, when, what: `modification_type`, `version`, "
        "`changed_fields`, a cancellation's `reason`…).",
    )

    @model_validator(mode="before")
    @classmethod
    def _running_system_shapes(cls, data: Any) -> Any:
        return upgrade_change(data)

    @field_validator("change_id")
    @classmethod
    def _change_id_shape(cls, value: str) -> str:
        if not CHANGE_ID_RE.match(value):
            raise ValueError("must look like CHG-2026-01-31T22-00-00-abc123 (or the portal's CHG-<uuid>)")
        return value

    @field_validator("title")
    @classmethod
    def _title_line(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be blank")
        return _no_control(value, "changeTitle") or ""

    @field_validator("snow_ticket", "jira_ticket")
    @classmethod
    def _ticket_line(cls, value: str) -> str:
        return _no_control(value.strip(), "ticket") or ""

    @field_validator("customers")
    @classmethod
    def _customer_codes(cls, value: list[str], info: ValidationInfo) -> list[str]:
        codes = sorted({c.strip() for c in value})
        bad = [c for c in codes if not CUSTOMER_CODE_RE.match(c)]
        if bad:
            raise ValueError(f"invalid customer code(s): {', '.join(bad)}")
        config = (info.context or {}).get("config")
        if config is not None:
            unknown = [c for c in codes if c not in config.customer_mappings]
            if unknown:
                raise ValueError(f"unknown customer code(s): {', '.join(unknown)}")
        return codes

    @field_validator(
        "implementation_start",
        "implementation_end",
        "created_at",
        "modified_at",
        "submitted_at",
        "approved_at",
        "completed_at",
        "cancelled_at",
        mode="before",
    )
    @classmethod
    def _timestamps(cls, value: Any) -> str | None:
        return _parse_utc(value)

    @field_validator("timezone")
    @classmethod
    def _iana_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError) as exc:  # OSError: "America", too long
            raise ValueError(f"unknown IANA timezone {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _window(self) -> Change:
        start, end = self.implementation_start, self.implementation_end
        if start and end and end <= start:
            raise ValueError("implementationEnd must be after implementationStart")
        return self

    # -- helpers -------------------------------------------------------------
    @property
    def start_dt(self) -> datetime | None:
        return datetime.fromisoformat(self.implementation_start) if self.implementation_start else None

    @property
    def end_dt(self) -> datetime | None:
        return datetime.fromisoformat(self.implementation_end) if self.implementation_end else None

    @property
    def ever_approved(self) -> bool:
        return self.approved_at is not None

    @property
    def write_token(self) -> str | None:
        """``writeToken``: unique per archive write, so a writer that met a conflict can tell whether
        the write there is its own (services/lifecycle). A stored key like any unknown one: documents
        written before it existed round-trip unchanged."""
        token = (self.model_extra or {}).get("writeToken")
        return token if isinstance(token, str) else None

    def to_json_dict(self) -> dict[str, Any]:
        """The deployed JSON shape (camelCase aliases, unknown keys kept)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=False)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_json_dict(), indent=indent, ensure_ascii=False)

    @property
    def meeting(self) -> Meeting:
        return Meeting.of(self.meeting_metadata)

    @property
    def cancel_reason(self) -> str | None:
        """Why it was cancelled (the cancellation's modification, ``reason``), if told."""
        for mod in reversed(self.modifications):
            if mod.modification_type == "cancelled":
                reason = (mod.model_extra or {}).get("reason")
                return reason if isinstance(reason, str) and reason.strip() else None
        return None

    def schedule_problems(self) -> list[str]:
        """What stops this change from leaving draft (beyond model validity)."""
        problems = []
        if not self.implementation_start:
            problems.append("implementationStart: required to submit")
        if not self.implementation_end:
            problems.append("implementationEnd: required to submit")
        return problems


# The keys of ``meeting_metadata`` this program reads and writes: those the running system writes
# (``meeting_id``, ``join_url``, ``start_time``, ``end_time``, ``subject``, ``organizer``,
# ``attendees``) where they fit, plus ``location`` (a place that is not a URL). Other keys survive.
MEETING_ORGANIZER = "organizer"
MEETING_JOIN_URL = "join_url"
MEETING_LOCATION = "location"
MEETING_START = "start_time"
MEETING_END = "end_time"
_URL_RE = re.compile(r"^https?://[^\s\"'<>]+$")
_EMAIL_RE = re.compile(r"^[^@\s<>\"]+@[^@\s<>\"]+\.[^@\s<>\"]+$")


class Meeting(BaseModel):
    """What ``meeting_metadata`` says about the calendar invite, read leniently: a value of the wrong
    shape (written by hand or by another system) is ignored, never an error."""

    organizer: str | None = None
    join_url: str | None = None
    location: str | None = None
    start: datetime | None = None  # the meeting's own time, when it is not the whole window
    end: datetime | None = None

    @classmethod
    def of(cls, metadata: dict[str, Any] | None) -> Meeting:
        meta = metadata or {}

        def text(*keys: str) -> str | None:
            for key in keys:
                value = meta.get(key)
                if isinstance(value, str) and value.strip() and not _CONTROL_RE.search(value):
                    return value.strip()
            return None

        def instant(key: str) -> datetime | None:
            try:
                value = _parse_utc(meta.get(key))
            except ValueError:
                return None
            return datetime.fromisoformat(value) if value else None

        organizer = text(MEETING_ORGANIZER)
        url = text(MEETING_JOIN_URL, "joinUrl", "meeting_url", "url")
        start, end = instant(MEETING_START), instant(MEETING_END)
        return cls(
            organizer=organizer if organizer and _EMAIL_RE.match(organizer) else None,
            join_url=url if url and _URL_RE.match(url) else None,
            location=text(MEETING_LOCATION),
            start=start if start and end and end > start else None,
            end=end if start and end and end > start else None,
        )

    @property
    def place(self) -> str | None:
        """Where to join: the URL, else the location."""
        return self.join_url or self.location

    def window(self, change: Change) -> tuple[datetime, datetime] | None:
        """The meeting's start and end: its own, else the change's window."""
        if self.start and self.end:
            return self.start, self.end
        if change.start_dt and change.end_dt:
            return change.start_dt, change.end_dt
        return None


# -- config -------------------------------------------------------------------


class CustomerMapping(BaseModel):
    model_config = ConfigDict(extra="allow")

    customer_code: str
    customer_name: str = Field(min_length=1, max_length=200)
    environment: str = "production"
    region: str | None = None
    ses_role_arn: str
    sqs_queue_arn: str
    restricted_recipients: list[EmailStr] = Field(default_factory=list)
    # Our optional additions.
    dlq_arn: str | None = None
    contact_list_name: str | None = None
    sender_address: EmailStr | None = None
    ses_external_id: str | None = None

    @field_validator("customer_code")
    @classmethod
    def _code(cls, value: str) -> str:
        if not CUSTOMER_CODE_RE.match(value):
            raise ValueError("must match ^[a-z0-9-]{2,50}$")
        return value

    @field_validator("restricted_recipients", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return [] if value is None else value

    @field_validator("ses_role_arn")
    @classmethod
    def _role_arn(cls, value: str) -> str:
        if not ROLE_ARN_RE.match(value):
            raise ValueError("must be an IAM role ARN (arn:aws:iam::123456789012:role/name)")
        return value

    @field_validator("sqs_queue_arn", "dlq_arn")
    @classmethod
    def _queue_arn(cls, value: str | None) -> str | None:
        if value is not None and not QUEUE_ARN_RE.match(value):
            raise ValueError("must be an SQS queue ARN (arn:aws:sqs:region:123456789012:name)")
        return value

    @property
    def account_id(self) -> str:
        match = ROLE_ARN_RE.match(self.ses_role_arn)
        assert match is not None
        return match.group(1)

    @property
    def queue_name(self) -> str:
        match = QUEUE_ARN_RE.match(self.sqs_queue_arn)
        assert match is not None
        return match.group(3)

    @property
    def queue_account(self) -> str:
        match = QUEUE_ARN_RE.match(self.sqs_queue_arn)
        assert match is not None
        return match.group(2)

    @property
    def queue_region(self) -> str:
        match = QUEUE_ARN_RE.match(self.sqs_queue_arn)
        assert match is not None
        return match.group(1)

    @property
    def dlq_name(self) -> str:
        if self.dlq_arn:
            match = QUEUE_ARN_RE.match(self.dlq_arn)
            assert match is not None
            return match.group(3)
        return f"{self.queue_name}-dlq"

    @property
    def effective_dlq_arn(self) -> str:
        if self.dlq_arn:
            return self.dlq_arn
        return self.sqs_queue_arn.rsplit(":", 1)[0] + ":" + self.dlq_name

    def allows_recipient(self, email: str) -> bool:
        """Whitelist check, case-insensitive; an empty whitelist allows everyone."""
        if not self.restricted_recipients:
            return True
        allowed = {str(a).casefold() for a in self.restricted_recipients}
        return email.casefold() in allowed


class S3Config(BaseModel):
    model_config = ConfigDict(extra="allow")

    bucket_name: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class EmailConfig(BaseModel):
    model_config = ConfigDict(extra="allow")

    sender_address: EmailStr
    portal_base_url: str | None = None
    reply_to: EmailStr | None = None

    @field_validator("portal_base_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value and not re.match(r"^https?://[^\s]+$", value):
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/") if value else value


class Branding(BaseModel):
    model_config = ConfigDict(extra="allow")

    provider_name: str = "Managed Services"
    accent_color: str = Field("#1f6feb", pattern=r"^#[0-9a-fA-F]{6}$")
    footer: str = ""
    logo_url: str | None = None


class MetricsConfig(BaseModel):
    model_config = ConfigDict(extra="allow")

    namespace: str = "ChangeConsole"
    cloudwatch: bool = False


# -- operators, roles and their actions ----------------------------------------------------------


class OperatorAction(StrEnum):
    """What an operator may be allowed to do (``operator_roles``; enforced by ``services.authz``)."""

    READ = "read"
    CHANGE_DRAFT = "change.draft"
    CHANGE_SUBMIT = "change.submit"
    CHANGE_EDIT = "change.edit"
    CHANGE_APPROVE = "change.approve"
    CHANGE_COMPLETE = "change.complete"
    CHANGE_CANCEL = "change.cancel"
    CHANGE_RESEND = "change.resend"
    CHANGE_DELETE = "change.delete"
    CHANGE_REINDEX = "change.reindex"
    CHANGE_PREVIEW = "change.preview"  # a read, in the customer's account (its contact list)
    CHANGE_TEST_SEND = "change.test-send"
    TEMPLATE_EDIT = "template.edit"
    CONTACTS_READ = "contacts.read"
    CONTACTS_EDIT = "contacts.edit"
    TOPICS_APPLY = "topics.apply"
    CUSTOMER_ADD = "customer.add"
    CUSTOMER_VERIFY = "customer.verify"
    CUSTOMER_REMOVE = "customer.remove"
    AUDIT_READ = "audit.read"
    DLQ_REDRIVE = "dlq.redrive"
    DLQ_EXPORT = "dlq.export"
    DLQ_IMPORT = "dlq.import"
    DLQ_PURGE = "dlq.purge"


A = OperatorAction
CHANGE_MANAGERS, CUSTOMER_MANAGERS, AUDITORS = "ChangeManagers", "CustomerManagers", "Auditors"
# The three roles every deployment knows; a role of another name gets only ``read`` and its ``actions``.
# DLQ actions belong to no built-in role: a role is given them explicitly (``actions``).
BUILTIN_ROLES: dict[str, frozenset[OperatorAction]] = {
    CHANGE_MANAGERS: frozenset(
        {
            A.READ,
            A.CHANGE_DRAFT,
            A.CHANGE_SUBMIT,
            A.CHANGE_EDIT,
            A.CHANGE_APPROVE,
            A.CHANGE_COMPLETE,
            A.CHANGE_CANCEL,
            A.CHANGE_RESEND,
            A.CHANGE_DELETE,
            A.CHANGE_REINDEX,
            A.CHANGE_PREVIEW,
            A.CHANGE_TEST_SEND,
            A.TEMPLATE_EDIT,
        }
    ),
    CUSTOMER_MANAGERS: frozenset(
        {
            A.READ,
            A.CONTACTS_READ,
            A.CONTACTS_EDIT,
            A.TOPICS_APPLY,
            A.CUSTOMER_ADD,
            A.CUSTOMER_VERIFY,
            A.CUSTOMER_REMOVE,
            A.CHANGE_PREVIEW,
        }
    ),
    AUDITORS: frozenset({A.READ, A.AUDIT_READ}),
}
# Reading contacts (``contacts.read``) is apart from ``read``: contacts live in the customers' accounts,
# behind the roles operators assume there, which IAM lets only the roles that manage them assume.
# Previewing a notice reads the customer's contact list through its role, like ``contacts.read``: change
# and customer managers do it for their customers. Team templates belong to no customer.
# Actions that act on no particular customer (every other one is checked against the role's scope).
UNSCOPED_ACTIONS = frozenset({A.READ, A.AUDIT_READ, A.TEMPLATE_EDIT})
_SHORT_MARK = "~short-form"
PRINCIPAL_ARN_RE = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}|\*):(role|user)/\S+\Z")
TAG_KEY_RE = re.compile(r"^[\w.:/=+@ -]{1,128}\Z")


class OperatorRole(BaseModel):
    """One ``operator_roles`` entry: who holds the role, on which customers, with which extra actions.

    ``principals``: Identity Center permission set or group names (a plain ``NAME`` is either;
    ``permission-set:NAME`` / ``group:NAME`` say which), IAM role or user ARNs, or ``user:NAME`` (an
    Identity Center user, an IAM user, or ``--as NAME`` on the local stack). ``customers`` limits the
    role to these codes, ``customer_tag`` to the code in that principal tag (ABAC); neither: every
    customer.
    """

    model_config = ConfigDict(extra="allow")

    principals: list[str] = Field(default_factory=list)
    customers: list[str] | None = None
    customer_tag: str | None = None
    actions: list[OperatorAction] = Field(default_factory=list)

    # Written as a plain list of principals (the short form): written back the same way.
    _short: bool = PrivateAttr(False)

    @model_validator(mode="before")
    @classmethod
    def _from_list(cls, data: Any) -> Any:
        return {"principals": data, _SHORT_MARK: True} if isinstance(data, list) else data

    @model_validator(mode="after")
    def _remember_short(self) -> OperatorRole:
        extra = self.__pydantic_extra__ or {}
        self._short = bool(extra.pop(_SHORT_MARK, False))
        return self

    @model_serializer(mode="wrap")
    def _to_short(self, handler: SerializerFunctionWrapHandler) -> Any:
        return list(self.principals) if self._short else handler(self)

    @field_validator("principals")
    @classmethod
    def _principals(cls, value: list[str]) -> list[str]:
        for item in value:
            if not item.strip():
                raise ValueError("a principal cannot be empty")
            if item.startswith("arn:") and not PRINCIPAL_ARN_RE.match(item):
                raise ValueError(f"{item!r}: an ARN principal is an IAM role or user ARN")
        return value

    @field_validator("customers")
    @classmethod
    def _codes(cls, value: list[str] | None) -> list[str] | None:
        for code in value or []:
            if code != "*" and not CUSTOMER_CODE_RE.match(code):
                raise ValueError(f"{code!r} is not a customer code (^[a-z0-9-]{{2,50}}$) or *")
        return value

    @field_validator("customer_tag")
    @classmethod
    def _tag(cls, value: str | None) -> str | None:
        if value is not None and not TAG_KEY_RE.match(value):
            raise ValueError("must be an IAM tag key (1-128 letters, digits, spaces, _.:/=+@-)")
        return value

    @model_validator(mode="after")
    def _one_scope(self) -> OperatorRole:
        if self.customers is not None and self.customer_tag is not None:
            raise ValueError("give customers or customer_tag, not both")
        return self

    def effective_actions(self, name: str) -> frozenset[OperatorAction]:
        return BUILTIN_ROLES.get(name, frozenset({A.READ})) | frozenset(self.actions)

    @property
    def all_customers(self) -> bool:
        return self.customer_tag is None and (self.customers is None or "*" in self.customers)


class IdentityCenterConfig(BaseModel):
    """Where operators' Identity Center groups and ABAC attributes are read (``identitystore``)."""

    model_config = ConfigDict(extra="allow")

    identity_store_id: str | None = Field(None, pattern=r"^(d-[0-9a-z]{10}|[0-9a-f-]{36})$")
    instance_arn: str | None = Field(None, pattern=r"^arn:aws[a-z-]*:sso:::instance/ssoins-[0-9a-zA-Z.-]+$")
    region: str | None = Field(None, pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")
    # ABAC: principal tag key -> the Identity Center user attribute it comes from (e.g. "userType").
    attributes: dict[str, str] = Field(default_factory=dict)
    cache_seconds: int = Field(300, ge=0, le=86_400)


class AuditRetention(BaseModel):
    """The S3 lifecycle of ``audit/`` (``provision`` and Terraform) and optional Object Lock."""

    model_config = ConfigDict(extra="allow")

    transition_days: int | None = Field(90, ge=1)
    transition_storage_class: Literal[
        "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER_IR", "GLACIER", "DEEP_ARCHIVE"
    ] = "GLACIER_IR"
    expire_days: int | None = Field(None, ge=1)
    object_lock_mode: Literal["GOVERNANCE", "COMPLIANCE"] | None = None
    object_lock_days: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _consistent(self) -> AuditRetention:
        if (self.object_lock_mode is None) != (self.object_lock_days is None):
            raise ValueError("object_lock_mode and object_lock_days go together")
        if self.expire_days and self.transition_days and self.expire_days <= self.transition_days:
            raise ValueError("expire_days must be after transition_days")
        if self.expire_days and self.object_lock_days and self.expire_days < self.object_lock_days:
            raise ValueError("expire_days cannot be before object_lock_days run out")
        return self


class EventsConfig(BaseModel):
    """SES events: where they go, and what the worker does with what they say (``services.events``)."""

    model_config = ConfigDict(extra="allow")

    # SES configuration set every send names, provisioned in each customer's account
    configuration_set: str = Field("changeconsole", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    topic_name: str = Field("changeconsole-ses-events", pattern=r"^[A-Za-z0-9_-]{1,256}$")  # SNS, central
    queue_name: str = Field("changeconsole-ses-events", pattern=r"^[A-Za-z0-9_-]{1,80}$")  # SQS, central
    # An ``unknown`` recipient with no Send/Delivery event after this long is sent again (resend) or
    # left for an operator (hold).
    unknown_grace_seconds: float = Field(900.0, ge=1, le=86400)
    unknown_policy: Literal["resend", "hold"] = "resend"
    # Automatic resends per recipient. Each follows a send that itself ended unknown (its worker died
    # inside the SES call) with no event since; past this, an operator decides.
    max_auto_resends: int = Field(3, ge=1, le=10)
    # What a hard bounce or a complaint does to the contact in the customer's list.
    reputation_policy: Literal["unsubscribe_all", "opt_out_topic"] = "opt_out_topic"


# How the fan-out rings a customer's queue: S3 event notifications, or an SQS message it sends itself.
Transport = Literal["s3-events", "sqs-direct"]


class DoorbellConfig(BaseModel):
    """``sqs-direct``: whoever puts a trigger in a customer's queue also sends ``{"customer": code}`` to
    its shard's doorbell queue, so workers long-poll only queues that have work (``worker.runtime``)."""

    model_config = ConfigDict(extra="allow")

    enabled: bool = True
    # Queue ``<queue_prefix>-<K>-of-<N>`` per worker shard K of ``worker_shards`` N (central account).
    queue_prefix: str = Field("changeconsole-doorbell", pattern=r"^[A-Za-z0-9_-]{1,60}$")
    # Seconds between two depth checks of an idle (unpolled) queue: the backstop for a lost ring.
    sweep_seconds: float = Field(300.0, ge=1, le=3600)


def shard_of(code: str, n: int) -> int:
    """The worker shard (``--shard K/N``) of a customer: sha256 of the code (not ``hash()``), so it is
    stable across processes and Python versions."""
    digest = hashlib.sha256(code.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % n


class Config(BaseModel):
    """The deployed ``config.json`` plus our optional additions."""

    model_config = ConfigDict(extra="allow")

    aws_region: str = Field(pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")
    s3_config: S3Config
    email_config: EmailConfig
    customer_mappings: dict[str, CustomerMapping] = Field(min_length=1)
    # Our additions (optional, with defaults).
    status_table_name: str = "changeconsole-status"
    ledger_table_name: str = "changeconsole-ledger"
    transport: Transport = "s3-events"
    contact_list_name: str = "changeconsole"
    max_receive_count: int = Field(3, ge=1, le=1000)
    # Take-overs of a delivery's ledger claim (each one a worker that died holding it) before the worker
    # dead-letters its message as ``worker_crashes``; they do not use up ``max_receive_count``.
    max_crash_count: int = Field(10, ge=1, le=1000)
    # Receives of a message that ended with no outcome (a worker died before it claimed the delivery,
    # or SQS handed it to a killed worker's pending long poll) before the worker dead-letters it as
    # ``receives_exhausted``. Generous: such receives are mostly nobody's fault.
    max_receives_without_outcome: int = Field(50, ge=1, le=1000)
    branding: Branding = Field(default_factory=Branding)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    # Role name -> principals (the short form) or a role object; absent/empty: no roles enforced.
    operator_roles: dict[str, OperatorRole] = Field(default_factory=dict)
    # Whoever submitted a version cannot approve it; None: on when roles are configured, outside --local.
    require_distinct_approver: bool | None = None
    identity_center: IdentityCenterConfig | None = None
    audit_retention: AuditRetention = Field(default_factory=AuditRetention)
    events: EventsConfig = Field(default_factory=EventsConfig)
    # The deployment's worker shard count N (``worker --shard K/N``): the doorbell queues are per shard.
    worker_shards: int = Field(1, ge=1, le=1024)
    doorbell: DoorbellConfig = Field(default_factory=DoorbellConfig)

    @model_validator(mode="after")
    def _keys_match_codes(self) -> Config:
        for key, mapping in self.customer_mappings.items():
            if key != mapping.customer_code:
                raise ValueError(
                    f"customer_mappings.{key}.customer_code is {mapping.customer_code!r}, must equal its key"
                )
        return self

    def customer(self, code: str) -> CustomerMapping:
        try:
            return self.customer_mappings[code]
        except KeyError:
            raise UnknownCustomer(code) from None

    @property
    def uses_doorbell(self) -> bool:
        return self.transport == "sqs-direct" and self.doorbell.enabled

    def doorbell_queue(self, shard: int) -> str:
        """The doorbell queue of worker shard ``shard`` (0-based) of ``worker_shards``."""
        return f"{self.doorbell.queue_prefix}-{shard}-of-{self.worker_shards}"

    def doorbell_queues(self) -> list[str]:
        return [self.doorbell_queue(k) for k in range(self.worker_shards)] if self.uses_doorbell else []

    def contact_list_for(self, code: str) -> str:
        return self.customer(code).contact_list_name or self.contact_list_name

    def sender_for(self, code: str) -> str:
        return str(self.customer(code).sender_address or self.email_config.sender_address)

    def to_json_dict(self) -> dict[str, Any]:
        """Defaults that are not null, plus everything the document set (explicit nulls and unknown keys
        included), so a deployed config round-trips without loss."""
        return _merge(
            self.model_dump(mode="json", exclude_none=True), self.model_dump(mode="json", exclude_unset=True)
        )


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


# -- delivery -------------------------------------------------------------------


class DeliveryState(StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    SENT = "sent"
    PARTIAL = "partial"
    FAILED = "failed"
    DEAD_LETTERED = "dead_lettered"
    SUPERSEDED = "superseded"
    SKIPPED = "skipped"


FINAL_STATES = frozenset(
    {
        DeliveryState.SENT,
        DeliveryState.PARTIAL,
        DeliveryState.FAILED,
        DeliveryState.DEAD_LETTERED,
        DeliveryState.SUPERSEDED,
        DeliveryState.SKIPPED,
    }
)


class DeliveryRecord(BaseModel):
    """Delivery of one (change, version, event) to one customer."""

    model_config = ConfigDict(extra="allow")

    change_id: str
    version: int
    event: EmailEvent
    customer: str
    state: DeliveryState = DeliveryState.QUEUED
    attempts: int = 0
    recipients_total: int = 0
    recipients_sent: int = 0
    recipients_failed: int = 0
    last_error: str | None = None
    message_ids: list[str] = Field(default_factory=list)
    queued_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    updated_at: str | None = None
    worker_id: str | None = None

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def duration_seconds(self) -> float | None:
        if not self.queued_at:
            return None
        start = datetime.fromisoformat(self.queued_at)
        end = datetime.fromisoformat(self.finished_at) if self.finished_at else utcnow()
        return max(0.0, (end - start).total_seconds())


# -- queue messages -----------------------------------------------------------------

DIRECT_KIND = "changeconsole.trigger"
# Header names of the hidden machine-readable block in every email.
HDR_CHANGE = "X-Changeconsole-Change"
HDR_VERSION = "X-Changeconsole-Version"
HDR_EVENT = "X-Changeconsole-Event"
HDR_CUSTOMER = "X-Changeconsole-Customer"
HDR_TEST = "X-Changeconsole-Test"  # a test send (``change test-send``): never a delivery

TRIGGER_PREFIX = "customers/"
_TRIGGER_KEY_RE = re.compile(
    r"^customers/(?P<code>[a-z0-9-]{2,50})/"
    rf"(?:(?P<cid>CHG-[0-9A-Za-z-]+?)/v(?P<version>\d{{1,{VERSION_DIGITS}}})-(?P<event>[a-z]+)"
    r"|(?P<flat>[^/]+))\.json\Z"
)


def trigger_key(code: str, change_id: str, version: int, event: EmailEvent) -> str:
    """S3 key of a trigger: distinct per (customer, change, version, event)."""
    return f"{TRIGGER_PREFIX}{code}/{change_id}/{version_tag(version)}-{event.value}.json"


class PermanentMessageError(ChangeconsoleError):
    """A queue message that can never succeed; goes to the DLQ with ``reason``."""

    reason = "invalid_message"
    title = "Message rejected"

    def __init__(self, detail: str, *, customer: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.customer = customer


class MalformedMessage(PermanentMessageError):
    reason = "malformed_message"


class OversizedMessage(PermanentMessageError):
    reason = "oversized_message"


class InvalidTriggerKey(PermanentMessageError):
    reason = "invalid_trigger_key"


class InvalidChange(PermanentMessageError):
    reason = "invalid_change"


class UnknownCustomer(PermanentMessageError, KeyError):
    reason = "unknown_customer"

    def __init__(self, code: str) -> None:
        PermanentMessageError.__init__(self, f"unknown customer {code!r}", customer=code)
        self.code = code

    def __str__(self) -> str:
        return self.detail


class IsolationViolation(PermanentMessageError):
    reason = "isolation_violation"


class Ignore(BaseModel):
    """A message that needs no work (e.g. ``s3:TestEvent``); delete it."""

    reason: str


class Trigger(BaseModel):
    """What a queue message asks for: deliver one change event to one customer."""

    source: Literal["s3-event", "direct"]
    customer: str
    change_id: str | None = None
    version: int | None = None
    event: EmailEvent | None = None
    bucket: str | None = None
    key: str | None = None
    etag: str | None = None
    size: int | None = None
    event_time: str | None = None
    change: dict[str, Any] | None = None


def parse_trigger_key(key: str) -> tuple[str, str | None, int | None, EmailEvent | None]:
    """(customer, change id, version, event) from a trigger key; raises InvalidTriggerKey."""
    if len(key) > 1024:
        raise InvalidTriggerKey("trigger key longer than 1024 characters")
    match = _TRIGGER_KEY_RE.match(key)
    if not match:
        raise InvalidTriggerKey(f"key {key!r} is not customers/<code>/<change>/v<n>-<event>.json")
    code = match.group("code")
    if match.group("flat") is not None:
        flat = match.group("flat")
        return code, flat if CHANGE_ID_RE.match(flat) else None, None, None
    cid = match.group("cid")
    if not CHANGE_ID_RE.match(cid):
        raise InvalidTriggerKey(f"key {key!r} has an invalid change id", customer=code)
    try:
        event = EmailEvent(match.group("event"))
    except ValueError:
        raise InvalidTriggerKey(f"key {key!r} names unknown event", customer=code) from None
    return code, cid, int(match.group("version")), event


def _load_body(body: str | bytes) -> Any:
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    if len(raw) > MAX_MESSAGE_BYTES:
        raise OversizedMessage(f"message body is {len(raw)} bytes (limit {MAX_MESSAGE_BYTES})")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedMessage(f"body is not JSON: {exc}") from None
    except RecursionError:
        raise MalformedMessage("body is nested too deeply") from None


def _s3_trigger(record: Any) -> Trigger | Ignore:
    if not isinstance(record, dict):
        raise MalformedMessage("Records[0] is not an object")
    event_name = record.get("eventName")
    if not isinstance(event_name, str):
        raise MalformedMessage("Records[0].eventName missing")
    if not event_name.startswith("ObjectCreated:") and not event_name.startswith("s3:ObjectCreated:"):
        return Ignore(reason=f"S3 event {event_name} needs no delivery")
    s3 = record.get("s3")
    if not isinstance(s3, dict):
        raise MalformedMessage("Records[0].s3 missing")
    bucket = (s3.get("bucket") or {}).get("name") if isinstance(s3.get("bucket"), dict) else None
    obj = s3.get("object")
    if not isinstance(bucket, str) or not isinstance(obj, dict) or not isinstance(obj.get("key"), str):
        raise MalformedMessage("Records[0].s3.bucket.name or s3.object.key missing")
    # S3 URL-encodes keys in notifications (moto also encodes '/').
    key = unquote_plus(obj["key"])
    code, cid, version, event = parse_trigger_key(key)
    size = obj.get("size")
    etag = obj.get("eTag") or obj.get("etag")
    return Trigger(
        source="s3-event",
        customer=code,
        change_id=cid,
        version=version,
        event=event,
        bucket=bucket,
        key=key,
        etag=etag if isinstance(etag, str) else None,
        size=size if isinstance(size, int) else None,
        event_time=record.get("eventTime") if isinstance(record.get("eventTime"), str) else None,
    )


def _direct_trigger(data: dict[str, Any]) -> Trigger:
    customer = data.get("customer")
    if not isinstance(customer, str) or not CUSTOMER_CODE_RE.match(customer):
        raise MalformedMessage("direct message: customer missing or not a customer code")
    try:
        event = EmailEvent(str(data.get("event")))
    except ValueError:
        raise MalformedMessage("direct message: event missing or unknown", customer=customer) from None
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= MAX_VERSION:
        raise MalformedMessage(
            f"direct message: version must be an integer from 1 to {MAX_VERSION}", customer=customer
        )
    cid = data.get("changeId")
    if not isinstance(cid, str) or not CHANGE_ID_RE.match(cid):
        raise MalformedMessage("direct message: changeId missing or malformed", customer=customer)
    change = data.get("change")
    ref = data.get("s3")
    if isinstance(change, dict):
        return Trigger(
            source="direct", customer=customer, change_id=cid, version=version, event=event, change=change
        )
    if isinstance(ref, dict) and isinstance(ref.get("bucket"), str) and isinstance(ref.get("key"), str):
        return Trigger(
            source="direct",
            customer=customer,
            change_id=cid,
            version=version,
            event=event,
            bucket=ref["bucket"],
            key=ref["key"],
        )
    raise MalformedMessage(
        "direct message needs an embedded 'change' or an 's3' reference", customer=customer
    )


def parse_queue_message(body: str | bytes) -> Trigger | Ignore:
    """Parse an SQS body: an S3 event notification (AWS or moto variant) or our direct shape.

    Returns ``Ignore`` for ``s3:TestEvent`` and non-create events; raises a
    ``PermanentMessageError`` subclass for anything it cannot act on.
    """
    data = _load_body(body)
    if not isinstance(data, dict):
        raise MalformedMessage("body is not a JSON object")
    if data.get("Event") == "s3:TestEvent":
        return Ignore(reason="s3:TestEvent")
    if data.get("kind") == DIRECT_KIND:
        return _direct_trigger(data)
    if "Records" in data:
        records = data["Records"]
        if not isinstance(records, list) or not records:
            raise MalformedMessage("Records must be a non-empty list")
        if len(records) > 1:
            raise MalformedMessage(f"expected one S3 record per message, got {len(records)}")
        return _s3_trigger(records[0])
    raise MalformedMessage("neither an S3 event notification nor a changeconsole trigger")


def direct_message(
    customer: str,
    change_id: str,
    version: int,
    event: EmailEvent,
    *,
    change: dict[str, Any] | None = None,
    bucket: str | None = None,
    key: str | None = None,
) -> str:
    """Body of an ``sqs-direct`` trigger (embedded change or S3 reference)."""
    body: dict[str, Any] = {
        "kind": DIRECT_KIND,
        "schema": 1,
        "customer": customer,
        "changeId": change_id,
        "version": version,
        "event": event.value,
    }
    if change is not None:
        body["change"] = change
    else:
        body["s3"] = {"bucket": bucket, "key": key}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)
