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
from changeconsole.models import Change, ChangeStatus, Config, DeliveryRecord, DeliveryState, EmailEvent
from changeconsole.services.autosave import AutosaveStore
from changeconsole.services.aws import AwsSettings
from changeconsole.services.history import diff_changes
from changeconsole.services.localstack import build_local_config
from changeconsole.services.status import ChangeSummary, StatusStore, search_text

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
    """Settings for the header and the operator's identity (``fail``: AWS unreachable)."""

    def __init__(self, *, fail: bool = False, endpoint: str = ENDPOINT) -> None:
        self.settings = AwsSettings(region="us-east-1", endpoint_url=endpoint, local=True)
        self.fail = fail

    def operator_identity(self) -> str:
        if self.fail:
            raise unreachable()
        return "alice"

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


class FakeStatus:
    aggregate = staticmethod(StatusStore.aggregate)

    def __init__(self, records: dict[str, list[DeliveryRecord]]) -> None:
        self.records = records

    def latest_round(self, change_id: str) -> list[DeliveryRecord]:
        return self.records.get(change_id, [])


class FakeServices:
    """What ``services.bundle.Services`` offers the console, with fixed answers. ``parts`` replace any
    of them (``status=``, ``customers=``, ``dlq=``, ``delivery_detail=``, ``resend=``, ``config=``)."""

    def __init__(
        self, *, fail: bool = False, readonly: bool = False, endpoint: str = ENDPOINT, **parts: Any
    ) -> None:
        self.config = fake_config()
        self.aws = FakeAws(fail=fail, endpoint=endpoint)
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
