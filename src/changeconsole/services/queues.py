"""SQS plumbing shared by the console's services and the worker.

- ``QueueUrlCache``: ``get_queue_url`` answers, cached per queue (thread-safe).
- ``is_missing_queue``: whether an error says the queue does not exist.
- ``message_counts``: approximate message counts from ``get_queue_attributes``.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Sequence
from typing import Any

from ..errors import error_code

MISSING_QUEUE_CODES = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})

VISIBLE = "ApproximateNumberOfMessages"
IN_FLIGHT = "ApproximateNumberOfMessagesNotVisible"
DELAYED = "ApproximateNumberOfMessagesDelayed"


def is_missing_queue(exc: BaseException) -> bool:
    """True when ``exc`` is SQS saying the queue does not exist."""
    return error_code(exc) in MISSING_QUEUE_CODES


class QueueUrlCache:
    """Queue URLs by queue, looked up once with ``get_queue_url`` (errors are not cached)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._urls: dict[Hashable, str] = {}

    def lookup(self, sqs: Any, name: str, account: str, *, key: Hashable | None = None) -> str:
        """The URL of queue ``name`` owned by ``account``, asked of ``sqs`` unless cached under ``key``
        (default ``(name, account)``)."""
        key = (name, account) if key is None else key
        with self._lock:
            cached = self._urls.get(key)
        if cached:
            return cached
        url = str(sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"])
        with self._lock:
            self._urls[key] = url
        return url

    def forget(self, key: Hashable) -> None:
        with self._lock:
            self._urls.pop(key, None)


def message_counts(sqs: Any, url: str, names: Sequence[str]) -> dict[str, int]:
    """The approximate message counts ``names`` (``VISIBLE``, ``IN_FLIGHT``, ``DELAYED``) of a queue;
    a count SQS leaves out is 0."""
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=list(names)).get("Attributes", {})
    return {name: int(attrs.get(name, 0)) for name in names}
