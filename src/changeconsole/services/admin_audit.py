"""Audit records of operator changes to customers, contacts and topics (``audit/`` in the bucket).

Written through the one audit writer (``audit.AuditLog.write``): one S3 object per operator action.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..models import Config
from .audit import AuditLog
from .aws import AwsFactory

AUDIT_SOURCE = "admin"


def record_admin(
    aws: AwsFactory,
    config: Config,
    kind: str,
    *,
    actor: str,
    customer: str,
    details: Iterable[dict[str, Any]] = (),
    **fields: Any,
) -> str | None:
    """One action (``kind``, e.g. ``contacts.import``) and a record per item it changed; the S3 key
    (None when S3 refused: the action stands, the log line is written)."""
    audit = AuditLog(aws, config, source=AUDIT_SOURCE)
    entries = [audit.entry(kind, actor=actor, customer=customer, **fields)]
    entries += [audit.entry(f"{kind}.item", actor=actor, customer=customer, **item) for item in details]
    return audit.write(entries)
