"""Change and config models: validation, JSON round trips, id format, the state machine."""

from __future__ import annotations

import json
import re
import zoneinfo
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from changeconsole.errors import validation_problems
from changeconsole.models import (
    DELETABLE,
    FINAL_STATES,
    MAX_LONG_TEXT,
    MAX_TICKET,
    MAX_TITLE,
    MAX_USER,
    MAX_VERSION,
    TOPIC_ANNOUNCE,
    TOPIC_APPROVAL,
    TRANSITIONS,
    Change,
    ChangeStatus,
    Config,
    CustomerMapping,
    DeliveryState,
    EmailEvent,
    IllegalTransition,
    Modification,
    UnknownCustomer,
    check_transition,
    iso_utc,
    new_change_id,
    topic_for,
)

ID_FORMAT = re.compile(r"^CHG-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-[0-9a-z]{6}$")


def change_data(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "object_type": "change",
        "changeId": "CHG-2026-01-31T22-00-00-abc123",
        "changeTitle": "Patch the VPN concentrators",
        "changeReason": "CVE-2026-0001",
        "customers": ["globex", "acme"],
        "implementationStart": "2026-02-01T22:00:00Z",
        "implementationEnd": "2026-02-01T23:00:00Z",
        "timezone": "Europe/London",
    }
    data.update(overrides)
    return data


def config_data() -> dict[str, Any]:
    def mapping(code: str, account: str) -> dict[str, Any]:
        return {
            "customer_code": code,
            "customer_name": code.title(),
            "environment": "production",
            "region": "us-east-1",
            "ses_role_arn": f"arn:aws:iam::{account}:role/ses-sender",
            "sqs_queue_arn": f"arn:aws:sqs:us-east-1:123456789012:changeconsole-{code}",
            "restricted_recipients": [],
        }

    return {
        "aws_region": "us-east-1",
        "s3_config": {"bucket_name": "msp-change-metadata"},
        "email_config": {"sender_address": "notices@msp.example.com"},
        "customer_mappings": {
            "acme": mapping("acme", "210000000001"),
            "globex": mapping("globex", "210000000002"),
        },
    }


def errors_of(data: dict[str, Any], **kwargs: Any) -> list[dict[str, str]]:
    with pytest.raises(ValidationError) as info:
        Change.model_validate(data, **kwargs)
    return validation_problems(info.value)


def paths_of(data: dict[str, Any], **kwargs: Any) -> set[str]:
    return {p["path"] for p in errors_of(data, **kwargs)}


# -- change id -------------------------------------------------------------------------


def test_change_id_generator_format_uses_utc() -> None:
    berlin = datetime(2026, 1, 31, 23, 30, 5, tzinfo=zoneinfo.ZoneInfo("Europe/Berlin"))
    cid = new_change_id(berlin)
    assert ID_FORMAT.match(cid)
    assert cid.startswith("CHG-2026-01-31T22-30-05-")


def test_change_id_suffix_is_random_base36() -> None:
    ids = {new_change_id() for _ in range(50)}
    assert all(ID_FORMAT.match(i) for i in ids)
    assert len({i[-6:] for i in ids}) > 40


def test_change_gets_a_generated_id_and_keeps_a_given_one() -> None:
    data = change_data()
    del data["changeId"]
    generated = Change.model_validate(data)
    assert ID_FORMAT.match(generated.change_id)
    kept = Change.model_validate(change_data())
    assert kept.change_id == "CHG-2026-01-31T22-00-00-abc123"
    assert kept.to_json_dict()["changeId"] == "CHG-2026-01-31T22-00-00-abc123"


@pytest.mark.parametrize(
    "bad",
    [
        "chg-2026-01-31T22-00-00-abc123",
        "CHG-2026-01-31T22-00-00-ABC123",
        "CHG-2026-01-31T22-00-00-abc12",
        "CHG-2026-01-31T22:00:00-abc123",
        "CHG-2026-01-31T22-00-00-abc123\n",
        "CHG-2026-01-31T22-00-00-abc123/../x",
        "",
    ],
)
def test_bad_change_ids_are_rejected(bad: str) -> None:
    assert "changeId" in paths_of(change_data(changeId=bad))


# -- title, customers, texts ----------------------------------------------------------------


def test_title_is_required() -> None:
    data = change_data()
    del data["changeTitle"]
    assert "changeTitle" in paths_of(data)
    for blank in ("", "   ", "\t"):
        assert "changeTitle" in paths_of(change_data(changeTitle=blank))


