"""Preview, report, template and bulk services for the console over fake services: the real code over
fixed, in-memory data (contacts, history), with a frozen clock."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

from changeconsole.models import Change, ChangeStatus, Config, EmailEvent
from changeconsole.services.authz import Authorizer
from changeconsole.services.bulk import BulkItem, BulkRun, Outcome
from changeconsole.services.contacts import Contact, audience
from changeconsole.services.notices import PreparedNotice, Told, plan_notice, render_notice
from changeconsole.services.preview import PreviewService, TestSend, as_sent, default_event
from changeconsole.services.reports import Report, ReportService
from changeconsole.services.status import ChangeSummary
from changeconsole.services.templates import Template

from .console import NOW, frozen, summary_of

TOPIC_DEFAULTS = {"aws-approval": "OPT_OUT", "aws-announce": "OPT_IN", "aws-calendar": "OPT_OUT"}


def contacts_of(code: str) -> list[Contact]:
    """Four contacts per customer, in that customer's own domain."""
    return [
        Contact(f"ops@{code}.example.com", preferences={"aws-approval": "OPT_IN", "aws-calendar": "OPT_IN"}),
        Contact(f"cab@{code}.example.com", preferences={"aws-approval": "OPT_IN"}),
        Contact(f"news@{code}.example.com"),
        Contact(f"gone@{code}.example.com", unsubscribe_all=True),
    ]


class OfflinePreview(PreviewService):
    """``PreviewService`` whose customers' contact lists are ``contacts_of`` (no AWS)."""

    def __init__(self, config: Config, authz: Authorizer) -> None:
        self.config = config
        self.authz = authz
        self.clock = frozen
        self.sent: list[tuple[str, str, str]] = []

    def _prepare(
        self, change: Change, customer: str, event: EmailEvent | None
    ) -> tuple[PreparedNotice, bool]:
        event = event or default_event(change)
        sent = as_sent(change, event, operator="alice", now=NOW)
        mapping = self.config.customer(customer)
        plan = plan_notice(sent, event, Told())
        who = audience(contacts_of(customer), TOPIC_DEFAULTS, plan.topics, mapping)
        notice = render_notice(sent, plan, mapping, self.config)
        return PreparedNotice(self.config.contact_list_name, plan, who, notice), sent is not change

    def test_send(self, change: Change, customer: str, to: str, event: EmailEvent | None = None) -> TestSend:
        """Recorded, not sent."""
        self.sent.append((change.change_id, customer, to))
        p = self.preview(change, customer, event)
        return TestSend(
            change_id=p.change_id,
            version=p.version,
            event=p.event,
            customer=customer,
            to=to,
            subject=f"[TEST] {p.subject}",
            sender=p.sender,
            message_id="test-message-1",
            audit_key=None,
            operator="alice",
            outside_whitelist=False,
        )


def seeded_history(
    config: Config, weeks: int = 13
) -> tuple[list[ChangeSummary], dict[str, list[dict[str, Any]]]]:
    """Changes over ``weeks`` weeks before NOW and their delivery outcomes per customer (seeded)."""
    rng = random.Random(42)
    codes = sorted(config.customer_mappings)
    changes: list[ChangeSummary] = []
    outcomes: dict[str, list[dict[str, Any]]] = {c: [] for c in codes}
    states = ["sent"] * 8 + ["partial", "failed", "dead_lettered", "skipped"]
    for i in range(3 * weeks):
        created = NOW - timedelta(days=7 * weeks) + timedelta(hours=rng.randint(0, 7 * weeks * 24 - 1))
        status = rng.choice(list(ChangeStatus))
        submitted = created + timedelta(hours=rng.randint(1, 30))
        approved = submitted + timedelta(hours=rng.randint(2, 72))
        start = approved + timedelta(hours=rng.randint(6, 200))
        doc: dict[str, Any] = {
            "changeId": f"CHG-2026-09-01T00-00-00-h{i:05d}",
            "changeTitle": f"History {i}",
            "customers": rng.sample(codes, k=rng.randint(1, len(codes))),
            "status": status.value,
            "version": 3,
            "createdAt": created.isoformat(),
            "createdBy": "alice",
            "modifiedAt": (created + timedelta(days=1)).isoformat(),
        }
        if status is not ChangeStatus.DRAFT:
            doc.update(submittedAt=submitted.isoformat(), submittedBy="bob")
        if status in (ChangeStatus.APPROVED, ChangeStatus.COMPLETED):
            doc.update(
                approvedAt=approved.isoformat(),
                approvedBy="carol",
                implementationStart=start.isoformat(),
                implementationEnd=(start + timedelta(hours=2)).isoformat(),
            )
        change = Change.model_validate(doc)
        changes.append(summary_of(change))
        if status is ChangeStatus.DRAFT:
            continue
        for code in change.customers:
            outcomes[code].append(
                {"customer": code, "state": rng.choice(states), "recipients_sent": rng.randint(1, 4)}
            )
    return changes, outcomes


