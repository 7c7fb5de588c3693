"""LiveStatusQuery (services/live_status.py): a poll reads only what changed, follows newer rounds,
and the periodic full read catches whatever the index missed (against the moto server)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from changeconsole.models import Change, DeliveryState, EmailEvent
from changeconsole.services.aws import AwsFactory
from changeconsole.services.live_status import LiveStatusQuery, stamp_minus
from changeconsole.services.provision import Provisioner, TableSpec, table_definition
from changeconsole.services.status import DeliveryKey, StampedRecord, StatusStore, change_stamp

CID = "CHG-2026-11-27T19-00-00-abc123"
EARLIER = datetime(2026, 11, 27, 19, 0, 0, tzinfo=UTC)  # well before the overlap window of "now"


class CountingStore(StatusStore):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[tuple[str, Any]] = []

    def latest_round(self, change_id: str) -> Any:
        self.calls.append(("latest_round", None))
        return super().latest_round(change_id)

    def records(self, change_id: str, *, version: int | None = None, event: EmailEvent | None = None) -> Any:
        self.calls.append(("records", (version, event)))
        return super().records(change_id, version=version, event=event)

    def stamped_records(
        self, change_id: str, *, version: int | None = None, event: EmailEvent | None = None
    ) -> Any:
        self.calls.append(("stamped_records", (version, event)))
        return super().stamped_records(change_id, version=version, event=event)

    def changed_since(self, change_id: str, after: str, *, known: Any = None) -> Any:
        self.calls.append(("changed_since", after))
        return super().changed_since(change_id, after, known=known)


class DynamoSpy:
    """Every DynamoDB call the client makes, with how many items it returned (a botocore hook)."""

    def __init__(self, aws: AwsFactory) -> None:
        self.calls: list[tuple[str, str | None, int]] = []
        self._index: str | None = None
        events = aws.client("dynamodb").meta.events
        events.register("before-parameter-build.dynamodb", self._before)
        events.register("after-call.dynamodb", self._after)

    def _before(self, params: Any = None, **_: Any) -> None:
        self._index = (params or {}).get("IndexName")

    def _after(self, model: Any = None, parsed: Any = None, **_: Any) -> None:
        items = (
            len(parsed.get("Items", [])) + (1 if "Item" in parsed else 0) if isinstance(parsed, dict) else 0
        )
        self.calls.append((model.name, self._index, items))

    def take(self) -> list[tuple[str, str | None, int]]:
        out, self.calls = self.calls, []
        return out


def seed_round(
    store: StatusStore, n: int, *, version: int = 2, event: EmailEvent = EmailEvent.APPROVED
) -> None:
    """``n`` queued records written a while ago (outside the overlap window of the next writes)."""
    store.clock = lambda: EARLIER
    try:
        for i in range(n):
            store.update(DeliveryKey(CID, version, event, f"c{i:03d}"), state=DeliveryState.QUEUED)
    finally:
        store.clock = None


def test_a_poll_after_one_record_changes_reads_only_that_record(
    make_stack: Any, aws_factory: AwsFactory
) -> None:
    stack = make_stack(customers=2, contacts=1)
    store = StatusStore(aws_factory, stack.config)
    seed_round(store, 60)
    spy = DynamoSpy(aws_factory)
    query = LiveStatusQuery(store, CID, full_every=100)

    first = query.poll()
    assert first.full and first.changed is None and len(first.records) == 60
    assert sum(items for _, _, items in spy.take()) == 60  # the full read

    store.update(DeliveryKey(CID, 2, EmailEvent.APPROVED, "c007"), state=DeliveryState.SENT, attempts=1)
    spy.take()
    second = query.poll()
    assert spy.take() == [("Query", "gsi3", 1)]  # one index query, one item
    assert not second.full and second.items == 1
    assert second.changed == {"c007"}
    assert len(second.records) == 60
    assert second.by_customer["c007"].state is DeliveryState.SENT
    assert second.by_customer["c008"] is first.by_customer["c008"]  # the rest is kept, not re-read

    # Nothing new: the overlap window re-reads the one recent write, which is known and skipped.
    third = query.poll()
    assert [(op, index) for op, index, _ in spy.take()] == [("Query", "gsi3")]
    assert third.changed == set()
    assert third.by_customer["c007"] is second.by_customer["c007"]
    assert query.full_reads == 1


def test_an_update_the_index_misses_is_caught_by_the_periodic_full_read(
    make_stack: Any, aws_factory: AwsFactory
) -> None:
    stack = make_stack(customers=2, contacts=1)
    store = StatusStore(aws_factory, stack.config)
    seed_round(store, 5)
    query = LiveStatusQuery(store, CID, full_every=3)
    assert query.poll().full  # poll 1

    # A write the index never shows (an older writer without gsi3/rev, or an index that lags):
    # the base table changes, gsi3sk does not.
    aws_factory.client("dynamodb").update_item(
        TableName=stack.config.status_table_name,
        Key=DeliveryKey(CID, 2, EmailEvent.APPROVED, "c003").item_key(),
        UpdateExpression="SET #s = :s",
        ExpressionAttributeNames={"#s": "state"},
        ExpressionAttributeValues={":s": {"S": "failed"}},
    )
    missed = query.poll()  # poll 2: a delta read, which cannot see it
    assert not missed.full
    assert missed.by_customer["c003"].state is DeliveryState.QUEUED
    assert missed.changed == set()

    caught = query.poll()  # poll 3: the full read
    assert caught.full
    assert caught.by_customer["c003"].state is DeliveryState.FAILED
    assert caught.changed == {"c003"}
    assert query.full_reads == 2


def test_a_lagging_index_never_replaces_a_newer_record(make_stack: Any, aws_factory: AwsFactory) -> None:
    stack = make_stack(customers=2, contacts=1)

    class LaggingStore(StatusStore):
        stale: list[StampedRecord] = []

        def changed_since(self, change_id: str, after: str, *, known: Any = None) -> Any:
            found, newest, items = super().changed_since(change_id, after, known=None)
            return found + self.stale, newest, items + len(self.stale)

    store = LaggingStore(aws_factory, stack.config)
    seed_round(store, 3)
    key = DeliveryKey(CID, 2, EmailEvent.APPROVED, "c001")
    old = store.stamped_records(CID)[1]
    assert old.sk == key.sk and old.rev == 1
    store.update(key, state=DeliveryState.SENT)
    query = LiveStatusQuery(store, CID, full_every=100)
    assert query.poll().by_customer["c001"].state is DeliveryState.SENT  # full read: rev 2
    store.stale = [old]  # the index still answers with rev 1
    again = query.poll()
    assert again.by_customer["c001"].state is DeliveryState.SENT
    assert again.changed == set()


def test_follows_a_newer_round_and_ignores_older_ones(make_stack: Any, aws_factory: AwsFactory) -> None:
    stack = make_stack(customers=3, contacts=1)
    store = CountingStore(aws_factory, stack.config)
    for version, event in ((1, EmailEvent.SUBMITTED), (2, EmailEvent.APPROVED)):
        for code in ("acme", "globex"):
            store.update(DeliveryKey(CID, version, event, code), state=DeliveryState.SENT)
    # A META index item sorts after every DELIVERY# item: it must not count as a newer round.
    store.index_change(Change.model_validate({"changeId": CID, "changeTitle": "t", "customers": ["acme"]}))

    query = LiveStatusQuery(store, CID, full_every=100)
    first = query.fetch()
    assert {(r.version, r.customer) for r in first} == {(2, "acme"), (2, "globex")}
    store.calls.clear()
    second = query.poll()
    assert {r.customer for r in second.records} == {"acme", "globex"}
    assert [name for name, _ in store.calls] == ["changed_since"]  # no full read, no round read

    # A write to an older round (e.g. marking it superseded) changes nothing shown.
    store.update(DeliveryKey(CID, 1, EmailEvent.SUBMITTED, "acme"), state=DeliveryState.SUPERSEDED)
    store.calls.clear()
    older = query.poll()
    assert [name for name, _ in store.calls] == ["changed_since"]
    assert older.changed == set() and query.round == (2, EmailEvent.APPROVED)

    # A newer version appears: the next poll notices and switches to it with a full read.
    store.update(DeliveryKey(CID, 3, EmailEvent.COMPLETED, "acme"), state=DeliveryState.QUEUED)
    store.calls.clear()
    third = query.poll()
    assert [(r.version, r.event, r.customer) for r in third.records] == [(3, EmailEvent.COMPLETED, "acme")]
    assert third.full and ("stamped_records", (None, None)) in store.calls
    assert third.changed == {"acme", "globex"}
    assert query.round == (3, EmailEvent.COMPLETED)


def test_pinned_round_and_plain_stores(make_stack: Any, aws_factory: AwsFactory) -> None:
    stack = make_stack(customers=2, contacts=1)
    store = StatusStore(aws_factory, stack.config)
    store.update(DeliveryKey(CID, 1, EmailEvent.SUBMITTED, "acme"), state=DeliveryState.SENT)
    store.update(DeliveryKey(CID, 2, EmailEvent.APPROVED, "acme"), state=DeliveryState.QUEUED)
    pinned = LiveStatusQuery(store, CID, version=1)
    assert [(r.version, r.state) for r in pinned.fetch()] == [(1, DeliveryState.SENT)]
    by_event = LiveStatusQuery(store, CID, event=EmailEvent.SUBMITTED)
    assert [r.version for r in by_event.fetch()] == [1]

    # Pinned polls read deltas too, and only what is in the pinned round counts.
    store.update(DeliveryKey(CID, 2, EmailEvent.APPROVED, "acme"), state=DeliveryState.SENT)
    same = pinned.poll()
    assert not same.full and same.changed == set()
    assert [(r.version, r.state) for r in same.records] == [(1, DeliveryState.SENT)]
    store.update(DeliveryKey(CID, 1, EmailEvent.SUBMITTED, "acme"), state=DeliveryState.FAILED)
    moved = pinned.poll()
    assert moved.changed == {"acme"}
    assert [(r.version, r.state) for r in moved.records] == [(1, DeliveryState.FAILED)]
    assert [(r.version, r.state) for r in by_event.fetch()] == [(1, DeliveryState.FAILED)]

    class Plain:  # a test double with latest_round only
        def __init__(self) -> None:
            self.n = 0

        def latest_round(self, change_id: str) -> list[Any]:
            self.n += 1
            return store.latest_round(change_id)

    plain = Plain()
    query = LiveStatusQuery(plain, CID)
    assert query.poll().changed is None
    assert query.poll().changed == set()
    assert plain.n == 2


def test_a_table_without_the_index_is_polled_as_before_until_provision_adds_it(
    make_stack: Any, aws_factory: AwsFactory
) -> None:
    stack = make_stack(customers=2, contacts=1)
    name = stack.config.status_table_name
    ddb = aws_factory.client("dynamodb")
    ddb.delete_table(TableName=name)
    ddb.get_waiter("table_not_exists").wait(TableName=name)
    ddb.create_table(**table_definition(TableSpec(name, ["gsi1", "gsi2"], None)))  # a table from before
    store = CountingStore(aws_factory, stack.config)
    seed_round(store, 3)

    query = LiveStatusQuery(store, CID, full_every=3)
    assert len(query.fetch()) == 3  # poll 1: full read
    store.update(DeliveryKey(CID, 2, EmailEvent.APPROVED, "c001"), state=DeliveryState.SENT)
    store.calls.clear()
    second = query.poll()  # poll 2: no index, so the round is read as before
    # (records reads through stamped_records)
    assert [name for name, _ in store.calls] == ["changed_since", "records", "stamped_records"]
    assert query.delta_ok is False
    assert second.changed == {"c001"}
    store.calls.clear()
    query.poll()  # poll 3 (full read): the index is not tried again until then
    assert [name for name, _ in store.calls] == ["stamped_records"]

    actions = Provisioner(aws_factory, stack.config).run()
    table = next(a for a in actions if a.kind == "table" and a.name == name)
    assert (table.result, table.detail) == ("updated", "adding index gsi3 (backfills online)")
    indexes = {g["IndexName"] for g in ddb.describe_table(TableName=name)["Table"]["GlobalSecondaryIndexes"]}
    assert indexes == {"gsi1", "gsi2", "gsi3"}
    again = Provisioner(aws_factory, stack.config).run()
    assert next(a for a in again if a.kind == "table" and a.name == name).result == "unchanged"

    store.update(DeliveryKey(CID, 2, EmailEvent.APPROVED, "c002"), state=DeliveryState.SENT)
    store.calls.clear()
    fourth = query.poll()
    assert [name for name, _ in store.calls] == ["changed_since"]
    assert query.delta_ok is True and fourth.changed == {"c002"}


def test_stamps_sort_in_write_order_and_move_back() -> None:
    early = change_stamp(datetime(2026, 11, 27, 19, 0, 0, 999999, tzinfo=UTC))
    late = change_stamp(datetime(2026, 11, 27, 19, 0, 1, 0, tzinfo=UTC))
    assert early < f"{early}#v0002#approved#zz" < late
    assert stamp_minus(late, 2.0) == "2026-11-27T18:59:59.000000Z"
    assert stamp_minus("", 2.0) == ""