def test_title_is_one_stripped_line() -> None:
    assert Change.model_validate(change_data(changeTitle="  Patch  ")).title == "Patch"
    assert "changeTitle" in paths_of(change_data(changeTitle="Patch\nBcc: everyone@example.com"))
    assert "changeTitle" in paths_of(change_data(changeTitle="Patch\x00"))


def test_at_least_one_customer_and_codes_sorted_unique() -> None:
    data = change_data()
    del data["customers"]
    assert "customers" in paths_of(data)
    assert "customers" in paths_of(change_data(customers=[]))
    assert "customers" in paths_of(change_data(customers=["Acme"]))
    assert "customers" in paths_of(change_data(customers=["acme", "a"]))
    assert Change.model_validate(change_data(customers=[" acme\n"])).customers == ["acme"]
    change = Change.model_validate(change_data(customers=["globex", "acme", "globex"]))
    assert change.customers == ["acme", "globex"]


def test_customer_codes_must_be_known_when_a_config_is_given() -> None:
    cfg = Config.model_validate(config_data())
    ok = Change.model_validate(change_data(customers=["acme"]), context={"config": cfg})
    assert ok.customers == ["acme"]
    problems = errors_of(change_data(customers=["acme", "initech"]), context={"config": cfg})
    assert problems[0]["path"] == "customers"
    assert "initech" in problems[0]["message"]
    # Without a config only the shape is checked.
    assert Change.model_validate(change_data(customers=["initech"])).customers == ["initech"]


def test_end_must_be_after_start() -> None:
    problems = errors_of(change_data(implementationEnd="2026-02-01T22:00:00Z"))
    assert any("after" in p["message"] for p in problems)
    assert errors_of(change_data(implementationEnd="2026-02-01T21:00:00Z"))
    # An offset that makes the end earlier in UTC is caught too.
    assert errors_of(change_data(implementationEnd="2026-02-01T23:30:00+02:00"))


def test_timestamps_are_normalised_to_utc() -> None:
    change = Change.model_validate(
        change_data(
            implementationStart="2026-02-01T23:00:00+01:00", implementationEnd="2026-02-02T00:30:00.75Z"
        )
    )
    assert change.implementation_start == "2026-02-01T22:00:00Z"
    assert change.implementation_end == "2026-02-02T00:30:00Z"
    assert change.start_dt == datetime(2026, 2, 1, 22, tzinfo=UTC)


@pytest.mark.parametrize(
    "bad",
    [
        "tomorrow",
        "2026-13-01T00:00:00Z",
        20260201,
        ["2026"],
        "0001-01-01T00:00:00+01:00",
    ],
)
def test_bad_timestamps_are_validation_errors(bad: Any) -> None:
    assert "implementationStart" in paths_of(change_data(implementationStart=bad, implementationEnd=None))


def test_a_naive_timestamp_without_a_timezone_names_the_fix() -> None:
    data = change_data(implementationStart="2026-02-01T22:00:00", implementationEnd=None)
    del data["timezone"]
    (problem,) = errors_of(data)
    assert problem["path"] == "implementationStart"
    assert "timezone" in problem["message"]


def test_early_years_keep_four_digits() -> None:
    assert iso_utc(datetime(999, 1, 1, tzinfo=UTC)) == "0999-01-01T00:00:00Z"
    change = Change.model_validate(
        change_data(implementationStart="0999-01-01T00:00:00Z", implementationEnd="1000-01-01T00:00:00Z")
    )
    again = Change.model_validate(change.to_json_dict())
    assert again.implementation_start == "0999-01-01T00:00:00Z"


@pytest.mark.parametrize("tz", ["UTC", "Europe/London", "America/Argentina/Buenos_Aires", "Asia/Kolkata"])
def test_iana_timezones_are_accepted(tz: str) -> None:
    assert Change.model_validate(change_data(timezone=tz)).timezone == tz


@pytest.mark.parametrize(
    "tz",
    [
        "",
        "Mars/Olympus_Mons",
        "America",
        "Europe/London\n",
        "../../etc/passwd",
        pytest.param("x" * 300, id="too-long"),
        "CET\x00",
    ],
)
def test_unknown_timezones_are_validation_errors(tz: str) -> None:
    assert "timezone" in paths_of(change_data(timezone=tz))


