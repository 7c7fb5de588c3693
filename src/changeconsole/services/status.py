"""Delivery status records and the change index, in the DynamoDB status table.

Layout (docs/architecture.md): delivery records under ``CHANGE#{id}`` / ``DELIVERY#v{n}#{event}#{code}``
(with ``gsi2`` by customer and ``gsi3`` by change in write order), and one ``META`` index item per
change (with ``gsi1`` over all changes) so listing and search never read the S3 objects.

Every write of a delivery record (``put_queued``, ``update``) also sets ``rev`` (a per-record write
counter, ``ADD rev 1``) and ``gsi3pk = CHANGE#{id}`` / ``gsi3sk = {write time, µs}#v{n}#{event}#{code}``:
``changed_since`` reads only the records written after a point in time (what the live status screen
polls); ``rev`` orders two versions of one record whatever the writers' clocks say.

Readers skip (and log) an item they cannot read instead of failing: one written by someone else, or
one seen in the middle of an update (moto applies an UpdateItem in steps, so a concurrent read can see
an item holding only its keys).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from ..errors import OperationError, error_code, error_message
from ..models import (
    FINAL_STATES,
    Change,
    ChangeStatus,
    Config,
    DeliveryRecord,
    DeliveryState,
    EmailEvent,
    iso_utc,
    utcnow,
    version_tag,
)
from .aws import AwsFactory

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

log = logging.getLogger(__name__)

_ser = TypeSerializer()
_deser = TypeDeserializer()
T = TypeVar("T")

CHANGES_PK = "CHANGES"


class DeliveryKey(NamedTuple):
    change_id: str
    version: int
    event: EmailEvent
    customer: str

    @property
    def pk(self) -> str:
        return f"CHANGE#{self.change_id}"

    @property
    def sk(self) -> str:
        return f"DELIVERY#{version_tag(self.version)}#{self.event.value}#{self.customer}"

    def item_key(self) -> dict[str, Any]:
        return {"pk": {"S": self.pk}, "sk": {"S": self.sk}}

    @classmethod
    def of(cls, record: DeliveryRecord) -> DeliveryKey:
        return cls(record.change_id, record.version, record.event, record.customer)


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, set):
        return sorted(_plain(v) for v in value)
    return value


def to_item(data: dict[str, Any]) -> dict[str, Any]:
    """Plain dict → DynamoDB attribute map (drops None; floats as Decimal)."""
    out = {}
    for key, value in data.items():
        if value is None:
            continue
        if isinstance(value, float):
            value = Decimal(str(value))
        out[key] = _ser.serialize(value)
    return out


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _plain(_deser.deserialize(v)) for k, v in item.items()}


CHANGED_INDEX = "gsi3"  # provision.STATUS_GSI_CHANGED
_INTERNAL = {"pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk", "gsi3pk", "gsi3sk", "rev", "search"}


def record_from_item(item: dict[str, Any]) -> DeliveryRecord:
    data = {k: v for k, v in from_item(item).items() if k not in _INTERNAL}
    return DeliveryRecord.model_validate(data)


def change_stamp(moment: datetime) -> str:
    """The write time in ``gsi3sk``: RFC 3339 UTC with microseconds (fixed width, so it sorts)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class StampedRecord(NamedTuple):
    """A delivery record with what orders its writes."""

    sk: str
    record: DeliveryRecord
    stamp: str  # write time (change_stamp); "" for a record last written before gsi3 existed
    rev: int  # per-record write counter; 0 when the record predates it


def _item_rev(item: dict[str, Any]) -> int:
    raw = item.get("rev", {}).get("N")
    return int(raw) if raw else 0


def _item_stamp(item: dict[str, Any]) -> str:
    return str(item.get("gsi3sk", {}).get("S", "")).split("#", 1)[0]


def stamped_from_item(item: dict[str, Any]) -> StampedRecord:
    return StampedRecord(item["sk"]["S"], record_from_item(item), _item_stamp(item), _item_rev(item))


def readable(
    items: Iterable[dict[str, Any]],
    parse: Callable[[dict[str, Any]], T],
    *,
    what: str = "status",
    logger: logging.Logger = log,
) -> Iterator[T]:
    """``parse`` of every item (a DynamoDB attribute map) it can read; any other item is logged and
    skipped, never fatal (``what``: which table's items, for the log line)."""
    for item in items:
        try:
            yield parse(item)
        except (ValueError, KeyError, TypeError) as exc:  # pydantic's ValidationError is a ValueError
            keys = "/".join(str(item.get(k, {}).get("S", "?")) for k in ("pk", "sk"))
            if set(item) <= {"pk", "sk"}:
                logger.warning("skipped %s item %s: it holds only its keys (written right now?)", what, keys)
            else:
                logger.warning(
                    "skipped %s item %s: not readable (%s)", what, keys, " ".join(str(exc).split())[:300]
                )


