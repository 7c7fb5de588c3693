"""One change: every field, its latest delivery round, the actions its state allows, version history + diff.

Confirmations scale with danger: approve/complete ask y/n; cancel asks a reason (recorded) and ``y``
or the change's short suffix; delete makes the operator type the change id. In a read-only console no
action is shown or accepted; an action the operator's roles do not allow on this change's customers (or
approving a version they submitted) is shown disabled.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar

from rich.markup import escape
from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.widgets import DataTable, Static, TabbedContent, TabPane

from ..colours import CHANGE_STATUS
from ..errors import describe
from ..models import Change, ChangeStatus, DeliveryRecord, OperatorAction
from ..services.authz import Decision
from ..widgets.navtable import NavTable
from .base import DIFF_PICK, ConsoleScreen
from .compose import to_local
from .format import short_time
from .modals import ConfirmModal, InputModal, ReasonConfirmModal, TypeToConfirmModal

# Which actions each state allows (besides duplicate, allowed for any change).
ALLOWED: dict[ChangeStatus, frozenset[str]] = {
    ChangeStatus.DRAFT: frozenset({"edit", "delete", "submit"}),
    ChangeStatus.SUBMITTED: frozenset({"approve", "cancel", "edit"}),
    ChangeStatus.APPROVED: frozenset({"complete", "cancel", "edit"}),
    ChangeStatus.COMPLETED: frozenset(),
    ChangeStatus.CANCELLED: frozenset({"delete"}),
}
ACTION_LABELS = {
    "approve": "a approve",
    "complete": "c complete",
    "cancel": "x cancel",
    "edit": "e edit",
    "submit": "e edit & submit",
    "delete": "del delete",
    "duplicate": "d duplicate",
}

FIELD_ROWS: tuple[tuple[str, str], ...] = (
    ("changeTitle", "Title"),
    ("status", "Status"),
    ("version", "Version"),
    ("customers", "Customers"),
    ("implementationStart", "Start"),
    ("implementationEnd", "End"),
    ("timezone", "Timezone"),
    ("snowTicket", "ServiceNow"),
    ("jiraTicket", "Jira"),
    ("include_meeting", "Meeting invite"),
    ("createdAt", "Created"),
    ("modifiedAt", "Modified"),
    ("submittedAt", "Submitted"),
    ("approvedAt", "Approved"),
    ("completedAt", "Completed"),
    ("cancelledAt", "Cancelled"),
)
LONG_ROWS: tuple[tuple[str, str], ...] = (
    ("changeReason", "Reason"),
    ("customerImpact", "Customer impact"),
    ("implementationPlan", "Implementation plan"),
    ("testPlan", "Test plan"),
    ("rollbackPlan", "Rollback plan"),
)


def field_value(change: Change, doc: dict[str, Any], key: str, customer_names: dict[str, str]) -> Text:
    value = doc.get(key)
    if key == "status":
        return Text(change.status.value, style=CHANGE_STATUS.get(change.status, ""))
    if key == "customers":
        return Text(", ".join(f"{customer_names.get(c, c)} ({c})" for c in change.customers))
    if key in ("implementationStart", "implementationEnd"):
        if not value:
            return Text("—", style="dim")
        day, clock = to_local(value, change.timezone)
        return Text(f"{short_time(value)}  ({day} {clock} {change.timezone})")
    if key == "include_meeting":
        return meeting_text(change)
    if key.endswith("At"):
        who = doc.get(key[:-2] + "By")
        if not value:
            return Text("—", style="dim")
        text = Text(f"{short_time(value)}  {who or ''}".rstrip())
        if key == "cancelledAt" and change.cancel_reason:
            text.append(f" — {change.cancel_reason}")
        return text
    if isinstance(value, bool):
        return Text("yes" if value else "no")
    if value in (None, ""):
        return Text("—", style="dim")
    return Text(str(value))


def short_suffix(change_id: str) -> str:
    """``4qhr96`` of ``CHG-2026-12-07T17-09-23-4qhr96``: what the operator types to confirm."""
    return change_id.rsplit("-", 1)[-1]


def meeting_text(change: Change) -> Text:
    """``yes — organizer …, at …, 45m from 22:00 (window 3h)`` or ``no``."""
    meeting = change.meeting
    text = Text("yes" if change.include_meeting else "no")
    parts = []
    if meeting.organizer:
        parts.append(f"organizer {meeting.organizer}")
    if meeting.place:
        parts.append(f"at {meeting.place}")
    if meeting.start and meeting.end:
        day, clock = to_local(meeting.start.isoformat(), change.timezone)
        _, until = to_local(meeting.end.isoformat(), change.timezone)
        parts.append(f"{day} {clock} to {until} ({change.timezone}), not the whole window")
    if parts:
        text.append(" — " + ", ".join(parts), style="" if change.include_meeting else "dim")
    return text


def render_fields(change: Change, customer_names: dict[str, str]) -> Table:
    doc = change.to_json_dict()
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    for key, label in FIELD_ROWS:
        table.add_row(label, field_value(change, doc, key, customer_names))
    return table


def render_long(change: Change) -> Table:
    doc = change.to_json_dict()
    table = Table.grid(padding=(0, 0))
    table.add_column()
    for key, label in LONG_ROWS:
        table.add_row(Text(label, style="bold underline"))
        value = doc.get(key) or ""
        table.add_row(Text(value) if value else Text("—", style="dim"))
        table.add_row("")
    return table


def render_diff(diffs: list[Any], a: int, b: int) -> Text:
    """Field-by-field difference (unified diff for long text), colored like ``git diff``."""
    out = Text()
    if not diffs:
        out.append(f"v{a} and v{b} have the same content.", style="dim")
        return out
    for diff in diffs:
        old = json.dumps(diff.old, ensure_ascii=False)
        new = json.dumps(diff.new, ensure_ascii=False)
        if not diff.unified and len(old) + len(new) <= 80:
            out.append(f"{diff.field}: ", style="bold")
            out.append(old, style="red")
            out.append(" → ")
            out.append(new + "\n", style="green")
            continue
        out.append(f"{diff.field}\n", style="bold")
        if not diff.unified:
            out.append(f"- {old}\n", style="red")
            out.append(f"+ {new}\n", style="green")
            continue
        for line in diff.unified.splitlines():
            if line.startswith(("+++", "---")):
                style = "bold"
            elif line.startswith("+"):
                style = "green"
            elif line.startswith("-"):
                style = "red"
            elif line.startswith("@@"):
                style = "cyan"
            else:
                style = ""
            out.append(line + "\n", style=style)
    return out


class VersionsTable(NavTable):
    BINDINGS = [
        Binding("1", "screen.pick('a')", "Diff: set A", group=DIFF_PICK),
        Binding("2", "screen.pick('b')", "Diff: set B", group=DIFF_PICK),
    ]


class DetailScreen(ConsoleScreen[None]):
    help_title = "Change detail"
    ARMED = True
    MUTATING: ClassVar[frozenset[str]] = frozenset(
        {"approve", "complete", "cancel_change", "edit", "duplicate", "delete", "save_template"}
    )
    REQUIRES: ClassVar[Mapping[str, OperatorAction]] = {
        "approve": OperatorAction.CHANGE_APPROVE,
        "complete": OperatorAction.CHANGE_COMPLETE,
        "cancel_change": OperatorAction.CHANGE_CANCEL,
        "edit": OperatorAction.CHANGE_EDIT,
        "duplicate": OperatorAction.CHANGE_DRAFT,
        "delete": OperatorAction.CHANGE_DELETE,
        "preview": OperatorAction.CHANGE_PREVIEW,
        "save_template": OperatorAction.TEMPLATE_EDIT,
    }
    BINDINGS = [
        Binding("a", "approve", "Approve"),
        Binding("c", "complete", "Complete"),
        Binding("x", "cancel_change", "Cancel change"),
        Binding("e", "edit", "Edit"),
        Binding("d", "duplicate", "Duplicate"),
        Binding("delete", "delete", "Delete", key_display="del"),
        Binding("l", "live_status", "Live status"),
        Binding("p", "preview", "Preview"),
        Binding("T", "save_template", "Save as template"),
        Binding("h", "show_tab('tab-history')", "History"),
        Binding("i", "show_tab('tab-details')", "Details", show=False),
        Binding("v", "show_tab('tab-deliveries')", "Deliveries", show=False),
        Binding("r", "refresh", "Reload"),
    ]

    def __init__(self, change_id: str) -> None:
        super().__init__()
        self.change_id = change_id
        self.change: Change | None = None
        self.versions: list[Change] = []
        self.pick_a: int | None = None
        self.pick_b: int | None = None
        self.picked = False  # the operator chose A/B: keep them across reloads
        self.error: str | None = None

    def change_shown(self) -> str | None:
        return self.change_id

    def compose_body(self) -> ComposeResult:
        with Vertical(id="detail-body"):
            yield Static(f"[b]{escape(self.change_id)}[/]  loading…", id="detail-title")
            yield Static("", id="detail-actions")
            yield Static("", id="detail-error")
            with TabbedContent(initial="tab-details", id="detail-tabs"):
                with TabPane("Details", id="tab-details"), VerticalScroll(id="detail-fields-scroll"):
                    yield Static("", id="detail-fields")
                    yield Static("", id="detail-long")
                with TabPane("Deliveries", id="tab-deliveries"), Vertical():
                    yield Static("", id="deliveries-summary")
                    deliveries = NavTable(cursor_type="row", id="deliveries-table")
                    deliveries.add_columns("customer", "state", "attempts", "sent", "last error")
                    yield deliveries
                with TabPane("History", id="tab-history"), Vertical():
                    versions = VersionsTable(cursor_type="row", id="versions-table")
                    versions.add_columns("A/B", "version", "status", "modified", "by", "what")
                    yield versions
                    yield Static("", id="diff-head")
                    with VerticalScroll(id="diff-scroll"):
                        yield Static("", id="diff")

    def on_mount(self) -> None:
        self.query_one("#detail-error").display = False
        self.load()

    def on_screen_resume(self) -> None:
        if self.change is not None:
            self.load()

    # -- loading -----------------------------------------------------------------------------------------
    def load(self) -> None:
        change_id = self.change_id

        def fetch() -> tuple[Change, list[Change], list[DeliveryRecord]]:
            services = self.services
            change = services.changes.load(change_id)
            versions = services.changes.history(change_id)
            records = services.status.latest_round(change_id)
            return change, versions, records

        self.call_service(fetch, done=self._loaded, failed=self._failed, group="detail", exclusive=True)

    def action_refresh(self) -> None:
        self.load()

    def _failed(self, exc: BaseException) -> None:
        self.error = describe(exc)
        box = self.query_one("#detail-error", Static)
        box.update(f"✖ Cannot load {escape(self.change_id)}: {escape(self.error)}  [dim](r retries)[/]")
        box.display = True
        self.notify(escape(self.error), title="Cannot load change", severity="error", timeout=10)

    def _loaded(self, data: tuple[Change, list[Change], list[DeliveryRecord]]) -> None:
        change, versions, records = data
        self.change, self.versions, self.error = change, versions, None
        self.query_one("#detail-error").display = False
        names = {code: m.customer_name for code, m in self.services.config.customer_mappings.items()}
        status = Text(change.status.value, style=CHANGE_STATUS.get(change.status, ""))
        title = Text.assemble(
            (change.change_id, "bold"), "  ", change.title, "  ", status, f"  v{change.version}"
        )
        self.query_one("#detail-title", Static).update(title)
        self.query_one("#detail-fields", Static).update(render_fields(change, names))
        self.query_one("#detail-long", Static).update(render_long(change))
        self._show_actions()
        self._show_deliveries(records)
        self._show_versions()
        self.refresh_bindings()

    def allowed(self) -> set[str]:
        if self.change is None:
            return set()
        return set(ALLOWED[self.change.status]) | {"duplicate", "save_template"}

    def _show_actions(self) -> None:
        box = self.query_one("#detail-actions", Static)
        if self.readonly:
            box.update("[reverse] READ-ONLY [/] actions are disabled")
            return
        allowed = self.allowed()
        labels = [label for action, label in ACTION_LABELS.items() if action in allowed]
        if "submit" in allowed:
            labels.remove("e edit")
        binding_of = {"cancel": "cancel_change", "submit": "edit"}

        def permitted(action: str) -> bool:
            decision = self.permission(binding_of.get(action, action))
            return decision is None or decision.allowed

        shown = [(action, label) for action, label in ACTION_LABELS.items() if label in labels]
        mine = [label for action, label in shown if permitted(action)]
        theirs = [label.split(" ", 1)[1] for action, label in shown if not permitted(action)]
        if not labels:
            text = "No actions: this change is final."
        else:
            parts = ["Actions: " + "  ·  ".join(mine)] if mine else []
            if theirs:
                parts.append(f"[dim]Not allowed for you: {', '.join(theirs)} (? says why)[/]")
            text = "    ".join(parts)
        box.update(text)

    def _show_deliveries(self, records: list[DeliveryRecord]) -> None:
        table = self.query_one("#deliveries-table", DataTable)
        table.clear()
        summary = self.query_one("#deliveries-summary", Static)
        if not records:
            summary.update(
                "No deliveries yet."
                if self.change and self.change.status is not ChangeStatus.DRAFT
                else "Drafts send nothing."
            )
            return
        first = records[0]
        counts = self.services.status.aggregate(records)
        shown = "  ".join(f"{state} {n}" for state, n in counts.items() if n)
        summary.update(f"Round v{first.version} {first.event.value}: {shown}   [dim](l: live status)[/]")
        for record in sorted(records, key=lambda r: r.customer):
            table.add_row(
                record.customer,
                record.state.value,
                str(record.attempts),
                f"{record.recipients_sent}/{record.recipients_total}",
                (record.last_error or "")[:80],
                key=record.customer,
            )

    def _show_versions(self) -> None:
        versions = self.versions
        numbers = [v.version for v in versions]
        if not self.picked:
            self.pick_a = self.pick_b = None
        if self.pick_b not in numbers:
            self.pick_b = numbers[-1] if numbers else None
        if self.pick_a not in numbers:
            self.pick_a = numbers[-2] if len(numbers) > 1 else self.pick_b
        table = self.query_one(VersionsTable)
        table.clear()
        for version in reversed(versions):
            mod = version.modifications[-1] if version.modifications else None
            marks = ("A" if version.version == self.pick_a else "") + (
                "B" if version.version == self.pick_b else ""
            )
            table.add_row(
                marks,
                f"v{version.version}",
                version.status.value,
                short_time(version.modified_at or version.created_at),
                version.modified_by or version.created_by or "—",
                mod.modification_type if mod else "",
                key=str(version.version),
            )
        self._show_diff()

    def _show_diff(self) -> None:
        head = self.query_one("#diff-head", Static)
        a, b = self.pick_a, self.pick_b
        if a is None or b is None:
            head.update("No versions.")
            return
        if a == b:
            head.update(
                f"Only v{a} exists." if len(self.versions) < 2 else f"A and B are both v{a}: pick two."
            )
            self.query_one("#diff", Static).update("")
            return
        head.update(f"Diff A v{a} → B v{b}   [dim](on a row: 1 sets A, 2 sets B)[/]")
        change_id = self.change_id

        def compute() -> list[Any]:
            return self.services.changes.diff(change_id, a, b)

        self.call_service(
            compute,
            done=lambda diffs: self.query_one("#diff", Static).update(render_diff(diffs, a, b)),
            group="diff",
            exclusive=True,
        )

    def action_pick(self, which: str) -> None:
        table = self.query_one(VersionsTable)
        if not table.row_count:
            return
        row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        version = int(str(row_key.value))
        self.picked = True
        if which == "a":
            self.pick_a = version
        else:
            self.pick_b = version
        cursor = table.cursor_row
        self._show_versions()
        table.move_cursor(row=cursor, animate=False)

    @on(DataTable.RowSelected, "#versions-table")
    def _version_selected(self, event: DataTable.RowSelected) -> None:
        version = int(str(event.row_key.value))
        numbers = [v.version for v in self.versions]
        index = numbers.index(version)
        if index > 0:
            self.picked = True
            self.pick_a, self.pick_b = numbers[index - 1], version
            cursor = event.cursor_row
            self._show_versions()
            self.query_one(VersionsTable).move_cursor(row=cursor, animate=False)

    # -- actions -------------------------------------------------------------------------------------------
    def action_customers(self, action: str) -> list[str] | None:
        if action == "preview":  # one customer at a time: any of them in scope will do
            return None
        return list(self.change.customers) if self.change is not None else None

    def roles_changed(self) -> None:
        super().roles_changed()
        if self.change is not None:
            self._show_actions()

    def permission(self, action: str) -> Decision | None:
        change = self.change
        if action == "edit" and change is not None and change.status is ChangeStatus.DRAFT:
            return self.console.decide(OperatorAction.CHANGE_DRAFT, change.customers)
        decision = super().permission(action)
        if action == "approve" and change is not None and decision is not None and decision.allowed:
            refusal = self.console.approval_refusal(change)
            if refusal:
                return Decision(False, OperatorAction.CHANGE_APPROVE, refusal)
        return decision

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in self.MUTATING:
            if self.readonly or self.change is None:
                return False
            name = {"cancel_change": "cancel"}.get(action, action)
            if name not in self.allowed():
                return False
        return super().check_action(action, parameters)

    def _guard(self, action: str) -> Change | None:
        if self.refuse(action, action):
            return None
        if self.change is None:
            return None
        name = {"cancel_change": "cancel"}.get(action, action)
        if name not in self.allowed():
            self.notify(f"A {self.change.status.value} change cannot be {name}d.", severity="warning")
            return None
        return self.change

    def action_show_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab
        target = {"tab-history": "#versions-table", "tab-deliveries": "#deliveries-table"}.get(tab)
        if target:
            self.query_one(target).focus()

    def action_live_status(self) -> None:
        self.console.open_status(self.change_id)

    def action_preview(self) -> None:
        if self.refuse("preview", "preview"):
            return
        if self.change is not None:
            self.console.open_preview(self.change)

    def action_save_template(self) -> None:
        change = self._guard("save_template")
        if change is None:
            return
        templates = self.services.templates

        def named(name: str | None) -> None:
            if name:
                self.call_service(
                    lambda: templates.save(name, change),
                    done=lambda t: self.notify(f"Template {escape(t.name)} saved.", title="Templates"),
                    group="save-template",
                )

        self.app.push_screen(
            InputModal(
                f"Save {change.change_id} as a template",
                "Its content without id and window, shared by the team (new changes start from it).",
                placeholder="e.g. monthly-patching",
            ),
            named,
        )

    def action_approve(self) -> None:
        change = self._guard("approve")
        if change is None:
            return
        n = len(change.customers)
        body = f"[b]{escape(change.title)}[/]\nApproved notices go to {n} customer{'s' if n != 1 else ''}" + (
            " with a calendar invite." if change.include_meeting else "."
        )
        self._confirm_then(
            ConfirmModal(f"Approve {change.change_id}?", body, yes="Approve"), "approve", change
        )

    def action_complete(self) -> None:
        change = self._guard("complete")
        if change is None:
            return
        n = len(change.customers)
        body = f"[b]{escape(change.title)}[/]\nCompletion notices go to {n} customer{'s' if n != 1 else ''}."
        self._confirm_then(
            ConfirmModal(f"Complete {change.change_id}?", body, yes="Complete"), "complete", change
        )

    def action_cancel_change(self) -> None:
        change = self._guard("cancel_change")
        if change is None:
            return
        n = len(change.customers)
        body = (
            f"[b]{escape(change.title)}[/]\nCancellation notices go to {n} customer{'s' if n != 1 else ''}. "
            "A cancelled change cannot be reopened."
        )
        modal = ReasonConfirmModal(
            f"Cancel {change.change_id}?",
            body,
            short_suffix(change.change_id),
            action_label="Cancel change",
            keep_label="Keep change",
            reason_label="Reason (kept with the change and told in the cancellation notice):",
        )

        def answered(reason: str | None) -> None:
            if reason:
                self.console.start_fanout("cancel", change, reason=reason)

        self.app.push_screen(modal, answered)

    def _confirm_then(self, modal: Any, operation: str, change: Change) -> None:
        def answered(ok: bool | None) -> None:
            if ok:
                self.console.start_fanout(operation, change)

        self.app.push_screen(modal, answered)

    def action_edit(self) -> None:
        change = self._guard("edit")
        if change is not None:
            self.console.open_compose(change)

    def action_duplicate(self) -> None:
        change = self._guard("duplicate")
        if change is None:
            return
        change_id = change.change_id

        def done(copy: Change) -> None:
            self.notify(f"Draft {copy.change_id} created from {change_id}.", title="Duplicated")
            self.console.open_compose(copy)

        self.call_service(lambda: self.services.changes.duplicate(change_id), done=done, group="duplicate")

    def action_delete(self) -> None:
        change = self._guard("delete")
        if change is None:
            return
        body = (
            f"[b]{escape(change.title)}[/] ({change.status.value}) moves to deleted/ and leaves the list. "
            "No email is sent."
        )
        modal = TypeToConfirmModal(
            f"Delete {change.change_id}?",
            body,
            change.change_id,
            action_label="Delete",
            keep_label="Keep change",
        )
        change_id = change.change_id

        def deleted(_: object) -> None:
            self.notify(f"{change_id} deleted.", title="Deleted")
            self.dismiss(None)

        def answered(ok: bool | None) -> None:
            if ok:
                self.call_service(
                    lambda: self.services.changes.delete(change_id), done=deleted, group="delete"
                )

        self.app.push_screen(modal, answered)
