"""Queue message parsing: S3 event notifications (AWS and moto variants) and our direct shape."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from changeconsole.models import (
    DIRECT_KIND,
    MAX_MESSAGE_BYTES,
    EmailEvent,
    Ignore,
    InvalidTriggerKey,
    MalformedMessage,
    OversizedMessage,
    PermanentMessageError,
    Trigger,
    direct_message,
    parse_queue_message,
    parse_trigger_key,
    trigger_key,
)

CID = "CHG-2026-01-31T22-00-00-abc123"
KEY = f"customers/acme/{CID}/v0002-approved.json"

# The example event message exactly as the S3 user guide documents it ("Event message structure"),
# with our trigger key. S3 URL-encodes keys but leaves "/" as it is.
AWS_EVENT: dict[str, Any] = {
    "Records": [
        {
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "awsRegion": "us-west-2",
            "eventTime": "1970-01-01T00:00:00.000Z",
            "eventName": "ObjectCreated:Put",
            "userIdentity": {"principalId": "AIDAJDPLRKLG7UEXAMPLE"},
            "requestParameters": {"sourceIPAddress": "172.16.0.1"},
            "responseElements": {
                "x-amz-request-id": "C3D13FE58DE4C810",
                "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD",
            },
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": "changeconsole-acme",
                "bucket": {
                    "name": "amzn-s3-demo-bucket",
                    "ownerIdentity": {"principalId": "A3NL1KOZZKExample"},
                    "arn": "arn:aws:s3:::amzn-s3-demo-bucket",
                },
                "object": {
                    "key": KEY,
                    "size": 1024,
                    "eTag": "d41d8cd98f00b204e9800998ecf8427e",
                    "versionId": "096fKKXTRTtl3on89fVO.nfljtsv6qko",
                    "sequencer": "0055AED6DCD90281E5",
                },
            },
        }
    ]
}

# What moto's server really sends (captured): "/" encoded as %2F, no userIdentity,
# requestParameters, responseElements, versionId or sequencer.
MOTO_EVENT: dict[str, Any] = {
    "Records": [
        {
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "awsRegion": "us-east-1",
            "eventTime": "2026-11-27T19:53:27.576Z",
            "eventName": "ObjectCreated:Put",
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": "changeconsole-acme",
                "bucket": {
                    "name": "changeconsole-local-metadata",
                    "arn": "arn:aws:s3:::changeconsole-local-metadata",
                },
                "object": {
                    "key": KEY.replace("/", "%2F"),
                    "size": 2,
                    "eTag": "99914b932bd37a50b983c5e7c90ae93b",
                },
            },
        }
    ]
}

# The documented test event S3 sends when a notification configuration is saved.
TEST_EVENT = {
    "Service": "Amazon S3",
    "Event": "s3:TestEvent",
    "Time": "2014-10-13T15:57:02.089Z",
    "Bucket": "amzn-s3-demo-bucket",
    "RequestId": "5582815E1AEA5ADF",
    "HostId": "8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE",
}


def event_with(**changes: Any) -> dict[str, Any]:
    """AWS_EVENT with dotted-path replacements; a value of ... deletes the key."""
    event = copy.deepcopy(AWS_EVENT)
    for dotted, value in changes.items():
        node: Any = event["Records"][0]
        *parents, last = dotted.split("__")
        for part in parents:
            node = node[part]
        if value is ...:
            del node[last]
        else:
            node[last] = value
    return event


def direct(**changes: Any) -> dict[str, Any]:
    body = json.loads(direct_message("acme", CID, 2, EmailEvent.APPROVED, change={"changeId": CID}))
    for key, value in changes.items():
        if value is ...:
            body.pop(key, None)
        else:
            body[key] = value
    return body


def parse(data: Any) -> Trigger | Ignore:
    return parse_queue_message(json.dumps(data))


# -- S3 events ------------------------------------------------------------------------------


def test_aws_documented_event() -> None:
    trigger = parse(AWS_EVENT)
    assert isinstance(trigger, Trigger)
    assert trigger.source == "s3-event"
    assert (trigger.customer, trigger.change_id, trigger.version, trigger.event) == (
        "acme",
        CID,
        2,
        EmailEvent.APPROVED,
    )
    assert trigger.bucket == "amzn-s3-demo-bucket"
    assert trigger.key == KEY
    assert trigger.etag == "d41d8cd98f00b204e9800998ecf8427e"
    assert trigger.size == 1024
    assert trigger.event_time == "1970-01-01T00:00:00.000Z"


def test_moto_variant_with_encoded_slashes_and_missing_fields() -> None:
    trigger = parse(MOTO_EVENT)
    assert isinstance(trigger, Trigger)
    assert trigger.key == KEY
    assert (trigger.customer, trigger.change_id, trigger.version, trigger.event) == (
        "acme",
        CID,
        2,
        EmailEvent.APPROVED,
    )
    assert trigger.bucket == "changeconsole-local-metadata"


def test_bytes_and_str_bodies_parse_alike() -> None:
    text = json.dumps(AWS_EVENT)
    assert parse_queue_message(text) == parse_queue_message(text.encode())


def test_s3_prefixed_event_name_and_lowercase_etag() -> None:
    event = event_with(eventName="s3:ObjectCreated:CompleteMultipartUpload")
    del event["Records"][0]["s3"]["object"]["eTag"]
    event["Records"][0]["s3"]["object"]["etag"] = "abc"
    trigger = parse(event)
    assert isinstance(trigger, Trigger)
    assert trigger.etag == "abc"


def test_optional_fields_of_wrong_type_are_dropped_not_fatal() -> None:
    trigger = parse(event_with(s3__object__size="1024", eventTime=5))
    assert isinstance(trigger, Trigger)
    assert trigger.size is None
    assert trigger.event_time is None


def test_s3_test_event_is_ignored() -> None:
    result = parse(TEST_EVENT)
    assert isinstance(result, Ignore)
    assert "TestEvent" in result.reason


@pytest.mark.parametrize("name", ["ObjectRemoved:Delete", "ObjectRestore:Completed", "s3:ObjectRemoved:*"])
def test_non_create_events_are_ignored(name: str) -> None:
    assert isinstance(parse(event_with(eventName=name)), Ignore)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (KEY, ("acme", CID, 2, EmailEvent.APPROVED)),
        (
            trigger_key("stark-industries", CID, 12, EmailEvent.CANCELLED),
            ("stark-industries", CID, 12, "cancelled"),
        ),
        (f"customers/acme/{CID}.json", ("acme", CID, None, None)),  # legacy flat trigger
        ("customers/acme/anything.json", ("acme", None, None, None)),
    ],
)
def test_trigger_keys(key: str, expected: tuple[Any, ...]) -> None:
    assert parse_trigger_key(key) == expected


def test_trigger_key_format() -> None:
    assert trigger_key("acme", CID, 2, EmailEvent.APPROVED) == KEY


@pytest.mark.parametrize(
    "key",
    [
        "archive/CHG-2026-01-31T22-00-00-abc123.json",
        "customers/ACME/x.json",
        "customers/acme/x.txt",
        f"customers/acme/{CID}/v0002-exploded.json",
        f"customers/acme/{CID}/v0002-approved.json\n",
        "customers/acme/CHG-2026-01-31T22-00-00-ABC123/v0002-approved.json",
        "customers/acme/" + "a" * 1100 + ".json",
    ],
)
def test_bad_trigger_keys(key: str) -> None:
    with pytest.raises(InvalidTriggerKey):
        parse(event_with(s3__object__key=key))


def test_bad_key_error_names_the_customer_when_known() -> None:
    with pytest.raises(InvalidTriggerKey) as info:
        parse_trigger_key(f"customers/acme/{CID}/v0002-exploded.json")
    assert info.value.customer == "acme"
    assert info.value.reason == "invalid_trigger_key"


# -- direct shape --------------------------------------------------------------------------


def test_direct_message_with_embedded_change() -> None:
    trigger = parse(direct())
    assert isinstance(trigger, Trigger)
    assert trigger.source == "direct"
    assert (trigger.customer, trigger.change_id, trigger.version, trigger.event) == (
        "acme",
        CID,
        2,
        EmailEvent.APPROVED,
    )
    assert trigger.change == {"changeId": CID}
    assert trigger.bucket is None


def test_direct_message_with_s3_reference() -> None:
    body = direct_message(
        "acme", CID, 2, EmailEvent.APPROVED, bucket="meta", key=f"payloads/acme/{CID}/v0002-approved.json"
    )
    assert json.loads(body)["kind"] == DIRECT_KIND
    trigger = parse_queue_message(body)
    assert isinstance(trigger, Trigger)
    assert trigger.change is None
    assert (trigger.bucket, trigger.key) == ("meta", f"payloads/acme/{CID}/v0002-approved.json")


@pytest.mark.parametrize(
    "changes",
    [
        {"customer": ...},
        {"customer": "ACME"},
        {"customer": 7},
        {"event": "exploded"},
        {"event": ...},
        {"version": "2"},
        {"version": True},
        {"version": 0},
        {"version": 2.0},
        {"changeId": "CHG-1"},
        {"changeId": None},
        {"change": ...},
        {"change": "not an object"},
        {"change": ..., "s3": {"bucket": "b"}},
        {"change": ..., "s3": {"bucket": "b", "key": 5}},
    ],
)
def test_bad_direct_messages(changes: dict[str, Any]) -> None:
    with pytest.raises(MalformedMessage) as info:
        parse(direct(**changes))
    assert info.value.reason == "malformed_message"
    if changes.get("customer", "acme") == "acme":
        assert info.value.customer == "acme"


# -- garbage, wrong types, oversize -------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"\xff\xfe\x00garbage",
        "\ud800",
        b"{",
        b"null",
        b"[]",
        b"42",
        b'"Records"',
        b"{}",
        b'{"Records": []}',
        b'{"Records": {}}',
        b'{"Records": [1]}',
        b'{"Records": [{}]}',
        b'{"Records": [{"eventName": 5}]}',
        b'{"Records": [{"eventName": "ObjectCreated:Put"}]}',
        b'{"Records": [{"eventName": "ObjectCreated:Put", "s3": []}]}',
        b'{"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": "b", "object": {"key": "k"}}}]}',
        b'{"Records": [{"eventName": "ObjectCreated:Put", '
        b'"s3": {"bucket": {"name": "b"}, "object": {"key": 1}}}]}',
        pytest.param(b"[" * 200_000 + b"]" * 200_000, id="deeply-nested-array"),
        pytest.param(b'{"a":' * 100_000 + b"1" + b"}" * 100_000, id="deeply-nested-object"),
    ],
)
def test_garbage_is_malformed(body: str | bytes) -> None:
    with pytest.raises(MalformedMessage):
        parse_queue_message(body)


def test_more_than_one_record_is_malformed() -> None:
    event = copy.deepcopy(AWS_EVENT)
    event["Records"].append(copy.deepcopy(event["Records"][0]))
    with pytest.raises(MalformedMessage, match="one S3 record"):
        parse(event)


def test_oversize_limit() -> None:
    base = json.dumps(direct())
    padding = MAX_MESSAGE_BYTES - len(base.encode()) - len(', "pad": ""')
    at_limit = base[:-1] + ', "pad": "' + "x" * padding + '"}'
    assert len(at_limit.encode()) == MAX_MESSAGE_BYTES
    assert isinstance(parse_queue_message(at_limit), Trigger)
    over = at_limit[:-2] + 'x"}'
    with pytest.raises(OversizedMessage) as info:
        parse_queue_message(over)
    assert info.value.reason == "oversized_message"
    # Multi-byte characters count in bytes, not characters.
    with pytest.raises(OversizedMessage):
        parse_queue_message("é" * (MAX_MESSAGE_BYTES // 2 + 1))


# -- property: anything in, a result or a typed permanent error out ------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
_field_values = _json | st.sampled_from(
    [
        KEY,
        KEY.replace("/", "%2F"),
        CID,
        "acme",
        "approved",
        2,
        "ObjectCreated:Put",
        "s3:TestEvent",
        DIRECT_KIND,
    ]
)


@st.composite
def mutated(draw: st.DrawFn) -> Any:
    """A valid message of either shape with random fields replaced, removed or retyped."""
    base = copy.deepcopy(draw(st.sampled_from([AWS_EVENT, MOTO_EVENT, TEST_EVENT, direct()])))
    for _ in range(draw(st.integers(1, 4))):
        node: Any = base
        while isinstance(node, (dict, list)) and node and draw(st.booleans()):
            key = draw(st.sampled_from(sorted(node) if isinstance(node, dict) else list(range(len(node)))))
            if not isinstance(node[key], (dict, list)) or not node[key]:
                break
            node = node[key]
        if isinstance(node, dict) and node:
            key = draw(st.sampled_from(sorted(node)))
            if draw(st.booleans()):
                node[key] = draw(_field_values)
            else:
                del node[key]
        elif isinstance(node, list) and node:
            node[draw(st.integers(0, len(node) - 1))] = draw(_field_values)
    return base


def _check(body: str | bytes) -> None:
    try:
        result = parse_queue_message(body)
    except PermanentMessageError as exc:
        assert exc.reason
        assert isinstance(exc.detail, str)
    else:
        assert isinstance(result, (Trigger, Ignore))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300) | st.text(max_size=300))
def test_property_any_bytes(body: str | bytes) -> None:
    _check(body)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_json)
def test_property_any_json(value: Any) -> None:
    _check(json.dumps(value))


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_property_near_valid_messages(value: Any) -> None:
    _check(json.dumps(value))