class ChangeIndexUnavailable(OperationError):
    """The status table has no usable ``gsi3`` (not created yet, or still backfilling)."""


@dataclass
class ChangeSummary:
    """One row of the change index."""

    change_id: str
    title: str
    status: ChangeStatus
    customers: list[str]
    version: int
    implementation_start: str | None
    implementation_end: str | None
    modified_at: str | None
    modified_by: str | None
    created_by: str | None
    location: str  # "draft" or "archive"
    search: str
    # Who moved it and when (absent from index items written before they were indexed: reindex).
    created_at: str | None = None
    submitted_at: str | None = None
    submitted_by: str | None = None
    approved_at: str | None = None
    approved_by: str | None = None
    completed_at: str | None = None
    cancelled_at: str | None = None
    snow_ticket: str = ""
    jira_ticket: str = ""

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["status"] = self.status.value
        data.pop("search")
        return data


def search_text(change: Change) -> str:
    parts = [
        change.change_id,
        change.title,
        change.reason,
        change.snow_ticket,
        change.jira_ticket,
        change.customer_impact,
        " ".join(change.customers),
        change.created_by or "",
        change.modified_by or "",
    ]
    # Long plans are left out to keep index items small; title/tickets/reason are what people search.
    return " ".join(p for p in parts if p).casefold()[:4000]


