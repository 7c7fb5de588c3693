"""Documents the running system wrote are read as they are (converted on read) or refused naming the fix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from changeconsole.config import config_problems, parse_config_text
from changeconsole.errors import validation_problems
from changeconsole.models import Change, ChangeStatus, parse_trigger_key
from changeconsole.models_legacy import convert_change
from changeconsole.services.migration import read_change_object

FIXTURES = Path(__file__).parent / "fixtures" / "running_system"


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def test_portal_uuid_id_prior_status_and_form_fields() -> None:
    change = Change.model_validate(load("change_portal_uuid.json"))
    assert change.change_id == "CHG-7c9e6679-7425-40de-944b-e07fc1f90ae7"
    assert change.prior_status is None
    assert change.status is ChangeStatus.SUBMITTED
    assert (change.implementation_start, change.implementation_end) == (
        "2025-11-04T14:00:00Z",
        "2025-11-04T18:00:00Z",
    )
    data = change.to_json_dict()
    # The window lives in implementationStart/End; the form's copies are not written back.
    assert not {"implementationBeginDate", "implementationBeginTime", "implementationEndDate"} & set(data)
    # Keys we do not know survive the round trip.
    assert data["meetingRequired"] == "no" and data["meetingTitle"] == ""
    assert data["modifications"][0]["user_id"].endswith("pat.lee@example.org")


def test_form_fields_alone_are_read_in_the_change_timezone() -> None:
    change = Change.model_validate(load("change_form_fields_only.json"))
    # 22:30 in London on 2 December (GMT) is 22:30Z.
    assert change.implementation_start == "2025-12-02T22:30:00Z"
    assert change.implementation_end == "2025-12-02T23:30:00Z"
    assert change.status is ChangeStatus.DRAFT


def test_nested_change_metadata_is_flattened_and_leftovers_kept() -> None:
    raw = load("change_nested.json")
    change = Change.model_validate(raw)
    assert change.title == "Evaluate a cost management platform in the sandbox accounts"
    assert change.customers == ["contoso", "northwind"]
    assert (change.snow_ticket, change.jira_ticket) == ("CHG0041007", "FIN-233")
    assert change.customer_impact == "None."
    assert change.reason == "Compare cost reporting tools."
    # 10:00 in Chicago (CDT, UTC-5) on 30 September.
    assert change.implementation_start == "2025-09-30T15:00:00Z"
    assert change.timezone == "America/Chicago"
    assert change.include_meeting is True  # a meetingInvite asked for one
    data = change.to_json_dict()
    assert data["changeTitle"] == change.title and "title" not in data
    assert data["changeMetadata"] == {
        "customerNames": ["Northwind Traders", "Contoso"],
        "description": "Proof of value, four weeks.",
    }
    assert data["emailNotification"] == raw["emailNotification"]
    assert data["generatedBy"] == "kim.nakamura@example.org"
    # Converted once, it reads back identically (our shape needs no conversion).
    assert Change.model_validate(data).to_json_dict() == data
    assert convert_change(data) == (data, [])


def test_naive_times_go_zero_times_and_nanoseconds() -> None:
    change = Change.model_validate(load("change_naive_times.json"))
    # 20:00 in Berlin (CEST, UTC+2) on 9 October.
    assert change.implementation_start == "2025-10-09T18:00:00Z"
    assert change.completed_at is None  # Go's zero time: never completed
    assert change.ever_approved
    assert change.modifications[0].timestamp == "2025-10-02T11:00:41.123456789Z"
    assert change.to_json_dict()["metadata"] == {
        "status": "approved",
        "request_type": "approved_announcement",
    }


def test_a_naive_time_without_timezone_is_refused_naming_field_and_fix() -> None:
    raw = load("change_naive_times.json")
    del raw["timezone"]
    with pytest.raises(ValidationError) as info:
        Change.model_validate(raw)
    problems = validation_problems(info.value)
    assert {p["path"] for p in problems} == {"implementationStart", "implementationEnd"}
    assert all("timezone" in p["message"] for p in problems)


def test_bare_uuid_and_announcement_are_refused_with_the_reason() -> None:
    bare = read_change_object(
        "archive/550e8400-e29b-41d4-a716-446655440000.json",
        (FIXTURES / "change_bare_uuid.json").read_bytes(),
        "archive",
    )
    assert bare.change is None and bare.refused is not None
    assert bare.refused.startswith("changeId:")
    assert "CHG-550e8400-e29b-41d4-a716-446655440000" in bare.refused
    ann = read_change_object(
        "archive/CIC-2025-10-01T12-00-00-ab12cd.json",
        (FIXTURES / "announcement.json").read_bytes(),
        "archive",
    )
    assert ann.change is None and "announcement" in str(ann.refused)


def test_a_key_naming_another_change_is_refused() -> None:
    body = (FIXTURES / "change_naive_times.json").read_bytes()
    read = read_change_object("archive/CHG-2025-10-02T11-00-41-zzzzzz.json", body, "archive")
    assert (
        read.refused
        == "changeId CHG-2025-10-02T11-00-41-p2m7rt does not match its key (CHG-2025-10-02T11-00-41-zzzzzz)"
    )


def test_running_system_trigger_keys_name_their_change() -> None:
    assert parse_trigger_key("customers/contoso/CHG-7c9e6679-7425-40de-944b-e07fc1f90ae7.json") == (
        "contoso",
        "CHG-7c9e6679-7425-40de-944b-e07fc1f90ae7",
        None,
        None,
    )


def test_older_config_without_email_config_names_the_fix() -> None:
    problems = config_problems(load("config_older.json"))
    assert problems == [
        {
            "path": "email_config",
            "message": problems[0]["message"],
        }
    ]
    assert "sender_address" in problems[0]["message"] and "older config.json" in problems[0]["message"]


def test_newer_config_loads_and_keeps_every_key() -> None:
    text = (FIXTURES / "config_newer.json").read_text()
    config = parse_config_text(text)
    assert config.contact_list_for("northwind") == "changeconsole"  # the default; resolved per account
    data = config.to_json_dict()
    raw = json.loads(text)
    assert data["route53_config"] == raw["route53_config"]
    assert data["email_config"]["meeting_organizer"] == "cab@msp.example.com"
    assert data["customer_mappings"]["northwind"]["identity_center_role_arn"].endswith(
        ":role/msp-contact-importer"
    )
    assert data["log_level"] == "info"
