"""ChangeService: drafts, transitions with who/when, versions, conflicts, listing, history."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pydantic import ValidationError

from changeconsole.models import (
    TRANSITIONS,
    Change,
    ChangeStatus,
    DeliveryState,
    EmailEvent,
    IllegalTransition,
    trigger_key,
)
from changeconsole.services.changes import ChangeNotFound, ConflictError
from changeconsole.services.fanout import FanoutResult
from changeconsole.services.ledger import Ledger
from changeconsole.services.lifecycle import ChangeRejected, ChangeService, NotDeletable
from changeconsole.services.status import DeliveryKey
from changeconsole.services.waiting import WaitTimeout, reconciling, wait_for_final
from support.aws import audit_events, bucket_keys, data_keys
from support.changes import END, START, make_change, triggers_by_customer


@pytest.fixture
def stack(make_stack):
    return make_stack(customers=4, contacts=0)


@pytest.fixture
def codes(stack) -> list[str]:
    return sorted(stack.config.customer_mappings)


@pytest.fixture
def svc(stack, aws_factory) -> ChangeService:
    return ChangeService(aws_factory, stack.config, operator="alice")


def as_result(value: FanoutResult | Change) -> FanoutResult:
    assert isinstance(value, FanoutResult), value
    return value


def in_state(svc: ChangeService, codes: list[str], status: ChangeStatus) -> Change:
    """A change brought to ``status`` through the service."""
    change = svc.save_draft(make_change(codes[:2]))
    path = {
        ChangeStatus.DRAFT: [],
        ChangeStatus.SUBMITTED: [svc.submit],
        ChangeStatus.APPROVED: [svc.submit, svc.approve],
        ChangeStatus.COMPLETED: [svc.submit, svc.approve, svc.complete],
        ChangeStatus.CANCELLED: [svc.submit, svc.cancel],
    }[status]
    for step in path:
        result: Any = step(change.change_id)
        assert result.ok, result.errors
        change = result.change
    assert change.status is status
    return change


def test_draft_save_stamps_indexes_and_sends_nothing(svc, stack, aws_factory, codes) -> None:
    draft = svc.save_draft(make_change(codes[:2]))
    assert (draft.created_by, draft.version, draft.status) == ("alice", 1, ChangeStatus.DRAFT)
    assert draft.created_at and draft.modified_at is None and draft.submitted_at is None
    assert [m.modification_type for m in draft.modifications] == ["created"]
    again = svc.save_draft(draft.model_copy(update={"title": "Renamed"}))
    assert again.modified_by == "alice" and again.created_at == draft.created_at
    assert len(again.modifications) == 1
    assert svc.load(draft.change_id).title == "Renamed"
    summary = svc.status.get_summary(draft.change_id)
    assert summary is not None and summary.location == "draft" and summary.title == "Renamed"
    assert bucket_keys(aws_factory, stack.config, "customers/") == []
    assert bucket_keys(aws_factory, stack.config, "archive/") == []
    assert all(not t for t in triggers_by_customer(aws_factory, stack.config, {}).values())


def test_operator_defaults_to_env_then_sts(stack, aws_factory, monkeypatch) -> None:
    monkeypatch.setenv("CHANGECONSOLE_OPERATOR", "dana")
    assert ChangeService(aws_factory, stack.config).operator == "dana"
    monkeypatch.delenv("CHANGECONSOLE_OPERATOR")
    assert ChangeService(aws_factory, stack.config).operator == aws_factory.operator_identity()


def test_submit_stamps_versions_and_moves_draft_to_archive(svc, stack, aws_factory, codes) -> None:
    draft = svc.save_draft(make_change(codes[:2]))
    result = svc.submit(draft.change_id)
    assert result.ok and result.event is EmailEvent.SUBMITTED
    new = result.change
    assert (new.status, new.prior_status, new.version) == (ChangeStatus.SUBMITTED, ChangeStatus.DRAFT, 2)
    assert new.submitted_by == "alice" and new.submitted_at == new.modified_at
    assert new.created_at == draft.created_at
    last = new.modifications[-1]
    assert (last.modification_type, last.user_id, last.timestamp) == ("submitted", "alice", new.submitted_at)
    cid = draft.change_id
    keys = bucket_keys(aws_factory, stack.config)
    assert f"archive/{cid}.json" in keys and f"versions/{cid}/v1.json" in keys
    assert f"drafts/{cid}.json" not in keys
    summary = svc.status.get_summary(cid)
    assert summary is not None and (summary.location, summary.status, summary.version) == (
        "archive",
        ChangeStatus.SUBMITTED,
        2,
    )


def test_submit_needs_dates_and_known_customers_and_writes_nothing(svc, stack, aws_factory, codes) -> None:
    undated = make_change(codes[:1], implementationStart=None, implementationEnd=None)
    with pytest.raises(ChangeRejected) as err:
        svc.submit(undated)
    assert {p["path"] for p in err.value.problems} == {"implementationStart", "implementationEnd"}
    unknown = make_change(["acme", "nobody-here"])
    with pytest.raises(ValidationError, match="nobody-here"):
        svc.submit(unknown)
    with pytest.raises(ValidationError, match="not-a-customer"):
        svc.submit(make_change(codes[:1]), customers=["not-a-customer"])
    # Nothing but the audit records of the three rejected submissions.
    assert data_keys(aws_factory, stack.config) == []
    rejected = [e for e in audit_events(aws_factory, stack.config) if e["result"] == "rejected"]
    assert [e["action"] for e in rejected] == ["change.submit"] * 3
    assert svc.list() == []


def test_full_lifecycle_versions_history_and_diff(svc, codes) -> None:
    bob = ChangeService(svc.aws, svc.config, operator="bob")
    approved = in_state(svc, codes, ChangeStatus.SUBMITTED)
    result = bob.approve(approved.change_id)
    assert result.event is EmailEvent.APPROVED
    assert (result.change.version, result.change.approved_by) == (3, "bob")
    done = svc.complete(approved.change_id).change
    assert (done.version, done.status, done.completed_by, done.prior_status) == (
        4,
        ChangeStatus.COMPLETED,
        "alice",
        ChangeStatus.APPROVED,
    )
    assert done.submitted_by == "alice" and done.approved_by == "bob"
    history = svc.history(done.change_id)
    assert [(c.version, c.status.value) for c in history] == [
        (1, "draft"),
        (2, "submitted"),
        (3, "approved"),
        (4, "completed"),
    ]
    assert [m.modification_type for m in done.modifications] == [
        "created",
        "submitted",
        "approved",
        "completed",
    ]
    diffs = {d.field: d for d in svc.diff(done.change_id, 2, 3)}
    assert diffs["status"].old == "submitted" and diffs["status"].new == "approved"
    assert diffs["approvedBy"].new == "bob" and diffs["version"].new == 3
    assert svc.get_version(done.change_id, 2).status is ChangeStatus.SUBMITTED
    with pytest.raises(ChangeNotFound):
        svc.get_version(done.change_id, 5)


@pytest.mark.parametrize("start", list(ChangeStatus))
def test_every_illegal_transition_is_refused(svc, start: ChangeStatus, codes, stack, aws_factory) -> None:
    change = in_state(svc, codes, start)
    actions: dict[ChangeStatus, Callable[[str], object]] = {
        ChangeStatus.SUBMITTED: svc.submit,
        ChangeStatus.APPROVED: svc.approve,
        ChangeStatus.COMPLETED: svc.complete,
        ChangeStatus.CANCELLED: svc.cancel,
    }
    before = data_keys(aws_factory, stack.config)
    illegal = [t for t in actions if t not in TRANSITIONS[start]]
    assert illegal, "every state has at least one illegal target"
    for target in illegal:
        with pytest.raises(IllegalTransition) as err:
            actions[target](change.change_id)
        allowed = sorted(s.value for s in TRANSITIONS[start])
        assert err.value.allowed == allowed
        assert f"allowed from {start.value}: {', '.join(allowed) or 'none (final state)'}" in str(err.value)
    assert data_keys(aws_factory, stack.config) == before
    audited = [e for e in audit_events(aws_factory, stack.config) if e.get("change_id") == change.change_id]
    assert [e["result"] for e in audited].count("rejected") == len(illegal)
    assert svc.load(change.change_id).version == change.version


def test_edit_of_approved_change_returns_it_to_submitted(svc, stack, aws_factory, codes) -> None:
    approved = in_state(svc, codes, ChangeStatus.APPROVED)
    edited = as_result(svc.edit(approved.model_copy(update={"title": "New title", "customers": codes[:3]})))
    new = edited.change
    assert (new.status, new.prior_status, new.version, new.title) == (
        ChangeStatus.SUBMITTED,
        ChangeStatus.APPROVED,
        4,
        "New title",
    )
    assert edited.event is EmailEvent.SUBMITTED and edited.customers == codes[:3]
    assert new.approved_at == approved.approved_at  # kept: a later cancellation goes to the announce list
    assert new.submitted_at == new.modified_at
    last = new.modifications[-1]
    assert last.modification_type == "edited"
    assert (last.model_extra or {})["changed_fields"] == ["changeTitle", "customers"]
    keys = bucket_keys(aws_factory, stack.config, "customers/")
    for code in codes[:3]:
        assert trigger_key(code, new.change_id, 4, EmailEvent.SUBMITTED) in keys
    # An edit of a submitted change stays submitted, one more version.
    again = as_result(svc.edit(new.model_copy(update={"test_plan": "smoke tests"})))
    assert (again.change.status, again.change.version) == (ChangeStatus.SUBMITTED, 5)
    # Nothing changed: nothing written.
    same = svc.edit(again.change)
    assert isinstance(same, Change) and same.version == 5


def test_edit_of_draft_saves_it_and_of_final_change_is_refused(svc, codes) -> None:
    draft = svc.save_draft(make_change(codes[:1]))
    saved = svc.edit(draft.model_copy(update={"title": "Still a draft"}))
    assert isinstance(saved, Change) and svc.load(draft.change_id).title == "Still a draft"
    done = in_state(svc, codes, ChangeStatus.COMPLETED)
    with pytest.raises(IllegalTransition, match="none \\(final state\\)"):
        svc.edit(done.model_copy(update={"title": "too late"}))


def test_stale_edit_is_refused_naming_who_and_when(svc, codes) -> None:
    loaded = in_state(svc, codes, ChangeStatus.SUBMITTED)  # alice holds v2
    bob = ChangeService(svc.aws, svc.config, operator="bob")
    approved = bob.approve(loaded.change_id).change
    with pytest.raises(ConflictError) as err:
        svc.edit(loaded.model_copy(update={"title": "alice's late edit"}))
    assert (err.value.modified_by, err.value.modified_at) == ("bob", approved.modified_at)
    assert "bob" in str(err.value) and str(approved.modified_at) in str(err.value)
    current = svc.load(loaded.change_id)
    assert (current.version, current.title, current.status) == (3, loaded.title, ChangeStatus.APPROVED)
    with pytest.raises(ConflictError, match="bob"):
        svc.cancel(loaded.change_id, expected_version=2)


def test_concurrent_writer_loses_with_conflict_not_overwrite(svc, codes, stack, aws_factory) -> None:
    """Bob writes between alice's read and her conditional put: alice gets a ConflictError, no triggers."""
    change = in_state(svc, codes, ChangeStatus.SUBMITTED)
    bob = ChangeService(svc.aws, svc.config, operator="bob")
    archive_key = f"archive/{change.change_id}.json"
    fired: list[bool] = []

    def interleave(params: dict[str, Any], **_: Any) -> None:
        if params.get("Key") == archive_key and not fired:
            fired.append(True)
            bob.cancel(change.change_id)

    s3 = aws_factory.client("s3")
    s3.meta.events.register("provide-client-params.s3.PutObject", interleave)
    try:
        with pytest.raises(ConflictError) as err:
            svc.approve(change.change_id)
    finally:
        s3.meta.events.unregister("provide-client-params.s3.PutObject", interleave)
    assert fired and err.value.modified_by == "bob"
    current = svc.load(change.change_id)
    assert (current.status, current.cancelled_by, current.version) == (ChangeStatus.CANCELLED, "bob", 3)
    approved_triggers = [k for k in bucket_keys(aws_factory, stack.config, "customers/") if "approved" in k]
    assert approved_triggers == []