class StatusStore:
    def __init__(self, aws: AwsFactory, config: Config, *, threads: int = 16) -> None:
        self.aws = aws
        self.config = config
        self.table = config.status_table_name
        self.threads = threads
        self.clock: Callable[[], datetime] | None = None  # write times (tests); None: the wall clock

    def _now(self) -> datetime:
        return (self.clock or utcnow)()

    @property
    def _ddb(self) -> DynamoDBClient:
        client: DynamoDBClient = self.aws.client("dynamodb")
        return client

    # -- delivery records -----------------------------------------------------------
    def _record_item(self, record: DeliveryRecord, moment: datetime) -> dict[str, Any]:
        key = DeliveryKey.of(record)
        data = record.model_dump(mode="json")
        data.update(
            pk=key.pk,
            sk=key.sk,
            gsi2pk=f"CUSTOMER#{record.customer}",
            gsi2sk=f"{record.updated_at or record.queued_at or iso_utc(moment)}#{record.change_id}",
            gsi3pk=key.pk,
            gsi3sk=_gsi3sk(key, moment),
            rev=1,
        )
        return to_item(data)

    def put_queued(self, key: DeliveryKey) -> DeliveryRecord:
        """Write a ``queued`` record unless one exists (a retried fan-out keeps the worker's progress)."""
        moment = self._now()
        now = iso_utc(moment)
        record = DeliveryRecord(
            change_id=key.change_id,
            version=key.version,
            event=key.event,
            customer=key.customer,
            state=DeliveryState.QUEUED,
            queued_at=now,
            updated_at=now,
        )
        try:
            self._ddb.put_item(
                TableName=self.table,
                Item=self._record_item(record, moment),
                ConditionExpression="attribute_not_exists(sk)",
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            existing = self.get(key)
            if existing is not None:
                return existing
        return record

    def put_queued_many(self, keys: Iterable[DeliveryKey]) -> list[DeliveryRecord]:
        with ThreadPoolExecutor(max_workers=self.threads) as pool:
            return list(pool.map(self.put_queued, keys))

    def get(self, key: DeliveryKey, *, consistent: bool = True) -> DeliveryRecord | None:
        resp = self._ddb.get_item(TableName=self.table, Key=key.item_key(), ConsistentRead=consistent)
        item = resp.get("Item")
        return next(readable([item], record_from_item), None) if item else None

    def update(
        self,
        key: DeliveryKey,
        *,
        unless_state: Iterable[DeliveryState] = (),
        add_attempt: bool = False,
        **fields: Any,
    ) -> DeliveryRecord | None:
        """Set ``fields`` on a record (creating it if missing); returns the new record.

        ``unless_state``: skip the update (return None) when the record is already in one of
        these states, e.g. never turn a ``sent`` record back into ``processing``.
        """
        moment = self._now()
        fields.setdefault("updated_at", iso_utc(moment))
        fields.update(
            change_id=key.change_id,
            version=key.version,
            event=key.event.value,
            customer=key.customer,
            gsi2pk=f"CUSTOMER#{key.customer}",
            gsi2sk=f"{fields['updated_at']}#{key.change_id}",
            gsi3pk=key.pk,
            gsi3sk=_gsi3sk(key, moment),
        )
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        sets = []
        for i, (name, value) in enumerate(fields.items()):
            if isinstance(value, StrEnum):
                value = value.value
            names[f"#f{i}"] = name
            values[f":v{i}"] = _ser.serialize(Decimal(str(value)) if isinstance(value, float) else value)
            sets.append(f"#f{i} = :v{i}")
        expr = "SET " + ", ".join(sets) + " ADD #rev :one"
        names["#rev"] = "rev"
        values[":one"] = {"N": "1"}
        if add_attempt:
            expr += ", attempts :one"
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "Key": key.item_key(),
            "UpdateExpression": expr,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ReturnValues": "ALL_NEW",
        }
        blocked = [s.value if isinstance(s, DeliveryState) else str(s) for s in unless_state]
        if blocked:
            names["#state"] = "state"
            conds = []
            for j, state in enumerate(blocked):
                values[f":b{j}"] = {"S": state}
                conds.append(f"#state <> :b{j}")
            kwargs["ConditionExpression"] = "attribute_not_exists(#state) OR (" + " AND ".join(conds) + ")"
        try:
            resp = self._ddb.update_item(**kwargs)
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return None
            raise
        return record_from_item(resp["Attributes"])

    def records(
        self, change_id: str, *, version: int | None = None, event: EmailEvent | None = None
    ) -> list[DeliveryRecord]:
        """Every delivery record of a change (all pages), optionally of one version/event."""
        return [s.record for s in self.stamped_records(change_id, version=version, event=event)]

    def stamped_records(
        self, change_id: str, *, version: int | None = None, event: EmailEvent | None = None
    ) -> list[StampedRecord]:
        """``records`` with each record's write stamp and ``rev`` (a consistent read of the table)."""
        prefix = "DELIVERY#"
        if version is not None:
            prefix += f"{version_tag(version)}#"
            if event is not None:
                prefix += f"{event.value}#"
        items = self._query(
            KeyConditionExpression="pk = :pk AND begins_with(sk, :sk)",
            ExpressionAttributeValues={":pk": {"S": f"CHANGE#{change_id}"}, ":sk": {"S": prefix}},
            ConsistentRead=True,
        )
        out = list(readable(items, stamped_from_item))
        if event is not None and version is None:
            out = [s for s in out if s.record.event == event]
        return out

    def changed_since(
        self, change_id: str, after: str, *, known: Mapping[str, int] | None = None
    ) -> tuple[list[StampedRecord], str, int]:
        """Delivery records of a change (any round) written after the stamp ``after``, from ``gsi3``.

        The index is eventually consistent and the stamps come from the writers' clocks: callers ask
        from a little before the newest stamp they saw, and items whose ``rev`` is not above
        ``known[sk]`` (a version already held) are skipped without being parsed. Returns the records,
        the newest stamp among every item read (``after`` when none) and the number of items read.
        Raises ``ChangeIndexUnavailable`` when the table has no usable ``gsi3``.
        """
        known = known or {}
        out: list[StampedRecord] = []
        newest = after
        items = 0
        try:
            for item in self._query(
                IndexName=CHANGED_INDEX,
                KeyConditionExpression="gsi3pk = :pk AND gsi3sk > :after",
                ExpressionAttributeValues={
                    ":pk": {"S": f"CHANGE#{change_id}"},
                    ":after": {"S": after or "0"},
                },
            ):
                items += 1
                newest = max(newest, _item_stamp(item))
                sk = str(item.get("sk", {}).get("S", ""))
                if not sk.startswith("DELIVERY#") or _item_rev(item) <= known.get(sk, -1):
                    continue
                out.extend(readable([item], stamped_from_item))
        except ClientError as exc:
            # "The table does not have the specified index", "Cannot read from backfilling … index"
            # (moto: ResourceNotFoundException "Invalid index"); a missing table is not one of them.
            code, message = error_code(exc), error_message(exc)
            if code in ("ValidationException", "ResourceNotFoundException") and "index" in message.lower():
                raise ChangeIndexUnavailable(str(exc)) from exc
            raise
        return out, newest, items

    def latest_round(self, change_id: str) -> list[DeliveryRecord]:
        """Records of the newest (version, event) of a change, with that version's removal notices:
        what a live status screen shows."""
        records = self.records(change_id)
        if not records:
            return []
        notices = [r for r in records if r.event is not EmailEvent.REMOVED] or records
        version, event = max((r.version, r.event.value) for r in notices)
        return [
            r for r in records if r.version == version and r.event.value in (event, EmailEvent.REMOVED.value)
        ]

    def newer_version_exists(self, change_id: str, version: int) -> bool:
        """A delivery record of a version after ``version`` exists (one key-only item read)."""
        resp = self._ddb.query(
            TableName=self.table,
            KeyConditionExpression="pk = :pk AND sk > :sk",
            ExpressionAttributeValues={
                ":pk": {"S": f"CHANGE#{change_id}"},
                # "~" sorts after every event name: anything greater is a later version (or META).
                ":sk": {"S": f"DELIVERY#{version_tag(version)}#~"},
            },
            ProjectionExpression="sk",
            ConsistentRead=True,
            Limit=1,  # sort keys ascend: a later DELIVERY# item comes before META
        )
        return any(
            str(item.get("sk", {}).get("S", "")).startswith("DELIVERY#") for item in resp.get("Items", [])
        )

    def customer_deliveries(self, customer: str, limit: int = 20) -> list[DeliveryRecord]:
        resp = self._ddb.query(
            TableName=self.table,
            IndexName="gsi2",
            KeyConditionExpression="gsi2pk = :pk",
            ExpressionAttributeValues={":pk": {"S": f"CUSTOMER#{customer}"}},
            ScanIndexForward=False,
            Limit=limit,
        )
        return list(readable(resp.get("Items", []), record_from_item))

    def customer_outcomes(
        self, customer: str, *, since: str | None = None, until: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """``state`` and recipient counts of each delivery record of ``customer`` last written in
        ``[since, until]`` (RFC 3339, open ends allowed), from ``gsi2``, reading only those attributes."""
        values: dict[str, Any] = {":pk": {"S": f"CUSTOMER#{customer}"}}
        condition = "gsi2pk = :pk"
        if since and until:
            condition += " AND gsi2sk BETWEEN :a AND :b"
            values[":a"], values[":b"] = {"S": since}, {"S": until + "~"}
        elif since:
            condition += " AND gsi2sk >= :a"
            values[":a"] = {"S": since}
        elif until:
            condition += " AND gsi2sk <= :b"
            values[":b"] = {"S": until + "~"}
        for item in self._query(
            IndexName="gsi2",
            KeyConditionExpression=condition,
            ExpressionAttributeValues=values,
            ProjectionExpression="#c, #s, recipients_sent, recipients_failed",
            ExpressionAttributeNames={"#c": "customer", "#s": "state"},  # reserved words
        ):
            yield from_item(item)

    def all_outcomes(
        self, *, since: str | None = None, until: str | None = None, segments: int = 8
    ) -> Iterator[dict[str, Any]]:
        """``customer_outcomes`` of every customer at once: one parallel ``Scan`` (``segments``) of the
        table, reading only those attributes of the delivery records last written in the range. Cheaper
        than a query per customer when most of the table is wanted (every customer, a long range)."""
        names = {"#c": "customer", "#s": "state"}
        values: dict[str, Any] = {":d": {"S": "DELIVERY#"}}
        conditions = ["begins_with(sk, :d)"]
        if since or until:
            names["#u"] = "updated_at"
        if since:
            conditions.append("#u >= :a")
            values[":a"] = {"S": since}
        if until:
            conditions.append("#u <= :b")
            values[":b"] = {"S": until + "~"}

        def segment(n: int) -> list[dict[str, Any]]:
            out: list[dict[str, Any]] = []
            for page in self._ddb.get_paginator("scan").paginate(
                TableName=self.table,
                Segment=n,
                TotalSegments=segments,
                FilterExpression=" AND ".join(conditions),
                ProjectionExpression="#c, #s, recipients_sent, recipients_failed",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            ):
                out.extend(from_item(item) for item in page.get("Items", []))
            return out

        with ThreadPoolExecutor(max_workers=segments) as pool:
            for items in pool.map(segment, range(segments)):
                yield from items

    @staticmethod
    def aggregate(records: Iterable[DeliveryRecord]) -> dict[str, int]:
        """Counts by state (every state present, zero when none)."""
        counts = Counter(r.state.value for r in records)
        return {state.value: counts.get(state.value, 0) for state in DeliveryState}

    @staticmethod
    def all_final(records: Iterable[DeliveryRecord]) -> bool:
        return all(r.state in FINAL_STATES for r in records)

    def _query(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        paginator = self._ddb.get_paginator("query")
        for page in paginator.paginate(TableName=self.table, **kwargs):
            yield from page.get("Items", [])

    # -- change index ------------------------------------------------------------------
    def index_change(self, change: Change, *, location: str = "archive") -> None:
        modified = change.modified_at or change.created_at or iso_utc(utcnow())
        data = {
            "pk": f"CHANGE#{change.change_id}",
            "sk": "META",
            "gsi1pk": CHANGES_PK,
            # Ties within one second (the stored precision) go to the most recent index write.
            "gsi1sk": f"{modified}#{utcnow().strftime('%H%M%S%f')}#{change.change_id}",
            "change_id": change.change_id,
            "title": change.title,
            "status": change.status.value,
            "customers": list(change.customers),
            "version": change.version,
            "implementation_start": change.implementation_start,
            "implementation_end": change.implementation_end,
            "modified_at": modified,
            "modified_by": change.modified_by,
            "created_by": change.created_by,
            "location": location,
            "search": search_text(change),
            "created_at": change.created_at,
            "submitted_at": change.submitted_at,
            "submitted_by": change.submitted_by,
            "approved_at": change.approved_at,
            "approved_by": change.approved_by,
            "completed_at": change.completed_at,
            "cancelled_at": change.cancelled_at,
            "snow_ticket": change.snow_ticket or None,
            "jira_ticket": change.jira_ticket or None,
        }
        self._ddb.put_item(TableName=self.table, Item=to_item(data))

    def unindex_change(self, change_id: str) -> None:
        self._ddb.delete_item(
            TableName=self.table, Key={"pk": {"S": f"CHANGE#{change_id}"}, "sk": {"S": "META"}}
        )

    def get_summary(self, change_id: str) -> ChangeSummary | None:
        resp = self._ddb.get_item(
            TableName=self.table,
            Key={"pk": {"S": f"CHANGE#{change_id}"}, "sk": {"S": "META"}},
            ConsistentRead=True,
        )
        item = resp.get("Item")
        return next(readable([item], _summary), None) if item else None

    def list_changes(
        self,
        *,
        status: ChangeStatus | str | None = None,
        customer: str | None = None,
        text: str | None = None,
        start_from: str | None = None,
        start_to: str | None = None,
    ) -> list[ChangeSummary]:
        """Every indexed change, newest first, filtered (status, customer, text, window start range)."""
        filters = []
        names: dict[str, str] = {}
        values: dict[str, Any] = {":pk": {"S": CHANGES_PK}}
        if status:
            names["#st"] = "status"
            values[":st"] = {"S": str(status.value if isinstance(status, ChangeStatus) else status)}
            filters.append("#st = :st")
        if customer:
            names["#cu"] = "customers"
            values[":cu"] = {"S": customer}
            filters.append("contains(#cu, :cu)")
        if text:
            names["#se"] = "search"
            values[":tx"] = {"S": text.casefold()}
            filters.append("contains(#se, :tx)")
        if start_from:
            names["#is"] = "implementation_start"
            values[":sf"] = {"S": start_from}
            filters.append("#is >= :sf")
        if start_to:
            names["#is"] = "implementation_start"
            values[":stt"] = {"S": start_to}
            filters.append("#is <= :stt")
        kwargs: dict[str, Any] = {
            "IndexName": "gsi1",
            "KeyConditionExpression": "gsi1pk = :pk",
            "ExpressionAttributeValues": values,
            "ScanIndexForward": False,
        }
        if names:
            kwargs["ExpressionAttributeNames"] = names
        if filters:
            kwargs["FilterExpression"] = " AND ".join(filters)
        return list(readable(self._query(**kwargs), _summary))


def _gsi3sk(key: DeliveryKey, moment: datetime) -> str:
    return f"{change_stamp(moment)}#{version_tag(key.version)}#{key.event.value}#{key.customer}"


def _summary(item: dict[str, Any]) -> ChangeSummary:
    data = from_item(item)
    return ChangeSummary(
        change_id=data["change_id"],
        title=data.get("title", ""),
        status=ChangeStatus(data.get("status", "draft")),
        customers=list(data.get("customers", [])),
        version=int(data.get("version", 1)),
        implementation_start=data.get("implementation_start"),
        implementation_end=data.get("implementation_end"),
        modified_at=data.get("modified_at"),
        modified_by=data.get("modified_by"),
        created_by=data.get("created_by"),
        location=data.get("location", "archive"),
        search=data.get("search", ""),
        created_at=data.get("created_at"),
        submitted_at=data.get("submitted_at"),
        submitted_by=data.get("submitted_by"),
        approved_at=data.get("approved_at"),
        approved_by=data.get("approved_by"),
        completed_at=data.get("completed_at"),
        cancelled_at=data.get("cancelled_at"),
        snow_ticket=data.get("snow_ticket") or "",
        jira_ticket=data.get("jira_ticket") or "",
    )
