"""The change file format: the JSON Schema of ``models.Change``, a file to start from, and its
document (docs/change-format.md, generated here from the schema: ``changeconsole change schema
--markdown``; a test fails when the file in the repository is stale)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from .models import Change, iso_utc

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
# The fields an operator writes, in the order a change file lists them; the others are set by
# changeconsole (a file may carry them: an exported change).
WRITTEN: tuple[str, ...] = (
    "changeTitle",
    "customers",
    "implementationStart",
    "implementationEnd",
    "timezone",
    "changeReason",
    "customerImpact",
    "implementationPlan",
    "testPlan",
    "rollbackPlan",
    "snowTicket",
    "jiraTicket",
    "include_meeting",
    "meeting_metadata",
    "changeId",
)


def json_schema() -> dict[str, Any]:
    """The JSON Schema (2020-12) of a change file, property names as the file spells them."""
    schema = Change.model_json_schema(by_alias=True)
    return {
        "$schema": SCHEMA_DIALECT,
        "title": "changeconsole change",
        **{k: v for k, v in schema.items() if k != "title"},
    }


def template(customers: list[str], now: datetime | None = None) -> dict[str, Any]:
    """A valid change file to start from: a two-hour window a week from ``now``, at 22:00 UTC."""
    start = ((now or datetime.now(UTC)) + timedelta(days=7)).astimezone(UTC)
    start = start.replace(hour=22, minute=0, second=0, microsecond=0)
    doc: dict[str, Any] = {
        "changeTitle": "What is changed, in one line",
        "customers": customers,
        "implementationStart": iso_utc(start),
        "implementationEnd": iso_utc(start + timedelta(hours=2)),
        "timezone": "UTC",
        "changeReason": "Why the change is made.",
        "customerImpact": "What customers notice, and for how long.",
        "implementationPlan": "1. First step\n2. Second step",
        "testPlan": "How the result is verified.",
        "rollbackPlan": "How it is undone if it fails.",
        "snowTicket": "",
        "jiraTicket": "",
        "include_meeting": False,
    }
    Change.model_validate(doc)  # a template that does not validate is a bug here, never the operator's
    return doc


def _type(prop: dict[str, Any]) -> str:
    if "const" in prop:
        return f"`{json.dumps(prop['const'])}`"
    if "$ref" in prop:
        return "status"
    if "anyOf" in prop:
        kinds = [_type(p) for p in prop["anyOf"] if p.get("type") != "null"]
        return " or ".join(kinds) + " or null"
    kind = prop.get("type", "any")
    if kind == "array":
        item = prop.get("items", {})
        return f"array of {_type(item) if 'type' in item else 'objects'}"
    return {"string": "string", "boolean": "boolean", "integer": "integer", "object": "object"}.get(
        kind, kind
    )


def _limits(prop: dict[str, Any], required: bool) -> str:
    parts = []
    inner = next((p for p in prop.get("anyOf", []) if p.get("type") != "null"), prop)
    for key, text in (
        ("minLength", "not blank" if inner.get("minLength") == 1 else "at least {} characters"),
        ("maxLength", "at most {} characters"),
        ("minItems", "at least {}"),
        ("maxItems", "at most {}"),
        ("minimum", "≥ {}"),
        ("maximum", "≤ {}"),
    ):
        if key in inner:
            parts.append(text.format(inner[key]))
    if required:
        parts.insert(0, "required")
    elif "default" in prop and prop["default"] not in (None, "", []):
        parts.append(f"default `{json.dumps(prop['default'])}`")
    return ", ".join(parts) or "—"


def _rows(schema: dict[str, Any], names: list[str]) -> list[str]:
    required = set(schema.get("required", []))
    rows = ["| field | type | limits | meaning |", "|---|---|---|---|"]
    for name in names:
        prop = schema["properties"][name]
        meaning = " ".join(str(prop.get("description", "")).split()).replace("|", "\\|")
        rows.append(f"| `{name}` | {_type(prop)} | {_limits(prop, name in required)} | {meaning} |")
    return rows


def markdown() -> str:
    """docs/change-format.md."""
    schema = json_schema()
    written = [n for n in WRITTEN if n in schema["properties"]]
    set_by_us = [n for n in schema["properties"] if n not in written]
    statuses = ", ".join(f"`{s}`" for s in schema["$defs"]["ChangeStatus"]["enum"])
    example = json.dumps(template(["acme", "globex"], datetime(2030, 1, 24, 9, 0, tzinfo=UTC)), indent=2)
    lines = [
        "# The change file format",
        "",
        "<!-- Generated from the model's JSON Schema: changeconsole change schema --markdown > "
        "docs/change-format.md (tests/test_change_format.py fails when this file is stale). -->",
        "",
        "A change is one JSON object. `changeconsole change draft FILE` saves it as a draft, "
        "`changeconsole change submit FILE` submits it, `changeconsole change show ID --json` prints one "
        "in this format (the console's compose screen loads one with ctrl+o f). Start from "
        "`changeconsole change template > change.json`; `changeconsole change schema` prints the JSON "
        "Schema to validate against.",
        "",
        "Keys this program does not know are kept as they are (another system's fields survive every "
        "write). A problem is named by its field: `customers: unknown customer code(s): acme2` (exit 2).",
        "",
        "## Fields you write",
        "",
        *_rows(schema, written),
        "",
        "## Fields changeconsole sets",
        "",
        f"A file may carry them (an exported change); they are checked, and replaced on every write. "
        f"`status` is one of {statuses}.",
        "",
        *_rows(schema, set_by_us),
        "",
        "## Example",
        "",
        "What `changeconsole change template` prints (customers from the config, the window a week ahead):",
        "",
        "```json",
        example,
        "```",
        "",
    ]
    return "\n".join(lines)
