"""What the live status screen polls every second, kept cheap for 1,000 customers (Textual-free).

``StatusStore.latest_round`` reads every delivery record of every round of a change. Polling that each
second reads all rounds again and again; instead, once the newest round is known, a poll reads only
that round (one ``begins_with`` query on its sort-key prefix) plus a one-item check for a newer version
(``sk > DELIVERY#v{n:04d}#~``), and a full ``latest_round`` every ``full_every`` polls as a safety net.
Stores without those capabilities (test doubles) are simply asked for ``latest_round`` every time.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..models import DeliveryRecord, EmailEvent


def newest_round(records: Iterable[DeliveryRecord]) -> list[DeliveryRecord]:
    """Records of the newest version; within it, of the most recently updated event."""
    items = list(records)
    if not items:
        return []
    version = max(r.version for r in items)
    same = [r for r in items if r.version == version]
    if len({r.event for r in same}) > 1:
        newest = max(same, key=lambda r: r.updated_at or r.queued_at or "").event
        same = [r for r in same if r.event == newest]
    return same


class LiveStatusQuery:
    """Polls one change's delivery records: pinned to ``version``/``event``, or following the newest
    round."""

    def __init__(
        self,
        store: Any,
        change_id: str,
        *,
        version: int | None = None,
        event: EmailEvent | None = None,
        full_every: int = 30,
    ) -> None:
        self.store = store
        self.change_id = change_id
        self.version = version
        self.event = event
        self.full_every = max(1, full_every)
        self.round: tuple[int, EmailEvent] | None = None  # the newest round seen
        self.polls = 0
        self.full_reads = 0

    @property
    def _can_poll_round(self) -> bool:
        return all(hasattr(self.store, name) for name in ("records", "aws", "table"))

    def fetch(self) -> list[DeliveryRecord]:
        self.polls += 1
        store = self.store
        if self.version is not None:
            return newest_round(store.records(self.change_id, version=self.version, event=self.event))
        if self.event is not None:
            return newest_round(store.records(self.change_id, event=self.event))
        if self.round is None or not self._can_poll_round or self.polls % self.full_every == 0:
            return self._full()
        version, event = self.round
        if self._newer_version_exists(version):
            return self._full()
        records = store.records(self.change_id, version=version, event=event)
        return records if records else self._full()

    def _full(self) -> list[DeliveryRecord]:
        self.full_reads += 1
        records: list[DeliveryRecord] = self.store.latest_round(self.change_id)
        self.round = (records[0].version, records[0].event) if records else None
        return records

    def _newer_version_exists(self, version: int) -> bool:
        ddb = self.store.aws.client("dynamodb")
        resp = ddb.query(
            TableName=self.store.table,
            KeyConditionExpression="pk = :pk AND sk > :sk",
            ExpressionAttributeValues={
                ":pk": {"S": f"CHANGE#{self.change_id}"},
                # "~" sorts after every event name: anything greater is a later version (or META).
                ":sk": {"S": f"DELIVERY#v{version:04d}#~"},
            },
            ProjectionExpression="sk",
            ConsistentRead=True,
            Limit=1,  # sort keys ascend: a later DELIVERY# item comes before META
        )
        return any(
            str(item.get("sk", {}).get("S", "")).startswith("DELIVERY#") for item in resp.get("Items", [])
        )