def test_duplicate_makes_a_fresh_draft(svc, codes) -> None:
    source = in_state(svc, codes, ChangeStatus.APPROVED)
    copy = ChangeService(svc.aws, svc.config, operator="carol").duplicate(source.change_id)
    assert copy.change_id != source.change_id
    assert (copy.status, copy.version, copy.created_by) == (ChangeStatus.DRAFT, 1, "carol")
    stamps = [
        copy.modified_at,
        copy.submitted_at,
        copy.approved_at,
        copy.completed_at,
        copy.cancelled_at,
        copy.prior_status,
    ]
    assert stamps == [None] * len(stamps)
    assert (copy.title, copy.customers, copy.implementation_plan) == (
        source.title,
        source.customers,
        source.implementation_plan,
    )
    assert svc.load(copy.change_id) == copy
    summary = svc.status.get_summary(copy.change_id)
    assert summary is not None and summary.location == "draft"


def test_delete_only_drafts_and_cancelled(svc, codes, stack, aws_factory) -> None:
    draft = svc.save_draft(make_change(codes[:1]))
    svc.delete(draft.change_id)
    with pytest.raises(ChangeNotFound):
        svc.load(draft.change_id)
    assert svc.status.get_summary(draft.change_id) is None
    assert svc.store.get_deleted(draft.change_id).model_extra["deletedBy"] == "alice"  # type: ignore[index]
    submitted = in_state(svc, codes, ChangeStatus.SUBMITTED)
    with pytest.raises(NotDeletable, match="only cancelled, draft"):
        svc.delete(submitted.change_id)
    svc.cancel(submitted.change_id)
    svc.delete(submitted.change_id)
    assert f"archive/{submitted.change_id}.json" not in bucket_keys(aws_factory, stack.config, "archive/")
    assert svc.list() == []