class SeededStatus:
    """The two status-table reads a report makes, over ``seeded_history``."""

    def __init__(self, config: Config) -> None:
        self.changes, self.outcomes = seeded_history(config)

    def list_changes(self, **_: Any) -> list[ChangeSummary]:
        return list(self.changes)

    def customer_outcomes(self, customer: str, **_: Any) -> list[dict[str, Any]]:
        return list(self.outcomes.get(customer, []))

    def all_outcomes(self, **_: Any) -> list[dict[str, Any]]:
        return [item for code in sorted(self.outcomes) for item in self.outcomes[code]]


class SeededReports:
    """The real ``ReportService`` over the seeded history (the console's own change list left aside)."""

    def __init__(self, config: Config, authz: Authorizer) -> None:
        self.service = ReportService(SeededStatus(config), config, authz=authz, threads=1)  # type: ignore[arg-type]

    def build(self, **kwargs: Any) -> Report:
        kwargs.pop("changes", None)
        kwargs["now"] = NOW
        return self.service.build(**kwargs)


class FakeTemplates:
    def __init__(self) -> None:
        self.saved: dict[str, Template] = {}

    def list(self) -> list[Template]:
        return [self.saved[n] for n in sorted(self.saved)]

    def save(self, name: str, change: Change, *, overwrite: bool = False) -> Template:
        from changeconsole.services.templates import template_content

        self.saved[name] = Template(name, template_content(change), "2026-11-27T20:00:00Z", "alice")
        return self.saved[name]

    def rename(self, old: str, new: str) -> Template:
        t = self.saved.pop(old)
        self.saved[new] = Template(new, t.content, t.saved_at, t.saved_by)
        return self.saved[new]

    def delete(self, name: str) -> None:
        del self.saved[name]


class FakeBulk:
    """Bulk transitions over ``FakeChanges``: ``fail`` ids fail (once, or always)."""

    def __init__(self, changes: Any, fail: set[str], *, once: bool = True) -> None:
        self.changes, self.fail, self.once = changes, set(fail), once
        self.calls: list[tuple[str, str, int | None]] = []

    def _one(self, operation: str, item: BulkItem) -> BulkItem:
        item.attempts += 1
        self.calls.append((operation, item.change_id, item.version))
        if item.change_id in self.fail:
            if self.once:
                self.fail.discard(item.change_id)
            item.outcome, item.error = Outcome.FAILED, f"{item.change_id} was changed by bob; reload it"
            return item
        item.outcome, item.error = Outcome.OK, None
        return item

    def run(self, operation: str, targets: Any, *, on_item: Any = None, reason: str | None = None) -> BulkRun:
        run = BulkRun(operation, [BulkItem(cid, v) for cid, v in targets], reason)
        for item in run.items:
            on_item(self._one(operation, item))
        return run

    def retry(self, run: BulkRun, *, on_item: Any = None) -> BulkRun:
        for item in run.failed:
            on_item(self._one(run.operation, item))
        return run