# Every free-text field and its limit; a new str field without a limit fails the meta test below.
TEXT_LIMITS = {
    "changeTitle": MAX_TITLE,
    "changeReason": MAX_LONG_TEXT,
    "implementationPlan": MAX_LONG_TEXT,
    "testPlan": MAX_LONG_TEXT,
    "customerImpact": MAX_LONG_TEXT,
    "rollbackPlan": MAX_LONG_TEXT,
    "snowTicket": MAX_TICKET,
    "jiraTicket": MAX_TICKET,
    "createdBy": MAX_USER,
    "modifiedBy": MAX_USER,
    "submittedBy": MAX_USER,
    "approvedBy": MAX_USER,
    "completedBy": MAX_USER,
    "cancelledBy": MAX_USER,
    "timezone": 64,
}
SHAPE_CHECKED = {
    "changeId",
    "implementationStart",
    "implementationEnd",
    "createdAt",
    "modifiedAt",
    "submittedAt",
    "approvedAt",
    "completedAt",
    "cancelledAt",
}


def test_every_text_field_has_a_limit() -> None:
    text_fields = set()
    for name, info in Change.model_fields.items():
        if info.annotation in (str, str | None):
            text_fields.add(info.alias or name)
    assert text_fields == set(TEXT_LIMITS) | SHAPE_CHECKED
    for alias, limit in TEXT_LIMITS.items():
        name = next(n for n, i in Change.model_fields.items() if (i.alias or n) == alias)
        declared = [m.max_length for m in Change.model_fields[name].metadata if hasattr(m, "max_length")]
        assert declared == [limit], alias


@pytest.mark.parametrize(("alias", "limit"), sorted(TEXT_LIMITS.items()))
def test_text_length_limits(alias: str, limit: int) -> None:
    if alias == "timezone":
        assert "timezone" in paths_of(change_data(timezone="Europe/" + "x" * limit))
        return
    Change.model_validate(change_data(**{alias: "x" * limit}))
    problems = errors_of(change_data(**{alias: "x" * (limit + 1)}))
    assert [p["path"] for p in problems] == [alias]
    assert str(limit) in problems[0]["message"]


def test_modification_fields_are_limited_and_paths_are_json_paths() -> None:
    good = {"timestamp": "2026-02-01T22:00:00Z", "user_id": "ops", "modification_type": "created"}
    assert Modification.model_validate(good).user_id == "ops"
    for key, limit in (("timestamp", 64), ("user_id", MAX_USER), ("modification_type", 64)):
        bad = dict(good, **{key: "x" * (limit + 1)})
        paths = paths_of(change_data(modifications=[good, bad]))
        assert paths == {f"modifications[1].{key}"}


def test_wrong_types_are_reported_per_field() -> None:
    paths = paths_of(
        change_data(changeTitle=5, customers="acme", version=0, include_meeting="maybe", status="done")
    )
    assert {"changeTitle", "customers", "version", "include_meeting", "status"} <= paths


# -- round trips ----------------------------------------------------------------------------


DEPLOYED_CHANGE = {
    "object_type": "change",
    "changeId": "CHG-2025-11-02T08-15-00-q9x2k1",
    "changeTitle": "Rotate TLS certificates",
    "changeReason": "Expiry",
    "implementationPlan": "1. rotate\n2. verify",
    "testPlan": "curl -v",
    "customerImpact": "None expected",
    "rollbackPlan": "Restore previous cert",
    "snowTicket": "CHG0012345",
    "jiraTicket": "OPS-42",
    "customers": ["acme", "globex"],
    "implementationStart": "2025-11-03T22:00:00Z",
    "implementationEnd": "2025-11-03T23:00:00Z",
    "timezone": "America/New_York",
    "include_meeting": True,
    "meeting_metadata": {"join_url": "https://meet.example.com/x", "duration": 60},
    "status": "approved",
    "prior_status": "submitted",
    "version": 3,
    "createdAt": "2025-11-02T08:15:00Z",
    "createdBy": "ana",
    "modifiedAt": "2025-11-02T09:00:00Z",
    "modifiedBy": "ben",
    "submittedAt": "2025-11-02T08:30:00Z",
    "submittedBy": "ana",
    "approvedAt": "2025-11-02T09:00:00Z",
    "approvedBy": "ben",
    "completedAt": None,
    "completedBy": None,
    "cancelledAt": None,
    "cancelledBy": None,
    "modifications": [
        {"timestamp": "2025-11-02T08:15:00Z", "user_id": "ana", "modification_type": "created", "note": "x"},
        {"timestamp": "2025-11-02T09:00:00Z", "user_id": "ben", "modification_type": "approved", "ip": None},
    ],
    # Keys this program does not know.
    "legacy_portal_id": 991,
    "approvalChain": [{"who": "cab", "when": None}],
    "custom": {"nested": {"deep": [1, 2.5, "three", None, True]}},
    "nullable": None,
}


