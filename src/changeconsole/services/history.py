"""Field-by-field difference of two versions of a change; long text as a unified diff."""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from typing import Any

from ..models import Change

# Not compared: the audit trail grows by one entry per version and says nothing new.
_SKIP = frozenset({"modifications"})
# A text field at least this long (or with a line break) gets a unified diff.
LONG_TEXT = 80


@dataclass
class FieldDiff:
    field: str  # JSON (camelCase) name
    old: Any
    new: Any
    unified: str | None = None  # for long text: unified diff of old → new

    def to_json(self) -> dict[str, Any]:
        return {"field": self.field, "old": self.old, "new": self.new, "unified": self.unified}


def _is_long(value: Any) -> bool:
    return isinstance(value, str) and (len(value) >= LONG_TEXT or "\n" in value)


def _unified(field: str, old: str, new: str, a_label: str, b_label: str) -> str:
    lines = difflib.unified_diff(
        old.splitlines(),
        new.splitlines(),
        fromfile=f"{a_label}/{field}",
        tofile=f"{b_label}/{field}",
        lineterm="",
    )
    return "\n".join(lines)


def diff_changes(a: Change, b: Change) -> list[FieldDiff]:
    """Every field whose value differs between ``a`` and ``b``, in document order."""
    old, new = a.to_json_dict(), b.to_json_dict()
    keys = list(old) + [k for k in new if k not in old]
    out: list[FieldDiff] = []
    for key in keys:
        if key in _SKIP:
            continue
        before, after = old.get(key), new.get(key)
        if json.dumps(before, sort_keys=True) == json.dumps(after, sort_keys=True):
            continue
        unified = None
        texts = all(isinstance(v, str | None) for v in (before, after))
        if texts and (_is_long(before) or _is_long(after)):
            unified = _unified(key, before or "", after or "", f"v{a.version}", f"v{b.version}")
        out.append(FieldDiff(key, before, after, unified))
    return out
