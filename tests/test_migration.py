"""A bucket laid out by the running system: reindexed, checked without writes, and delivered from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from changeconsole.models import ChangeStatus
from changeconsole.services.aws import AwsFactory
from changeconsole.services.changes import ChangeStore
from changeconsole.services.lifecycle import ChangeService
from changeconsole.services.localstack import contact_address
from changeconsole.services.migration import MigrationCheck, Reindexer
from changeconsole.services.status import StatusStore
from changeconsole.services.topics import DEFAULT_TOPICS
from support.changes import change_doc
from support.mail import outbox, subscribed
from support.waiting import wait_until
from support.worker import record, running_worker, submit

FIXTURES = Path(__file__).parent / "fixtures" / "running_system"
PORTAL = "CHG-7c9e6679-7425-40de-944b-e07fc1f90ae7"
NESTED = "CHG-2025-09-22T15-30-00-f0r8zz"
NAIVE = "CHG-2025-10-02T11-00-41-p2m7rt"
FORM = "CHG-2025-10-20T08-15-02-k3x9qa"


def _retarget(doc: dict[str, Any], codes: list[str]) -> dict[str, Any]:
    """The fixture's customers replaced by the local stack's (nested or flat shape)."""
    if "changeMetadata" in doc:
        doc["changeMetadata"]["customerCodes"] = codes
    else:
        doc["customers"] = codes
    return doc


@pytest.fixture
def seeded(make_stack: Any, aws_factory: AwsFactory) -> Any:
    """The local stack's bucket holding what the running system left: archived changes in every shape,
    a draft, an announcement, a bare-UUID change, a leftover trigger and stray files."""
    stack = make_stack(customers=2, contacts=5)
    codes = sorted(stack.config.customer_mappings)
    s3 = aws_factory.client("s3")
    bucket = stack.config.s3_config.bucket_name

    def put(key: str, body: Any) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        s3.put_object(Bucket=bucket, Key=key, Body=data)

    def fixture(name: str) -> dict[str, Any]:
        return _retarget(json.loads((FIXTURES / name).read_text()), codes)

    put(f"archive/{PORTAL}.json", fixture("change_portal_uuid.json"))
    put(f"archive/{NESTED}.json", fixture("change_nested.json"))
    put(f"archive/{NAIVE}.json", fixture("change_naive_times.json"))
    put(f"drafts/{FORM}.json", fixture("change_form_fields_only.json"))
    put("archive/550e8400-e29b-41d4-a716-446655440000.json", fixture("change_bare_uuid.json"))
    put(
        "archive/CIC-2025-10-01T12-00-00-ab12cd.json",
        json.loads((FIXTURES / "announcement.json").read_text()),
    )
    put("archive/notes.txt", b"hello")
    put(f"customers/{codes[0]}/{PORTAL}.json", fixture("change_portal_uuid.json"))
    put(
        f"versions/{NAIVE}/v2.json",
        {**fixture("change_naive_times.json"), "version": 2, "status": "submitted"},
    )
    return stack


def test_reindex_indexes_converts_refuses_and_is_idempotent(seeded: Any, aws_factory: AwsFactory) -> None:
    config = seeded.config
    status = StatusStore(aws_factory, config)
    reindexer = Reindexer(ChangeStore(aws_factory, config), status)
    dry = reindexer.run(dry_run=True)
    assert dry.indexed == sorted([PORTAL, NESTED, NAIVE, FORM])
    assert status.list_changes() == []  # a dry run writes nothing
    progress: list[tuple[int, int]] = []
    report = reindexer.run(progress=lambda done, total: progress.append((done, total)))
    assert progress[-1] == (7, 7)
    assert report.counts() == {"indexed": 4, "unchanged": 0, "converted": 4, "refused": 3, "removed": 0}
    refused = {r.key: r.reason for r in report.refused}
    assert set(refused) == {
        "archive/550e8400-e29b-41d4-a716-446655440000.json",
        "archive/CIC-2025-10-01T12-00-00-ab12cd.json",
        "archive/notes.txt",
    }
    assert (
        "CHG-550e8400-e29b-41d4-a716-446655440000"
        in refused["archive/550e8400-e29b-41d4-a716-446655440000.json"]
    )
    assert "nested changeMetadata flattened" in report.converted[NESTED]
    rows = {s.change_id: s for s in ChangeService(aws_factory, config, operator="ops").list()}
    assert set(rows) == {PORTAL, NESTED, NAIVE, FORM}
    assert rows[FORM].location == "draft" and rows[FORM].implementation_start == "2025-12-02T22:30:00Z"
    assert rows[NESTED].status is ChangeStatus.APPROVED
    assert rows[NESTED].title.startswith("Evaluate a cost management platform")

    again = reindexer.run()
    assert again.counts() == {"indexed": 0, "unchanged": 4, "converted": 4, "refused": 3, "removed": 0}

    # Repair: an entry whose change is gone from the bucket is removed.
    aws_factory.client("s3").delete_object(Bucket=config.s3_config.bucket_name, Key=f"archive/{NAIVE}.json")
    repaired = reindexer.run()
    assert repaired.removed == [NAIVE]
    assert NAIVE not in {s.change_id for s in status.list_changes()}


def test_old_changes_open_and_their_history_reads(seeded: Any, aws_factory: AwsFactory) -> None:
    svc = ChangeService(aws_factory, seeded.config, operator="ops")
    svc.reindex()
    change = svc.load(NESTED)
    assert change.customers == sorted(seeded.config.customer_mappings)
    history = svc.history(NAIVE)
    assert [c.version for c in history] == [2, 3]


def test_migrate_check_reports_without_writing(seeded: Any, aws_factory: AwsFactory) -> None:
    config = seeded.config
    codes = sorted(config.customer_mappings)
    s3 = aws_factory.client("s3")
    bucket = config.s3_config.bucket_name
    before = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))
    report = MigrationCheck(aws_factory, config).run()
    after = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))
    assert before == after and StatusStore(aws_factory, config).list_changes() == []
    assert not report.ready
    assert report.reindex.counts()["indexed"] == 4 and report.reindex.counts()["refused"] == 3
    (trigger,) = report.leftover_triggers
    assert trigger.key == f"customers/{codes[0]}/{PORTAL}.json"
    assert trigger.shape == "running-system" and trigger.change_id == PORTAL
    assert f"change resend {PORTAL} --customers {codes[0]}" in trigger.note
    assert report.unknown_customers == {}
    diff = {d.customer: d for d in report.contacts}[codes[0]]
    assert diff.error is None and diff.list_ours == "changeconsole" and diff.list_theirs == "changeconsole"
    # The local stack's profiles: #1 and #3 have no announce preference (default OPT_IN): ours only;
    # #4 is unsubscribed from all with explicit opt-ins: the running system's filter returned it.
    addr = [contact_address(codes[0], i) for i in range(5)]
    assert diff.gained == {"aws-approval": [], "aws-announce": sorted([addr[1], addr[3]]), "aws-calendar": []}
    assert diff.lost == {"aws-approval": [addr[4]], "aws-announce": [addr[4]], "aws-calendar": []}


def test_migrate_check_names_unknown_customers(seeded: Any, aws_factory: AwsFactory) -> None:
    doc = json.loads((FIXTURES / "change_naive_times.json").read_text())
    doc["customers"] = ["northwind"]
    aws_factory.client("s3").put_object(
        Bucket=seeded.config.s3_config.bucket_name, Key=f"archive/{NAIVE}.json", Body=json.dumps(doc).encode()
    )
    report = MigrationCheck(aws_factory, seeded.config).run(contacts=False)
    assert report.unknown_customers == {NAIVE: ["northwind"]}
    assert report.contacts == []


def test_a_running_system_trigger_is_delivered_to_subscribed_contacts(
    seeded: Any, aws_factory: AwsFactory
) -> None:
    """A change in the portal's shape arriving as a trigger is converted, not dead-lettered."""
    config = seeded.config
    code = sorted(config.customer_mappings)[0]
    doc = _retarget(json.loads((FIXTURES / "change_portal_uuid.json").read_text()), [code])
    s3 = aws_factory.client("s3")
    s3.put_object(
        Bucket=config.s3_config.bucket_name, Key=f"archive/{PORTAL}.json", Body=json.dumps(doc).encode()
    )
    s3.put_object(
        Bucket=config.s3_config.bucket_name,
        Key=f"customers/{code}/{PORTAL}.json",
        Body=json.dumps(doc).encode(),
    )
    with running_worker(aws_factory, config, customers=[code]):
        rec = wait_until(
            lambda: (r := record(aws_factory, config, code, 1, "submitted", PORTAL)) and r.is_final and r, 60
        )
    assert rec.state.value == "sent", rec.last_error
    mails = outbox(seeded.endpoint, PORTAL)
    assert {to.lower() for m in mails for to in m.to} == subscribed(code, 5, "aws-approval")


