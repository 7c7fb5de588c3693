"""The console over deterministic fake services: a frozen clock, fixed changes and delivery records."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import EndpointConnectionError
from rich.console import Console
from textual.pilot import Pilot
from textual.screen import Screen

from changeconsole.app import ChangeConsoleApp
from changeconsole.models import (
    Change,
    ChangeStatus,
    Config,
    DeliveryRecord,
    DeliveryState,
    EmailEvent,
    OperatorAction,
)
from changeconsole.screens.compose import ComposeScreen
from changeconsole.screens.detail import DetailScreen
from changeconsole.services.audit import AuditQuery, AuditSearchResult, parse_entry
from changeconsole.services.authz import Authorizer
from changeconsole.services.autosave import AutosaveStore
from changeconsole.services.aws import AwsSettings
from changeconsole.services.fanout import ARCHIVE, DestinationState, FanoutResult
from changeconsole.services.history import diff_changes
from changeconsole.services.identity import Operator
from changeconsole.services.localstack import build_local_config
from changeconsole.services.status import ChangeSummary, StatusStore, search_text

from .waiting import wait_for

NOW = datetime(2026, 11, 27, 20, 0, 0, tzinfo=UTC)
NEW_ID = "CHG-2026-11-27T20-00-00-new001"
ENDPOINT = "http://127.0.0.1:4566"


def frozen() -> datetime:
    return NOW


def fake_config() -> Config:
    return Config.model_validate(build_local_config(6, endpoint=ENDPOINT))


def change(
    cid: str, title: str, status: ChangeStatus, version: int, customers: list[str], **extra: Any
) -> Change:
    data: dict[str, Any] = {
        "changeId": cid,
        "changeTitle": title,
        "changeReason": "Certificates expire on 2026-12-15.",
        "implementationPlan": "1. Upload the new certificate\n2. Switch listeners\n3. Verify",
        "testPlan": "curl every endpoint",
        "customerImpact": "None expected; connections may reset once.",
        "rollbackPlan": "Switch the listeners back.",
        "snowTicket": "CHG0012345",
        "jiraTicket": "OPS-42",
        "customers": customers,
        "implementationStart": "2026-12-01T22:00:00Z",
        "implementationEnd": "2026-12-02T01:30:00Z",
        "timezone": "Europe/London",
        "status": status.value,
        "version": version,
        "createdAt": "2026-11-20T09:00:00Z",
        "createdBy": "alice",
        "modifiedAt": f"2026-11-2{version}T10:00:00Z",
        "modifiedBy": "alice" if version < 3 else "bob",
        "modifications": [
            {"timestamp": "2026-11-20T09:00:00Z", "user_id": "alice", "modification_type": "created"}
        ],
    }
    data.update(extra)
    return Change.model_validate(data)


SUBMITTED_ID = "CHG-2026-11-20T09-00-00-sub001"
DRAFT_ID = "CHG-2026-11-21T09-00-00-drf001"
APPROVED_ID = "CHG-2026-11-22T09-00-00-apr001"
DONE_ID = "CHG-2026-11-23T09-00-00-cmp001"


def sample_changes() -> dict[str, list[Change]]:
    """Each change's versions, oldest first."""
    sub_v1 = change(
        SUBMITTED_ID,
        "Rotate TLS certificates on the edge load balancers",
        ChangeStatus.DRAFT,
        1,
        ["acme", "globex", "initech"],
    )
    sub_v2 = change(
        SUBMITTED_ID,
        "Rotate TLS certificates on the edge load balancers",
        ChangeStatus.SUBMITTED,
        2,
        ["acme", "globex", "initech"],
        submittedAt="2026-11-22T10:00:00Z",
        submittedBy="alice",
    )
    sub_v3 = change(
        SUBMITTED_ID,
        "Rotate TLS certificates on the edge load balancers",
        ChangeStatus.SUBMITTED,
        3,
        ["acme", "globex", "initech"],
        submittedAt="2026-11-22T10:00:00Z",
        submittedBy="alice",
        implementationPlan="1. Upload the new certificate\n2. Drain one AZ at a time\n3. Verify",
        modifications=[
            {"timestamp": "2026-11-20T09:00:00Z", "user_id": "alice", "modification_type": "created"},
            {"timestamp": "2026-11-23T10:00:00Z", "user_id": "bob", "modification_type": "edited"},
        ],
    )
    draft = change(DRAFT_ID, "Upgrade the bastion hosts", ChangeStatus.DRAFT, 1, ["hooli"])
    approved = change(
        APPROVED_ID,
        "Patch the VPN concentrators",
        ChangeStatus.APPROVED,
        3,
        ["acme", "umbrella"],
        approvedAt="2026-11-23T11:00:00Z",
        approvedBy="carol",
    )
    done = change(DONE_ID, "Resize the reporting database", ChangeStatus.COMPLETED, 4, ["globex"])
    return {
        SUBMITTED_ID: [sub_v1, sub_v2, sub_v3],
        DRAFT_ID: [draft],
        APPROVED_ID: [approved],
        DONE_ID: [done],
    }


