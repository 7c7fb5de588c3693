"""Change documents in the shapes the running system (ccoe-customer-contact-manager) wrote, read as ours.

``convert_change`` turns such a document into our flat shape and says what it converted; ``Change``
calls it before validating, so every reader (console, CLI, worker, reindex) accepts them. Nothing is
written back here: a converted change is stored in our shape the next time it is written.

Shapes handled (see docs/migration.md):

- the older nested ``changeMetadata{title, customerCodes, tickets, schedule, …}`` document;
- the web form's ``implementationBeginDate``/``…BeginTime``/``…EndDate``/``…EndTime`` (dropped once
  ``implementationStart``/``implementationEnd`` hold the window; used to build it when they do not);
- naive times (no UTC offset), read in the change's ``timezone``;
- Go's zero time ``0001-01-01T00:00:00Z`` for a time never set, and ``prior_status: ""``.

Anything that cannot be converted is left as it is for validation to refuse, naming the field.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_GO_ZERO_TIME = re.compile(r"^0001-01-01T00:00:00(?:\.0+)?(?:Z|[+-]00:00)?\Z")
_TIME_FIELDS = (
    "implementationStart",
    "implementationEnd",
    "createdAt",
    "modifiedAt",
    "submittedAt",
    "approvedAt",
    "completedAt",
    "cancelledAt",
)
# The web form's separate date and time inputs: (date field, time field, the field they make).
_FORM_FIELDS = (
    ("implementationBeginDate", "implementationBeginTime", "implementationStart"),
    ("implementationEndDate", "implementationEndTime", "implementationEnd"),
)
# changeMetadata key → our key (the nested shape's plain text fields).
_NESTED_TEXT = {
    "title": "changeTitle",
    "changeReason": "changeReason",
    "implementationPlan": "implementationPlan",
    "testPlan": "testPlan",
    "expectedCustomerImpact": "customerImpact",
    "rollbackPlan": "rollbackPlan",
}
_NESTED_TICKETS = {"serviceNow": "snowTicket", "jira": "jiraTicket"}
# schedule key → (our key, date key, time key) in the nested shape's schedule block.
_NESTED_SCHEDULE = (
    ("implementationStart", "beginDate", "beginTime"),
    ("implementationEnd", "endDate", "endTime"),
)


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _localize(data: dict[str, Any], value: str) -> str | None:
    """A naive local time read in the change's timezone, as RFC 3339 with its offset.

    None when it cannot be (not a time, an offset already, no or an unknown timezone): the value is
    then left for validation, which names the field and the fix.
    """
    try:
        naive = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    name = data.get("timezone")
    if naive.tzinfo is not None or _blank(name):
        return None
    try:
        zone = ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None
    return naive.replace(tzinfo=zone).isoformat()


def _flatten_nested(data: dict[str, Any], notes: list[str]) -> None:
    nested = data.get("changeMetadata")
    if not isinstance(nested, dict) or "changeTitle" in data:
        return
    left = dict(nested)
    for old, new in _NESTED_TEXT.items():
        if old in left and _blank(data.get(new)):
            data[new] = left.pop(old)
    if _blank(data.get("changeReason")) and not _blank(left.get("description")):
        data["changeReason"] = left.pop("description")
    if "customerCodes" in left and not data.get("customers"):
        data["customers"] = left.pop("customerCodes")
    tickets = left.get("tickets")
    if isinstance(tickets, dict):
        rest = dict(tickets)
        for old, new in _NESTED_TICKETS.items():
            if old in rest and _blank(data.get(new)):
                data[new] = rest.pop(old)
        if rest:
            left["tickets"] = rest
        else:
            left.pop("tickets")
    schedule = left.get("schedule")
    if isinstance(schedule, dict):
        rest = dict(schedule)
        if _blank(data.get("timezone")) and not _blank(rest.get("timezone")):
            data["timezone"] = rest.pop("timezone")
        for ours, date_key, time_key in _NESTED_SCHEDULE:
            value = rest.pop(ours, None)
            date, time = rest.pop(date_key, None), rest.pop(time_key, None)
            if not _blank(data.get(ours)):
                continue
            if _blank(value) and not _blank(date) and not _blank(time):
                value = f"{date}T{time}"
            if not _blank(value):
                data[ours] = value
        rest.pop("timezone", None)
        if rest:
            left["schedule"] = rest
        else:
            left.pop("schedule")
    if "include_meeting" not in data and isinstance(data.get("meetingInvite"), dict):
        data["include_meeting"] = True
    if left:
        data["changeMetadata"] = left
    else:
        data.pop("changeMetadata")
    notes.append("nested changeMetadata flattened")


def _form_times(data: dict[str, Any], notes: list[str]) -> None:
    for date_key, time_key, ours in _FORM_FIELDS:
        if date_key not in data and time_key not in data:
            continue
        date, time = data.pop(date_key, None), data.pop(time_key, None)
        if _blank(data.get(ours)) and not _blank(date) and not _blank(time):
            naive = f"{date}T{time}"
            data[ours] = _localize(data, naive) or naive
            notes.append(f"{date_key}/{time_key} → {ours} (in {data.get('timezone')})")
        else:
            notes.append(f"{date_key}/{time_key} dropped ({ours} holds the time)")


def _times(data: dict[str, Any], notes: list[str]) -> None:
    for field in _TIME_FIELDS:
        value = data.get(field)
        if not isinstance(value, str):
            continue
        if _GO_ZERO_TIME.match(value.strip()):
            data[field] = None
            notes.append(f"{field} zero time → unset")
        else:
            local = _localize(data, value)
            if local is not None:
                data[field] = local
                notes.append(f"{field} naive → {data['timezone']}")


def convert_change(data: Any) -> tuple[Any, list[str]]:
    """``data`` in our shape (a new dict when anything changed) and what was converted.

    Documents that are not JSON objects, and documents already in our shape, come back as they are.
    """
    if not isinstance(data, dict):
        return data, []
    notes: list[str] = []
    out = dict(data)
    _flatten_nested(out, notes)
    _form_times(out, notes)
    _times(out, notes)
    if out.get("prior_status") == "":
        out["prior_status"] = None
        notes.append('prior_status "" → unset')
    return (out, notes) if notes else (data, [])


def upgrade_change(data: Any) -> Any:
    """``convert_change`` without the notes (the ``Change`` model's before-validator)."""
    return convert_change(data)[0]
