"""Finding changes in the change index: by words, state, customer, operator, ticket and date range,
"my changes", and filters saved under a name (in the operator's XDG config directory).

``ChangeQuery.matches`` decides on one index row (``ChangeSummary``) and is what the CLI
(``change list``) and the console's changes screen both filter with. "Mine" (``my_relation``) is what
the operator created, submitted or approved, or must act on next: a draft of theirs to submit, a change
someone else submitted (to approve), an approved change of theirs whose window has begun (to complete).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass, fields, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from ..config import config_dir
from ..errors import InputError
from ..models import ChangeStatus, iso_utc
from .status import ChangeSummary

FILTERS_FILE = "filters.json"
FILTER_NAME_RE = re.compile(r"^[\w.-][\w .-]{0,39}$")

TO_SUBMIT = "to submit"
TO_APPROVE = "to approve"
TO_COMPLETE = "to complete"


def parse_date(value: str | None, *, end: bool) -> str | None:
    """``YYYY-MM-DD`` (start or end of that UTC day) or an RFC 3339 timestamp → RFC 3339 UTC."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            day = date.fromisoformat(text)
            clock = (23, 59, 59) if end else (0, 0, 0)
            return iso_utc(datetime(day.year, day.month, day.day, *clock, tzinfo=UTC))
        moment: datetime | None = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise InputError(f"not a date: {value!r} (use YYYY-MM-DD or 2026-01-31T22:00:00Z)")
    return iso_utc(moment)


def _same(who: str | None, me: str) -> bool:
    return bool(who) and str(who).casefold() == me.casefold()


def my_relation(summary: ChangeSummary, me: str, now: datetime) -> str | None:
    """Why a change is the operator's (what they must do next, else what they did), or None."""
    status = summary.status
    if status is ChangeStatus.DRAFT and _same(summary.created_by, me):
        return TO_SUBMIT
    if status is ChangeStatus.SUBMITTED and summary.submitted_by and not _same(summary.submitted_by, me):
        return TO_APPROVE
    ours = any(_same(w, me) for w in (summary.created_by, summary.submitted_by, summary.approved_by))
    if status is ChangeStatus.APPROVED and ours and _started(summary, now):
        return TO_COMPLETE
    for who, what in (
        (summary.approved_by, "approved"),
        (summary.submitted_by, "submitted"),
        (summary.created_by, "created"),
    ):
        if _same(who, me):
            return what
    return None


def _started(summary: ChangeSummary, now: datetime) -> bool:
    start = parse_moment(summary.implementation_start)
    return start is not None and start <= now