def summary_of(c: Change) -> ChangeSummary:
    return ChangeSummary(
        change_id=c.change_id,
        title=c.title,
        status=c.status,
        customers=list(c.customers),
        version=c.version,
        implementation_start=c.implementation_start,
        implementation_end=c.implementation_end,
        modified_at=c.modified_at,
        modified_by=c.modified_by,
        created_by=c.created_by,
        location="draft" if c.status is ChangeStatus.DRAFT else "archive",
        search=search_text(c),
        created_at=c.created_at,
        submitted_at=c.submitted_at,
        submitted_by=c.submitted_by,
        approved_at=c.approved_at,
        approved_by=c.approved_by,
        completed_at=c.completed_at,
        cancelled_at=c.cancelled_at,
        snow_ticket=c.snow_ticket,
        jira_ticket=c.jira_ticket,
    )


def unreachable() -> Exception:
    return EndpointConnectionError(endpoint_url=ENDPOINT)


class FakeAws:
    """Settings for the header and the operator's identity (``fail``: AWS unreachable). It makes no
    clients: the audit records of fake actions are only logged."""

    def __init__(self, *, fail: bool = False, endpoint: str = ENDPOINT, operator: str = "alice") -> None:
        self.settings = AwsSettings(region="us-east-1", endpoint_url=endpoint, local=True)
        self.fail = fail
        self.name = operator

    def operator(self) -> Operator:
        if self.fail:
            raise unreachable()
        return Operator.local(self.name)

    def operator_identity(self) -> str:
        return self.operator().name

    def add_call_listener(self, listener: Any) -> None:
        pass


class FakeChanges:
    def __init__(self, versions: dict[str, list[Change]], *, fail: bool = False) -> None:
        self.versions = versions
        self.fail = fail
        self.calls: list[tuple[str, Any]] = []

    def _check(self) -> None:
        if self.fail:
            raise unreachable()

    def list(self, **_: Any) -> list[ChangeSummary]:
        self._check()
        out = [summary_of(v[-1]) for v in self.versions.values()]
        return sorted(out, key=lambda s: (s.modified_at or "", s.change_id), reverse=True)

    def load(self, change_id: str) -> Change:
        self._check()
        return self.versions[change_id][-1]

    def history(self, change_id: str) -> list[Change]:
        self._check()
        return list(self.versions[change_id])

    def diff(self, change_id: str, a: int, b: int) -> list[Any]:
        by_version = {c.version: c for c in self.versions[change_id]}
        return diff_changes(by_version[a], by_version[b])

    def delete(self, change_id: str) -> None:
        self._check()
        self.calls.append(("delete", change_id))
        del self.versions[change_id]

    def duplicate(self, change_id: str) -> Change:
        self._check()
        self.calls.append(("duplicate", change_id))
        source = self.versions[change_id][-1]
        data = source.to_json_dict()
        data.update(changeId=NEW_ID, status="draft", version=1, modifications=[])
        copy = Change.model_validate(data)
        self.versions[NEW_ID] = [copy]
        return copy

    def save_draft(self, c: Change) -> Change:
        self._check()
        self.calls.append(("save_draft", c))
        self.versions[c.change_id] = [c]
        return c

    # Fan-outs: every destination done at once, the new version appended (what the console shows next).
    def _publish(self, new: Change, event: EmailEvent) -> FanoutResult:
        self.versions.setdefault(new.change_id, []).append(new)
        states = {ARCHIVE: DestinationState.DONE} | dict.fromkeys(new.customers, DestinationState.DONE)
        return FanoutResult(new, event, states)

    def submit(self, c: Change, *, customers: list[str] | None = None, **_: Any) -> FanoutResult:
        self._check()
        self.calls.append(("submit", c.change_id))
        new = c.model_copy(update={"status": ChangeStatus.SUBMITTED, "version": c.version + 1})
        return self._publish(new, EmailEvent.SUBMITTED)

    def _transition(self, name: str, change_id: str, status: ChangeStatus, **kwargs: Any) -> FanoutResult:
        self._check()
        self.calls.append((name, change_id, kwargs))
        current = self.versions[change_id][-1]
        new = current.model_copy(update={"status": status, "version": current.version + 1})
        return self._publish(new, EmailEvent(status.value))

    def approve(self, change_id: str, **kwargs: Any) -> FanoutResult:
        kwargs.pop("progress", None)
        return self._transition("approve", change_id, ChangeStatus.APPROVED, **kwargs)

    def complete(self, change_id: str, **kwargs: Any) -> FanoutResult:
        kwargs.pop("progress", None)
        return self._transition("complete", change_id, ChangeStatus.COMPLETED, **kwargs)

    def cancel(self, change_id: str, **kwargs: Any) -> FanoutResult:
        kwargs.pop("progress", None)
        return self._transition("cancel", change_id, ChangeStatus.CANCELLED, **kwargs)


