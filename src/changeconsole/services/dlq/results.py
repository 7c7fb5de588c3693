"""What DLQ operations return: summaries, peeks, redrives, exports, imports, purges (``to_json``: the
CLI's ``--json`` shapes, docs/cli-json.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .messages import DlqMessage


def age_text(seconds: float | None) -> str:
    """``42s``, ``5m``, ``3h07m``, ``2d04h`` (``—`` when unknown): DLQ ages in the CLI and the console."""
    if seconds is None:
        return "—"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600:02d}h"


@dataclass
class DlqSummary:
    customer: str
    name: str
    queue: str
    depth: int | None = None  # ApproximateNumberOfMessages (visible)
    in_flight: int | None = None  # ApproximateNumberOfMessagesNotVisible (e.g. being peeked)
    oldest_age_seconds: float | None = None
    age_source: str = "cloudwatch"  # "cloudwatch" (ApproximateAgeOfOldestMessage), "peek", "unavailable"
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "customer": self.customer,
            "name": self.name,
            "queue": self.queue,
            "depth": self.depth,
            "in_flight": self.in_flight,
            "oldest_age_seconds": self.oldest_age_seconds,
            "age_source": self.age_source,
            "error": self.error,
        }


@dataclass
class PeekResult:
    customer: str
    queue: str
    messages: list[DlqMessage]
    scanned: int
    depth: int | None
    in_flight: int | None
    oldest_age_seconds: float | None
    visibility_seconds: int
    filter: str | None = None
    audit_key: str | None = None
    age_source: str = "peek"  # from the peeked messages' SentTimestamp

    def to_json(self) -> dict[str, Any]:
        return {
            "customer": self.customer,
            "queue": self.queue,
            "depth": self.depth,
            "in_flight": self.in_flight,
            "scanned": self.scanned,
            "matched": len(self.messages),
            "filter": self.filter,
            "oldest_age_seconds": self.oldest_age_seconds,
            "age_source": self.age_source,
            "visibility_seconds": self.visibility_seconds,
            "audit_key": self.audit_key,
            "messages": [m.to_json() for m in self.messages],
        }


@dataclass
class RedriveProgress:
    moved: int
    failed: int
    total: int | None
    mode: str  # "manual" or "native"
    status: str = "running"


@dataclass
class RedriveFailure:
    message_id: str
    stage: str  # "send" (still in the DLQ) or "delete" (copied, also still in the DLQ)
    error: str

    def to_json(self) -> dict[str, str]:
        return {"message_id": self.message_id, "stage": self.stage, "error": self.error}


@dataclass
class RedriveResult:
    customer: str
    source_queue: str
    dlq: str
    mode: str  # "manual", "native" or "dry-run"
    dry_run: bool
    requested: list[str] | None  # None = all
    filter: str | None = None
    rate: float | None = None
    moved: list[str] = field(default_factory=list)  # DLQ message ids moved (manual path)
    moved_count: int = 0
    new_ids: dict[str, str] = field(default_factory=dict)  # DLQ id -> id in the source queue
    would_move: list[DlqMessage] = field(default_factory=list)
    not_found: list[str] = field(default_factory=list)
    failed: list[RedriveFailure] = field(default_factory=list)
    cancelled: bool = False
    native_task: dict[str, Any] | None = None
    fallback_reason: str | None = None
    seconds: float = 0.0
    audit_key: str | None = None

    @property
    def ok(self) -> bool:
        return not self.failed and not self.not_found and not self.cancelled

    def to_json(self) -> dict[str, Any]:
        return {
            "customer": self.customer,
            "source_queue": self.source_queue,
            "dlq": self.dlq,
            "mode": self.mode,
            "dry_run": self.dry_run,
            "requested": self.requested,
            "filter": self.filter,
            "rate": self.rate,
            "moved": self.moved,
            "moved_count": self.moved_count,
            "new_ids": self.new_ids,
            "would_move": [m.to_json(body=False) for m in self.would_move],
            "not_found": self.not_found,
            "failed": [f.to_json() for f in self.failed],
            "cancelled": self.cancelled,
            "native_task": self.native_task,
            "fallback_reason": self.fallback_reason,
            "seconds": round(self.seconds, 3),
            "audit_key": self.audit_key,
            "ok": self.ok,
        }


@dataclass
class ExportResult:
    customer: str
    queue: str
    path: str
    count: int
    message_ids: list[str]
    sha256: str
    filter: str | None = None
    recorded: bool = True
    audit_key: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "customer": self.customer,
            "queue": self.queue,
            "path": self.path,
            "count": self.count,
            "message_ids": self.message_ids,
            "sha256": self.sha256,
            "filter": self.filter,
            "recorded": self.recorded,
            "audit_key": self.audit_key,
        }


@dataclass
class ImportResult:
    customer: str
    target: str
    queue: str
    path: str
    read: int
    sent: dict[str, str] = field(default_factory=dict)  # original id -> new id
    skipped_present: list[str] = field(default_factory=list)
    failed: list[RedriveFailure] = field(default_factory=list)
    audit_key: str | None = None

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_json(self) -> dict[str, Any]:
        return {
            "customer": self.customer,
            "target": self.target,
            "queue": self.queue,
            "path": self.path,
            "read": self.read,
            "sent": len(self.sent),
            "new_ids": self.sent,
            "skipped_present": self.skipped_present,
            "failed": [f.to_json() for f in self.failed],
            "audit_key": self.audit_key,
            "ok": self.ok,
        }


@dataclass
class PurgeResult:
    customer: str
    queue: str
    mode: str  # "export" (only the exported messages) or "all" (--yes)
    deleted: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # present but not in the export (arrived later)
    missing: list[str] = field(default_factory=list)  # exported but no longer in the DLQ
    failed: list[RedriveFailure] = field(default_factory=list)
    in_flight: int | None = None  # messages another consumer holds; not purged
    export: dict[str, Any] | None = None
    audit_key: str | None = None

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_json(self) -> dict[str, Any]:
        return {
            "customer": self.customer,
            "queue": self.queue,
            "mode": self.mode,
            "deleted": self.deleted,
            "deleted_count": len(self.deleted),
            "kept": self.kept,
            "missing": self.missing,
            "failed": [f.to_json() for f in self.failed],
            "in_flight": self.in_flight,
            "export": self.export,
            "audit_key": self.audit_key,
            "ok": self.ok,
        }