def parse_moment(value: str | None) -> datetime | None:
    """An RFC 3339 moment (UTC when it names no zone); None when empty or unreadable."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class ChangeQuery:
    """What to show. ``since``/``until`` (RFC 3339): changes active in that range (created on or before
    ``until``, last changed on or after ``since``); ``start_from``/``start_to``: window start."""

    text: str = ""
    status: str | None = None
    customer: str | None = None
    operator: str | None = None  # created, submitted, approved or last changed by (part of the name)
    ticket: str | None = None  # ServiceNow or Jira ticket (part of it)
    since: str | None = None
    until: str | None = None
    start_from: str | None = None
    start_to: str | None = None
    mine: bool = False

    @property
    def empty(self) -> bool:
        return self == ChangeQuery()

    def index_filters(self) -> dict[str, Any]:
        """The part the index query itself filters on (``StatusStore.list_changes``)."""
        return {
            "status": self.status,
            "customer": self.customer,
            "text": self.text or None,
            "start_from": self.start_from,
            "start_to": self.start_to,
        }

    def matches(self, s: ChangeSummary, *, me: str | None = None, now: datetime | None = None) -> bool:
        if self.status and s.status.value != self.status:
            return False
        if self.customer and self.customer not in s.customers:
            return False
        if self.text and not text_matches(s, self.text):
            return False
        if self.operator:
            wanted = self.operator.casefold()
            people = (s.created_by, s.modified_by, s.submitted_by, s.approved_by)
            if not any(p and wanted in p.casefold() for p in people):
                return False
        if self.ticket:
            wanted = self.ticket.casefold()
            tickets = f"{s.snow_ticket} {s.jira_ticket}".casefold()
            # An index entry written before tickets were indexed: its search text has them.
            if wanted not in tickets and not (not tickets.strip() and wanted in s.search):
                return False
        if self.start_from and (s.implementation_start or "") < self.start_from:
            return False
        if self.start_to and (not s.implementation_start or s.implementation_start > self.start_to):
            return False
        if self.since or self.until:
            first = parse_moment(s.created_at or s.modified_at)
            last = parse_moment(s.modified_at or s.created_at)
            since, until = parse_moment(self.since), parse_moment(self.until)
            if since is not None and (last is None or last < since):
                return False
            if until is not None and (first is None or first > until):
                return False
        return not self.mine or (me is not None and my_relation(s, me, now or datetime.now(UTC)) is not None)

    def describe(self) -> str:
        """One line naming every condition (for status lines and saved filter lists)."""
        parts = [f"“{self.text}”"] if self.text else []
        parts += [
            f"{label} {value}"
            for label, value in (
                ("status", self.status),
                ("customer", self.customer),
                ("operator", self.operator),
                ("ticket", self.ticket),
                ("since", self.since),
                ("until", self.until),
                ("window from", self.start_from),
                ("window to", self.start_to),
            )
            if value
        ]
        if self.mine:
            parts.append("mine")
        return ", ".join(parts) or "everything"

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, "", False)}

    @classmethod
    def from_json(cls, data: Any) -> ChangeQuery:
        if not isinstance(data, dict):
            raise InputError("a saved filter must be a JSON object")
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for key, value in values.items():
            expected = bool if key == "mine" else str
            if value is not None and not isinstance(value, expected):
                raise InputError(f"saved filter field {key!r} must be a {expected.__name__}")
        return cls(**values)

    def merged(self, other: ChangeQuery) -> ChangeQuery:
        """This query with every condition ``other`` sets."""
        return replace(self, **other.to_json())


def text_matches(s: ChangeSummary, text: str) -> bool:
    """Every word appears in the id, title, state, customers, people or indexed search text."""
    haystack = " ".join(
        [
            s.search,
            s.change_id.casefold(),
            s.title.casefold(),
            s.status.value,
            " ".join(s.customers).casefold(),
            (s.modified_by or "").casefold(),
            s.snow_ticket.casefold(),
            s.jira_ticket.casefold(),
        ]
    )
    return all(word in haystack for word in text.casefold().split())


def check_filter_name(name: str) -> str:
    name = name.strip()
    if not FILTER_NAME_RE.match(name):
        raise InputError(f"filter name {name!r}: 1-40 letters, digits, spaces, '.', '_' or '-'")
    return name


class SavedFilters:
    """Named queries in ``filters.json`` of the operator's config directory (XDG, via platformdirs)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or config_dir() / FILTERS_FILE

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read saved filters {self.path}: {exc}") from None
        filters = data.get("filters") if isinstance(data, dict) else None
        return filters if isinstance(filters, dict) else {}

    def _write(self, filters: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps({"filters": filters}, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".filters-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(body)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def all(self) -> dict[str, ChangeQuery]:
        out: dict[str, ChangeQuery] = {}
        for name, raw in sorted(self._read().items(), key=lambda kv: kv[0].casefold()):
            with contextlib.suppress(InputError, TypeError):
                out[name] = ChangeQuery.from_json(raw)
        return out

    def get(self, name: str) -> ChangeQuery:
        found = self._read().get(name)
        if found is None:
            known = ", ".join(self.all()) or "none saved yet"
            raise InputError(f"no saved filter {name!r} ({known})")
        return ChangeQuery.from_json(found)

    def save(self, name: str, query: ChangeQuery) -> None:
        name = check_filter_name(name)
        filters = self._read()
        filters[name] = query.to_json()
        self._write(filters)

    def delete(self, name: str) -> None:
        filters = self._read()
        if filters.pop(name, None) is None:
            raise InputError(f"no saved filter {name!r}")
        self._write(filters)
