"""The audit trail: records of every writer read back by date range, old shapes included; retention
(lifecycle rule, Object Lock) set by provision and honoured by the writer; ``audit search`` input."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner

from changeconsole.cli import main
from changeconsole.models import Config
from changeconsole.services.audit import AuditLog, AuditQuery, AuditReader, parse_entry, parse_when
from changeconsole.services.authz import Authorizer
from changeconsole.services.aws import AwsFactory
from changeconsole.services.localstack import LocalStackResult
from changeconsole.services.provision import AUDIT_RULE_ID, provision

DAY = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


@pytest.fixture
def stack(make_stack: Any) -> LocalStackResult:
    return make_stack(customers=2, contacts=0)


def at(moment: datetime) -> Any:
    return lambda: moment


def test_search_lists_only_the_days_asked_and_reads_no_worker_objects_unless_asked(
    stack: LocalStackResult, aws_factory: AwsFactory
) -> None:
    config = stack.config
    for days, who in ((0, "carol"), (1, "dave"), (3, "erin")):
        moment = DAY + timedelta(days=days)
        Authorizer(aws_factory, config, operator=who, clock=at(moment)).record(
            "change.approve", "ok", customers=["acme"], change_id="CHG-2026-03-10T12-00-00-abc123"
        )
        AuditLog(aws_factory, config, source="worker", clock=at(moment)).write(
            [{"ts": moment.isoformat(), "type": "email.sent", "customer": "acme"}]
        )
    listed: list[str] = []
    aws_factory.client("s3").meta.events.register(
        "provide-client-params.s3.ListObjectsV2", lambda params, **_: listed.append(params["Prefix"])
    )
    reader = AuditReader(aws_factory, config, authz=Authorizer(aws_factory, config, operator="ada"))
    query = AuditQuery(since=DAY + timedelta(days=1), until=DAY + timedelta(days=2, hours=11))
    found = reader.search(query)
    assert [(e.operator, e.action) for e in found.entries] == [("dave", "change.approve")]
    assert listed == ["audit/2026/03/11/", "audit/2026/03/12/"] and found.days == 2
    assert found.objects_read == 1, "the worker's object of that day is not read"
    everything = reader.search(AuditQuery(since=DAY, until=DAY + timedelta(days=4), include_worker=True))
    assert len(everything.entries) == 6 and everything.objects_read == 6
    newest_two = reader.search(AuditQuery(since=DAY, until=DAY + timedelta(days=4), limit=2))
    assert [e.operator for e in newest_two.entries] == ["erin", "dave"] and newest_two.truncated


def test_records_of_every_shape_read_alike() -> None:
    dlq = parse_entry(
        {
            "ts": "2026-03-10T12:00:00Z",
            "source": "dlq",
            "action": "purge",
            "operator": "bob",
            "customer": "acme",
        },
        "k",
    )
    resend = parse_entry(
        {"ts": "2026-03-10T12:00:00.120+00:00", "type": "delivery.resend_unknown", "actor": "al"}, "k"
    )
    admin = parse_entry(
        {"ts": "2026-03-10T12:00:00Z", "type": "contacts.import.item", "actor": "erin", "customer": "acme"},
        "k",
    )
    worker = parse_entry({"ts": "2026-03-10T12:00:00Z", "type": "email.sent", "customer": "acme"}, "k")
    assert dlq is not None and (dlq.action, dlq.operator, dlq.customers) == ("dlq.purge", "bob", ["acme"])
    assert resend is not None and (resend.action, resend.operator) == ("delivery.resend_unknown", "al")
    assert admin is not None and admin.operator_action and admin.action == "contacts.import.item"
    assert worker is not None and not worker.operator_action
    assert parse_entry({"ts": "yesterday"}, "k") is None
    query = AuditQuery(since=DAY - timedelta(days=1), until=DAY + timedelta(days=1), action="purge")
    assert query.matches(dlq) and not query.matches(resend)  # "purge" matches dlq.purge
    assert AuditQuery(since=DAY - timedelta(days=1), until=DAY, operator="B*").matches(dlq)


def test_when() -> None:
    now = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
    assert parse_when("24h", end=False, now=now) == now - timedelta(hours=24)
    assert parse_when("2w", end=False, now=now) == now - timedelta(weeks=2)
    assert parse_when("2026-03-01", end=False, now=now) == datetime(2026, 3, 1, tzinfo=UTC)
    assert parse_when("2026-03-01", end=True, now=now) == datetime(2026, 3, 2, tzinfo=UTC) - timedelta(
        microseconds=1
    )
    assert parse_when("2026-03-01T10:00:00+02:00", end=False, now=now) == datetime(2026, 3, 1, 8, tzinfo=UTC)
    for bad in ("soon", "2026-13-01", "2026-03-01T10:00:00"):
        with pytest.raises(ValueError):
            parse_when(bad, end=False, now=now)


def test_retention_by_provision_and_object_lock_by_the_writer(
    stack: LocalStackResult, aws_factory: AwsFactory
) -> None:
    s3, bucket = aws_factory.client("s3"), stack.config.s3_config.bucket_name
    rules = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert [(r["ID"], r["Transitions"]) for r in rules] == [
        (AUDIT_RULE_ID, [{"Days": 90, "StorageClass": "GLACIER_IR"}])
    ]
    # Another rule of the bucket's (e.g. Terraform's) is kept; ours is changed to the config's.
    other = {
        "ID": "someone-elses",
        "Filter": {"Prefix": "tmp/"},
        "Status": "Enabled",
        "Expiration": {"Days": 3},
    }
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [*rules, other]})
    data = stack.config.to_json_dict()
    data["audit_retention"] = {
        "transition_days": 30,
        "expire_days": 400,
        "object_lock_mode": "GOVERNANCE",
        "object_lock_days": 365,
    }
    config = Config.model_validate(data)
    dry = {a.kind: a for a in provision(aws_factory, config, dry_run=True)}
    assert (dry["audit"].result, dry["audit"].detail) == (
        "would-update",
        "to GLACIER_IR after 30 d, expire after 400 d, object lock (lifecycle rule, object lock set)",
    )
    actions = {a.kind: a for a in provision(aws_factory, config)}
    assert actions["audit"].result == "updated"
    rules = {r["ID"]: r for r in s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]}
    assert set(rules) == {AUDIT_RULE_ID, "someone-elses"}
    assert rules[AUDIT_RULE_ID]["Expiration"] == {"Days": 400}
    assert s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"] == {
        "ObjectLockEnabled": "Enabled"
    }
    assert {a.kind: a.result for a in provision(aws_factory, config)}["audit"] == "unchanged"

    key = Authorizer(aws_factory, config, operator="carol").record("change.draft", "ok")
    assert key is not None
    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["ObjectLockMode"] == "GOVERNANCE"
    until = head["ObjectLockRetainUntilDate"].astimezone(UTC)
    assert timedelta(days=364) < until - datetime.now(UTC) < timedelta(days=366)
    with pytest.raises(Exception, match="AccessDenied"):
        s3.delete_object(Bucket=bucket, Key=key, VersionId=head["VersionId"])


def test_search_cli_refuses_bad_input(stack: LocalStackResult) -> None:
    base = ["--config", str(stack.config_path), "--local", "audit", "search"]

    def run(*args: str) -> Any:
        return CliRunner().invoke(main, [*base, *args])

    bad = run("--since", "2026-03-10", "--until", "2026-03-01")
    assert bad.exit_code == 2 and "is before --since" in bad.stderr
    assert run("--since", "later").exit_code == 2
    assert run("--change", "nope").exit_code == 2 and run("--customer", "Acme").exit_code == 2
    ok = run("--json", "--since", "1h")
    assert ok.exit_code == 0, ok.stderr
    assert json.loads(ok.stdout)["entries"] == []
    assert "no operator roles configured" in ok.stderr
