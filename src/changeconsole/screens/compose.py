"""Compose or edit a change: every field, inline validation, customer picker, load from file, autosave.

Validation goes through ``Change.model_validate(..., context={"config": cfg})`` and
``models.validation_problems``; each problem is shown under the field it names and nothing the
operator typed is ever dropped. The raw form is autosaved to the local ``AutosaveStore`` every few
seconds (and when the screen goes away), and offered back the next time the same change (or a new
one) is opened.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import aiofiles
from email_validator import EmailNotValidError, validate_email
from pydantic import ValidationError
from rich.markup import escape
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widget import Widget
from textual.widgets import Button, Checkbox, Input, Label, SelectionList, Static, TextArea
from textual.widgets.selection_list import Selection

from ..errors import validation_problems
from ..models import (
    MEETING_END,
    MEETING_JOIN_URL,
    MEETING_LOCATION,
    MEETING_ORGANIZER,
    MEETING_START,
    Change,
    ChangeStatus,
    Meeting,
    OperatorAction,
)
from ..widgets.inputs import FormInput, FormTextArea, PathSuggester, TimezoneSuggester
from ..widgets.navtable import NavSelectionList
from .base import CUSTOMER_PICK, ConsoleScreen
from .modals import ChoiceModal, ConfirmModal, JumpPalette

if TYPE_CHECKING:
    from ..services.authz import Decision

# -- the form's fields ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextField:
    key: str  # form key (= widget id suffix, error key)
    alias: str  # JSON name in the change document
    label: str
    long: bool = False


TEXT_FIELDS: tuple[TextField, ...] = (
    TextField("title", "changeTitle", "Title"),
    TextField("snow_ticket", "snowTicket", "ServiceNow ticket"),
    TextField("jira_ticket", "jiraTicket", "Jira ticket"),
    TextField("reason", "changeReason", "Reason", long=True),
    TextField("customer_impact", "customerImpact", "Customer impact", long=True),
    TextField("implementation_plan", "implementationPlan", "Implementation plan", long=True),
    TextField("test_plan", "testPlan", "Test plan", long=True),
    TextField("rollback_plan", "rollbackPlan", "Rollback plan", long=True),
)
ALIAS_TO_KEY = {f.alias: f.key for f in TEXT_FIELDS} | {
    "customers": "customers",
    "implementationStart": "start",
    "implementationEnd": "end",
    "timezone": "timezone",
    "include_meeting": "include_meeting",
    "changeId": "general",
}
# Meeting details (the calendar invite), kept in ``meeting_metadata`` (models.Meeting).
MEETING_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("meeting_organizer", "Organizer", "name@example.com (default: the sender)"),
    ("meeting_place", "Location or join URL", "https://… or a room"),
    ("meeting_duration", "Duration", "e.g. 45m, 1h30 (default: the window)"),
)
LABELS = {f.key: f.label for f in TEXT_FIELDS} | {
    "customers": "Customers",
    "start": "Start",
    "end": "End",
    "timezone": "Timezone",
    "include_meeting": "Meeting",
    "meeting_organizer": "Meeting organizer",
    "meeting_place": "Meeting location",
    "meeting_duration": "Meeting duration",
    "file": "Load from file",
    "general": "Change",
}
# The field palette (ctrl+o, then one key): (section, key, label, widget id). Any field is two keys away.
JUMPS: tuple[tuple[str, str, str, str], ...] = (
    ("Title", "t", "Title", "f-title"),
    ("Window", "s", "Start date", "f-start_date"),
    ("Window", "S", "Start time", "f-start_time"),
    ("Window", "e", "End date", "f-end_date"),
    ("Window", "E", "End time", "f-end_time"),
    ("Window", "z", "Zone", "f-timezone"),
    ("Customers", "/", "Filter", "customer-filter"),
    ("Customers", "c", "List", "customers"),
    ("Tickets", "n", "ServiceNow", "f-snow_ticket"),
    ("Tickets", "j", "Jira", "f-jira_ticket"),
    ("Text", "r", "Reason", "f-reason"),
    ("Text", "i", "Impact", "f-customer_impact"),
    ("Text", "p", "Plan", "f-implementation_plan"),
    ("Text", "v", "Test plan", "f-test_plan"),
    ("Text", "b", "Rollback", "f-rollback_plan"),
    ("Meeting", "m", "Invite", "f-include_meeting"),
    ("Meeting", "o", "Organizer", "f-meeting_organizer"),
    ("Meeting", "l", "Location/URL", "f-meeting_place"),
    ("Meeting", "u", "Duration", "f-meeting_duration"),
    ("File", "f", "Load from file", "file-path"),
)
# Where each error key's message goes (and which widget gets focus for it).
ERROR_KEYS = [
    "title",
    "start",
    "end",
    "timezone",
    "customers",
    "snow_ticket",
    "jira_ticket",
    "reason",
    "customer_impact",
    "implementation_plan",
    "test_plan",
    "rollback_plan",
    "include_meeting",
    "meeting_organizer",
    "meeting_place",
    "meeting_duration",
    "file",
    "general",
]
FOCUS_OF = {"start": "f-start_date", "end": "f-end_date", "customers": "customers", "file": "file-path"}

_FRIENDLY = [
    (re.compile(r"^String should have at least 1 character"), "required"),
    (re.compile(r"^List should have at least 1 item"), "pick at least one customer"),
    (re.compile(r"^implementationEnd must be after implementationStart"), "must be after the start"),
    (re.compile(r"^implementation(Start|End): required to submit"), "required to submit"),
]


def friendly(message: str) -> str:
    for pattern, text in _FRIENDLY:
        if pattern.search(message):
            return text
    return message


def problem_key(path: str, message: str) -> str:
    head = re.split(r"[.\[]", path, maxsplit=1)[0]
    if head == "$" and "implementationEnd" in message:
        return "end"
    return ALIAS_TO_KEY.get(head, "general")


# -- local time ⇄ UTC ---------------------------------------------------------------------------------

_TIME_RE = re.compile(r"^(\d{1,2}):?(\d{2})$")


def parse_local(day: str, clock: str, tz_name: str) -> tuple[datetime | None, str | None]:
    """(aware UTC datetime, problem) from ``YYYY-MM-DD``, ``HH:MM`` and an IANA zone; both blank is fine."""
    day, clock = day.strip(), clock.strip()
    if not day and not clock:
        return None, None
    if not day or not clock:
        return None, "enter both a date (YYYY-MM-DD) and a time (HH:MM)"
    try:
        d = date.fromisoformat(day)
    except ValueError:
        return None, f"date {day!r} is not YYYY-MM-DD"
    match = _TIME_RE.match(clock)
    if not match or int(match.group(1)) > 23 or int(match.group(2)) > 59:
        return None, f"time {clock!r} is not HH:MM (24-hour)"
    try:
        zone = ZoneInfo(tz_name.strip() or "UTC")
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None, "fix the timezone first"
    local = datetime.combine(d, time(int(match.group(1)), int(match.group(2))), tzinfo=zone)
    utc = local.astimezone(UTC)
    if utc.astimezone(zone).replace(tzinfo=None) != local.replace(tzinfo=None):
        return None, f"{day} {clock} does not exist in {tz_name} (clocks skip it)"
    return utc, None


def to_local(value: str | None, tz_name: str) -> tuple[str, str]:
    """UTC RFC 3339 → (date, time) in the zone; blanks when missing."""
    if not value:
        return "", ""
    try:
        dt = datetime.fromisoformat(value)
        zone = ZoneInfo(tz_name or "UTC")
    except (ValueError, ZoneInfoNotFoundError, OSError):
        return "", ""
    local = dt.astimezone(zone)
    return local.strftime("%Y-%m-%d"), local.strftime("%H:%M")


_DURATION_RE = re.compile(r"^(?:(\d+)\s*h)?\s*(?:(\d+)\s*(?:m|min)?)?$")
_CLOCK_DURATION_RE = re.compile(r"^(\d+):(\d{2})$")


def parse_duration(text: str) -> tuple[int | None, str | None]:
    """(minutes, problem) of ``45``, ``45m``, ``1h``, ``1h30``, ``1h 30m`` or ``1:30``; blank is none."""
    value = text.strip().casefold()
    if not value:
        return None, None
    match = _CLOCK_DURATION_RE.match(value) or _DURATION_RE.match(value)
    if not match or not any(match.groups()):
        return None, f"{text.strip()!r} is not a duration (e.g. 45m, 1h30, 1:30)"
    hours, mins = (int(g) if g else 0 for g in match.groups())
    minutes = hours * 60 + mins
    if not 0 < minutes <= 7 * 24 * 60:
        return None, "must be between 1 minute and 7 days"
    return minutes, None


def duration_label(minutes: int) -> str:
    hours, mins = divmod(minutes, 60)
    return f"{hours}h{mins:02d}m" if hours and mins else f"{hours}h" if hours else f"{mins}m"


def meeting_form(meeting: Meeting) -> dict[str, str]:
    """The meeting fields of the form, as they show ``meeting``."""
    minutes = int((meeting.end - meeting.start).total_seconds() // 60) if meeting.start and meeting.end else 0
    return {
        "meeting_organizer": meeting.organizer or "",
        "meeting_place": meeting.place or "",
        "meeting_duration": duration_label(minutes) if minutes else "",
    }


WINDOW_FIELDS = frozenset({"f-start_date", "f-start_time", "f-end_date", "f-end_time"})


def valid_zone(name: str) -> bool:
    try:
        ZoneInfo(name.strip() or "UTC")
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def parse_utc(value: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(value).astimezone(UTC) if value else None
    except ValueError:
        return None


def iso_z(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def duration_text(start: datetime, end: datetime) -> str:
    minutes = int((end - start).total_seconds() // 60)
    if minutes < 0:
        return "ends before it starts"
    hours, mins = divmod(minutes, 60)
    return f"{hours}h {mins:02d}m" if hours else f"{mins}m"


# -- the screen ------------------------------------------------------------------------------------------

NEW_PREFIX = "new-"


class PointerButton(Button, can_focus=False):
    """A button for the mouse only: kept out of the Tab chain (a key does the same)."""


class CustomerList(NavSelectionList[str]):
    BINDINGS = [
        Binding("a", "screen.select_all_customers", "Select all shown", group=CUSTOMER_PICK),
        Binding("c", "screen.clear_customers", "Clear all", group=CUSTOMER_PICK),
    ]


class ComposeScreen(ConsoleScreen[None]):
    """``ComposeScreen(change=None, mode=None)``: new change, draft, or edit of a submitted/approved one."""

    help_title = "Compose"
    MUTATING: ClassVar[frozenset[str]] = frozenset({"save", "submit", "resubmit", "load_file"})
    REQUIRES: ClassVar[Mapping[str, OperatorAction]] = {
        "save": OperatorAction.CHANGE_DRAFT,
        "submit": OperatorAction.CHANGE_SUBMIT,
        "preview": OperatorAction.CHANGE_PREVIEW,
    }
    # A submitted or approved change has no draft: there both keys save and resubmit (check_action).
    BINDINGS = [
        Binding("ctrl+s", "save", "Save draft", priority=True),
        Binding("ctrl+s", "resubmit", "Save & resubmit", priority=True),
        Binding("ctrl+j", "submit", "Submit", key_display="^j", priority=True),
        Binding("ctrl+j", "resubmit", "Save & resubmit", key_display="^j", show=False, priority=True),
        Binding("ctrl+o", "jump", "Jump to field"),
        Binding("ctrl+r", "preview", "Preview"),
        Binding("ctrl+t", "templates", "Templates"),
        Binding("escape", "leave", "Back"),
    ]

    def __init__(self, change: Change | None = None, *, mode: str | None = None) -> None:
        super().__init__(id="compose")
        self.original = change
        self.is_new = change is None
        status = change.status if change else ChangeStatus.DRAFT
        self.mode = mode or ("draft" if status is ChangeStatus.DRAFT else "edit")
        self.change_id = change.change_id if change else ""
        self.base: dict[str, Any] | None = change.to_json_dict() if change else None
        self.selected: set[str] = set(change.customers) if change else set()
        self.problems: dict[str, str] = {}
        self.touched: set[str] = set()
        self.show_all = not self.is_new
        self._clean: dict[str, Any] = {}
        self._autosaved: dict[str, Any] | None = None
        self._discarded = False
        self._left = False
        self._ready = False
        self.submitted = False
        self.submit_attempted = False
        self._last_form: dict[str, Any] | None = None
        # The meeting fields as loaded from the change (left so, its metadata stays as it was).
        self._meeting_loaded: dict[str, str] = {}
        # A loaded window (UTC) waiting for a valid timezone to be shown in local time.
        self._pending_window: tuple[str | None, str | None] | None = None

    def change_shown(self) -> str | None:
        return self.change_id

    @property
    def archived_edit(self) -> bool:
        """Editing a submitted or approved change: saving sends a new version for approval."""
        return self.mode == "edit" and (self.base or {}).get("status", "draft") != "draft"

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("save", "submit"):
            return not self.archived_edit and super().check_action(action, parameters)
        if action == "resubmit":
            return self.archived_edit and super().check_action(action, parameters)
        return super().check_action(action, parameters)

    def permission(self, action: str) -> Decision | None:
        if action == "resubmit" or (action == "submit" and self.mode == "edit"):  # a new approval round
            return self.console.decide(OperatorAction.CHANGE_EDIT, self.action_customers(action))
        return super().permission(action)

    def action_customers(self, action: str) -> set[str] | None:
        """The customers chosen, and those the change had (an edit touches both); a preview shows one
        customer at a time (any in scope will do)."""
        if action == "preview":
            return None
        return self.selected | set(self.original.customers if self.original else [])

    # -- layout ------------------------------------------------------------------------------------------
    def compose_body(self) -> ComposeResult:
        with Vertical(id="compose-body"):
            yield Static("", id="compose-title")
            with VerticalScroll(id="form"):
                yield Static("", id="form-summary")
                yield from self._text_field(TEXT_FIELDS[0])
                yield Label("Implementation window", classes="section")
                with Horizontal(classes="window-row"):
                    yield Label("Start", classes="inline-label")
                    yield FormInput(placeholder="YYYY-MM-DD", id="f-start_date", classes="date")
                    yield FormInput(placeholder="HH:MM", id="f-start_time", classes="time")
                    yield Label("End", classes="inline-label")
                    yield FormInput(placeholder="YYYY-MM-DD", id="f-end_date", classes="date")
                    yield FormInput(placeholder="HH:MM", id="f-end_time", classes="time")
                    yield Label("Zone", classes="inline-label")
                    yield FormInput(
                        placeholder="IANA zone, e.g. Europe/London",
                        id="f-timezone",
                        suggester=TimezoneSuggester(),
                        classes="tz",
                    )
                yield Static("", id="utc-preview")
                for key in ("start", "end", "timezone"):
                    yield Static("", id=f"e-{key}", classes="field-error")
                yield Label("Customers", classes="section")
                with Horizontal(classes="customer-bar"):
                    yield FormInput(placeholder="filter customers", id="customer-filter")
                    # Not in the Tab chain: the list's own a/c keys do the same.
                    yield PointerButton("All shown (a)", id="customers-all", compact=True)
                    yield PointerButton("Clear (c)", id="customers-none", compact=True)
                    yield Static("", id="customer-count")
                yield CustomerList(id="customers")
                yield Static("", id="e-customers", classes="field-error")
                with Horizontal(classes="ticket-row"):
                    for field in TEXT_FIELDS[1:3]:
                        with Vertical(classes="ticket"):
                            yield from self._text_field(field)
                for field in TEXT_FIELDS[3:]:
                    yield from self._text_field(field)
                yield Label("Meeting", classes="section")
                yield Checkbox(
                    "Include a calendar invite (meeting) with the approved notice", id="f-include_meeting"
                )
                yield Static("", id="e-include_meeting", classes="field-error")
                with Horizontal(classes="ticket-row"):
                    for key, label, placeholder in MEETING_FIELDS:
                        with Vertical(classes="ticket"):
                            yield Label(label, classes="field-label")
                            yield FormInput(placeholder=placeholder, id=f"f-{key}")
                for key, _, _ in MEETING_FIELDS:
                    yield Static("", id=f"e-{key}", classes="field-error")
                yield Label("Load from a JSON file", classes="section")
                with Horizontal(classes="file-row"):
                    yield FormInput(
                        placeholder="path/to/change.json (tab completes)",
                        id="file-path",
                        suggester=PathSuggester(),
                    )
                    yield Button("Load", id="load-file", compact=True)
                yield Static("", id="e-file", classes="field-error")
                yield Static("", id="e-general", classes="field-error")
            with Horizontal(id="compose-buttons"):
                yield Button("Save draft (^s)", id="save", variant="primary", compact=True)
                yield Button("Submit (^j)", id="submit", variant="success", compact=True)
                yield Button("Back (esc)", id="leave", compact=True)
                yield Static("", id="autosave-status")

    def _text_field(self, field: TextField) -> Iterable[Widget]:
        yield Label(field.label, classes="field-label")
        if field.long:
            yield FormTextArea(id=f"f-{field.key}", classes="long", soft_wrap=True, tab_behavior="focus")
        else:
            yield FormInput(id=f"f-{field.key}")
        yield Static("", id=f"e-{field.key}", classes="field-error")

    # -- setup ---------------------------------------------------------------------------------------------
    def on_mount(self) -> None:
        if not self.change_id:
            self.change_id = self.console.make_change_id()
        if self.original is not None:
            self.populate(self.original.to_json_dict())
        else:
            self.query_one("#f-timezone", Input).value = self.console.default_timezone
        self._rebuild_customers()
        self._update_title()
        if self.archived_edit:
            self.query_one("#save", Button).display = False
            self.query_one("#submit", Button).label = "Save & resubmit (^s)"
        if self.readonly:
            for button_id in ("#save", "#submit", "#load-file"):
                self.query_one(button_id, Button).display = False
        self.query_one("#f-title", Input).focus()
        self.call_after_refresh(self._after_populate)

    def _after_populate(self) -> None:
        self._clean = self.form_data()
        self._ready = True
        self.validate_form()
        if self.console.autosave_interval > 0:
            self.set_interval(self.console.autosave_interval, self.autosave_now, name="autosave")
        self.offer_restore()

    @property
    def autosave_key(self) -> str:
        return (NEW_PREFIX + self.change_id) if self.is_new else self.change_id

    def _update_title(self) -> None:
        status = ChangeStatus(self.base.get("status", "draft")) if self.base else ChangeStatus.DRAFT
        version = self.base.get("version", 1) if self.base else 1
        if self.is_new:
            text = f"[b]New change[/] {self.change_id} · draft"
        elif self.mode == "edit":
            note = " — saving sends a new approval request" if status is not ChangeStatus.DRAFT else ""
            text = f"[b]Edit[/] {self.change_id} · {status.value} v{version}{note}"
        else:
            text = f"[b]Draft[/] {self.change_id} · v{version}"
        if self.readonly:
            text += " · [reverse] READ-ONLY [/]"
        self.query_one("#compose-title", Static).update(text)

    # -- form ⇄ data -----------------------------------------------------------------------------------------
    def _value(self, key: str) -> str:
        widget = self.query_one(f"#f-{key}")
        if isinstance(widget, TextArea):
            return widget.text
        assert isinstance(widget, Input)
        return widget.value

    def form_data(self) -> dict[str, Any]:
        """The raw form (what autosave stores): every field as typed, even when invalid."""
        data: dict[str, Any] = {"form": 1, "changeId": self.change_id}
        for field in TEXT_FIELDS:
            data[field.key] = self._value(field.key)
        for key in ("start_date", "start_time", "end_date", "end_time", "timezone"):
            data[key] = self._value(key)
        data["include_meeting"] = self.query_one("#f-include_meeting", Checkbox).value
        for key, _, _ in MEETING_FIELDS:
            data[key] = self._value(key)
        data["customers"] = sorted(self.selected)
        data["base"] = self.base
        return data

    def populate(self, doc: dict[str, Any]) -> None:
        """Fill the form from a change document (JSON names) or from autosaved form data."""
        raw_form = doc.get("form") == 1
        for field in TEXT_FIELDS:
            value = doc.get(field.key if raw_form else field.alias)
            if value is not None:
                widget = self.query_one(f"#f-{field.key}")
                if isinstance(widget, TextArea):
                    widget.load_text(str(value))
                else:
                    assert isinstance(widget, Input)
                    widget.value = str(value)
        if raw_form:
            for key in ("start_date", "start_time", "end_date", "end_time", "timezone"):
                self.query_one(f"#f-{key}", Input).value = str(doc.get(key) or "")
            if isinstance(doc.get("base"), dict):
                self.base = doc["base"]
        else:
            tz = str(doc.get("timezone") or self.console.default_timezone)
            self.query_one("#f-timezone", Input).value = tz
            if "implementationStart" in doc or "implementationEnd" in doc:
                self._pending_window = (doc.get("implementationStart"), doc.get("implementationEnd"))
                self._show_pending_window()
                if valid_zone(tz):
                    self._pending_window = None  # shown: the fields are the window from now on
        if "include_meeting" in doc:
            self.query_one("#f-include_meeting", Checkbox).value = bool(doc.get("include_meeting"))
        if raw_form:
            shown = {key: str(doc.get(key) or "") for key, _, _ in MEETING_FIELDS}
        elif "meeting_metadata" in doc:
            shown = meeting_form(Meeting.of(doc.get("meeting_metadata")))
            self._meeting_loaded = dict(shown)
        else:
            shown = {}
        for key, value in shown.items():
            self.query_one(f"#f-{key}", Input).value = value
        customers = doc.get("customers")
        if isinstance(customers, list):
            self.selected = {str(c) for c in customers}
            self._rebuild_customers()

    def _meeting_metadata(
        self, start: datetime | None, end: datetime | None, problems: dict[str, str]
    ) -> dict[str, Any] | None:
        """``meeting_metadata`` as the form says: the loaded keys kept as they were for every meeting
        field left as loaded (including keys of the running system: ``meeting_id``, ``subject``…)."""
        base = (self.base or {}).get("meeting_metadata")
        meta: dict[str, Any] = dict(base) if isinstance(base, dict) else {}
        typed = {key: self._value(key).strip() for key, _, _ in MEETING_FIELDS}
        loaded = self._meeting_loaded
        organizer = typed["meeting_organizer"]
        if organizer != loaded.get("meeting_organizer", ""):
            meta.pop(MEETING_ORGANIZER, None)
            if organizer:
                try:
                    validate_email(organizer, check_deliverability=False)
                except EmailNotValidError:
                    problems["meeting_organizer"] = "not an email address"
                meta[MEETING_ORGANIZER] = organizer
        place = typed["meeting_place"]
        if place != loaded.get("meeting_place", ""):
            for key in (MEETING_JOIN_URL, "joinUrl", "meeting_url", "url", MEETING_LOCATION):
                meta.pop(key, None)
            if place.casefold().startswith(("http://", "https://")):
                meta[MEETING_JOIN_URL] = place
                if Meeting.of(meta).join_url is None:
                    problems["meeting_place"] = "not a valid http(s) URL"
            elif place:
                meta[MEETING_LOCATION] = place
        duration = typed["meeting_duration"]
        start_kept = (self.base or {}).get("implementationStart") == (iso_z(start) if start else None)
        if duration != loaded.get("meeting_duration", "") or not start_kept:
            meta.pop(MEETING_START, None)
            meta.pop(MEETING_END, None)
            if duration:
                minutes, problem = parse_duration(duration)
                if problem:
                    problems["meeting_duration"] = problem
                elif start is None:
                    problems["meeting_duration"] = "set the start of the window first"
                elif minutes is not None and (end is None or start + timedelta(minutes=minutes) != end):
                    meta[MEETING_START] = iso_z(start)
                    meta[MEETING_END] = iso_z(start + timedelta(minutes=minutes))
        return meta or (base if isinstance(base, dict) else None)

    def _show_pending_window(self) -> None:
        """Put a loaded window (UTC instants) into the date/time fields, in the form's zone. While the
        zone is not a valid IANA name the instants wait (``window`` uses them), and show as soon as it
        is one, in whichever zone is typed (a zone typed letter by letter may pass through another
        valid one), until the operator types a date or time: nothing loaded is dropped or shifted."""
        tz = self._value("timezone").strip()
        if self._pending_window is None or not tz or not valid_zone(tz):
            return
        start, end = self._pending_window
        for prefix, value in (("start", start), ("end", end)):
            day, clock = to_local(value, tz)
            self.query_one(f"#f-{prefix}_date", Input).value = day
            self.query_one(f"#f-{prefix}_time", Input).value = clock

    def window(self) -> tuple[datetime | None, datetime | None, dict[str, str]]:
        tz = self._value("timezone")
        problems: dict[str, str] = {}
        if not valid_zone(tz):
            # The timezone's own problem says what to fix; a loaded window waits for it.
            loaded = self._pending_window or (None, None)
            return parse_utc(loaded[0]), parse_utc(loaded[1]), problems
        start, start_problem = parse_local(self._value("start_date"), self._value("start_time"), tz)
        end, end_problem = parse_local(self._value("end_date"), self._value("end_time"), tz)
        if start_problem:
            problems["start"] = start_problem
        if end_problem:
            problems["end"] = end_problem
        elif start and end and end <= start:
            # Checked here too: the model checks it only once every field is valid.
            problems["end"] = "must be after the start"
        return start, end, problems

    def build(self, *, for_submit: bool = False) -> tuple[Change | None, dict[str, str]]:
        """The change the form describes and every problem, keyed by form field."""
        start, end, problems = self.window()
        data: dict[str, Any] = dict(self.base or {})
        data["changeId"] = self.change_id
        for field in TEXT_FIELDS:
            data[field.alias] = self._value(field.key)
        data["customers"] = sorted(self.selected)
        data["timezone"] = self._value("timezone").strip()
        data["include_meeting"] = self.query_one("#f-include_meeting", Checkbox).value
        data["implementationStart"] = iso_z(start) if start else None
        data["implementationEnd"] = iso_z(end) if end else None
        data["meeting_metadata"] = self._meeting_metadata(start, end, problems)
        change: Change | None = None
        try:
            change = Change.model_validate(data, context={"config": self.services.config})
        except ValidationError as exc:
            for problem in validation_problems(exc):
                key = problem_key(problem["path"], problem["message"])
                problems.setdefault(key, friendly(problem["message"]))
        if change is not None and for_submit:
            for text in change.schedule_problems():
                path = text.partition(": ")[0]
                problems.setdefault(problem_key(path, text), friendly(text))
        return (change if not problems else None), problems

    # -- validation display ----------------------------------------------------------------------------------
    def validate_form(self, *, for_submit: bool = False, show_all: bool = False) -> dict[str, str]:
        # After a submit attempt keep showing what submitting needs, as fields change.
        self.submit_attempted = self.submit_attempted or for_submit
        _, problems = self.build(for_submit=self.submit_attempted)
        self.problems = problems
        self._last_form = self.form_data()
        if show_all:
            self.show_all = True
        for key in ERROR_KEYS:
            box = self.query_one(f"#e-{key}", Static)
            message = problems.get(key)
            visible = message is not None and (self.show_all or key in self.touched)
            box.update(f"⚠ {LABELS[key]}: {escape(message)}" if visible and message else "")
            box.display = visible
            target = self._focus_target(key)
            if target is not None:
                target.set_class(visible, "-invalid-field")
        summary = self.query_one("#form-summary", Static)
        shown = [k for k in ERROR_KEYS if k in problems and (self.show_all or k in self.touched)]
        if shown:
            names = ", ".join(LABELS[k] for k in shown)
            summary.update(f"✖ {len(shown)} problem{'s' if len(shown) != 1 else ''} to fix: {names}")
        summary.display = bool(shown)
        self._update_preview()
        return problems

    def _focus_target(self, key: str) -> Widget | None:
        widget_id = FOCUS_OF.get(key, f"f-{key}")
        try:
            return self.query_one(f"#{widget_id}")
        except Exception:
            return None

    def _update_preview(self) -> None:
        start, end, _ = self.window()
        tz = self._value("timezone").strip() or "UTC"
        parts = []
        if start:
            parts.append(f"start [b]{iso_z(start)}[/]")
        if end:
            parts.append(f"end [b]{iso_z(end)}[/]")
        if start and end:
            parts.append(duration_text(start, end))
        text = (
            ("UTC: " + " · ".join(parts))
            if parts
            else f"Times are in {escape(tz)}; their UTC equivalent shows here."
        )
        if self._pending_window is not None and parts and not valid_zone(tz):
            text += "  [dim](loaded: the fields show it once the timezone is valid)[/]"
        self.query_one("#utc-preview", Static).update(text)

    def _key_of(self, widget: Widget) -> str | None:
        wid = widget.id or ""
        if wid.startswith("f-"):
            key = wid[2:]
            return {"start_date": "start", "start_time": "start", "end_date": "end", "end_time": "end"}.get(
                key, key
            )
        return None

    @on(Input.Changed)
    def _input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "customer-filter":
            self._rebuild_customers()
            return
        if event.input.id in ("filter", "file-path"):
            return
        self._field_changed(event.input)

    @on(TextArea.Changed)
    def _area_changed(self, event: TextArea.Changed) -> None:
        self._field_changed(event.text_area)

    @on(Checkbox.Changed)
    def _checkbox_changed(self, event: Checkbox.Changed) -> None:
        self._field_changed(event.checkbox)

    def _field_changed(self, widget: Widget) -> None:
        if widget.id == "f-timezone":
            self._show_pending_window()
        elif widget.has_focus and widget.id in WINDOW_FIELDS:
            self._pending_window = None  # the operator types the window: the loaded one is replaced
        if not self._ready:
            return
        key = self._key_of(widget)
        if key and widget.has_focus:
            self.touched.add(key)
            if key in ("start", "end", "timezone"):
                self.touched.update({"start", "end", "timezone"} & self._filled_window_keys())
        self.validate_form()

    def _filled_window_keys(self) -> set[str]:
        out = set()
        if self._value("start_date") or self._value("start_time"):
            out.add("start")
        if self._value("end_date") or self._value("end_time"):
            out.add("end")
        return out

    # -- customer picker ---------------------------------------------------------------------------------
    def _customer_names(self) -> list[tuple[str, str]]:
        mappings = self.services.config.customer_mappings
        known = [(code, m.customer_name) for code, m in sorted(mappings.items())]
        unknown = [(code, "not in config") for code in sorted(self.selected - set(mappings))]
        return unknown + known

    def _visible_customers(self) -> list[tuple[str, str]]:
        words = self.query_one("#customer-filter", Input).value.casefold().split()
        out = []
        for code, name in self._customer_names():
            hay = f"{code} {name}".casefold()
            if all(w in hay for w in words):
                out.append((code, name))
        return out

    def _rebuild_customers(self) -> None:
        picker = self.query_one(CustomerList)
        highlighted = picker.highlighted
        picker.clear_options()
        picker.add_options(
            Selection(Text(f"{name}  ({code})"), code, code in self.selected)
            for code, name in self._visible_customers()
        )
        if highlighted is not None and picker.option_count:
            picker.highlighted = min(highlighted, picker.option_count - 1)
        picker.highlight_first()
        self._update_count()

    def _update_count(self) -> None:
        total = len(self.services.config.customer_mappings)
        shown = self.query_one(CustomerList).option_count
        text = f"{len(self.selected)} of {total} selected"
        if shown != total:
            text += f" · {shown} shown"
        decision = self.permission("submit") if self.is_mounted else None
        if decision is not None and decision.outside:
            text += f" · [b red]outside your scope: {escape(', '.join(decision.outside))}[/]"
        self.query_one("#customer-count", Static).update(text)
        self.refresh_bindings()

    @on(SelectionList.SelectedChanged, "#customers")
    def _picked(self, event: SelectionList.SelectedChanged[str]) -> None:
        picker = self.query_one(CustomerList)
        chosen = set(picker.selected)
        visible = {code for code, _ in self._visible_customers()}
        before = set(self.selected)
        self.selected = (self.selected - visible) | chosen
        if self.selected != before:
            if picker.has_focus or self._ready:
                self.touched.add("customers")
            self._update_count()
            if self._ready:
                self.validate_form()

    def action_select_all_customers(self) -> None:
        self.selected |= {code for code, _ in self._visible_customers()}
        self.touched.add("customers")
        self._rebuild_customers()
        self.validate_form()

    def action_clear_customers(self) -> None:
        self.selected = set()
        self.touched.add("customers")
        self._rebuild_customers()
        self.validate_form()

    def action_focus_customers(self) -> None:
        self.query_one(CustomerList).focus()

    # -- buttons -----------------------------------------------------------------------------------------
    @on(Button.Pressed)
    def _button(self, event: Button.Pressed) -> None:
        actions = {
            "save": self.action_save,
            "submit": self.action_submit,
            "leave": self.action_leave,
            "customers-all": self.action_select_all_customers,
            "customers-none": self.action_clear_customers,
            "load-file": self.action_load_file,
        }
        action = actions.get(event.button.id or "")
        if action is not None:
            action()

    # -- preview and templates ---------------------------------------------------------------------------
    def _form_change(self) -> Change | None:
        """The form as a change (a draft's checks: no window needed), or None while it is invalid."""
        change, problems = self.build(for_submit=False)
        return change if change is not None and not problems else None

    def action_preview(self) -> None:
        if self.refuse("preview", "preview"):
            return
        change = self._form_change()
        if change is None:
            self.validate_form(show_all=True)
            self.notify("Fix the form first: the preview renders a valid change.", severity="warning")
            return
        self.console.open_preview(change)

    def action_templates(self) -> None:
        from .templates import TemplatePicker

        def chosen(template: Any) -> None:
            if template is not None:
                self.apply_document(template.content, source=f"template {template.name}")

        self.app.push_screen(TemplatePicker(self._form_change, readonly=self.readonly), chosen)

    # -- jumping ------------------------------------------------------------------------------------------
    def action_jump(self) -> None:
        def go(target: str | None) -> None:
            if target:
                self.query_one(f"#{target}").focus()

        self.app.push_screen(JumpPalette("Jump to field", JUMPS), go)

    # -- load from file ----------------------------------------------------------------------------------
    @on(Input.Submitted, "#file-path")
    def _file_submitted(self, event: Input.Submitted) -> None:
        self.action_load_file()

    def action_load_file(self) -> None:
        if self.refuse("load_file", "loading a change from a file"):
            return
        path = self.query_one("#file-path", Input).value.strip()
        if not path:
            self._file_problem("enter the path of a change JSON file")
            return
        self.read_file(path)

    def _file_problem(self, message: str) -> None:
        box = self.query_one("#e-file", Static)
        box.update(f"⚠ {LABELS['file']}: {escape(message)}")
        box.display = True
        self.query_one("#file-path", Input).focus()
        self.call_after_refresh(box.scroll_visible, animate=False)

    @work(exclusive=True, group="load-file", exit_on_error=False)
    async def read_file(self, raw_path: str) -> None:
        path = Path(raw_path).expanduser()
        try:
            async with aiofiles.open(path, encoding="utf-8") as fh:
                text = await fh.read(4 * 1024 * 1024 + 1)
        except FileNotFoundError:
            self._file_problem(f"no file at {path}")
            return
        except IsADirectoryError:
            self._file_problem(f"{path} is a directory")
            return
        except (OSError, UnicodeDecodeError) as exc:
            self._file_problem(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}")
            return
        if len(text) > 4 * 1024 * 1024:
            self._file_problem(f"{path} is larger than 4 MiB")
            return
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            self._file_problem(f"{path} is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")
            return
        if not isinstance(doc, dict):
            self._file_problem(f"{path} must hold one JSON object (a change)")
            return
        self.apply_document(doc, source=str(path))

    def apply_document(self, doc: dict[str, Any], *, source: str) -> None:
        """Take a change document's content into the form; identity and lifecycle fields stay ours."""
        from ..services.lifecycle import LIFECYCLE_FIELDS

        extras = {k: v for k, v in doc.items() if k not in LIFECYCLE_FIELDS}
        known = set(ALIAS_TO_KEY) | {"meeting_metadata"}
        if self.base is None:
            self.base = {}
        for key, value in extras.items():
            if key not in known or key == "meeting_metadata":
                self.base[key] = value
        self.populate(extras)
        self.query_one("#e-file", Static).display = False
        self.show_all = True
        self.call_after_refresh(self.validate_form)
        loaded = f"Loaded {len(extras)} field(s) from {escape(source)}"
        if self._pending_window is not None and any(self._pending_window):
            zone = escape(self._value("timezone"))
            self.notify(
                f"{loaded}. Its timezone {zone!r} is not an IANA zone: the window is kept and shows "
                "in the date and time fields once the timezone is fixed.",
                title="Loaded: fix the timezone",
                severity="warning",
                timeout=12,
            )
        else:
            self.notify(loaded, title="Loaded")

    # -- save / submit ---------------------------------------------------------------------------------
    def _ensure_valid(self, *, for_submit: bool) -> Change | None:
        problems = self.validate_form(for_submit=for_submit, show_all=True)
        change, _ = self.build(for_submit=for_submit)
        if problems or change is None:
            first = next((k for k in ERROR_KEYS if k in problems), None)
            names = ", ".join(LABELS[k] for k in ERROR_KEYS if k in problems)
            self.notify(f"Fix before saving: {names}", title="Not saved", severity="error")
            target = self._focus_target(first) if first else None
            if target is not None and target.focusable:
                target.focus()
                self.query_one("#form", VerticalScroll).scroll_to_widget(target, animate=False)
            return None
        return change

    def action_save(self) -> None:
        if self.refuse("save", "saving"):
            return
        change = self._ensure_valid(for_submit=False)
        if change is None:
            return
        self._save_draft(change)

    def _save_draft(self, change: Change, *, then_leave: bool = False) -> None:
        old_key = self.autosave_key
        self.query_one("#autosave-status", Static).update("saving…")

        def saved(result: Change) -> None:
            self.base = result.to_json_dict()
            was_new = self.is_new
            self.is_new = False
            self.console.autosave.delete(old_key)
            if was_new:
                self.console.autosave.delete(self.autosave_key)
            self._clean = self.form_data()
            self._autosaved = None
            self._update_title()
            stamp = self.console.now().astimezone(UTC).strftime("%H:%M:%SZ")
            self.query_one("#autosave-status", Static).update(f"saved {stamp}")
            self.notify(f"Draft {result.change_id} saved.", title="Saved")
            if then_leave:
                self._leave()

        def failed(exc: BaseException) -> None:
            self.query_one("#autosave-status", Static).update("[red]not saved[/]")
            self.notify_error(exc, title="Draft not saved (your edits are kept)")

        self.call_service(
            lambda: self.services.changes.save_draft(change), done=saved, failed=failed, group="save"
        )

    def action_resubmit(self) -> None:
        self.action_submit()

    def action_submit(self) -> None:
        if self.refuse("submit", "submitting"):
            return
        change = self._ensure_valid(for_submit=True)
        if change is None:
            return
        config = self.services.config
        names = "\n".join(
            f"  • {escape(config.customer_mappings[c].customer_name if c in config.customer_mappings else c)}"
            f" [dim]({escape(c)})[/]"
            for c in change.customers
        )
        n = len(change.customers)
        if self.archived_edit:
            title = f"Save and resubmit {change.change_id}?"
            body = (
                f"A new version goes to {n} customer{'s' if n != 1 else ''} as a new approval request:\n"
                f"{names}"
            )
            yes = "Resubmit"
        else:
            title = f"Submit {change.change_id} to {n} customer{'s' if n != 1 else ''}?"
            body = f"Each customer's approvers get an approval request email:\n{names}"
            yes = "Submit"

        def answered(ok: bool | None) -> None:
            if ok:
                self._start_submit(change)

        self.app.push_screen(ConfirmModal(title, body, yes=yes), answered)

    def _start_submit(self, change: Change) -> None:
        self.console.start_fanout(
            "resubmit" if self.archived_edit else "submit",
            change,
            customers=change.customers,
            on_archived=self._submitted,
        )

    def _submitted(self, change: Change) -> None:
        """The change is in the archive: the form has done its job (autosave goes, the screen leaves)."""
        self.submitted = True
        self._discarded = True
        for key in {self.autosave_key, change.change_id, NEW_PREFIX + change.change_id}:
            self.console.autosave.delete(key)
        self.base = change.to_json_dict()
        self._clean = self.form_data()

    def on_screen_resume(self) -> None:
        # Back on top after the fan-out (esc from its progress or live status): the form is done.
        # Only while on top: a resume delivered after the screen was popped past (e.g. `:changes`
        # popping several screens at once) must not pop another screen.
        if self.submitted and self.is_current:
            self._leave()

    # -- autosave ------------------------------------------------------------------------------------------
    def _dirty(self) -> bool:
        return self._ready and self.form_data() != self._clean

    async def autosave_now(self) -> bool:
        """Write the raw form to the local autosave store when it changed since the last write."""
        if not self._ready or self._discarded or self.readonly:
            return False
        data = self.form_data()
        if data == self._clean or data == self._autosaved:
            return False
        try:
            await self.console.autosave.save(self.autosave_key, data)
        except OSError as exc:
            self.query_one("#autosave-status", Static).update(f"[red]autosave failed: {escape(str(exc))}[/]")
            return False
        self._autosaved = data
        stamp = self.console.now().astimezone(UTC).strftime("%H:%M:%SZ")
        self.query_one("#autosave-status", Static).update(f"autosaved {stamp}")
        return True

    def on_unmount(self) -> None:
        if self._ready and not self._discarded and not self.readonly:
            data = self._last_form
            if data is not None and data != self._clean and data != self._autosaved:
                with contextlib.suppress(OSError):
                    self.console.autosave.save_sync(self.autosave_key, data)

    @work(exclusive=True, group="restore", exit_on_error=False)
    async def offer_restore(self) -> None:
        store = self.console.autosave
        key, data = self.autosave_key, None
        if self.is_new:
            entries = [e for e in store.list() if e.key.startswith(NEW_PREFIX)]
            if entries:
                key = entries[0].key
                data = await store.load(key)
        else:
            data = await store.load(key)
        if not data or data.get("form") != 1:
            return
        current = self.form_data()
        comparable = {k: v for k, v in data.items() if k != "base"}
        if comparable == {k: v for k, v in current.items() if k != "base"}:
            store.delete(key)
            return
        title = str(data.get("title") or "(untitled)")
        saved_at = next((e.saved_at for e in store.list() if e.key == key), "")
        body = (
            f"Unsaved edits of [b]{escape(title)}[/] ({escape(str(data.get('changeId', '')))}) were kept"
            f"{' at ' + escape(saved_at) if saved_at else ''}.\nRestore them into this form?"
        )
        choice = await self.app.push_screen_wait(
            ChoiceModal(
                "Restore unsaved edits?",
                body,
                [("restore", "Restore"), ("later", "Not now (keep them)"), ("discard", "Discard them")],
                cancel_key="later",
            )
        )
        if choice == "restore":
            if self.is_new and isinstance(data.get("changeId"), str):
                self.change_id = data["changeId"]
            self.populate(data)
            self._update_title()
            self.show_all = True
            self._autosaved = data
            self.call_after_refresh(self.validate_form)
            self.notify("Unsaved edits restored.", title="Restored")
        elif choice == "discard":
            store.delete(key)

    # -- leaving -----------------------------------------------------------------------------------------
    def action_leave(self) -> None:
        if not self._dirty() or self.readonly:
            self._leave()
            return
        choices = [
            ("save", "Save draft"),
            ("discard", "Discard"),
            ("keep", "Keep for later"),
            ("stay", "Stay"),
        ]
        if self.archived_edit:
            choices = choices[1:]

        def chosen(choice: str | None) -> None:
            if choice == "save":
                change = self._ensure_valid(for_submit=False)
                if change is not None:
                    self._save_draft(change, then_leave=True)
            elif choice == "discard":
                self._discarded = True
                self.console.autosave.delete(self.autosave_key)
                self._leave()
            elif choice == "keep":
                self.run_worker(self._keep_and_leave(), exit_on_error=False)

        self.app.push_screen(
            ChoiceModal(
                "Unsaved edits",
                f"{escape(self.change_id)} has edits that are not saved.\n"
                "[dim]Keep for later: leave now; the form is offered back next time (autosave).[/]",
                choices,
                cancel_key="stay",
                primary="stay",
            ),
            chosen,
        )

    async def _keep_and_leave(self) -> None:
        await self.autosave_now()
        self._discarded = True
        self._leave()

    def _leave(self) -> None:
        if self._left:
            return
        self._left = True
        self.console.leave_compose(self)
