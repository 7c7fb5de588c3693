"""One customer's contacts and their topic preferences, managed in the customer's own SES account.

Every call goes through the customer's assumed role (``AwsFactory.customer_client``): nothing crosses
accounts. Contacts are read from every page of ``ListContacts``; who receives a topic is decided by
``services.contacts.is_subscribed`` (SES semantics: an explicit preference wins, else the topic default).

CSV files (import and export) have a header ``email`` then optionally ``unsubscribe_all`` and one
column per topic of the list. A topic cell is ``OPT_IN`` or ``OPT_OUT`` (also ``in``/``out``,
``yes``/``no``, ``true``/``false``, ``1``/``0``), or empty / ``default`` for no explicit preference
(the topic's default applies). Import is an upsert that only touches the columns the file has; it
also reads the running system's ``SubscriptionConfig.json`` (``{topic: [email, …]}``: opt-ins).

Every change passes the authorization point (``services.authz``: ``contacts.edit`` on this customer)
and is audited with the operator's identity (an import or sync adds a line per contact it changed).
Writes are paced with the project's ``RateLimiter``: SES allows one contact API call per second per
account by default.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from email_validator import EmailNotValidError, validate_email

from ..errors import InputError, describe, error_code
from ..models import Config, OperatorAction
from .audit import FAILED, OK
from .authz import ActionRecord, Authorizer
from .aws import AwsFactory
from .contacts import (
    OPT_IN,
    OPT_OUT,
    Contact,
    ContactListChoice,
    choose_contact_list,
    is_subscribed,
    iter_contacts,
)
from .dlq.ratelimit import RateLimiter

# SES's default rate for API calls other than sending: one per second.
DEFAULT_RATE = 1.0
EMAIL_COLUMN = "email"
UNSUBSCRIBE_COLUMN = "unsubscribe_all"
_IN = {"opt_in", "in", "yes", "y", "true", "1"}
_OUT = {"opt_out", "out", "no", "n", "false", "0"}
_DEFAULT = {"", "default", "-"}

Progress = Callable[[int, int], None]


class ContactError(InputError):
    """A contact operation refused as asked (bad address, unknown topic, missing contact…)."""

    title = "Contact refused"


class ContactNotFound(ContactError):
    pass


class ContactExists(ContactError):
    pass


class ImportFileError(InputError):
    """A CSV that cannot be imported at all (header, encoding); nothing was applied."""

    title = "Cannot import the file"


def normalize_email(value: str) -> str:
    """A syntactically valid address (email-validator, no DNS lookups); ContactError otherwise."""
    try:
        return str(validate_email(value.strip(), check_deliverability=False).normalized)
    except EmailNotValidError as exc:
        raise ContactError(f"{value.strip()!r} is not a valid email address: {exc}") from None


def parse_preference(value: str) -> str | None:
    """``OPT_IN`` / ``OPT_OUT``, or None for no explicit preference; ContactError otherwise."""
    text = value.strip().lower().replace("-", "_")
    if text in _IN:
        return OPT_IN
    if text in _OUT:
        return OPT_OUT
    if text in _DEFAULT:
        return None
    raise ContactError(f"{value!r} is not OPT_IN, OPT_OUT or empty (the topic default)")


def _parse_flag(value: str) -> bool:
    text = value.strip().lower()
    if text in ("", "false", "no", "n", "0"):
        return False
    if text in ("true", "yes", "y", "1"):
        return True
    raise ContactError(f"{value!r} is not true or false")


@dataclass(frozen=True)
class TopicInfo:
    name: str
    display_name: str
    default: str


@dataclass(frozen=True)
class ContactView:
    """A contact as the console and ``contacts list`` show it: per topic explicit or default."""

    email: str
    unsubscribe_all: bool
    preferences: dict[str, str]
    subscribed: dict[str, bool]

    def to_json(self) -> dict[str, Any]:
        return {
            "email": self.email,
            "unsubscribe_all": self.unsubscribe_all,
            "preferences": dict(sorted(self.preferences.items())),
            "subscribed": dict(sorted(self.subscribed.items())),
        }


@dataclass
class CsvRow:
    line: int
    raw_email: str
    email: str | None = None
    preferences: dict[str, str | None] = field(default_factory=dict)
    unsubscribe_all: bool | None = None
    problem: str | None = None


@dataclass
class RowResult:
    line: int
    email: str
    result: str  # created, updated, unchanged, invalid, failed, not_attempted
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"line": self.line, "email": self.email, "result": self.result, "detail": self.detail}


RESULTS = ("created", "updated", "unchanged", "invalid", "failed", "not_attempted")


@dataclass
class ImportReport:
    customer: str
    contact_list: str
    dry_run: bool
    rows: list[RowResult] = field(default_factory=list)
    error: str | None = None  # the AWS failure that stopped the import
    audit_key: str | None = None

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(RESULTS, 0)
        for row in self.rows:
            out[row.result] += 1
        return out

    @property
    def applied(self) -> int:
        """Rows written to SES (0 in a dry run)."""
        return 0 if self.dry_run else sum(1 for r in self.rows if r.result in ("created", "updated"))

    @property
    def ok(self) -> bool:
        return self.error is None and not any(r.result in ("invalid", "failed") for r in self.rows)

    def to_json(self) -> dict[str, Any]:
        return {
            "customer": self.customer,
            "contact_list": self.contact_list,
            "dry_run": self.dry_run,
            "ok": self.ok,
            "counts": self.counts(),
            "applied": self.applied,
            "error": self.error,
            "audit_key": self.audit_key,
            "rows": [r.to_json() for r in self.rows],
        }


def read_contacts_csv(text: str, topics: Iterable[str]) -> list[CsvRow]:
    """Rows of a contacts CSV, each checked (address syntax, duplicates, cell values).

    ImportFileError when the header is unusable: nothing can be imported from such a file.
    """
    known = list(topics)
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    header = next(reader, None)
    if not header:
        raise ImportFileError("the file is empty (expected a header: email,…)")
    columns = [h.strip() for h in header]
    lowered = [c.lower() for c in columns]
    if EMAIL_COLUMN not in lowered:
        raise ImportFileError(f"no {EMAIL_COLUMN!r} column in the header ({', '.join(columns)})")
    by_name = {t.lower(): t for t in known}
    unknown = [c for c in columns if c.lower() not in (EMAIL_COLUMN, UNSUBSCRIBE_COLUMN, *by_name)]
    if unknown:
        raise ImportFileError(
            f"unknown column(s) {', '.join(map(repr, unknown))}: columns are {EMAIL_COLUMN}, "
            f"{UNSUBSCRIBE_COLUMN} and the list's topics ({', '.join(known) or 'none'})"
        )
    if len(set(lowered)) != len(lowered):
        raise ImportFileError("a column appears twice in the header")
    rows: list[CsvRow] = []
    first_line: dict[str, int] = {}
    for cells in reader:
        line = reader.line_num
        if not any(c.strip() for c in cells):
            continue
        values = dict(zip(lowered, cells, strict=False))
        row = CsvRow(line=line, raw_email=values.get(EMAIL_COLUMN, "").strip())
        rows.append(row)
        if len(cells) != len(columns):
            row.problem = f"{len(cells)} cells, the header has {len(columns)}"
            continue
        try:
            row.email = normalize_email(row.raw_email)
        except ContactError as exc:
            row.problem = str(exc)
            continue
        key = row.email.casefold()
        if key in first_line:
            row.problem = f"duplicate of line {first_line[key]}"
            continue
        first_line[key] = line
        try:
            for col, value in values.items():
                if col in by_name:
                    row.preferences[by_name[col]] = parse_preference(value)
                elif col == UNSUBSCRIBE_COLUMN:
                    row.unsubscribe_all = _parse_flag(value)
        except ValueError as exc:
            row.problem = f"{col}: {exc}"
    return rows


def read_subscription_config(text: str, topics: Iterable[str]) -> list[CsvRow]:
    """Rows of the running system's ``SubscriptionConfig.json`` (``{topic: [email, …]}``): each address
    is opted in (explicit ``OPT_IN``) to the topics that list it; its other preferences stay as they are.

    ``line`` is where the address first appears in the file. ImportFileError when the document is not
    such a mapping or names a topic the list does not have.
    """
    known = list(topics)
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ImportFileError(f"not JSON: {exc.msg} at line {exc.lineno}") from None
    if not isinstance(raw, dict) or not all(
        isinstance(v, list) and all(isinstance(a, str) for a in v) for v in raw.values()
    ):
        raise ImportFileError("expected SubscriptionConfig.json: an object {topic: [email, …]}")
    unknown = [t for t in raw if t not in known]
    if unknown:
        raise ImportFileError(
            f"unknown topic(s) {', '.join(map(repr, unknown))} (the list has {', '.join(known) or 'none'})"
        )
    lines = text.splitlines()
    by_email: dict[str, CsvRow] = {}
    for topic, addresses in raw.items():
        for address in addresses:
            key = address.strip().casefold()
            row = by_email.get(key)
            if row is None:
                quoted = json.dumps(address)
                line = next((i for i, text_line in enumerate(lines, 1) if quoted in text_line), 0)
                row = by_email[key] = CsvRow(line=line, raw_email=address.strip())
                try:
                    row.email = normalize_email(address)
                except ContactError as exc:
                    row.problem = str(exc)
            row.preferences[topic] = OPT_IN
    return sorted(by_email.values(), key=lambda r: r.line)


def _prefs_api(prefs: dict[str, str]) -> list[dict[str, str]]:
    return [{"TopicName": t, "SubscriptionStatus": s} for t, s in sorted(prefs.items())]


def _changes(before: Contact, prefs: dict[str, str], unsubscribe_all: bool) -> list[str]:
    out = []
    for topic in sorted(set(before.preferences) | set(prefs)):
        old, new = before.preferences.get(topic), prefs.get(topic)
        if old != new:
            out.append(f"{topic}: {old or 'default'} → {new or 'default'}")
    if before.unsubscribe_all != unsubscribe_all:
        out.append(f"unsubscribe_all: {before.unsubscribe_all} → {unsubscribe_all}")
    return out


class ContactBook:
    """The contacts of one customer's list, in that customer's own account."""

    def __init__(
        self,
        aws: AwsFactory,
        config: Config,
        code: str,
        *,
        operator: str | None = None,
        rate: float | None = DEFAULT_RATE,
        authz: Authorizer | None = None,
    ) -> None:
        self.aws = aws
        self.config = config
        self.code = code
        self.mapping = config.customer(code)
        self.authz = authz or Authorizer(aws, config, operator=operator, via="api")
        self.rate = rate

    @property
    def operator(self) -> str:
        return self.authz.operator.name

    def _act(self, name: str) -> AbstractContextManager[ActionRecord]:
        """Authorize and audit a change of this customer's contacts (``contacts.edit``)."""
        return self.authz.act(OperatorAction.CONTACTS_EDIT, [self.code], name=name)

    @cached_property
    def ses(self) -> Any:
        return self.aws.customer_client(self.mapping, "sesv2")

    @cached_property
    def choice(self) -> ContactListChoice:
        return choose_contact_list(self.ses, self.config, self.code)

    @property
    def list_name(self) -> str:
        return self.choice.name

    def _require_list(self) -> None:
        if not self.choice.exists:
            raise ContactError(
                f"{self.code} has no contact list {self.list_name!r} ({self.choice.reason}); "
                f"create it with `changeconsole topics apply {self.code} FILE`"
            )

    # -- reading --------------------------------------------------------------------------
    def topics(self) -> list[TopicInfo]:
        self._require_list()
        resp = self.ses.get_contact_list(ContactListName=self.list_name)
        return [
            TopicInfo(
                str(t["TopicName"]),
                str(t.get("DisplayName") or t["TopicName"]),
                str(t.get("DefaultSubscriptionStatus") or OPT_OUT),
            )
            for t in resp.get("Topics") or []
            if t.get("TopicName")
        ]

    def contacts(self) -> list[Contact]:
        """Every contact (every page; an address repeated across pages counts once)."""
        self._require_list()
        unique: dict[str, Contact] = {}
        for contact in iter_contacts(self.ses, self.list_name):
            unique.setdefault(contact.email.casefold(), contact)
        return sorted(unique.values(), key=lambda c: c.email.casefold())

    def views(self) -> tuple[list[TopicInfo], list[ContactView]]:
        """Topics and every contact with, per topic, its explicit preference and whether it receives it
        (needs ``contacts.read`` on the customer)."""
        self.authz.require(OperatorAction.CONTACTS_READ, [self.code])
        topics = self.topics()
        defaults = {t.name: t.default for t in topics}
        views = [
            ContactView(
                c.email,
                c.unsubscribe_all,
                dict(c.preferences),
                {t.name: is_subscribed(c, t.name, defaults) for t in topics},
            )
            for c in self.contacts()
        ]
        return topics, views

    def find(self, email: str) -> Contact | None:
        """The contact with this address, spelled in any case (we treat addresses case-insensitively)."""
        self._require_list()
        address = normalize_email(email)
        try:
            data = self.ses.get_contact(ContactListName=self.list_name, EmailAddress=address)
        except ClientError as exc:
            if error_code(exc) not in ("NotFoundException", "404"):
                raise
        else:
            return Contact.from_api(data)
        key = address.casefold()
        return next((c for c in self.contacts() if c.email.casefold() == key), None)

    def _check_topics(self, prefs: Mapping[str, str | None]) -> None:
        known = {t.name for t in self.topics()}
        unknown = sorted(set(prefs) - known)
        if unknown:
            raise ContactError(
                f"unknown topic(s) {', '.join(unknown)} (the list has {', '.join(sorted(known)) or 'none'})"
            )

    # -- single changes ---------------------------------------------------------------------
    def add(
        self, email: str, preferences: dict[str, str | None] | None = None, *, unsubscribe_all: bool = False
    ) -> Contact:
        """Create a contact; ContactExists when the address is on the list already."""
        with self._act("contact.add") as record:
            address = normalize_email(email)
            prefs = {t: s for t, s in (preferences or {}).items() if s is not None}
            self._check_topics(prefs)
            if self.find(address) is not None:
                raise ContactExists(f"{address} is already a contact of {self.code}")
            contact = self.create(address, prefs, unsubscribe_all=unsubscribe_all)
            record.finish(
                OK,
                contact_list=self.list_name,
                email=address,
                preferences=prefs,
                unsubscribe_all=unsubscribe_all,
            )
            return contact

    def update(
        self,
        email: str,
        preferences: dict[str, str | None] | None = None,
        *,
        unsubscribe_all: bool | None = None,
    ) -> tuple[Contact, Contact, list[str]]:
        """Change some topic preferences (None: back to the topic default) or UnsubscribeAll.

        Returns (before, after, changes); nothing is written when nothing changes.
        """
        with self._act("contact.update") as record:
            wanted = preferences or {}
            self._check_topics(wanted)
            before = self.find(email)
            if before is None:
                raise ContactNotFound(f"{email.strip()} is not a contact of {self.code}")
            prefs = dict(before.preferences)
            for topic, status in wanted.items():
                if status is None:
                    prefs.pop(topic, None)
                else:
                    prefs[topic] = status
            unsub = before.unsubscribe_all if unsubscribe_all is None else unsubscribe_all
            changes = _changes(before, prefs, unsub)
            after = Contact(before.email, unsub, prefs)
            if changes:
                self._write(before.email, prefs, unsub)
            record.finish(
                OK,
                contact_list=self.list_name,
                email=before.email,
                changes=changes,
                detail=None if changes else "nothing changed",
            )
            return before, after, changes

    def toggle(self, email: str, topic: str) -> tuple[Contact, Contact, list[str]]:
        """Flip whether the contact receives ``topic``, as an explicit preference."""
        defaults = {t.name: t.default for t in self.topics()}
        if topic not in defaults:
            raise ContactError(f"unknown topic {topic!r}")
        current = self.find(email)
        if current is None:
            raise ContactNotFound(f"{email.strip()} is not a contact of {self.code}")
        receives = current.preferences.get(topic, defaults[topic]) == OPT_IN
        return self.update(current.email, {topic: OPT_OUT if receives else OPT_IN})

    def remove(self, email: str) -> Contact:
        with self._act("contact.remove") as record:
            before = self.find(email)
            if before is None:
                raise ContactNotFound(f"{email.strip()} is not a contact of {self.code}")
            self.ses.delete_contact(ContactListName=self.list_name, EmailAddress=before.email)
            record.finish(
                OK,
                contact_list=self.list_name,
                email=before.email,
                preferences=before.preferences,
                unsubscribe_all=before.unsubscribe_all,
            )
            return before

    def create(self, address: str, prefs: dict[str, str], *, unsubscribe_all: bool = False) -> Contact:
        """CreateContact as given (no checks, no audit: the callers do both)."""
        self.ses.create_contact(
            ContactListName=self.list_name,
            EmailAddress=address,
            TopicPreferences=_prefs_api(prefs),
            UnsubscribeAll=unsubscribe_all,
        )
        return Contact(address, unsubscribe_all, prefs)

    def _write(self, address: str, prefs: dict[str, str], unsubscribe_all: bool) -> None:
        # UpdateContact replaces the contact's preferences: send them all.
        self.ses.update_contact(
            ContactListName=self.list_name,
            EmailAddress=address,
            TopicPreferences=_prefs_api(prefs),
            UnsubscribeAll=unsubscribe_all,
        )

    # -- files -------------------------------------------------------------------------------
    def import_csv(
        self, text: str, *, dry_run: bool = False, progress: Progress | None = None
    ) -> ImportReport:
        """Upsert every valid row; per-row results with line numbers.

        ``text`` is a contacts CSV, or the running system's ``SubscriptionConfig.json`` (a JSON object).
        Invalid rows are reported and skipped. An AWS failure stops the import at that row: the
        report says which rows were applied before it and which were not attempted (re-running the
        same file is safe: applied rows come back ``unchanged``).
        """
        if dry_run:
            self.authz.require(OperatorAction.READ, [self.code])
            return self._import(text, dry_run=True, progress=progress)
        with self._act("contacts.import") as record:
            return self._import(text, dry_run=False, progress=progress, record=record)

    def _import(
        self, text: str, *, dry_run: bool, progress: Progress | None, record: ActionRecord | None = None
    ) -> ImportReport:
        self._require_list()
        topics = [t.name for t in self.topics()]
        if text.lstrip("\ufeff \t\r\n").startswith("{"):
            rows = read_subscription_config(text, topics)
        else:
            rows = read_contacts_csv(text, topics)
        report = ImportReport(self.code, self.list_name, dry_run)
        existing = {c.email.casefold(): c for c in self.contacts()}
        limiter = RateLimiter(self.rate)
        audited: list[dict[str, Any]] = []
        total = len(rows)
        for index, row in enumerate(rows):
            if progress is not None:
                progress(index, total)
            if row.problem is not None or row.email is None:
                report.rows.append(RowResult(row.line, row.raw_email, "invalid", row.problem or ""))
                continue
            if report.error is not None:
                report.rows.append(
                    RowResult(row.line, row.email, "not_attempted", "stopped by the failure above")
                )
                continue
            result = self._upsert(row, existing.get(row.email.casefold()), dry_run, limiter)
            report.rows.append(result)
            if result.result == "failed":
                report.error = f"line {row.line} ({row.email}): {result.detail}"
            elif result.result in ("created", "updated") and not dry_run:
                audited.append(
                    {
                        "line": row.line,
                        "email": result.email,
                        "result": result.result,
                        "detail": result.detail,
                    }
                )
        if progress is not None:
            progress(total, total)
        if record is not None:
            report.audit_key = record.finish(
                FAILED if report.error else OK,
                contact_list=self.list_name,
                counts=report.counts(),
                detail=report.error,
                items=audited,
            )
        return report

    def _upsert(self, row: CsvRow, before: Contact | None, dry_run: bool, limiter: RateLimiter) -> RowResult:
        assert row.email is not None
        if before is None:
            prefs = {t: s for t, s in row.preferences.items() if s is not None}
            unsub = bool(row.unsubscribe_all)
            detail = ", ".join(f"{t}: {s}" for t, s in sorted(prefs.items()))
            if not dry_run:
                try:
                    limiter.acquire(1)
                    self.create(row.email, prefs, unsubscribe_all=unsub)
                except (ClientError, BotoCoreError) as exc:
                    return RowResult(row.line, row.email, "failed", describe(exc))
            return RowResult(row.line, row.email, "created", detail)
        prefs = dict(before.preferences)
        for topic, status in row.preferences.items():
            if status is None:
                prefs.pop(topic, None)
            else:
                prefs[topic] = status
        unsub = before.unsubscribe_all if row.unsubscribe_all is None else row.unsubscribe_all
        changes = _changes(before, prefs, unsub)
        if not changes:
            return RowResult(row.line, before.email, "unchanged")
        if not dry_run:
            try:
                limiter.acquire(1)
                self._write(before.email, prefs, unsub)
            except (ClientError, BotoCoreError) as exc:
                return RowResult(row.line, before.email, "failed", describe(exc))
        return RowResult(row.line, before.email, "updated", "; ".join(changes))

    def export_csv(self) -> tuple[str, int]:
        """Every contact as CSV (the import format: explicit preferences, empty for the default;
        needs ``contacts.read`` on the customer)."""
        self.authz.require(OperatorAction.CONTACTS_READ, [self.code])
        topics = [t.name for t in self.topics()]
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([EMAIL_COLUMN, UNSUBSCRIBE_COLUMN, *topics])
        contacts = self.contacts()
        for c in contacts:
            writer.writerow(
                [
                    c.email,
                    "true" if c.unsubscribe_all else "false",
                    *(c.preferences.get(t, "") for t in topics),
                ]
            )
        return out.getvalue(), len(contacts)