def test_provision_adopts_the_running_systems_notifications(seeded: Any, aws_factory: AwsFactory) -> None:
    """The running system notifies the same queues on the same prefixes: S3 refuses overlapping
    entries, so provision replaces those (and keeps any other system's)."""
    from changeconsole.services.provision import provision

    config = seeded.config
    s3 = aws_factory.client("s3")
    bucket = config.s3_config.bucket_name

    def entry(id_: str, queue: str, prefix: str) -> dict[str, Any]:
        rules = [{"Name": "prefix", "Value": prefix}, {"Name": "suffix", "Value": ".json"}]
        return {
            "Id": id_,
            "QueueArn": queue,
            "Events": ["s3:ObjectCreated:*"],
            "Filter": {"Key": {"FilterRules": rules}},
        }

    theirs = [
        entry(f"ccoe-{c}", config.customer(c).sqs_queue_arn, f"customers/{c}/")
        for c in sorted(config.customer_mappings)
    ]
    other = entry("reports", config.customer("acme").sqs_queue_arn, "reports/")
    s3.put_bucket_notification_configuration(
        Bucket=bucket, NotificationConfiguration={"QueueConfigurations": [*theirs, other]}
    )
    actions = {a.kind: a for a in provision(aws_factory, config)}
    assert "replaced another system's: ccoe-acme, ccoe-globex" in actions["notifications"].detail
    ids = {q["Id"] for q in s3.get_bucket_notification_configuration(Bucket=bucket)["QueueConfigurations"]}
    assert ids == {"changeconsole-acme", "changeconsole-globex", "reports"}