def test_change_round_trip_keeps_unknown_keys() -> None:
    change = Change.model_validate(json.loads(json.dumps(DEPLOYED_CHANGE)))
    out = change.to_json_dict()
    assert out == DEPLOYED_CHANGE
    assert json.loads(change.to_json()) == DEPLOYED_CHANGE
    assert Change.model_validate(out).to_json_dict() == out
    assert change.ever_approved


def test_config_round_trip_keeps_unknown_keys() -> None:
    raw = config_data()
    raw["terraform_workspace"] = "prod"
    raw["legacy"] = None
    raw["s3_config"]["archive_prefix"] = "archive/"
    raw["email_config"]["portal_base_url"] = "https://changes.example.com"
    raw["email_config"]["signature"] = {"lines": ["MSP", None]}
    raw["customer_mappings"]["acme"]["account_alias"] = "acme-prod"
    raw["customer_mappings"]["acme"]["tags"] = {"tier": 1, "note": None}
    raw["customer_mappings"]["globex"]["region"] = None
    cfg = Config.model_validate(json.loads(json.dumps(raw)))
    out = cfg.to_json_dict()
    for key, value in raw.items():
        if isinstance(value, dict) and key != "customer_mappings":
            assert out[key] == {**out[key], **value}, key
        elif key != "customer_mappings":
            assert out[key] == value, key
    for code, mapping in raw["customer_mappings"].items():
        assert out["customer_mappings"][code] == {**out["customer_mappings"][code], **mapping}
    again = Config.model_validate(json.loads(json.dumps(out)))
    assert again.to_json_dict() == out
    assert again.status_table_name == "changeconsole-status"
    assert again.max_receive_count == 3


# -- config helpers -------------------------------------------------------------------------


def test_customer_mapping_derived_names() -> None:
    cfg = Config.model_validate(config_data())
    acme = cfg.customer("acme")
    assert acme.account_id == "210000000001"
    assert (acme.queue_name, acme.queue_account, acme.queue_region) == (
        "changeconsole-acme",
        "123456789012",
        "us-east-1",
    )
    assert acme.dlq_name == "changeconsole-acme-dlq"
    assert acme.effective_dlq_arn == "arn:aws:sqs:us-east-1:123456789012:changeconsole-acme-dlq"
    explicit = CustomerMapping.model_validate(
        {**config_data()["customer_mappings"]["acme"], "dlq_arn": "arn:aws:sqs:us-east-1:123456789012:dead"}
    )
    assert explicit.dlq_name == "dead"
    assert cfg.contact_list_for("acme") == "changeconsole"
    assert cfg.sender_for("acme") == "notices@msp.example.com"
    with pytest.raises(UnknownCustomer) as info:
        cfg.customer("nope")
    assert info.value.reason == "unknown_customer"
    assert "nope" in str(info.value)


def test_restricted_recipients_whitelist_is_case_insensitive() -> None:
    data = config_data()["customer_mappings"]["acme"]
    open_mapping = CustomerMapping.model_validate({**data, "restricted_recipients": None})
    assert open_mapping.allows_recipient("anyone@example.com")
    closed = CustomerMapping.model_validate({**data, "restricted_recipients": ["Ops@Acme.example.com"]})
    assert closed.allows_recipient("ops@acme.EXAMPLE.com")
    assert not closed.allows_recipient("other@acme.example.com")


# -- state machine ------------------------------------------------------------------------

S = ChangeStatus
ALLOWED = {
    (S.DRAFT, S.SUBMITTED),
    (S.SUBMITTED, S.APPROVED),
    (S.SUBMITTED, S.CANCELLED),
    (S.APPROVED, S.COMPLETED),
    (S.APPROVED, S.CANCELLED),
    (S.APPROVED, S.SUBMITTED),  # editing an approved change starts a new approval round
}


@pytest.mark.parametrize("current", list(S))
@pytest.mark.parametrize("target", list(S))
def test_transition_table(current: ChangeStatus, target: ChangeStatus) -> None:
    if (current, target) in ALLOWED:
        check_transition(current, target)
        return
    with pytest.raises(IllegalTransition) as info:
        check_transition(current, target)
    message = str(info.value)
    assert current.value in message
    assert target.value in message
    assert info.value.allowed == sorted(t.value for c, t in ALLOWED if c is current)