def test_listing_and_search_filters(svc, codes) -> None:
    a = svc.save_draft(make_change(codes[:1], changeTitle="Upgrade Kafka brokers"))
    b = svc.submit(
        make_change(
            codes[1:3],
            changeTitle="Patch kernel",
            snowTicket="CHG0099",
            implementationStart="2030-05-10T08:00:00Z",
            implementationEnd="2030-05-10T09:00:00Z",
        )
    ).change
    c = in_state(svc, codes, ChangeStatus.APPROVED)

    def ids(**kw: Any) -> set[str]:
        return {s.change_id for s in svc.list(**kw)}

    assert ids() == {a.change_id, b.change_id, c.change_id}
    assert ids(status="draft") == {a.change_id}
    assert ids(status=ChangeStatus.APPROVED) == {c.change_id}
    assert ids(customer=codes[2]) == {b.change_id}
    assert ids(customer=codes[0]) == {a.change_id, c.change_id}
    assert ids(text="KAFKA") == {a.change_id}
    assert ids(text="chg0099") == {b.change_id}
    assert ids(start_from="2030-05-01T00:00:00Z") == {b.change_id}
    assert ids(start_to="2030-04-01T00:00:00Z") == {a.change_id, c.change_id}
    assert ids(start_from=START, start_to=START) == {a.change_id, c.change_id}
    assert END > START
    newest_first = [s.change_id for s in svc.list()]
    assert newest_first[0] == c.change_id


