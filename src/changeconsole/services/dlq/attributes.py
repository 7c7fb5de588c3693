"""The message attributes of dead-lettered, redriven and requeued messages: the one owner of that format.

The worker dead-letters a message with ``cc-*`` attributes (why, whose, which delivery; see
``docs/architecture.md``); a redrive adds the marker ``cc-redriven-at``/``cc-redrive-count``/
``cc-redriven-by``; a fresh copy the worker puts back carries the retry counters ``cc-failures`` and
``cc-crashes``. SQS allows ten attributes per message: whatever does not fit goes into one
``cc-packed`` JSON attribute, which every reader expands (``unpack_attributes``).
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any

from ...models import iso_utc

# SQS allows at most 10 message attributes per message.
MAX_MESSAGE_ATTRIBUTES = 10

# What the worker records when it dead-letters a message.
REASON = "cc-reason"  # typed reason code, e.g. isolation_violation
DETAIL = "cc-detail"  # one line
CUSTOMER = "cc-customer"
CHANGE_ID = "cc-change-id"
VERSION = "cc-version"
EVENT = "cc-event"
FAILED_AT = "cc-failed-at"  # RFC 3339
SOURCE_MESSAGE_ID = "cc-source-message-id"
RECEIVE_COUNT = "cc-receive-count"  # receives in the source queue
WORKER = "cc-worker"
# Ours given up first when a re-dead-lettered message must pack its originals.
_DROP_ORDER = (WORKER, SOURCE_MESSAGE_ID, RECEIVE_COUNT)

MARKER_AT = "cc-redriven-at"
MARKER_COUNT = "cc-redrive-count"
MARKER_BY = "cc-redriven-by"
REDRIVE_MARKERS = (MARKER_AT, MARKER_COUNT, MARKER_BY)
# Original attributes that did not fit next to ours, as JSON.
PACKED_ATTRIBUTE = "cc-packed"
# What the earlier copies of a requeued message used up: failed attempts, and receives that ended with no
# outcome (the worker died holding it, or released it at shutdown). A dead letter or a redrive drops them:
# a redriven message starts with a full budget.
FAILURES = "cc-failures"
CRASHES = "cc-crashes"
RETRY_COUNTERS = (FAILURES, CRASHES)


def attr_text(value: dict[str, Any]) -> str:
    """A message attribute as text (binary values base64)."""
    if "StringValue" in value:
        return str(value["StringValue"])
    raw = value.get("BinaryValue")
    if isinstance(raw, bytes | bytearray):
        return base64.b64encode(raw).decode("ascii")
    return str(raw) if raw is not None else ""


def attr_to_json(value: dict[str, Any]) -> dict[str, Any]:
    """A message attribute as JSON (binary values base64)."""
    out: dict[str, Any] = {"DataType": value.get("DataType", "String")}
    if "StringValue" in value:
        out["StringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        raw = value["BinaryValue"]
        out["BinaryValue"] = (
            base64.b64encode(raw).decode("ascii") if isinstance(raw, bytes | bytearray) else str(raw)
        )
    return out


def attr_from_json(value: Any, where: str) -> dict[str, Any]:
    """``attr_to_json`` reversed; ``ValueError`` (naming ``where``) for anything else."""
    if not isinstance(value, dict) or not isinstance(value.get("DataType"), str):
        raise ValueError(f"{where}: needs a DataType")
    out: dict[str, Any] = {"DataType": value["DataType"]}
    if value["DataType"].startswith("Binary"):
        try:
            out["BinaryValue"] = base64.b64decode(str(value.get("BinaryValue", "")), validate=True)
        except ValueError:
            raise ValueError(f"{where}: BinaryValue is not base64") from None
    else:
        if not isinstance(value.get("StringValue"), str):
            raise ValueError(f"{where}: StringValue missing")
        out["StringValue"] = value["StringValue"]
    return out


def string_attr(value: str) -> dict[str, Any]:
    return {"DataType": "String", "StringValue": value}


def sendable(attrs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Received attributes as SendMessage takes them (type and value only)."""
    out: dict[str, dict[str, Any]] = {}
    for name, attr in attrs.items():
        if "StringValue" in attr:
            out[name] = {"DataType": attr.get("DataType", "String"), "StringValue": attr["StringValue"]}
        elif "BinaryValue" in attr:
            out[name] = {"DataType": attr.get("DataType", "Binary"), "BinaryValue": attr["BinaryValue"]}
    return out


