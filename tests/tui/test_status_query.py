"""LiveStatusQuery (services/live_status.py): polls one round cheaply and follows newer rounds."""

from __future__ import annotations

from typing import Any

from changeconsole.models import Change, DeliveryState, EmailEvent
from changeconsole.services.aws import AwsFactory
from changeconsole.services.live_status import LiveStatusQuery
from changeconsole.services.status import DeliveryKey, StatusStore

CID = "CHG-2026-11-27T19-00-00-abc123"


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


def test_polls_only_the_known_round_and_follows_a_newer_version(
    make_stack: Any, aws_factory: AwsFactory
) -> None:
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
    second = query.fetch()
    assert {r.customer for r in second} == {"acme", "globex"}
    assert store.calls == [("records", (2, EmailEvent.APPROVED))]  # one round only, no full read

    # A newer version appears: the next poll notices and switches to it.
    store.update(DeliveryKey(CID, 3, EmailEvent.COMPLETED, "acme"), state=DeliveryState.QUEUED)
    store.calls.clear()
    third = query.fetch()
    assert [(r.version, r.event, r.customer) for r in third] == [(3, EmailEvent.COMPLETED, "acme")]
    assert ("latest_round", None) in store.calls
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

    class Plain:  # a test double with latest_round only
        def __init__(self) -> None:
            self.n = 0

        def latest_round(self, change_id: str) -> list[Any]:
            self.n += 1
            return store.latest_round(change_id)

    plain = Plain()
    query = LiveStatusQuery(plain, CID)
    query.fetch()
    query.fetch()
    assert plain.n == 2