def test_reindex_rebuilds_the_index_from_s3(svc, codes) -> None:
    draft = svc.save_draft(make_change(codes[:1]))
    submitted = in_state(svc, codes, ChangeStatus.SUBMITTED)
    for cid in (draft.change_id, submitted.change_id):
        svc.status.unindex_change(cid)
    assert svc.list() == []
    assert svc.reindex() == 2
    rows = {s.change_id: s for s in svc.list()}
    assert rows[draft.change_id].location == "draft"
    assert rows[submitted.change_id].status is ChangeStatus.SUBMITTED


def test_wait_for_final_returns_final_records_or_times_out_naming_pending(svc, codes) -> None:
    result = svc.submit(make_change(codes[:3]))
    cid, version = result.change.change_id, result.change.version
    updates: list[list[str]] = []

    def seen(records: list[Any]) -> None:
        updates.append([r.state.value for r in records])

    with pytest.raises(WaitTimeout) as err:
        wait_for_final(svc.status, cid, version, EmailEvent.SUBMITTED, codes[:3], timeout=0, on_update=seen)
    assert err.value.pending == codes[:3] and updates == [["queued"] * 3]
    for code, state in zip(
        codes[:3], (DeliveryState.SENT, DeliveryState.FAILED, DeliveryState.SENT), strict=True
    ):
        svc.status.update(DeliveryKey(cid, version, EmailEvent.SUBMITTED, code), state=state)
    records = wait_for_final(
        svc.status, cid, version, EmailEvent.SUBMITTED, codes[:3], timeout=5, on_update=seen
    )
    assert [(r.customer, r.state.value) for r in records] == list(
        zip(codes[:3], ["sent", "failed", "sent"], strict=True)
    )
    assert updates[-1] == ["sent", "failed", "sent"]
    with pytest.raises(WaitTimeout) as missing:
        wait_for_final(svc.status, cid, version, EmailEvent.SUBMITTED, [*codes[:3], codes[3]], timeout=0)
    assert missing.value.pending == [codes[3]]  # never queued: not final


