"""Operability of the worker: JSON logs and CloudWatch EMF metrics (audit events: ``services/audit``).

Nothing here logs a message body, an email body or a credential.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

from ..models import Config
from ..services.aws import AwsFactory

log = logging.getLogger("changeconsole.worker")
# A library's logger: silent unless the application configures logging (e.g. inside the console).
log.addHandler(logging.NullHandler())


# -- logs ---------------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, then the record's ``cc`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "cc", None)
        if isinstance(fields, dict):
            for name, value in fields.items():
                data.setdefault(name, value)
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            data["exception"] = f"{type(exc).__name__}: {exc}"[:1000]
        return json.dumps(data, default=str, ensure_ascii=False)


def configure_json_logging(level: int = logging.INFO, stream: TextIO | None = None) -> None:
    """Route every log record to ``stream`` (stderr) as JSON lines."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("botocore", "boto3", "urllib3", "werkzeug"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def event(level: int, name: str, **fields: Any) -> None:
    """Log one worker event with structured fields (None values dropped)."""
    log.log(level, name, extra={"cc": {k: v for k, v in fields.items() if v is not None}})


# -- metrics ------------------------------------------------------------------------------

COUNTERS = ("MessagesProcessed", "MessagesFailed", "MessagesDeadLettered", "EmailsSent")


@dataclass
class _CustomerMetrics:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    latency_ms: list[float] = field(default_factory=list)
    oldest_age_s: float = 0.0
    gauges: dict[str, float] = field(default_factory=dict)  # percentages (e.g. BounceRate), last value


class Metrics:
    """Per-customer counters flushed as CloudWatch EMF lines (and put_metric_data when enabled)."""

    MAX_VALUES = 100  # EMF accepts up to 100 values per metric per document

    def __init__(
        self,
        config: Config,
        *,
        aws: AwsFactory | None = None,
        emf_stream: TextIO | None = None,
        worker_id: str = "",
    ) -> None:
        self.namespace = config.metrics.namespace
        self.cloudwatch = config.metrics.cloudwatch
        self.aws = aws
        self.emf_stream = emf_stream
        self.worker_id = worker_id
        self._lock = threading.Lock()
        self._data: dict[str, _CustomerMetrics] = defaultdict(_CustomerMetrics)

    def count(self, customer: str, name: str, value: int = 1) -> None:
        with self._lock:
            counts = self._data[customer].counts
            counts[name] = counts.get(name, 0) + value

    def gauge(self, customer: str, name: str, percent: float) -> None:
        with self._lock:
            self._data[customer].gauges[name] = percent

    def latency(self, customer: str, seconds: float) -> None:
        with self._lock:
            values = self._data[customer].latency_ms
            if len(values) < 10 * self.MAX_VALUES:
                values.append(round(seconds * 1000, 1))

    def message_age(self, customer: str, seconds: float) -> None:
        with self._lock:
            m = self._data[customer]
            m.oldest_age_s = max(m.oldest_age_s, seconds)

    def flush(self) -> list[dict[str, Any]]:
        """Emit and reset; returns the EMF documents written."""
        with self._lock:
            data, self._data = self._data, defaultdict(_CustomerMetrics)
        docs = [self._emf(code, m) for code, m in sorted(data.items())]
        if self.emf_stream is not None:
            for doc in docs:
                self.emf_stream.write(json.dumps(doc, separators=(",", ":")) + "\n")
            self.emf_stream.flush()
        if self.cloudwatch and self.aws is not None and data:
            self._put(data)
        return docs

    def _emf(self, code: str, m: _CustomerMetrics) -> dict[str, Any]:
        metrics = [{"Name": n, "Unit": "Count"} for n in COUNTERS]
        doc: dict[str, Any] = {"Customer": code, "Worker": self.worker_id, **m.counts}
        if m.latency_ms:
            metrics.append({"Name": "ProcessingLatency", "Unit": "Milliseconds"})
            doc["ProcessingLatency"] = m.latency_ms[-self.MAX_VALUES :]
        metrics.append({"Name": "OldestMessageAge", "Unit": "Seconds"})
        doc["OldestMessageAge"] = round(m.oldest_age_s, 3)
        for name, percent in m.gauges.items():
            metrics.append({"Name": name, "Unit": "Percent"})
            doc[name] = round(percent, 4)
        doc["_aws"] = {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": [
                {"Namespace": self.namespace, "Dimensions": [["Customer"]], "Metrics": metrics}
            ],
        }
        return doc

    def _put(self, data: dict[str, _CustomerMetrics]) -> None:
        assert self.aws is not None
        items: list[dict[str, Any]] = []
        for code, m in data.items():
            dims = [{"Name": "Customer", "Value": code}]
            for name, value in m.counts.items():
                items.append({"MetricName": name, "Dimensions": dims, "Value": value, "Unit": "Count"})
            for name, percent in m.gauges.items():
                items.append({"MetricName": name, "Dimensions": dims, "Value": percent, "Unit": "Percent"})
            if m.latency_ms:
                vals = m.latency_ms
                items.append(
                    {
                        "MetricName": "ProcessingLatency",
                        "Dimensions": dims,
                        "Unit": "Milliseconds",
                        "StatisticValues": {
                            "SampleCount": len(vals),
                            "Sum": sum(vals),
                            "Minimum": min(vals),
                            "Maximum": max(vals),
                        },
                    }
                )
            items.append(
                {
                    "MetricName": "OldestMessageAge",
                    "Dimensions": dims,
                    "Value": m.oldest_age_s,
                    "Unit": "Seconds",
                }
            )
        cw = self.aws.client("cloudwatch")
        try:
            for i in range(0, len(items), 1000):
                cw.put_metric_data(Namespace=self.namespace, MetricData=items[i : i + 1000])
        except Exception as exc:  # metrics never stop deliveries
            event(logging.WARNING, "metrics.put_failed", error=f"{type(exc).__name__}: {exc}"[:300])