class FakeStatus:
    aggregate = staticmethod(StatusStore.aggregate)

    def __init__(self, records: dict[str, list[DeliveryRecord]]) -> None:
        self.records = records

    def latest_round(self, change_id: str) -> list[DeliveryRecord]:
        return self.records.get(change_id, [])


AUDIT_RECORDS: list[dict[str, Any]] = [
    {
        "ts": "2026-11-27T19:58:02.120Z",
        "type": "operator.action",
        "action": "change.approve",
        "result": "refused",
        "operator": "alice",
        "roles": ["ChangeManagers"],
        "via": "console",
        "customers": ["acme", "globex", "initech"],
        "change_id": SUBMITTED_ID,
        "version": 3,
        "detail": f"separation of duties: alice submitted v3 of {SUBMITTED_ID}; another change manager "
        "must approve it (require_distinct_approver)",
    },
    {
        "ts": "2026-11-27T19:40:11.005Z",
        "type": "operator.action",
        "action": "change.submit",
        "result": "ok",
        "operator": "alice",
        "roles": ["ChangeManagers"],
        "via": "cli",
        "customers": ["acme", "globex", "initech"],
        "change_id": SUBMITTED_ID,
        "version": 3,
        "status": "submitted",
        "event": "submitted",
    },
    {
        "ts": "2026-11-27T18:02:45.500Z",
        "type": "operator.action",
        "action": "change.submit",
        "result": "refused",
        "operator": "erin",
        "roles": ["CustomerManagers"],
        "via": "cli",
        "customers": ["globex"],
        "change_id": DRAFT_ID,
        "version": 1,
        "detail": "change.submit needs ChangeManagers; erin has CustomerManagers",
    },
    {
        "ts": "2026-11-26T09:15:00Z",
        "source": "dlq",
        "action": "purge",
        "operator": "bob",
        "customer": "hooli",
        "count": 2,
        "message_ids": ["m-1", "m-2"],
    },
]


class FakeAudit:
    """The audit trail of ``AUDIT_RECORDS`` (records of an earlier release included), searched like
    ``services.audit.AuditReader``: the authorization point is asked first."""

    def __init__(self, authz: Authorizer, records: list[dict[str, Any]] | None = None) -> None:
        self.authz = authz
        self.records = AUDIT_RECORDS if records is None else records

    def search(self, query: AuditQuery) -> AuditSearchResult:
        self.authz.require(OperatorAction.AUDIT_READ)
        entries = [parse_entry(raw, f"audit/fake-{i}.jsonl") for i, raw in enumerate(self.records)]
        found = [e for e in entries if e is not None and query.matches(e)]
        found.sort(key=lambda e: e.ts, reverse=True)
        return AuditSearchResult(found[: query.limit], len(found), len(self.records), 7)


