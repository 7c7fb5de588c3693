"""What the live status screen polls every second, kept cheap for 1,000 customers (Textual-free).

Reading every delivery record of a round each second costs ~1,000 items (several pages) per refresh.
Instead ``LiveStatusQuery`` keeps the records it has seen, merged by record key, and a poll reads only
what was written since the last one:

- a **full read** (a consistent query of the table: ``latest_round``, or the pinned version/event) on
  the first poll and every ``full_every`` polls after it — the safety net for anything a delta missed;
- in between, a **delta read** of ``gsi3`` (``StatusStore.changed_since``): records of the change
  written after the newest write stamp seen — or, when that is recent, after the start of the
  previous read minus ``overlap`` seconds: the index is eventually consistent and the stamps come
  from the writers' clocks, so a write that was not visible yet is read next time. Items already held
  (same ``rev``) are skipped unparsed; an older ``rev`` than the one held (a lagging index) never
  replaces a newer one. A write in a newer round than the one shown (``(version, event)`` above it)
  triggers a full read. A write the index misses altogether (an older writer that does not set
  ``gsi3sk``, a writer whose clock is more than ``overlap`` behind) shows at the next full read.

A store without ``gsi3`` (a table created before it, or while it backfills) is polled as before: the
known round only (one ``begins_with`` query on its sort-key prefix) plus a one-item check for a newer
version, and the index is tried again at every full read. Any other ``RoundReader`` (something that
only answers ``latest_round``: test doubles, the bench's in-memory store) is asked for it every time.

``poll()`` returns every current record plus which customers changed since the previous poll, so the
screen re-renders only those rows; ``fetch()`` returns just the records.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from ..models import DeliveryRecord, EmailEvent, utcnow
from .status import ChangeIndexUnavailable, StampedRecord, StatusStore, change_stamp

OVERLAP_SECONDS = 2.0


class RoundReader(Protocol):
    """The least a live status source answers: the records of a change's newest round."""

    def latest_round(self, change_id: str) -> list[DeliveryRecord]: ...


def newest_round(records: Iterable[DeliveryRecord]) -> list[DeliveryRecord]:
    """Records of the newest version; within it, of the most recently updated event, with the
    version's removal notices (customers the version no longer targets)."""
    items = list(records)
    if not items:
        return []
    version = max(r.version for r in items)
    same = [r for r in items if r.version == version]
    notices = [r for r in same if r.event is not EmailEvent.REMOVED]
    if len({r.event for r in notices}) > 1:
        newest = max(notices, key=lambda r: r.updated_at or r.queued_at or "").event
        same = [r for r in same if r.event in (newest, EmailEvent.REMOVED)]
    return same


def _round_key(record: DeliveryRecord) -> tuple[int, str]:
    """How ``StatusStore.latest_round`` orders rounds (a removal notice belongs to its version's round
    and never starts one)."""
    return (record.version, "" if record.event is EmailEvent.REMOVED else record.event.value)


def _in_round(record: DeliveryRecord, round_: tuple[int, EmailEvent]) -> bool:
    version, event = round_
    return record.version == version and record.event in (event, EmailEvent.REMOVED)


def stamp_minus(stamp: str, seconds: float) -> str:
    """A write stamp moved ``seconds`` earlier ("" stays "": from the beginning)."""
    if not stamp:
        return ""
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return ""
    return change_stamp(moment - timedelta(seconds=seconds))


@dataclass
class LivePoll:
    """One poll's answer."""

    records: list[DeliveryRecord]
    by_customer: dict[str, DeliveryRecord]
    changed: set[str] | None  # customers added, changed or gone since the previous poll; None: all
    full: bool  # a full read (or a store without delta reads)
    items: int = 0  # items the delta read returned (0 for full reads)