def test_transition_table_shape() -> None:
    assert {(c, t) for c, targets in TRANSITIONS.items() for t in targets} == ALLOWED
    assert set(DELETABLE) == {S.DRAFT, S.CANCELLED}
    assert "final state" in str(IllegalTransition(S.COMPLETED, S.CANCELLED))


@pytest.mark.parametrize(
    ("event", "ever_approved", "topic"),
    [
        (EmailEvent.SUBMITTED, False, TOPIC_APPROVAL),
        (EmailEvent.APPROVED, True, TOPIC_ANNOUNCE),
        (EmailEvent.COMPLETED, True, TOPIC_ANNOUNCE),
        (EmailEvent.CANCELLED, True, TOPIC_ANNOUNCE),
        (EmailEvent.CANCELLED, False, TOPIC_APPROVAL),
    ],
)
def test_topic_per_event(event: EmailEvent, ever_approved: bool, topic: str) -> None:
    assert topic_for(event, ever_approved=ever_approved) == topic


def test_final_delivery_states() -> None:
    assert {DeliveryState.QUEUED, DeliveryState.PROCESSING}.isdisjoint(FINAL_STATES)
    assert set(DeliveryState) - FINAL_STATES == {DeliveryState.QUEUED, DeliveryState.PROCESSING}


# -- property: any valid change survives a JSON round trip unchanged ------------------------------

_CONTROL = "".join(chr(c) for c in [*range(0x20), 0x7F])
_line = st.text(alphabet=st.characters(codec="utf-8", exclude_characters=_CONTROL), max_size=40)
_any_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=60)
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | _any_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_any_text, inner, max_size=3),
    max_leaves=8,
)
_known_keys = {n for n in Change.model_fields} | {i.alias for i in Change.model_fields.values() if i.alias}
_extra_keys = st.text(min_size=1, max_size=20).filter(lambda k: k not in _known_keys)
_zones = st.sampled_from(sorted(zoneinfo.available_timezones()))
_offsets = st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))])
_moments = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=_offsets)


@st.composite
def changes(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    start = draw(st.none() | _moments)
    end = None
    if start is not None:
        end = start + draw(st.timedeltas(min_value=timedelta(seconds=1), max_value=timedelta(days=30)))
        assume(end.astimezone(UTC).year <= 9999)
    data: dict[str, Any] = {
        "changeId": new_change_id(draw(_moments)),
        "changeTitle": draw(_line.filter(lambda s: s.strip())),
        "changeReason": draw(_any_text),
        "implementationPlan": draw(_any_text),
        "snowTicket": draw(_line),
        "customers": draw(
            st.lists(st.from_regex(r"[a-z0-9-]{2,50}", fullmatch=True), min_size=1, max_size=4)
        ),
        "implementationStart": start.isoformat() if start and draw(st.booleans()) else start,
        "implementationEnd": end.isoformat() if end else None,
        "timezone": draw(_zones),
        "include_meeting": draw(st.booleans()),
        "meeting_metadata": draw(st.none() | st.dictionaries(_any_text, _json_values, max_size=3)),
        "status": draw(st.sampled_from(list(ChangeStatus))),
        "version": draw(st.integers(1, MAX_VERSION)),
        "createdBy": draw(st.none() | _any_text),
        "modifications": [
            {
                "timestamp": iso_utc(draw(_moments)),
                "user_id": draw(_any_text),
                "modification_type": draw(_line),
                **draw(st.dictionaries(_extra_keys, _json_values, max_size=2)),
            }
            for _ in range(draw(st.integers(0, 2)))
        ],
    }
    extras = draw(st.dictionaries(_extra_keys, _json_values, max_size=4))
    data.update(extras)
    return data, extras


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(changes())
def test_property_change_round_trip(case: tuple[dict[str, Any], dict[str, Any]]) -> None:
    data, extras = case
    first = Change.model_validate(data).to_json_dict()
    text = json.dumps(first, ensure_ascii=False)
    second = Change.model_validate(json.loads(text)).to_json_dict()
    assert second == first
    for key, value in extras.items():
        assert first[key] == value
    assert first["customers"] == sorted(set(data["customers"]))
    if first["implementationStart"]:
        assert first["implementationStart"] < first["implementationEnd"]
        assert first["implementationStart"].endswith("Z")