def test_the_worker_sends_through_the_accounts_own_list(make_stack: Any, aws_factory: AwsFactory) -> None:
    """No contact_list_name for the customer: the worker uses the list the account has (the running
    system's ccoe-customer-contacts) instead of dead-lettering as contact_list_missing."""
    stack = make_stack(customers=1, contacts=0)
    config = stack.config
    code = "acme"
    ses = aws_factory.customer_client(config.customer(code), "sesv2")
    ses.delete_contact_list(ContactListName="changeconsole")
    ses.create_contact_list(
        ContactListName="ccoe-customer-contacts", Topics=[t.to_api() for t in DEFAULT_TOPICS]
    )
    ses.create_contact(
        ContactListName="ccoe-customer-contacts",
        EmailAddress="approver@acme.example.com",
        TopicPreferences=[{"TopicName": "aws-approval", "SubscriptionStatus": "OPT_IN"}],
    )
    ses.create_contact(ContactListName="ccoe-customer-contacts", EmailAddress="reader@acme.example.com")
    doc = change_doc([code])
    submit(aws_factory, config, doc)
    with running_worker(aws_factory, config, customers=[code]):
        rec = wait_until(lambda: (r := record(aws_factory, config, code)) and r.is_final and r, 60)
    assert rec.state.value == "sent", rec.last_error
    mails = outbox(stack.endpoint, doc["changeId"])
    assert {to.lower() for m in mails for to in m.to} == {"approver@acme.example.com"}
