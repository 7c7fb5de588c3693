"""Text the screens show for times, durations and long messages (pure functions)."""

from __future__ import annotations

from datetime import UTC, datetime

from ..models import DeliveryRecord


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    total = int(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def parse_ts(ts: str | None) -> datetime | None:
    """An RFC 3339 timestamp (``Z`` or offset) as an aware datetime; None when missing or malformed."""
    if not ts:
        return None
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return None


def record_duration(record: DeliveryRecord, now: datetime) -> float | None:
    """Seconds from queued (or started) to finished, or to ``now`` while still in flight."""
    start = parse_ts(record.queued_at) or parse_ts(record.started_at)
    if start is None:
        return None
    end = parse_ts(record.finished_at) if record.is_final else None
    if end is None:
        end = parse_ts(record.updated_at) if record.is_final else now
    if end is None:
        return None
    return max(0.0, (end - start).total_seconds())


def one_line(text: str | None, limit: int = 300) -> str:
    if not text:
        return ""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def age(ts: str | None, now: datetime) -> str:
    """``5m ago`` style age of an RFC 3339 timestamp (``""`` when there is none)."""
    when = parse_ts(ts)
    if when is None:
        return ""
    seconds = max(0, int((now - when).total_seconds()))
    if seconds < 60:
        return f"{seconds}s ago"
    if seconds < 3600:
        return f"{seconds // 60}m ago"
    if seconds < 86400:
        return f"{seconds // 3600}h ago"
    return f"{seconds // 86400}d ago"


def short_time(value: str | None) -> str:
    """``2026-02-01T22:00:00Z`` → ``2026-02-01 22:00Z`` (UTC, as stored)."""
    if not value:
        return "—"
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        return value
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%MZ")