def test_a_partial_awaiting_the_reconciler_is_not_final_yet(svc, stack, aws_factory, codes) -> None:
    result = svc.submit(make_change(codes[:2]))
    cid, version = result.change.change_id, result.change.version
    partial, sent = (DeliveryKey(cid, version, EmailEvent.SUBMITTED, c) for c in codes[:2])
    svc.status.update(partial, state=DeliveryState.PARTIAL)
    svc.status.update(sent, state=DeliveryState.SENT)
    ledger = Ledger(aws_factory, stack.config)
    ledger.note_unknown(partial, due_at=0.0)  # unknown recipients: their event or a resend settles them
    settling = reconciling(ledger, cid, version, EmailEvent.SUBMITTED)
    with pytest.raises(WaitTimeout) as err:
        wait_for_final(
            svc.status, cid, version, EmailEvent.SUBMITTED, codes[:2], timeout=0, settling=settling
        )
    assert err.value.pending == [codes[0]]
    (item,) = ledger.reconciles()
    assert ledger.drop_reconcile(item)  # held for an operator (or settled): final now
    records = wait_for_final(
        svc.status, cid, version, EmailEvent.SUBMITTED, codes[:2], timeout=0, settling=settling
    )
    assert [r.state for r in records] == [DeliveryState.PARTIAL, DeliveryState.SENT]


def test_a_cancellation_keeps_its_reason_in_the_modification(svc, codes) -> None:
    change = in_state(svc, codes, ChangeStatus.APPROVED)
    result = svc.cancel(change.change_id, reason="Vendor postponed\nthe firmware", expected_version=3)
    current = svc.load(change.change_id)
    assert result.change.version == current.version == 4
    last = current.modifications[-1]
    assert last.modification_type == "cancelled" and last.user_id == "alice"
    assert (last.model_extra or {})["reason"] == "Vendor postponed the firmware"  # one line
    assert current.cancel_reason == "Vendor postponed the firmware"
    other = in_state(svc, codes, ChangeStatus.SUBMITTED)
    svc.cancel(other.change_id)  # scripts may give none
    assert svc.load(other.change_id).cancel_reason is None