def unpack_attributes(attrs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Expand ``cc-packed`` (attributes that did not fit next to ours); outer ones win."""
    packed = attrs.get(PACKED_ATTRIBUTE)
    if packed is None:
        return dict(attrs)
    out = {k: v for k, v in attrs.items() if k != PACKED_ATTRIBUTE}
    try:
        inner = json.loads(attr_text(packed))
    except ValueError:
        return dict(attrs)
    if isinstance(inner, dict):
        for name, value in inner.items():
            if name in out:
                continue
            try:
                out[name] = attr_from_json(value, name)
            except ValueError:
                continue
    return out


def _pack(attrs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    doc = {k: attr_to_json(v) for k, v in sorted(attrs.items())}
    return string_attr(json.dumps(doc, separators=(",", ":"), sort_keys=True))


def fit_attributes(
    original: dict[str, dict[str, Any]], markers: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Original attributes plus ``markers`` within SQS's limit of 10 message attributes.

    When they do not fit, the worker's ``cc-*`` attributes go into one ``cc-packed`` JSON attribute
    (and if that is not enough, every original attribute does); ``unpack_attributes`` restores them.
    """
    base = unpack_attributes(original)
    for name in markers:
        base.pop(name, None)
    if len(base) + len(markers) <= MAX_MESSAGE_ATTRIBUTES:
        return {**base, **markers}
    ours = {k: v for k, v in base.items() if k.startswith("cc-")}
    others = {k: v for k, v in base.items() if not k.startswith("cc-")}
    if len(others) + 1 + len(markers) <= MAX_MESSAGE_ATTRIBUTES:
        return {**others, PACKED_ATTRIBUTE: _pack(ours), **markers}
    return {PACKED_ATTRIBUTE: _pack(base), **markers}


def retry_counters(attrs: dict[str, dict[str, Any]]) -> tuple[int, int]:
    """(failures, crashes) a received message carries (0 when absent or not a number)."""
    full = unpack_attributes(attrs)

    def count(name: str) -> int:
        try:
            return max(0, int(attr_text(full[name]))) if name in full else 0
        except ValueError:
            return 0

    return count(FAILURES), count(CRASHES)


def requeue_attributes(
    original: dict[str, dict[str, Any]], *, failures: int, crashes: int
) -> dict[str, dict[str, Any]]:
    """The attributes of a fresh copy of a message: its own plus the retry counters (those not 0)."""
    counters = {FAILURES: failures, CRASHES: crashes}
    markers = {name: string_attr(str(n)) for name, n in counters.items() if n > 0}
    return sendable(fit_attributes(_without_counters(original), markers))


def _without_counters(attrs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in unpack_attributes(attrs).items() if k not in RETRY_COUNTERS}


def redrive_attributes(
    original: dict[str, dict[str, Any]], *, at: datetime, by: str
) -> dict[str, dict[str, Any]]:
    """The attributes a redriven message carries: its own plus the redrive marker (count + 1), without
    retry counters."""
    full = _without_counters(original)
    try:
        count = int(attr_text(full[MARKER_COUNT])) if MARKER_COUNT in full else 0
    except ValueError:
        count = 0
    markers = {
        MARKER_AT: string_attr(iso_utc(at)),
        MARKER_COUNT: string_attr(str(count + 1)),
        MARKER_BY: string_attr(by or "unknown"),
    }
    return fit_attributes(full, markers)


def dead_letter_attributes(
    original: dict[str, dict[str, Any]],
    *,
    reason: str,
    detail: str,
    customer: str,
    change_id: str | None,
    version: int | None,
    event: str | None,
    failed_at: str,
    source_message_id: str,
    receive_count: int,
    worker: str,
) -> dict[str, dict[str, Any]]:
    """The worker's ``cc-*`` attributes (one line each; None left out) plus the original ones (without
    retry counters: ``cc-receive-count`` sums them up).

    Originals that do not fit (e.g. a redriven message's marker) go into ``cc-packed``; ours then give
    up ``cc-worker``, ``cc-source-message-id`` and ``cc-receive-count``, in that order, to make room.
    """
    values = {
        REASON: reason,
        DETAIL: detail,
        CUSTOMER: customer,
        CHANGE_ID: change_id,
        VERSION: version,
        EVENT: event,
        FAILED_AT: failed_at,
        SOURCE_MESSAGE_ID: source_message_id,
        RECEIVE_COUNT: receive_count,
        WORKER: worker,
    }
    ours = {
        k: string_attr(" ".join(str(v).split())[:1000] or "-") for k, v in values.items() if v is not None
    }
    rest = {k: v for k, v in _without_counters(original).items() if k not in ours}
    if len(rest) + len(ours) <= MAX_MESSAGE_ATTRIBUTES:
        return {**sendable(rest), **ours}
    for name in _DROP_ORDER:
        if len(ours) < MAX_MESSAGE_ATTRIBUTES:
            break
        ours.pop(name, None)
    return {PACKED_ATTRIBUTE: _pack(rest), **ours}
