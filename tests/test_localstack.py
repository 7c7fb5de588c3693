"""The embedded local stack with 30 customers, provisioned once per module on the session moto server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from changeconsole.cli import main
from changeconsole.models import (
    ALL_TOPICS,
    HDR_CHANGE,
    HDR_CUSTOMER,
    HDR_EVENT,
    HDR_VERSION,
    TOPIC_ANNOUNCE,
    TOPIC_APPROVAL,
    TOPIC_CALENDAR,
    EmailEvent,
    Ignore,
    Trigger,
    parse_queue_message,
    trigger_key,
)
from changeconsole.services.aws import LOCAL_ACCOUNT, AwsFactory
from changeconsole.services.localstack import (
    LOCAL_SENDER_DOMAIN,
    LocalStackResult,
    customer_account,
    local_factory,
    provision_customer_account,
    provision_local,
    reset,
)
from changeconsole.services.outbox import read_outbox
from changeconsole.services.provision import provision
from support.waiting import wait_until

N = 30
CONTACTS = 5
CID = "CHG-2026-03-01T10-00-00-zz9top"


@pytest.fixture(scope="module")
def stack(moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStackResult]:
    reset(moto_endpoint)
    result = provision_local(
        moto_endpoint,
        customers=N,
        contacts=CONTACTS,
        config_path=tmp_path_factory.mktemp("stack30") / "config.json",
    )
    yield result
    reset(moto_endpoint)


@pytest.fixture
def aws(stack: LocalStackResult) -> AwsFactory:
    return local_factory(stack.endpoint, max_attempts=1)


def all_contacts(ses: Any, list_name: str) -> list[dict[str, Any]]:
    contacts: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"ContactListName": list_name, "PageSize": 2}
    while True:
        page = ses.list_contacts(**kwargs)
        contacts += page.get("Contacts", [])
        if not page.get("NextToken"):
            return contacts
        kwargs["NextToken"] = page["NextToken"]


def test_stack_has_thirty_customers(stack: LocalStackResult) -> None:
    assert len(stack.config.customer_mappings) == N
    assert len(set(stack.config.customer_mappings)) == N
    assert stack.contacts == N * CONTACTS
    assert f"{N} customers, {N} queues + {N} DLQs" in stack.summary()
    written = json.loads(stack.config_path.read_text())
    assert sorted(written["customer_mappings"]) == sorted(stack.config.customer_mappings)
    assert written["local"]["endpoint_url"] == stack.endpoint


def test_thirty_queues_and_dlqs_with_redrive(stack: LocalStackResult, aws: AwsFactory) -> None:
    sqs = aws.client("sqs")
    urls = sqs.list_queues(QueueNamePrefix="changeconsole-", MaxResults=1000)["QueueUrls"]
    assert len(urls) == 2 * N + 1  # and the central SES events queue
    for code, mapping in stack.config.customer_mappings.items():
        url = sqs.get_queue_url(QueueName=mapping.queue_name)["QueueUrl"]
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert attrs["QueueArn"] == mapping.sqs_queue_arn
        redrive = json.loads(attrs["RedrivePolicy"])
        assert redrive["deadLetterTargetArn"] == mapping.effective_dlq_arn, code
        assert int(redrive["maxReceiveCount"]) == 3 + 50  # max_receive_count + max_receives_without_outcome
        assert attrs["VisibilityTimeout"] == "120"
        assert attrs["ReceiveMessageWaitTimeSeconds"] == "20"
        dlq_url = sqs.get_queue_url(QueueName=mapping.dlq_name)["QueueUrl"]
        dlq = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["All"])["Attributes"]
        assert dlq["QueueArn"] == mapping.effective_dlq_arn
        assert "RedrivePolicy" not in dlq
        policy = json.loads(attrs["Policy"])
        assert policy["Statement"][0]["Condition"]["ArnLike"]["aws:SourceArn"].endswith(
            stack.config.s3_config.bucket_name
        )


def test_thirty_bucket_notifications_with_prefix_and_suffix(stack: LocalStackResult, aws: AwsFactory) -> None:
    s3 = aws.client("s3")
    conf = s3.get_bucket_notification_configuration(Bucket=stack.config.s3_config.bucket_name)
    queues = conf["QueueConfigurations"]
    assert len(queues) == N
    by_id = {q["Id"]: q for q in queues}
    for code, mapping in stack.config.customer_mappings.items():
        q = by_id[f"changeconsole-{code}"]
        assert q["QueueArn"] == mapping.sqs_queue_arn
        assert q["Events"] == ["s3:ObjectCreated:*"]
        rules = {r["Name"].lower(): r["Value"] for r in q["Filter"]["Key"]["FilterRules"]}
        assert rules == {"prefix": f"customers/{code}/", "suffix": ".json"}


def test_a_trigger_reaches_only_its_customers_queue(stack: LocalStackResult, aws: AwsFactory) -> None:
    s3, sqs = aws.client("s3"), aws.client("sqs")
    bucket = stack.config.s3_config.bucket_name
    key = trigger_key("globex", CID, 1, EmailEvent.SUBMITTED)
    s3.put_object(Bucket=bucket, Key=key, Body=b"{}")
    s3.put_object(Bucket=bucket, Key="customers/acme/not-a-trigger.txt", Body=b"x")

    def drain(code: str, until_trigger: bool) -> list[Trigger | Ignore]:
        url = sqs.get_queue_url(QueueName=stack.config.customer(code).queue_name)["QueueUrl"]
        parsed: list[Trigger | Ignore] = []

        def drained() -> bool:  # one long poll per check
            msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
                "Messages", []
            )
            for msg in msgs:
                parsed.append(parse_queue_message(msg["Body"]))
                sqs.delete_message(QueueUrl=url, ReceiptHandle=msg["ReceiptHandle"])
            return not msgs and (not until_trigger or any(isinstance(p, Trigger) for p in parsed))

        wait_until(drained, 10, what=f"{code}'s queue drained", interval=0)
        return parsed

    globex = drain("globex", until_trigger=True)
    triggers = [p for p in globex if isinstance(p, Trigger)]
    assert len(triggers) == 1
    assert (triggers[0].customer, triggers[0].change_id, triggers[0].key) == ("globex", CID, key)
    assert all(isinstance(p, Ignore) for p in globex if p not in triggers)  # the s3:TestEvent
    acme = drain("acme", until_trigger=False)
    assert not [p for p in acme if isinstance(p, Trigger)]


def check_customer_account(aws: AwsFactory, stack: LocalStackResult, index: int, code: str) -> set[str]:
    cfg = stack.config
    mapping = cfg.customer(code)
    assert aws.customer_client(mapping, "sts").get_caller_identity()["Account"] == customer_account(index)
    ses = aws.customer_client(mapping, "sesv2")
    lists = [c["ContactListName"] for c in ses.list_contact_lists()["ContactLists"]]
    assert lists == [cfg.contact_list_for(code)]
    topics = {
        t["TopicName"]: t["DefaultSubscriptionStatus"]
        for t in ses.get_contact_list(ContactListName=lists[0])["Topics"]
    }
    assert topics == {TOPIC_APPROVAL: "OPT_OUT", TOPIC_ANNOUNCE: "OPT_IN", TOPIC_CALENDAR: "OPT_OUT"}
    assert set(topics) == set(ALL_TOPICS)
    contacts = all_contacts(ses, lists[0])
    addresses = [c["EmailAddress"] for c in contacts]
    assert len(addresses) == CONTACTS
    assert len(set(addresses)) == CONTACTS
    assert all(a.endswith(f"@{code}.example.com") for a in addresses), addresses
    assert sum(1 for c in contacts if c["UnsubscribeAll"]) == 1
    identities = {i["IdentityName"] for i in ses.list_email_identities()["EmailIdentities"]}
    assert LOCAL_SENDER_DOMAIN in identities
    return set(addresses)


def test_thirty_isolated_customer_accounts(stack: LocalStackResult, aws: AwsFactory) -> None:
    codes = list(stack.config.customer_mappings)
    with ThreadPoolExecutor(max_workers=8) as pool:
        seen = list(pool.map(lambda ic: check_customer_account(aws, stack, *ic), enumerate(codes)))
    everyone = set().union(*seen)
    assert len(everyone) == N * CONTACTS
    assert len({customer_account(i) for i in range(N)}) == N
    # The central (operator) account holds no customer contacts.
    assert aws.client("sts").get_caller_identity()["Account"] == LOCAL_ACCOUNT
    assert aws.client("sesv2").list_contact_lists()["ContactLists"] == []


def test_second_provision_changes_nothing(stack: LocalStackResult, aws: AwsFactory) -> None:
    actions = provision(aws, stack.config)
    # bucket, audit retention, tables, notifications, queues, events queue and topic; per customer its
    # configuration set and event destination (moto has none: skipped, the local event relay stands in)
    assert len(actions) == 1 + 1 + 2 + 1 + 2 * N + 2 + 2 * N
    assert [a for a in actions if a.result not in ("unchanged", "skipped")] == []
    assert {a.result for a in actions if a.kind == "event_destination"} == {"skipped"}
    dry = provision(aws, stack.config, dry_run=True)
    assert {a.result for a in dry} == {"unchanged"}
    assert provision_customer_account(aws, stack.config, "acme", CONTACTS) == 0


def test_provision_cli_second_run_reports_nothing_changed(stack: LocalStackResult) -> None:
    result = CliRunner().invoke(main, ["--config", str(stack.config_path), "--local", "provision", "--json"])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["changed"] == 0
    assert data["dry_run"] is False
    assert len(data["actions"]) == 5 + 2 * N + 2 + 2 * N
    assert data["operator_roles"] == []
    human = CliRunner().invoke(main, ["provision", "--config", str(stack.config_path), "--local"])
    assert human.exit_code == 0
    assert f"nothing to change: {5 + 2 * N + 2 + N} resources match the config; {N} skipped" in human.stderr


def test_config_validate_accepts_the_written_config(stack: LocalStackResult) -> None:
    result = CliRunner().invoke(main, ["config", "validate", "--config", str(stack.config_path)])
    assert result.exit_code == 0
    assert f"{N} customers" in result.stderr
    assert result.stdout == ""


# -- outbox --------------------------------------------------------------------------------------


def send_raw(aws: AwsFactory, stack: LocalStackResult, code: str, to: str, version: int) -> str:
    msg = EmailMessage()
    msg["From"] = stack.config.sender_for(code)
    msg["To"] = to
    msg["Subject"] = f"Approved: rotate certificates (v{version})"
    msg[HDR_CHANGE] = CID
    msg[HDR_VERSION] = str(version)
    msg[HDR_EVENT] = "approved"
    msg[HDR_CUSTOMER] = code
    msg.set_content("Plain text body: <b>not html</b>")
    msg.add_alternative("<p>HTML body &lt;b&gt;</p>", subtype="html")
    msg.add_attachment(
        b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nEND:VCALENDAR\r\n",
        maintype="text",
        subtype="calendar",
        filename="invite.ics",
    )
    ses = aws.customer_client(stack.config.customer(code), "sesv2")
    out = ses.send_email(
        FromEmailAddress=msg["From"],
        Destination={"ToAddresses": [to]},
        Content={"Raw": {"Data": msg.as_bytes()}},
    )
    return str(out["MessageId"])


def test_outbox_parses_raw_mime_with_changeconsole_headers(stack: LocalStackResult, aws: AwsFactory) -> None:
    to = "alex.ng@hooli.example.com"
    message_id = send_raw(aws, stack, "hooli", to, 7)
    send_raw(aws, stack, "acme", "alex.ng@acme.example.com", 7)
    mails = read_outbox(stack.endpoint, customer="hooli", change_id=CID)
    assert len(mails) == 1
    mail = mails[0]
    assert mail.id == message_id
    assert mail.to == [to]
    assert mail.source == stack.config.sender_for("hooli")
    assert (mail.customer, mail.change_id, mail.version, mail.event) == ("hooli", CID, 7, "approved")
    assert mail.subject == "Approved: rotate certificates (v7)"
    assert mail.text.strip() == "Plain text body: <b>not html</b>"
    assert mail.html.strip() == "<p>HTML body &lt;b&gt;</p>"
    assert mail.attachments == ["invite.ics"]
    assert mail.headers[HDR_CUSTOMER] == "hooli"
    assert "raw" not in mail.to_json()
    assert f"{HDR_CHANGE}: {CID}" in mail.to_json(with_raw=True)["raw"]
    assert {m.customer for m in read_outbox(stack.endpoint, change_id=CID)} >= {"hooli", "acme"}
    assert read_outbox(stack.endpoint, customer="globex", change_id=CID) == []


def test_local_outbox_command(stack: LocalStackResult, aws: AwsFactory) -> None:
    send_raw(aws, stack, "duff", "sam.patel@duff.example.com", 2)
    args = ["--config", str(stack.config_path), "local", "outbox", "--customer", "duff"]
    result = CliRunner().invoke(main, [*args, "--json"])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert [(m["customer"], m["to"], m["change_id"], m["version"], m["event"]) for m in data] == [
        ("duff", ["sam.patel@duff.example.com"], CID, 2, "approved")
    ]
    assert data[0]["headers"][HDR_EVENT] == "approved"
    human = CliRunner().invoke(main, args, env={"COLUMNS": "200"})
    assert human.exit_code == 0
    assert "sam.patel@duff.example.com" in human.stdout
    assert "1 email(s)" in human.stderr
    none = CliRunner().invoke(main, [*args[:-1], "krusty-krab", "--change", CID, "--json"])
    assert none.exit_code == 0
    assert json.loads(none.stdout) == []


def test_outbox_command_honours_aws_endpoint_url(
    tmp_path: Path, stack: LocalStackResult, aws: AwsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A config without a local endpoint: AWS_ENDPOINT_URL names the stack, as for every command."""
    send_raw(aws, stack, "duff", "by.env@duff.example.com", 3)
    raw = json.loads(stack.config_path.read_text())
    del raw["local"]
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(raw))
    monkeypatch.setenv("AWS_ENDPOINT_URL", stack.endpoint)
    args = ["--config", str(cfg), "local", "outbox"]
    result = CliRunner().invoke(main, [*args, "--customer", "duff", "--json"])
    assert result.exit_code == 0, result.stderr
    assert ["by.env@duff.example.com"] in [m["to"] for m in json.loads(result.stdout)]
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    nothing = CliRunner().invoke(main, [*args, "--json"])
    assert nothing.exit_code == 1 and "no local stack at http://127.0.0.1:9" in nothing.stderr


def test_outbox_command_without_a_stack_fails(tmp_path: Path, stack: LocalStackResult) -> None:
    raw = json.loads(stack.config_path.read_text())
    raw["local"]["endpoint_url"] = "http://127.0.0.1:9"
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(raw))
    result = CliRunner().invoke(main, ["--config", str(cfg), "local", "outbox", "--json"])
    assert result.exit_code == 1
    assert "no local stack" in result.stderr
    assert result.stdout == ""
