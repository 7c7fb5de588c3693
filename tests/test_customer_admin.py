"""Customers by command: onboard with one call and send to it, verify read-only, remove safely."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from changeconsole.config import ConfigError, load_config
from changeconsole.models import TOPIC_APPROVAL, Change
from changeconsole.services.aws import AwsFactory
from changeconsole.services.contact_admin import ContactBook
from changeconsole.services.customer_admin import (
    CustomerAdmin,
    CustomerAdminError,
    CustomerBusy,
    CustomerVerifier,
    NewCustomer,
)
from changeconsole.services.lifecycle import ChangeService
from changeconsole.services.provision import notification_id
from support.mail import outbox
from support.waiting import wait_until
from support.worker import record, running_worker

NEW_ROLE = "arn:aws:iam::210000000099:role/changeconsole-ses-sender"
WINDOW = {"implementationStart": "2030-01-01T10:00:00Z", "implementationEnd": "2030-01-01T11:00:00Z"}


@pytest.fixture
def stack(make_stack: Any) -> Any:
    return make_stack(customers=2, contacts=3)


def admin(aws: AwsFactory, stack: Any) -> CustomerAdmin:
    return CustomerAdmin(aws, stack.config_path, operator="ops.tester")


def notifications(aws: AwsFactory, bucket: str) -> set[str]:
    conf = aws.client("s3").get_bucket_notification_configuration(Bucket=bucket)
    return {q["Id"] for q in conf.get("QueueConfigurations", [])}


def test_verify_reads_every_check_and_writes_nothing(stack: Any, aws_factory: AwsFactory) -> None:
    calls: list[str] = []
    aws_factory.add_call_listener(lambda **kw: calls.append(kw["model"].name))
    report = CustomerVerifier(aws_factory, stack.config).verify("acme")
    checks = {c.name: c for c in report.checks}
    assert list(checks) == [
        "queue",
        "dlq",
        "notification",
        "role",
        "identity",
        "account",
        "quota",
        "contact_list",
        "topics",
        "contacts",
    ]
    assert checks["role"].status == "ok" and checks["identity"].status == "ok"
    # moto has no SES v2 GetAccount: the v1 quota (200/24h) says sandbox.
    assert checks["account"].status == "warn" and "sandbox" in checks["account"].detail
    assert checks["contact_list"].detail == "changeconsole: the account's only contact list"
    assert report.contact_list is not None and report.contact_list.exists
    assert checks["contacts"].detail.startswith("3 contacts; aws-approval: 2")
    assert report.status == "warn" and report.ok
    writes = [c for c in calls if not c.startswith(("Get", "List", "Head", "Describe", "Query"))]
    assert writes == ["AssumeRole", "PutObject"]  # the customer's session, and the audit record


def test_verify_fails_on_a_missing_list_and_topics(stack: Any, aws_factory: AwsFactory) -> None:
    ses = aws_factory.customer_client(stack.config.customer("globex"), "sesv2")
    ses.update_contact_list(ContactListName="changeconsole", Topics=[])
    report = CustomerVerifier(aws_factory, stack.config).verify("globex")
    checks = {c.name: c for c in report.checks}
    assert checks["topics"].status == "fail" and "aws-approval" in checks["topics"].detail
    ses.delete_contact_list(ContactListName="changeconsole")
    report = CustomerVerifier(aws_factory, stack.config).verify("globex")
    checks = {c.name: c for c in report.checks}
    assert checks["contact_list"].status == "fail"
    assert "the account has no contact list yet" in checks["contact_list"].detail
    assert not report.ok


def test_onboard_with_one_call_then_send_to_it(
    stack: Any, aws_factory: AwsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = json.loads(stack.config_path.read_text())
    before["operator_notes"] = {"kept": True}  # an unknown key of the deployed file
    stack.config_path.write_text(json.dumps(before))
    entered: list[str] = []  # the customer accounts the add acts in
    customer_client = aws_factory.customer_client

    def recording(customer: Any, service: str) -> Any:
        entered.append(customer.customer_code)
        return customer_client(customer, service)

    monkeypatch.setattr(aws_factory, "customer_client", recording)
    report = admin(aws_factory, stack).add(NewCustomer(code="initrode", name="Initrode", role_arn=NEW_ROLE))
    monkeypatch.undo()
    assert report.ok, report.to_json()
    assert set(entered) == {"initrode"}  # the other customers' roles are not assumed
    assert report.config_result == "written" and report.backup is not None
    assert json.loads(Path(report.backup).read_text()) == before
    after = json.loads(stack.config_path.read_text())
    assert after["operator_notes"] == {"kept": True}
    mapping = after["customer_mappings"]["initrode"]
    assert mapping["sqs_queue_arn"] == "arn:aws:sqs:us-east-1:123456789012:changeconsole-initrode"
    assert {a.name: a.result for a in report.provision}["changeconsole-initrode"] == "created"
    assert report.identity == "notices.msp.example.com"
    assert report.topics is not None and report.topics.list_created
    assert report.verify is not None and {c.name: c.status for c in report.verify.checks}["topics"] == "ok"
    config = load_config(stack.config_path)
    assert notification_id("initrode") in notifications(aws_factory, config.s3_config.bucket_name)

    # Re-running finishes or confirms; different values are refused.
    again = admin(aws_factory, stack).add(NewCustomer(code="initrode", name="Initrode", role_arn=NEW_ROLE))
    assert again.config_result == "unchanged" and again.topics is not None and not again.topics.changed
    with pytest.raises(CustomerAdminError, match="customer_name"):
        admin(aws_factory, stack).add(NewCustomer(code="initrode", name="Initrode Inc", role_arn=NEW_ROLE))

    book = ContactBook(aws_factory, config, "initrode", operator="ops.tester", rate=None)
    book.add("pat@initrode.example.com", {TOPIC_APPROVAL: "OPT_IN"})
    book.add("quinn@initrode.example.com")  # approval is OPT_OUT by default: not a recipient
    svc = ChangeService(aws_factory, config, operator="ops.tester")
    doc = {**WINDOW, "changeTitle": "First change for Initrode", "customers": ["initrode"]}
    with running_worker(aws_factory, config, customers=["initrode"]):
        result = svc.submit(Change.model_validate(doc))
        cid = result.change.change_id
        rec = wait_until(
            lambda: (r := record(aws_factory, config, "initrode", 2, "submitted", cid)) and r.is_final and r,
            60,
        )
    assert rec.state.value == "sent", rec.last_error
    assert [to.lower() for m in outbox(stack.endpoint, cid) for to in m.to] == ["pat@initrode.example.com"]


def test_add_refuses_a_bad_mapping_naming_the_field(stack: Any, aws_factory: AwsFactory) -> None:
    before = stack.config_path.read_text()
    with pytest.raises(ConfigError) as info:
        admin(aws_factory, stack).add(NewCustomer(code="Bad_Code", name="x", role_arn="not-an-arn"))
    paths = {p["path"] for p in info.value.problems}
    assert "customer_mappings.Bad_Code" in paths and "customer_mappings.Bad_Code.ses_role_arn" in paths
    assert stack.config_path.read_text() == before


def test_remove_refuses_while_busy_then_forced_keeps_the_archive(
    stack: Any, aws_factory: AwsFactory, tmp_path: Path
) -> None:
    config = stack.config
    svc = ChangeService(aws_factory, config, operator="ops.tester")
    result = svc.submit(
        Change.model_validate({**WINDOW, "changeTitle": "For both", "customers": ["acme", "globex"]})
    )
    cid = result.change.change_id
    with pytest.raises(CustomerBusy, match="in flight"):
        admin(aws_factory, stack).remove("globex")
    with running_worker(aws_factory, config, customers=["globex"]):
        wait_until(
            lambda: (r := record(aws_factory, config, "globex", 2, "submitted", cid)) and r.is_final, 60
        )
    sqs = aws_factory.client("sqs")
    dlq_url = sqs.get_queue_url(QueueName=config.customer("globex").dlq_name)["QueueUrl"]
    sqs.send_message(QueueUrl=dlq_url, MessageBody='{"dead": true}')
    with pytest.raises(CustomerBusy, match="1 message\\(s\\) in its DLQ"):
        admin(aws_factory, stack).remove("globex")
    dry = admin(aws_factory, stack).remove("globex", force=True, dry_run=True)
    assert dry.dead_lettered == 1 and "globex" in load_config(stack.config_path).customer_mappings
    report = admin(aws_factory, stack).remove("globex", force=True, export_dir=tmp_path)
    assert report.dlq_export is not None and Path(report.dlq_export).read_text().count("\n") == 1
    assert sorted(report.deleted_queues) == ["changeconsole-globex", "changeconsole-globex-dlq"]
    remaining = load_config(stack.config_path)
    assert "globex" not in remaining.customer_mappings and report.backup is not None
    bucket = config.s3_config.bucket_name
    assert notification_id("globex") not in notifications(aws_factory, bucket)
    assert notification_id("acme") in notifications(aws_factory, bucket)
    # The archive is kept: the change still names globex and still loads.
    assert ChangeService(aws_factory, remaining, operator="ops").load(cid).customers == ["acme", "globex"]
    with pytest.raises(CustomerAdminError, match="only customer"):
        admin(aws_factory, stack).remove("acme")
