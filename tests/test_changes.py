"""ChangeStore (S3 documents with ETag preconditions), autosave and field diffs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from changeconsole.config import data_dir
from changeconsole.models import ChangeStatus
from changeconsole.services.autosave import AutosaveStore
from changeconsole.services.changes import ChangeNotFound, ChangeStore, ConflictError
from changeconsole.services.history import diff_changes
from support.aws import bucket_keys
from support.changes import make_change


@pytest.fixture
def stack(make_stack):
    return make_stack(customers=3, contacts=0)


@pytest.fixture
def store(stack, aws_factory) -> ChangeStore:
    return ChangeStore(aws_factory, stack.config)


def test_moto_honours_put_object_preconditions(stack, aws_factory) -> None:
    """The whole conflict design rests on S3 conditional writes; fail loudly if the stand-in ignores them."""
    s3 = aws_factory.client("s3")
    bucket = stack.config.s3_config.bucket_name
    etag = s3.put_object(Bucket=bucket, Key="probe.json", Body=b"1", IfNoneMatch="*")["ETag"]
    with pytest.raises(ClientError) as none_match:
        s3.put_object(Bucket=bucket, Key="probe.json", Body=b"2", IfNoneMatch="*")
    assert none_match.value.response["Error"]["Code"] == "PreconditionFailed", (
        "moto ignored If-None-Match on PutObject"
    )
    with pytest.raises(ClientError) as match:
        s3.put_object(Bucket=bucket, Key="probe.json", Body=b"2", IfMatch='"0123456789abcdef"')
    assert match.value.response["Error"]["Code"] == "PreconditionFailed", "moto ignored If-Match on PutObject"
    s3.put_object(Bucket=bucket, Key="probe.json", Body=b"3", IfMatch=etag)
    assert s3.get_object(Bucket=bucket, Key="probe.json")["Body"].read() == b"3"


def test_drafts_save_load_list_delete(store: ChangeStore, stack) -> None:
    codes = sorted(stack.config.customer_mappings)
    a, b = make_change(codes[:1]), make_change(codes[1:])
    store.save_draft(a)
    store.save_draft(b)
    assert store.list_drafts() == sorted([a.change_id, b.change_id])
    assert store.load_draft(a.change_id) == a
    store.delete_draft(a.change_id)
    assert store.list_drafts() == [b.change_id]
    with pytest.raises(ChangeNotFound, match=a.change_id):
        store.load_draft(a.change_id)


def test_archive_create_is_conditional(store: ChangeStore, stack) -> None:
    change = make_change(["acme"], modifiedBy="alice", modifiedAt="2030-01-01T10:00:00Z")
    store.create(change)
    rival = change.model_copy(update={"modified_by": "bob"})
    with pytest.raises(ConflictError) as err:
        store.create(rival)
    assert err.value.modified_by == "alice"
    assert err.value.modified_at == "2030-01-01T10:00:00Z"
    assert "alice" in str(err.value) and "2030-01-01T10:00:00Z" in str(err.value)
    assert store.get(change.change_id).change.modified_by == "alice"


def test_archive_update_needs_current_etag(store: ChangeStore) -> None:
    v1 = make_change(["acme"], status="submitted", version=2, modifiedBy="alice")
    etag1 = store.create(v1)
    v2 = v1.model_copy(update={"version": 3, "modified_by": "bob", "modified_at": "2030-01-02T08:00:00Z"})
    etag2 = store.update(v2, etag1)
    assert etag2 != etag1
    stale = v1.model_copy(update={"version": 3, "modified_by": "carol"})
    with pytest.raises(ConflictError) as err:
        store.update(stale, etag1)
    assert (err.value.modified_by, err.value.modified_at) == ("bob", "2030-01-02T08:00:00Z")
    assert err.value.current is not None and err.value.current.version == 3
    stored = store.get(v1.change_id)
    assert stored.change.modified_by == "bob" and stored.etag == etag2


def test_versions_and_soft_delete(store: ChangeStore, aws_factory, stack) -> None:
    base = make_change(["acme"])
    for n in (1, 2, 10):
        store.put_version(base.model_copy(update={"version": n}))
    assert store.version_numbers(base.change_id) == [1, 2, 10]
    assert [c.version for c in store.versions(base.change_id)] == [1, 2, 10]
    with pytest.raises(ChangeNotFound):
        store.get_version(base.change_id, 3)
    cancelled = base.model_copy(update={"status": ChangeStatus.CANCELLED, "version": 11})
    store.create(cancelled)
    store.soft_delete(cancelled, from_archive=True)
    assert store.find(base.change_id) is None
    assert store.get_deleted(base.change_id).version == 11
    assert f"deleted/{base.change_id}.json" in bucket_keys(aws_factory, stack.config, "deleted/")


# -- autosave (local, no AWS) --------------------------------------------------------------------


async def test_autosave_round_trip_async() -> None:
    store = AutosaveStore()
    assert store.directory == data_dir() / "autosave"
    raw = {"changeTitle": "", "customers": ["not a code!"], "implementationStart": "tomorrow"}
    await store.save("new-1", raw)
    assert await store.load("new-1") == raw
    await store.save("new-1", {**raw, "changeTitle": "second"})
    assert (await store.load("new-1") or {})["changeTitle"] == "second"
    assert await store.load("missing") is None
    assert [e.key for e in store.list()] == ["new-1"]
    assert store.delete("new-1") is True
    assert store.delete("new-1") is False
    assert store.list() == []


def test_autosave_sync_twins_and_odd_keys(tmp_path: Path) -> None:
    store = AutosaveStore(tmp_path / "auto")
    change = make_change(["acme"])
    store.save_sync(change.change_id, change)
    store.save_sync("../escape/attempt", {"x": 1})
    assert store.load_sync(change.change_id) == change.to_json_dict()
    assert store.load_sync("../escape/attempt") == {"x": 1}
    assert sorted(e.key for e in store.list()) == sorted([change.change_id, "../escape/attempt"])
    assert all(p.parent == tmp_path / "auto" for p in (tmp_path / "auto").iterdir())
    assert not list((tmp_path / "auto").glob("*.tmp"))
    (tmp_path / "auto" / "broken.json").write_text("{not json", encoding="utf-8")
    assert store.load_sync("broken") is None
    assert json.loads(store.path(change.change_id).read_text())["key"] == change.change_id


# -- diff ----------------------------------------------------------------------------------------


def test_diff_changes_fields_and_unified_long_text() -> None:
    a = make_change(["acme"], version=2, status="submitted")
    plan = a.implementation_plan.replace("2. Switch listeners", "2. Switch listeners one by one")
    b = a.model_copy(
        update={
            "version": 3,
            "title": "Rotate TLS certificates (phase 2)",
            "implementation_plan": plan,
            "customers": ["acme", "globex"],
        }
    )
    diffs = {d.field: d for d in diff_changes(a, b)}
    assert set(diffs) == {"changeTitle", "implementationPlan", "customers", "version"}
    assert diffs["changeTitle"].unified is None
    assert diffs["customers"].old == ["acme"] and diffs["customers"].new == ["acme", "globex"]
    unified = diffs["implementationPlan"].unified or ""
    assert "--- v2/implementationPlan" in unified and "+++ v3/implementationPlan" in unified
    assert "-2. Switch listeners" in unified and "+2. Switch listeners one by one" in unified
    assert diff_changes(a, a) == []