class LiveStatusQuery:
    """Polls one change's delivery records: pinned to ``version``/``event``, or following the newest
    round."""

    def __init__(
        self,
        store: StatusStore | RoundReader,
        change_id: str,
        *,
        version: int | None = None,
        event: EmailEvent | None = None,
        full_every: int = 30,
        overlap: float = OVERLAP_SECONDS,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.store = store
        self.change_id = change_id
        self.version = version
        self.event = event
        self.full_every = max(1, full_every)
        self.overlap = max(0.0, overlap)
        self.round: tuple[int, EmailEvent] | None = None  # the newest round seen
        self.polls = 0
        self.full_reads = 0
        self.delta_reads = 0
        self.delta_items = 0  # items every delta read returned, in total
        self.delta_ok: bool | None = None  # None: not tried since the last full read
        self._pool: dict[str, StampedRecord] = {}  # records in scope, by sort key
        self._revs: dict[str, int] = {}  # the newest rev seen of every record, in scope or not
        self._since = ""  # the newest write stamp seen
        self._read_at = ""  # when the previous read began (change_stamp of this process's clock)
        self._clock = clock or utcnow
        self._primed = False  # a full read has filled the pool
        self._last: dict[str, DeliveryRecord] | None = None  # the previous answer, by customer

    @property
    def pinned(self) -> bool:
        return self.version is not None or self.event is not None

    # -- polling ---------------------------------------------------------------------------------
    def fetch(self) -> list[DeliveryRecord]:
        return self.poll().records

    def poll(self) -> LivePoll:
        self.polls += 1
        items = 0
        full = True
        store = self.store
        if not isinstance(store, StatusStore):  # it reads whole rounds only
            records = self._latest_round()
        elif not self._primed or self.polls % self.full_every == 0:
            records = self._full_stamped(store)
        elif self.delta_ok is False:
            records = self._legacy(store)
        else:
            delta = self._delta(store)
            if delta is None:  # no index, or a newer round: read it all
                records = self._legacy(store) if self.delta_ok is False else self._full_stamped(store)
            else:
                records, items = delta
                full = False
        return self._answer(records, full=full, items=items)

    def _answer(self, records: list[DeliveryRecord], *, full: bool, items: int) -> LivePoll:
        current = {r.customer: r for r in records}
        last = self._last
        if last is None:
            changed: set[str] | None = None
        elif full:  # (mostly) new objects: compare their content
            changed = {
                c
                for c in current.keys() | last.keys()
                if (a := current.get(c)) is not (b := last.get(c)) and a != b
            }
        else:  # a delta replaces exactly the records that changed: compare identities
            changed = {c for c in current.keys() | last.keys() if current.get(c) is not last.get(c)}
        self._last = current
        return LivePoll(records, current, changed, full, items)

    # -- full reads --------------------------------------------------------------------------------
    def _in_scope(self, record: DeliveryRecord) -> bool:
        if self.version is not None:
            return record.version == self.version and (self.event is None or record.event == self.event)
        if self.event is not None:
            return record.event == self.event
        return self.round is not None and _in_round(record, self.round)

    def _full_stamped(self, store: StatusStore) -> list[DeliveryRecord]:
        """A consistent read of everything in scope; resets the pool, the watermark and the index
        check."""
        self.full_reads += 1
        read_at = change_stamp(self._clock())
        if self.version is not None or self.event is not None:
            stamped = store.stamped_records(self.change_id, version=self.version, event=self.event)
        else:
            stamped = store.stamped_records(self.change_id)
            if stamped:
                newest = max(stamped, key=lambda s: _round_key(s.record)).record
                self.round = (newest.version, newest.event)
                stamped = [s for s in stamped if _in_round(s.record, self.round)]
            else:
                self.round = None
        self._pool = {s.sk: s for s in stamped}
        self._revs = {s.sk: s.rev for s in stamped}
        self._since = max((s.stamp for s in stamped), default="")
        self._read_at = read_at
        # Following a change that has no records yet: keep doing (cheap, empty) full reads.
        self._primed = self.pinned or self.round is not None
        self.delta_ok = None
        return self._view()

    def _view(self) -> list[DeliveryRecord]:
        records = [s.record for s in self._pool.values()]
        return newest_round(records) if self.pinned else records

    # -- delta reads -------------------------------------------------------------------------------
    def _delta(self, store: StatusStore) -> tuple[list[DeliveryRecord], int] | None:
        """Merge what was written since the watermark; None when a full read is needed instead."""
        read_at = change_stamp(self._clock())
        # Strictly after every write seen ("~" sorts after "#v…"), or from before the previous read.
        after = f"{self._since}#~" if self._since else ""
        if self._read_at:
            after = min(after, stamp_minus(self._read_at, self.overlap))
        try:
            found, newest, items = store.changed_since(self.change_id, after, known=self._revs)
        except ChangeIndexUnavailable:
            self.delta_ok = False
            return None
        self.delta_ok = True
        self._read_at = read_at
        self.delta_reads += 1
        self.delta_items += items
        self._since = max(self._since, newest)
        newer_round = False
        for s in found:
            if s.rev <= self._revs.get(s.sk, -1):
                continue  # an older version than the one held (the index lags the table)
            self._revs[s.sk] = s.rev
            if self._in_scope(s.record):
                self._pool[s.sk] = s
            elif (
                not self.pinned
                and self.round is not None
                and _round_key(s.record) > (self.round[0], self.round[1].value)
            ):
                newer_round = True
        if newer_round:
            return None
        return self._view(), items

    # -- without gsi3 --------------------------------------------------------------------------------
    def _legacy(self, store: StatusStore) -> list[DeliveryRecord]:
        if self.version is not None:
            return newest_round(store.records(self.change_id, version=self.version, event=self.event))
        if self.event is not None:
            return newest_round(store.records(self.change_id, event=self.event))
        if self.round is None or self.polls % self.full_every == 0:
            return self._latest_round()
        version, event = self.round
        if store.newer_version_exists(self.change_id, version):
            return self._latest_round()
        records = store.records(self.change_id, version=version, event=event)
        return records if records else self._latest_round()

    def _latest_round(self) -> list[DeliveryRecord]:
        self.full_reads += 1
        records = self.store.latest_round(self.change_id)
        self.round = (records[0].version, records[0].event) if records else None
        return records
