"""The change lifecycle (SPEC §2): drafts, transitions with who/when, versions and fan-out.

Every transition reads the archive with its ETag, checks the state machine, writes the superseded
version to ``versions/``, replaces the archive conditionally and then distributes the event. The
change index (status table) follows every draft save, transition and delete.

Every operation that writes passes the authorization point (``services.authz``) with the customers it
touches (an edit: those before and after) and is audited with its outcome; approving also checks
separation of duties. Who acts (``*By``, ``modifications[].user_id``) is the authorizer's operator.
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Callable
from typing import Any

from ..errors import InputError
from ..models import (
    DELETABLE,
    MAX_VERSION,
    Change,
    ChangeStatus,
    Config,
    EmailEvent,
    OperatorAction,
    check_transition,
    iso_utc,
    new_change_id,
    utcnow,
)
from .audit import FAILED, OK, PARTIAL
from .authz import ActionRecord, Authorizer
from .aws import AwsFactory
from .changes import ChangeNotFound, ChangeStore, ConflictError
from .fanout import ARCHIVE, DestinationState, Fanout, FanoutResult, ProgressEvent
from .history import FieldDiff, diff_changes
from .identity import Operator
from .migration import Reindexer
from .status import ChangeSummary, StatusStore

Progress = Callable[[ProgressEvent], None] | None

# Fields the lifecycle owns; an edit never takes them from the edited copy.
LIFECYCLE_FIELDS = frozenset(
    {
        "object_type",
        "changeId",
        "status",
        "prior_status",
        "version",
        "createdAt",
        "createdBy",
        "modifiedAt",
        "modifiedBy",
        "submittedAt",
        "submittedBy",
        "approvedAt",
        "approvedBy",
        "completedAt",
        "completedBy",
        "cancelledAt",
        "cancelledBy",
        "modifications",
        "writeToken",
        "deletedAt",
        "deletedBy",
    }
)
STAMPS = {
    ChangeStatus.SUBMITTED: ("submittedAt", "submittedBy"),
    ChangeStatus.APPROVED: ("approvedAt", "approvedBy"),
    ChangeStatus.COMPLETED: ("completedAt", "completedBy"),
    ChangeStatus.CANCELLED: ("cancelledAt", "cancelledBy"),
}
ACTION_OF_STATUS = {
    ChangeStatus.APPROVED: OperatorAction.CHANGE_APPROVE,
    ChangeStatus.COMPLETED: OperatorAction.CHANGE_COMPLETE,
    ChangeStatus.CANCELLED: OperatorAction.CHANGE_CANCEL,
}
EVENT_OF_STATUS = {
    ChangeStatus.SUBMITTED: EmailEvent.SUBMITTED,
    ChangeStatus.APPROVED: EmailEvent.APPROVED,
    ChangeStatus.COMPLETED: EmailEvent.COMPLETED,
    ChangeStatus.CANCELLED: EmailEvent.CANCELLED,
}
_UNSET: Any = object()


class ChangeRejected(InputError):
    """A change that cannot take this step as it is; ``problems`` name each field (exit 2)."""

    title = "Error"

    def __init__(self, message: str, problems: list[dict[str, str]] | None = None) -> None:
        detail = "; ".join(f"{p['path']}: {p['message']}" for p in problems or [])
        super().__init__(f"{message}: {detail}" if detail else message, problems=problems, summary=message)


class NotDeletable(InputError):
    """Only draft and cancelled changes can be deleted (exit 2)."""

    title = "Error"

    def __init__(self, change: Change) -> None:
        self.change = change
        allowed = ", ".join(sorted(s.value for s in DELETABLE))
        super().__init__(
            f"cannot delete {change.change_id}: it is {change.status.value}; "
            f"only {allowed} changes can be deleted"
        )


def user_fields(change: Change) -> dict[str, Any]:
    """The operator-editable content of a change (incl. unknown keys), without lifecycle fields."""
    return {k: v for k, v in change.to_json_dict().items() if k not in LIFECYCLE_FIELDS}


def finish_fanout(record: ActionRecord, result: FanoutResult) -> None:
    """The action's audit record from its fan-out: ``ok``, ``partial`` (some customers failed) or
    ``failed`` (the archive write failed: nothing was sent)."""
    archive = result.states.get(ARCHIVE)
    if result.ok:
        outcome = OK
    elif archive is not None and archive is not DestinationState.DONE:
        outcome = FAILED
    else:
        outcome = PARTIAL
    record.finish(
        outcome,
        version=result.change.version,
        status=result.change.status.value,
        event=result.event.value if result.states else None,
        failed=result.failed or None,
        errors=dict(result.errors) or None,
    )


MAX_REASON = 1000


def clean_reason(text: str) -> str:
    """One line of at most MAX_REASON characters (control characters become spaces)."""
    return " ".join("".join(" " if ord(c) < 32 or ord(c) == 127 else c for c in text).split())[:MAX_REASON]


def _customers_changed(current: Change, customers: builtins.list[str]) -> dict[str, Any]:
    """What a new version's modification records about its customers: the fields changed and those
    added (their notice is a first request, not a revision: services/emails.revision_of)."""
    added = sorted(set(customers) - set(current.customers))
    if sorted(set(customers)) == sorted(current.customers):
        return {}
    return {"changed_fields": ["customers"], **({"added_customers": added} if added else {})}


def _same_write(current: Change | None, ours: Change) -> bool:
    """True when the archive holds exactly our write (an earlier try that did succeed): decided by the
    write token alone, unique per write (two writers in one second under one identity differ)."""
    return current is not None and ours.write_token is not None and current.write_token == ours.write_token


class ChangeService:
    def __init__(
        self,
        aws: AwsFactory,
        config: Config,
        *,
        operator: str | Operator | None = None,
        threads: int = 16,
        status: StatusStore | None = None,
        authz: Authorizer | None = None,
    ) -> None:
        self.aws = aws
        self.config = config
        self.authz = authz or Authorizer(aws, config, operator=operator, via="api")
        self.store = ChangeStore(aws, config, threads=threads)
        self.status = status or StatusStore(aws, config, threads=threads)
        self.fanout = Fanout(aws, config, self.status, threads=threads)

    @property
    def operator(self) -> str:
        """Who acts (``services.identity``): the name written as ``*By``."""
        return self.authz.operator.name

    # -- helpers ----------------------------------------------------------------------
    def _validate(self, data: dict[str, Any], *, check_customers: bool = True) -> Change:
        context = {"config": self.config} if check_customers else None
        return Change.model_validate(data, context=context)

    def _modification(self, kind: str, now: str, **extra: Any) -> dict[str, Any]:
        return {"timestamp": now, "user_id": self.operator, "modification_type": kind, **extra}

    def _next(
        self,
        current: Change,
        target: ChangeStatus,
        kind: str,
        *,
        fields: dict[str, Any] | None = None,
        check_customers: bool = True,
        **extra: Any,
    ) -> Change:
        """``current`` moved to ``target`` as a new version stamped with who and when."""
        now, who = iso_utc(utcnow()), self.operator
        version = current.version + 1
        if version > MAX_VERSION:
            raise ChangeRejected(
                f"{current.change_id} cannot take another version; nothing was written",
                [
                    {
                        "path": "version",
                        "message": f"version {current.version} is the last a change can have "
                        f"({MAX_VERSION}); duplicate it to go on",
                    }
                ],
            )
        data = current.to_json_dict()
        data.update(fields or {})
        data.update(
            status=target.value,
            prior_status=current.status.value,
            version=version,
            modifiedAt=now,
            modifiedBy=who,
            writeToken=uuid.uuid4().hex,
        )
        at, by = STAMPS[target]
        data[at], data[by] = now, who
        mod = self._modification(
            kind, now, version=version, from_status=current.status.value, to_status=target.value, **extra
        )
        data["modifications"] = [*data.get("modifications", []), mod]
        return self._validate(data, check_customers=check_customers)

    @staticmethod
    def _check_schedule(change: Change) -> None:
        problems = change.schedule_problems()
        if problems:
            raise ChangeRejected(
                f"cannot submit {change.change_id}",
                [{"path": p.split(":", 1)[0], "message": p.split(":", 1)[1].strip()} for p in problems],
            )

    def _archive_writer(self, result: FanoutResult) -> Callable[[], None]:
        def write() -> None:
            new, previous = result.change, result.previous
            if previous is not None:
                self.store.put_version(previous)
            try:
                if result.archive_etag is None:
                    self.store.create(new)
                else:
                    self.store.update(new, result.archive_etag)
            except ConflictError as exc:
                if not _same_write(exc.current, new):
                    raise
            self.status.index_change(new, location="archive")
            if previous is not None and previous.status is ChangeStatus.DRAFT:
                self.store.delete_draft(new.change_id)

        return write

    def _publish(
        self,
        new: Change,
        event: EmailEvent,
        *,
        previous: Change,
        etag: str | None,
        progress: Progress,
    ) -> FanoutResult:
        result = Fanout.start(
            new,
            event,
            new.customers,
            archive=True,
            archive_etag=etag,
            previous=previous,
            removed=self._removed(previous, new),
        )
        return self.fanout.run(result, archive=self._archive_writer(result), progress=progress)

    def _removed(self, previous: Change, new: Change) -> builtins.list[str]:
        """Customers the archived ``previous`` targeted and ``new`` does not: each gets a trigger too, so
        a worker tells those it had notified that the change no longer affects them (docs/architecture.md).
        A draft was never sent; customers no longer in the config cannot be reached."""
        if previous.status is ChangeStatus.DRAFT:
            return []
        return sorted(
            c for c in set(previous.customers) - set(new.customers) if c in self.config.customer_mappings
        )

    # -- drafts -------------------------------------------------------------------------
    def save_draft(self, change: Change) -> Change:
        """Save to ``drafts/`` (no events). Stamps created (first save) or modified (later saves)."""
        with self.authz.act(
            OperatorAction.CHANGE_DRAFT, change.customers, change_id=change.change_id
        ) as record:
            draft = self._save_draft(change)
            record.update(version=draft.version)
            return draft

    def _save_draft(self, change: Change) -> Change:
        if change.status is not ChangeStatus.DRAFT:
            raise ChangeRejected(
                f"{change.change_id} is {change.status.value}; only drafts are saved as drafts"
            )
        stored = self.store.find(change.change_id)
        if stored is not None:
            raise ChangeRejected(
                f"{change.change_id} is already {stored.change.status.value}; "
                "edit it instead of saving a draft"
            )
        now, who = iso_utc(utcnow()), self.operator
        data = change.to_json_dict()
        if not data.get("createdAt"):
            data.update(createdAt=now, createdBy=who)
            data["modifications"] = [*data.get("modifications", []), self._modification("created", now)]
        else:
            data.update(modifiedAt=now, modifiedBy=who)
        draft = self._validate(data)
        self.store.save_draft(draft)
        self.status.index_change(draft, location="draft")
        return draft

    # -- reading ------------------------------------------------------------------------
    def load(self, change_id: str) -> Change:
        """The archived change, else the draft; ChangeNotFound when neither exists."""
        stored = self.store.find(change_id)
        if stored is not None:
            return stored.change
        try:
            return self.store.load_draft(change_id)
        except ChangeNotFound:
            raise ChangeNotFound(change_id, "archive or drafts") from None

    def list(
        self,
        *,
        status: ChangeStatus | str | None = None,
        customer: str | None = None,
        text: str | None = None,
        start_from: str | None = None,
        start_to: str | None = None,
    ) -> builtins.list[ChangeSummary]:
        """Indexed changes, newest first (reads the status table only, never S3)."""
        return self.status.list_changes(
            status=status, customer=customer, text=text, start_from=start_from, start_to=start_to
        )

    def get_version(self, change_id: str, version: int) -> Change:
        current = self.load(change_id)
        if version == current.version:
            return current
        if version > current.version:
            raise ChangeNotFound(change_id, f"versions (newest is v{current.version})")
        return self.store.get_version(change_id, version)

    def history(self, change_id: str) -> builtins.list[Change]:
        """Every version, oldest first, the current one last."""
        current = self.load(change_id)
        if current.status is ChangeStatus.DRAFT:
            return [current]
        older = [v for v in self.store.versions(change_id) if v.version < current.version]
        return [*older, current]

    def diff(self, change_id: str, a: int, b: int) -> builtins.list[FieldDiff]:
        return diff_changes(self.get_version(change_id, a), self.get_version(change_id, b))

    # -- transitions ----------------------------------------------------------------------
    def submit(
        self,
        change: Change | str,
        *,
        customers: builtins.list[str] | None = None,
        progress: Progress = None,
    ) -> FanoutResult:
        """Submit a draft (object or id). An already archived change is edited/resubmitted instead."""
        if isinstance(change, str):
            stored = self.store.find(change)
            if stored is not None:
                return self._resubmit(stored.change, stored.etag, customers, progress)
            draft = self.store.load_draft(change)
        else:
            if self.store.find(change.change_id) is not None:
                if customers is not None:
                    change = change.model_copy(update={"customers": sorted(set(customers))})
                edited = self._edit_archived(change, _UNSET, progress)
                if isinstance(edited, Change):  # nothing changed: nothing sent
                    return FanoutResult(edited, EVENT_OF_STATUS[edited.status], {})
                return edited
            draft = change
        targets = customers if customers is not None else draft.customers
        with self.authz.act(
            OperatorAction.CHANGE_SUBMIT, targets, change_id=draft.change_id, version=draft.version
        ) as record:
            result = self._submit_draft(draft, customers, progress)
            finish_fanout(record, result)
            return result

    def _submit_draft(
        self, draft: Change, customers: builtins.list[str] | None, progress: Progress
    ) -> FanoutResult:
        if draft.status is not ChangeStatus.DRAFT:
            raise ChangeRejected(
                f"{draft.change_id} says {draft.status.value} but is not in the archive; "
                "only drafts can be submitted"
            )
        if not draft.created_at:
            now = iso_utc(utcnow())
            data = draft.to_json_dict()
            data.update(createdAt=now, createdBy=self.operator)
            data["modifications"] = [*data.get("modifications", []), self._modification("created", now)]
            draft = self._validate(data, check_customers=False)
        fields = {"customers": customers} if customers is not None else None
        new = self._next(draft, ChangeStatus.SUBMITTED, "submitted", fields=fields)
        self._check_schedule(new)
        return self._publish(new, EmailEvent.SUBMITTED, previous=draft, etag=None, progress=progress)

    def _resubmit(
        self, current: Change, etag: str, customers: builtins.list[str] | None, progress: Progress
    ) -> FanoutResult:
        """``submit ID`` of an archived change: approved → submitted (a new approval round)."""
        touched = {*current.customers, *(customers or [])}
        with self.authz.act(
            OperatorAction.CHANGE_SUBMIT, touched, change_id=current.change_id, version=current.version
        ) as record:
            check_transition(current.status, ChangeStatus.SUBMITTED)
            fields = {"customers": customers} if customers is not None else None
            extra = _customers_changed(current, sorted(set(customers))) if customers is not None else {}
            new = self._next(current, ChangeStatus.SUBMITTED, "resubmitted", fields=fields, **extra)
            self._check_schedule(new)
            result = self._publish(new, EmailEvent.SUBMITTED, previous=current, etag=etag, progress=progress)
            finish_fanout(record, result)
            return result

    def _transition(
        self,
        change_id: str,
        target: ChangeStatus,
        expected_version: int | None,
        progress: Progress,
        **extra: Any,
    ) -> FanoutResult:
        action = ACTION_OF_STATUS[target]
        # Read first (a read: anyone with a role), so that a refusal names the change's customers.
        stored = self.store.find(change_id)
        known = stored.change if stored is not None else None
        with self.authz.act(
            action,
            known.customers if known else None,
            change_id=change_id,
            version=known.version if known else expected_version,
        ) as record:
            if stored is None:
                check_transition(self.store.load_draft(change_id).status, target)
                raise ChangeNotFound(change_id, "archive")  # a draft that claims another status
            current = stored.change
            if target is ChangeStatus.APPROVED:
                self.authz.require_distinct_approver(current)
            if expected_version is not None and current.version != expected_version:
                raise ConflictError(change_id, current.modified_by, current.modified_at, current=current)
            check_transition(current.status, target)
            new = self._next(current, target, target.value, check_customers=False, **extra)
            result = self._publish(
                new, EVENT_OF_STATUS[target], previous=current, etag=stored.etag, progress=progress
            )
            finish_fanout(record, result)
            return result

    def approve(
        self, change_id: str, *, progress: Progress = None, expected_version: int | None = None
    ) -> FanoutResult:
        return self._transition(change_id, ChangeStatus.APPROVED, expected_version, progress)

    def complete(
        self, change_id: str, *, progress: Progress = None, expected_version: int | None = None
    ) -> FanoutResult:
        return self._transition(change_id, ChangeStatus.COMPLETED, expected_version, progress)

    def cancel(
        self,
        change_id: str,
        *,
        progress: Progress = None,
        expected_version: int | None = None,
        reason: str | None = None,
    ) -> FanoutResult:
        """``reason``: why, kept in the cancellation's modification (``reason``) and told in the notice."""
        extra = {"reason": clean_reason(reason)} if reason and reason.strip() else {}
        return self._transition(change_id, ChangeStatus.CANCELLED, expected_version, progress, **extra)

    def edit(
        self, change: Change, *, progress: Progress = None, expected_version: int | None = _UNSET
    ) -> FanoutResult | Change:
        """Draft: saved. Submitted/approved: a new submitted version and a new approval round.

        Refused with ConflictError unless the archive is still at ``expected_version`` (default:
        ``change.version``, i.e. the version the edit started from; None skips the check). An edit
        that changes nothing returns the current change unchanged.
        """
        if self.store.find(change.change_id) is None:
            if change.status is not ChangeStatus.DRAFT:
                raise ChangeNotFound(change.change_id, "archive")
            return self.save_draft(change)
        return self._edit_archived(change, expected_version, progress)

    def _edit_archived(
        self, change: Change, expected_version: int | None, progress: Progress
    ) -> FanoutResult | Change:
        with self.authz.act(
            OperatorAction.CHANGE_EDIT, change.customers, change_id=change.change_id, version=change.version
        ) as record:
            stored = self.store.get(change.change_id)
            current = stored.change
            record.check({*current.customers, *change.customers}, version=current.version)
            expected = change.version if expected_version is _UNSET else expected_version
            if expected is not None and current.version != expected:
                raise ConflictError(
                    change.change_id, current.modified_by, current.modified_at, current=current
                )
            if current.status is not ChangeStatus.SUBMITTED:
                check_transition(current.status, ChangeStatus.SUBMITTED)
            before, after = user_fields(current), user_fields(change)
            changed = sorted(k for k in set(before) | set(after) if k in after and before.get(k) != after[k])
            if not changed:
                record.finish(OK, detail="nothing changed, nothing sent")
                return current
            added = _customers_changed(current, after.get("customers", current.customers)).get(
                "added_customers"
            )
            new = self._next(
                current,
                ChangeStatus.SUBMITTED,
                "edited",
                fields=after,
                changed_fields=changed,
                **({"added_customers": added} if added else {}),
            )
            self._check_schedule(new)
            result = self._publish(
                new, EmailEvent.SUBMITTED, previous=current, etag=stored.etag, progress=progress
            )
            finish_fanout(record, result)
            record.update(changed_fields=changed)
            return result

    def retry(self, result: FanoutResult, *, progress: Progress = None) -> FanoutResult:
        """Send again only what is not done: a failed archive (then every customer) or failed customers."""
        change = result.change
        with self.authz.act(
            OperatorAction.CHANGE_RESEND,
            result.customers,
            name="change.retry",
            change_id=change.change_id,
            version=change.version,
        ) as record:
            archive_failed = result.states.get(ARCHIVE) not in (None, DestinationState.DONE)
            writer = self._archive_writer(result) if archive_failed else None
            retried = self.fanout.run(result, archive=writer, progress=progress)
            finish_fanout(record, retried)
            return retried

    def resend(
        self, change_id: str, *, customers: builtins.list[str] | None = None, progress: Progress = None
    ) -> FanoutResult:
        """Re-send the current version's event to ``customers`` (default: all of the change's).

        Safe to repeat: delivery records keep their progress and the worker sends each email once.
        """
        with self.authz.act(OperatorAction.CHANGE_RESEND, customers, change_id=change_id) as record:
            current = self.store.get(change_id).change
            targets = sorted(set(customers)) if customers else current.customers
            record.check(targets, version=current.version)
            if current.status is ChangeStatus.DRAFT:
                raise ChangeRejected(f"{change_id} is a draft; nothing was sent")
            unknown = [c for c in targets if c not in current.customers]
            if unknown:
                raise ChangeRejected(
                    f"{change_id} does not target {', '.join(unknown)}",
                    [{"path": "customers", "message": f"not targeted by the change: {', '.join(unknown)}"}],
                )
            started = Fanout.start(current, EVENT_OF_STATUS[current.status], targets, archive=False)
            result = self.fanout.run(started, progress=progress)
            finish_fanout(record, result)
            return result

    # -- other operations -------------------------------------------------------------
    def duplicate(self, change_id: str) -> Change:
        """A new draft with the same content (new id, version 1, only created stamps)."""
        with self.authz.act(
            OperatorAction.CHANGE_DRAFT, name="change.duplicate", duplicated_from=change_id
        ) as record:
            source = self.load(change_id)
            record.check(source.customers)
            copy = self._duplicate(source)
            record.update(change_id=copy.change_id, version=copy.version)
            return copy

    def _duplicate(self, source: Change) -> Change:
        change_id = source.change_id
        now = iso_utc(utcnow())
        data = user_fields(source)
        data.update(
            changeId=new_change_id(),
            status=ChangeStatus.DRAFT.value,
            version=1,
            createdAt=now,
            createdBy=self.operator,
            modifications=[self._modification("created", now, duplicated_from=change_id)],
        )
        copy = self._validate(data, check_customers=False)
        self.store.save_draft(copy)
        self.status.index_change(copy, location="draft")
        return copy

    def delete(self, change_id: str) -> None:
        """Soft delete (to ``deleted/``) a draft or cancelled change; NotDeletable otherwise."""
        with self.authz.act(OperatorAction.CHANGE_DELETE, change_id=change_id) as record:
            stored = self.store.find(change_id)
            change = stored.change if stored else self.store.load_draft(change_id)
            record.check(change.customers, version=change.version)
            if change.status not in DELETABLE:
                raise NotDeletable(change)
            now = iso_utc(utcnow())
            data = change.to_json_dict()
            data.update(deletedAt=now, deletedBy=self.operator)
            data["modifications"] = [*data.get("modifications", []), self._modification("deleted", now)]
            deleted = self._validate(data, check_customers=False)
            self.store.soft_delete(deleted, from_archive=stored is not None)
            self.status.unindex_change(change_id)

    def reindex(self) -> int:
        """Rebuild the change index from S3 (``services/migration.Reindexer``); changes now indexed."""
        report = Reindexer(self.store, self.status, authz=self.authz).run()
        return len(report.indexed) + len(report.unchanged)