class FakeServices:
    """What ``services.bundle.Services`` offers the console, with fixed answers. ``parts`` replace any
    of them (``status=``, ``customers=``, ``dlq=``, ``delivery_detail=``, ``resend=``, ``config=``).
    ``operator`` is who acts; ``operator_roles`` (config shape) turns the roles on."""

    def __init__(
        self,
        *,
        fail: bool = False,
        readonly: bool = False,
        endpoint: str = ENDPOINT,
        operator: str = "alice",
        operator_roles: dict[str, Any] | None = None,
        require_distinct_approver: bool | None = None,
        **parts: Any,
    ) -> None:
        config = fake_config()
        if operator_roles is not None or require_distinct_approver is not None:
            data = config.to_json_dict()
            data["operator_roles"] = operator_roles or {}
            data["require_distinct_approver"] = require_distinct_approver
            config = Config.model_validate(data)
        self.config = config
        self.aws = FakeAws(fail=fail, endpoint=endpoint, operator=operator)
        self.authz = Authorizer(self.aws, config, clock=frozen, via="console")  # type: ignore[arg-type]
        self.audit = FakeAudit(self.authz)
        self.readonly = readonly
        self.changes = FakeChanges(sample_changes(), fail=fail)
        self.status = FakeStatus(
            {
                SUBMITTED_ID: [
                    DeliveryRecord(
                        change_id=SUBMITTED_ID,
                        version=3,
                        event=EmailEvent.SUBMITTED,
                        customer=code,
                        state=state,
                        attempts=1,
                        recipients_total=3,
                        recipients_sent=sent,
                    )
                    for code, state, sent in (
                        ("acme", DeliveryState.SENT, 3),
                        ("globex", DeliveryState.SENT, 3),
                        ("initech", DeliveryState.PROCESSING, 1),
                    )
                ]
            }
        )
        for name, part in parts.items():
            setattr(self, name, part)

    @property
    def environment_label(self) -> str:
        return self.aws.settings.environment_label


def console_app(services: Any, *, live: bool = False, **kwargs: Any) -> ChangeConsoleApp:
    """The real console over ``services``: frozen clock, fixed new-change id, no autosave timer;
    ``live`` runs its refresh timers (and cursor blink)."""
    kwargs.setdefault("clock", frozen)
    kwargs.setdefault("autosave_interval", 0)
    return ChangeConsoleApp(
        services,
        live=live,
        change_id_factory=lambda: NEW_ID,
        default_timezone="Europe/London",
        **kwargs,
    )


def fake_app(tmp_path: Path, **kwargs: Any) -> ChangeConsoleApp:
    """The console on ``FakeServices``: frozen clock, fixed new-change id, no timers, no cursor blink."""
    services = kwargs.pop("services", None) or FakeServices(
        fail=kwargs.pop("fail", False), readonly=kwargs.pop("services_readonly", False)
    )
    return console_app(services, autosave=AutosaveStore(tmp_path / "autosave"), **kwargs)


async def open_detail(pilot: Pilot[Any], change_id: str) -> DetailScreen:
    """The detail screen of ``change_id``, loaded."""
    await settle(pilot)
    pilot.app.open_change(change_id)  # type: ignore[attr-defined]
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, DetailScreen), what="detail")
    await settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, DetailScreen) and screen.change is not None
    return screen


async def open_compose(pilot: Pilot[Any]) -> ComposeScreen:
    """Compose a new change the way the operator does: ``n`` on the change list."""
    await settle(pilot)
    await pilot.press("n")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, ComposeScreen), what="compose")
    await settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, ComposeScreen)
    return screen


async def show(pilot: Pilot[Any], screen: Screen[Any]) -> None:
    """Push ``screen`` on the console (over its home screen) and wait until it is mounted."""
    await pilot.app.push_screen(screen)


# Workers that wait on the operator (a modal), never "finished" by themselves.
INTERACTIVE_GROUPS = frozenset({"restore"})


async def settle(pilot: Pilot[Any]) -> None:
    """Let service workers finish and the screen catch up (no fixed sleeps)."""
    app = pilot.app
    for _ in range(4):
        await pilot.pause()
        busy = [w for w in app.workers if w.group not in INTERACTIVE_GROUPS and not w.is_finished]
        if busy:
            await app.workers.wait_for_complete(busy)
    await pilot.wait_for_scheduled_animations()
    await pilot.pause()


def screen_text(app: Any) -> str:
    """Plain text of what the terminal shows."""
    update = app.screen._compositor.render_update(full=True)
    console = Console(width=app.size.width, record=True, file=io.StringIO(), color_system=None)
    console.print(update)
    return console.export_text()
