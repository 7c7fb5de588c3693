"""Dead-letter queues, per customer: inspect, filter, export, redrive, import and purge.

- ``attributes``: the ``cc-*`` / ``cc-packed`` attribute format (also what the worker writes).
- ``messages``: one dead-lettered message and the filter over them.
- ``results``: what each operation returns.
- ``ratelimit``: the redrive/import rate limit.
- ``service``: ``DlqService``, the operations themselves.
"""

from .attributes import (
    MARKER_AT,
    MARKER_BY,
    MARKER_COUNT,
    MAX_MESSAGE_ATTRIBUTES,
    PACKED_ATTRIBUTE,
    REDRIVE_MARKERS,
    fit_attributes,
    redrive_attributes,
    string_attr,
    unpack_attributes,
)
from .errors import DlqError, DlqInputError, PurgeRefused, QueueMissing
from .messages import EXPORT_SCHEMA, DlqMessage, MessageFilter, as_filter, recurrence
from .ratelimit import RateLimiter
from .results import (
    DlqSummary,
    ExportResult,
    ImportResult,
    PeekResult,
    PurgeResult,
    RedriveFailure,
    RedriveProgress,
    RedriveResult,
    age_text,
)
from .service import (
    DEFAULT_PEEK,
    MAX_PEEK,
    PEEK_VISIBILITY,
    SCAN_VISIBILITY,
    DlqService,
    Target,
    default_export_path,
    native_unsupported,
)

__all__ = [
    "DEFAULT_PEEK",
    "EXPORT_SCHEMA",
    "MARKER_AT",
    "MARKER_BY",
    "MARKER_COUNT",
    "MAX_MESSAGE_ATTRIBUTES",
    "MAX_PEEK",
    "PACKED_ATTRIBUTE",
    "PEEK_VISIBILITY",
    "REDRIVE_MARKERS",
    "SCAN_VISIBILITY",
    "DlqError",
    "DlqInputError",
    "DlqMessage",
    "DlqService",
    "DlqSummary",
    "ExportResult",
    "ImportResult",
    "MessageFilter",
    "PeekResult",
    "PurgeRefused",
    "PurgeResult",
    "QueueMissing",
    "RateLimiter",
    "RedriveFailure",
    "RedriveProgress",
    "RedriveResult",
    "Target",
    "age_text",
    "as_filter",
    "default_export_path",
    "fit_attributes",
    "native_unsupported",
    "recurrence",
    "redrive_attributes",
    "string_attr",
    "unpack_attributes",
]
