"""Fuzzing the two doors of untrusted input: the queue-message parser and the change model.

Whatever arrives, the answer is a result or a *typed* rejection (a PermanentMessageError subclass
with a reason code, or a pydantic ValidationError): never another exception, never a trigger whose
customer disagrees with its own key. Short in CI (fixed examples), long with CHANGECONSOLE_LONG=1.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any
from urllib.parse import quote

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from changeconsole.models import (
    CUSTOMER_CODE_RE,
    DIRECT_KIND,
    MAX_VERSION,
    Change,
    ChangeStatus,
    Config,
    EmailEvent,
    Ignore,
    PermanentMessageError,
    Trigger,
    direct_message,
    new_change_id,
    parse_queue_message,
    parse_trigger_key,
    trigger_key,
)
from support.suites import scaled

settings.load_profile("reliability")

CID = "CHG-2026-03-01T10-00-00-abc123"
CODES = ["acme", "globex", "initech-02", "a1"]

# -- generators ------------------------------------------------------------------------------------------

_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**18, max_value=10**40)
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
    | st.sampled_from(["", " ", "\x00", "\ud800", "\u202e", "</script>", "\r\nBcc: x@evil.example", "é" * 3])
)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=20,
)
_codes = st.sampled_from(CODES) | st.from_regex(r"[a-z0-9-]{2,50}", fullmatch=True) | st.text(max_size=60)
_events = st.sampled_from([e.value for e in EmailEvent]) | st.text(max_size=12)
_versions = st.integers(-2, 10**12) | st.booleans() | st.text(max_size=5) | st.none()
_cids = st.just(CID) | st.builds(new_change_id) | st.text(max_size=40)


@st.composite
def s3_keys(draw: st.DrawFn) -> str:
    """Trigger-like keys: well formed, almost well formed, or cross-customer."""
    code = draw(_codes)
    shape = draw(st.integers(0, 5))
    if shape == 0:
        event = draw(st.sampled_from(list(EmailEvent)))
        return trigger_key(code, draw(_cids), draw(st.integers(1, 10**9)), event)
    if shape == 1:  # path traversal, doubled slashes, other prefixes
        return draw(
            st.sampled_from(
                [
                    f"customers/{code}/../globex/{CID}/v0001-submitted.json",
                    f"customers//{code}/{CID}/v0001-submitted.json",
                    f"customers/{code}/{CID}/v0001-submitted.json/",
                    f"drafts/{CID}.json",
                    f"archive/{CID}.json",
                    f"customers/{code}/{CID}/v0001-submitted.JSON",
                    f"customers/{code}/{CID}/v0001-submitted.json\n",
                    f"customers/{code}/sub/{CID}/v0001-submitted.json",
                ]
            )
        )
    if shape == 2:
        return f"customers/{code}/{draw(st.text(max_size=60))}.json"
    return draw(st.text(max_size=120))


@st.composite
def s3_events(draw: st.DrawFn) -> dict[str, Any]:
    key = draw(s3_keys())
    encoded = draw(st.sampled_from([key, quote(key, safe=""), quote(key, safe="/"), key.replace(" ", "+")]))
    record: dict[str, Any] = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventTime": draw(st.sampled_from(["2026-03-01T10:00:00.000Z", 5, None])),
        "eventName": draw(
            st.sampled_from(["ObjectCreated:Put", "s3:ObjectCreated:Put", "ObjectRemoved:Delete"])
        ),
        "s3": {
            "bucket": {"name": draw(st.sampled_from(["changeconsole-local-metadata", "other", 7]))},
            "object": {"key": encoded, "size": draw(_scalars), "eTag": draw(_scalars)},
        },
    }
    # Random damage: drop or retype fields at any depth.
    for _ in range(draw(st.integers(0, 3))):
        nodes = [record]
        if isinstance(record.get("s3"), dict):
            s3 = record["s3"]
            nodes += [n for n in (s3, s3.get("object"), s3.get("bucket")) if isinstance(n, dict)]
        node = draw(st.sampled_from(nodes))
        if not node:
            continue
        field = draw(st.sampled_from(sorted(node)))
        if draw(st.booleans()):
            node[field] = draw(_json)
        else:
            node.pop(field, None)
    records: Any = [record]
    if draw(st.integers(0, 9)) == 0:
        records = draw(st.sampled_from([[], [record, record], record, None, "x"]))
    return {"Records": records}


@st.composite
def direct_messages(draw: st.DrawFn) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": draw(st.just(DIRECT_KIND) | st.text(max_size=20)),
        "schema": draw(st.just(1) | _scalars),
        "customer": draw(_codes | _scalars),
        "changeId": draw(_cids | _scalars),
        "version": draw(_versions),
        "event": draw(_events | _scalars),
    }
    which = draw(st.integers(0, 3))
    if which == 0:
        body["change"] = draw(st.dictionaries(st.text(max_size=15), _json, max_size=6))
    elif which == 1:
        body["s3"] = draw(
            st.fixed_dictionaries({"bucket": _scalars, "key": s3_keys() | _scalars})
            | st.dictionaries(st.text(max_size=5), _json, max_size=3)
        )
    elif which == 2:
        body["change"] = draw(_json)
    for key in draw(st.lists(st.sampled_from(sorted(body)), max_size=2)):
        body.pop(key, None)
    return body


TRICKY: list[str | bytes] = [
    "",
    "null",
    "[]",
    "{}",
    "\ufeff{}",
    '{"Records": [' * 5000 + "]" * 5000 + "}",
    "[" * 100_000,
    '{"a": ' + "9" * 5000 + "}",
    '{"kind": "changeconsole.trigger", "kind": "other"}',
    '{"Event": "s3:TestEvent", "Records": [1]}',
    b"\xff\xfe{}",
    b'{"x": "\xed\xa0\x80"}',
    "NaN",
    '{"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"}, '
    '"object": {"key": "customers%2Facme%2F..%2Fglobex%2Fx.json"}}}]}',
    "x" * (1024 * 1024 + 1),
]


def _bodies() -> st.SearchStrategy[str | bytes]:
    structured = (s3_events() | direct_messages() | _json).map(
        lambda v: json.dumps(v, ensure_ascii=False, allow_nan=True)
    )
    raw_text = st.text(max_size=200) | st.binary(max_size=200)
    tricky = st.integers(0, len(TRICKY) - 1).map(lambda i: TRICKY[i])  # short reprs in reports
    return structured | raw_text | tricky


# -- properties ---------------------------------------------------------------------------------------------


def check_message(body: str | bytes) -> Trigger | Ignore | PermanentMessageError:
    try:
        result = parse_queue_message(body)
    except PermanentMessageError as exc:
        assert isinstance(exc.reason, str) and exc.reason
        assert isinstance(exc.detail, str) and exc.detail
        if exc.customer is not None:
            assert isinstance(exc.customer, str)
        return exc
    assert isinstance(result, Trigger | Ignore)
    if isinstance(result, Trigger):
        # The parser never hands out a trigger whose customer is not a code, nor one whose key
        # lives under another customer's prefix.
        assert CUSTOMER_CODE_RE.match(result.customer)
        if result.source == "s3-event":
            assert result.key is not None
            assert result.key.startswith(f"customers/{result.customer}/")
            assert "/../" not in result.key and "//" not in result.key
        if result.change_id is not None and result.source == "direct":
            assert result.version is not None and result.version >= 1
            assert result.event in set(EmailEvent)
    return result


@settings(max_examples=scaled(200, 5_000))
@given(_bodies())
def test_parser_answers_every_body_with_a_result_or_a_typed_rejection(body: str | bytes) -> None:
    check_message(body)


@settings(max_examples=scaled(200, 3_000))
@given(s3_keys())
def test_trigger_keys_parse_or_reject_typed(key: str) -> None:
    try:
        code, cid, version, event = parse_trigger_key(key)
    except PermanentMessageError as exc:
        assert exc.reason == "invalid_trigger_key"
        return
    assert key.startswith(f"customers/{code}/")
    assert CUSTOMER_CODE_RE.match(code)
    if version is not None:
        assert cid is not None and event is not None
        assert trigger_key(code, cid, version, event) == key or f"v{version:04d}" not in key


@settings(max_examples=scaled(100, 1_000))
@given(
    code=st.sampled_from(CODES),
    version=st.integers(1, MAX_VERSION),
    event=st.sampled_from(list(EmailEvent)),
    title=st.text(min_size=1, max_size=80),
)
def test_well_formed_messages_always_parse(code: str, version: int, event: EmailEvent, title: str) -> None:
    """The other half of the contract: nothing valid is rejected (either transport)."""
    key = trigger_key(code, CID, version, event)
    s3_body = json.dumps(
        {
            "Records": [
                {
                    "eventName": "ObjectCreated:Put",
                    "s3": {"bucket": {"name": "b"}, "object": {"key": quote(key, safe=""), "size": 10}},
                }
            ]
        }
    )
    parsed = check_message(s3_body)
    assert isinstance(parsed, Trigger)
    assert (parsed.customer, parsed.change_id, parsed.version, parsed.event) == (code, CID, version, event)
    body = direct_message(code, CID, version, event, change={"changeTitle": title})
    parsed = check_message(body)
    assert isinstance(parsed, Trigger)
    assert parsed.change == {"changeTitle": title}


# -- the change model --------------------------------------------------------------------------------------

_ALIASES = sorted({f.alias or name for name, f in Change.model_fields.items()} | set(Change.model_fields))
_field_values = (
    _json
    | st.sampled_from(
        [
            "2026-03-01T10:00:00Z",
            "2026-03-01T10:00:00",
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-01:00",
            "2026-02-30T00:00:00Z",
            "Europe/Berlin",
            "America",
            "../../etc/passwd",
            "UTC\x00",
            "x" * 300,
            "x" * 20_001,
            ["acme", "ACME", "acme "],
            ["a" * 51],
            [],
            list(ChangeStatus),
            CID,
            "CHG-2026-03-01T10-00-00-ABC123",
        ]
    )
    | st.text(max_size=300)
)


@st.composite
def change_documents(draw: st.DrawFn) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "changeTitle": "t",
        "customers": ["acme"],
        "changeId": CID,
    }
    for key in draw(st.lists(st.sampled_from(_ALIASES), max_size=6)):
        doc[key] = draw(_field_values)
    for key in draw(st.lists(st.sampled_from(sorted(doc)), max_size=2)):
        doc.pop(key, None)
    doc.update(draw(st.dictionaries(st.text(max_size=10), _json, max_size=3)))
    return doc


_CONFIG = Config.model_validate(
    {
        "aws_region": "us-east-1",
        "s3_config": {"bucket_name": "changeconsole-local-metadata"},
        "email_config": {"sender_address": "notices@msp.example.com"},
        "customer_mappings": {
            code: {
                "customer_code": code,
                "customer_name": code.title(),
                "ses_role_arn": "arn:aws:iam::210000000001:role/ses",
                "sqs_queue_arn": f"arn:aws:sqs:us-east-1:123456789012:changeconsole-{code}",
            }
            for code in CODES
        },
    }
)


@settings(max_examples=scaled(120, 5_000))
@given(change_documents(), st.booleans())
def test_change_model_validates_or_rejects_typed(doc: dict[str, Any], with_config: bool) -> None:
    context = {"config": _CONFIG} if with_config else None
    try:
        change = Change.model_validate(doc, context=context)
    except ValidationError as exc:
        assert exc.errors()  # every rejection names at least one field
        return
    # Accepted: the invariants the rest of the system relies on hold.
    dumped = change.to_json_dict()
    again = Change.model_validate(json.loads(json.dumps(dumped)), context=context)
    assert again.to_json_dict() == dumped
    assert change.customers == sorted(set(change.customers)) and change.customers
    assert "\n" not in change.title and "\r" not in change.title
    assert len(change.title) <= 200
    if with_config:
        assert set(change.customers) <= set(CODES)
    if change.implementation_start and change.implementation_end:
        assert change.implementation_start < change.implementation_end


@settings(max_examples=scaled(80, 2_000))
@given(direct_messages())
def test_embedded_change_of_a_direct_message_is_validated_typed(body: dict[str, Any]) -> None:
    """The worker validates the snapshot it was handed: a typed rejection, whatever it holds."""
    parsed = check_message(json.dumps(body))
    if not isinstance(parsed, Trigger) or parsed.change is None:
        return
    with contextlib.suppress(ValidationError):
        Change.model_validate(parsed.change, context={"config": _CONFIG})
