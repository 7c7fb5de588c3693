"""IAM matches the code: every AWS call the worker makes, recorded with botocore hooks while it runs real
deliveries, is allowed by the Terraform that ships its permissions.

The worker runs against the local stack through a happy path, a removal notice, a legacy flat trigger,
an ``sqs-direct`` payload, SES throttling (retry), a message that waits on another worker's lane until
its last receive (requeue), poison (dead letter), an operator resend of an unknown recipient, a deleted
change, a heartbeat on a long delivery and CloudWatch metrics. Each call is mapped to its IAM action and
resource ARN and checked against the policies Terraform plans for this very config:
``modules/stack`` → ``modules/worker_iam`` for the worker's own role (Allow and Deny statements, resource
patterns, conditions), and ``modules/customer_ses_role`` for the calls made in a customer's account.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from changeconsole.models import Change, Config, EmailEvent, direct_message
from changeconsole.services.aws import LOCAL_ACCOUNT
from changeconsole.services.fanout import payload_key
from changeconsole.services.ledger import LaneBusy, Ledger, rcpt_sk
from changeconsole.services.lifecycle import ChangeService
from changeconsole.services.localstack import LOCAL_SENDER_DOMAIN, local_factory
from changeconsole.services.resend import ResendService
from changeconsole.services.status import DeliveryKey, StatusStore
from deploy.tfeval import ModuleInstance, load_module
from support.aws import queue_url, send_raw
from support.iam import Need, Recorder, allowed, needs, statements_of
from support.waiting import wait_until
from support.worker import FAST, running_worker

TF = Path(__file__).resolve().parents[1] / "deploy" / "terraform"
START, END = "2030-03-01T22:00:00Z", "2030-03-02T02:00:00Z"


# -- the Terraform, planned for this config --------------------------------------------------------------


def worker_policy(config: Config) -> list[dict[str, Any]]:
    customers = {
        code: {
            "name": m.customer_name,
            "account_id": m.account_id,
            "ses_region": m.region or config.aws_region,
            "external_id": f"cc-local-{code}-0123456789",
            "environment": m.environment,
            "ses_identity": LOCAL_SENDER_DOMAIN,
        }
        for code, m in config.customer_mappings.items()
    }
    prefix = {m.queue_name.removesuffix(code) for code, m in config.customer_mappings.items()}
    assert len(prefix) == 1
    inputs = {
        "environment": "local",
        "aws_region": config.aws_region,
        "central_account_id": LOCAL_ACCOUNT,
        "bucket_name": config.s3_config.bucket_name,
        "transport": config.transport,
        "customers": customers,
        "queue_name_prefix": prefix.pop(),
        "status_table_name": config.status_table_name,
        "ledger_table_name": config.ledger_table_name,
        "metrics_namespace": config.metrics.namespace,
        "worker_shards": config.worker_shards,
        "doorbell_enabled": config.doorbell.enabled,
        "doorbell_queue_prefix": config.doorbell.queue_prefix,
    }
    plan = ModuleInstance(load_module(TF / "modules" / "stack"), inputs, "", TF).plan()
    facts = {"account_id": LOCAL_ACCOUNT, "region": config.aws_region, "partition": "aws"}
    docs = [
        i
        for i in plan.instances("aws_iam_policy_document")
        if i.module.address.endswith("module.worker_iam.") and i.name in ("worker", "assume_ses")
    ]
    return [s for d in docs for s in statements_of(plan, d, facts)]


def ses_role_policy(config: Config, code: str) -> list[dict[str, Any]]:
    m = config.customer(code)
    inputs = {
        "worker_role_arn": f"arn:aws:iam::{LOCAL_ACCOUNT}:role/changeconsole-local-worker",
        "external_id": f"cc-local-{code}-0123456789",
        "ses_identity": LOCAL_SENDER_DOMAIN,
        "ses_region": m.region or config.aws_region,
        "contact_list_name": config.contact_list_for(code),
        "configuration_set_name": config.events.configuration_set,
        "role_name": m.ses_role_arn.rsplit("/", 1)[1],
    }
    plan = ModuleInstance(load_module(TF / "modules" / "customer_ses_role"), inputs, "", TF).plan()
    facts = {"account_id": m.account_id, "name": m.region or config.aws_region, "partition": "aws"}
    (doc,) = [i for i in plan.instances("aws_iam_policy_document") if i.name == "permissions"]
    return statements_of(plan, doc, facts)


# -- the test ------------------------------------------------------------------------------------------


def _throttle_once() -> Callable[..., Any]:
    fired: list[bool] = []

    def throttle(request: Any, **_: Any) -> AWSResponse | None:
        if fired:
            return None
        fired.append(True)
        resp = AWSResponse(request.url, 429, {"x-amzn-ErrorType": "TooManyRequestsException"}, None)
        resp._content = json.dumps({"__type": "TooManyRequestsException", "message": "slow down"}).encode()
        return resp

    return throttle


@pytest.mark.timeout(240)
def test_every_call_the_worker_makes_is_allowed_by_the_terraform_policies(
    make_stack: Any, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = make_stack(customers=4, contacts=3)
    config = stack.config
    config.metrics.cloudwatch = True
    a, b, c, d = sorted(config.customer_mappings)
    setup = local_factory(moto_endpoint, max_attempts=1)
    svc = ChangeService(setup, config, operator="iam-suite")
    status = StatusStore(setup, config)
    ledger = Ledger(setup, config)
    s3, bucket = setup.client("s3"), config.s3_config.bucket_name
    recorder = Recorder(lambda: "worker" if threading.current_thread().name.startswith("cc-") else None)
    recorder.install(monkeypatch)
    worker_aws = local_factory(moto_endpoint, max_attempts=1)

    def change(customers: list[str]) -> Change:
        data = {"changeTitle": "IAM walk", "customers": customers, "implementationStart": START}
        return Change.model_validate({**data, "implementationEnd": END})

    def settled(change_id: str, version: int, event: EmailEvent, code: str) -> None:
        def final() -> bool:
            rec = status.get(DeliveryKey(change_id, version, event, code))
            return rec is not None and rec.is_final

        wait_until(final, 60, what=f"{change_id} v{version} {event.value} {code} settled")

    # a's first send is throttled once (a retry), and held until the heartbeat renewed the message's
    # visibility and the lane's lease (a long delivery).
    renewed = threading.Event()
    sender = worker_aws.customer_send_client(config.customer(a))

    def hold(**_: Any) -> None:
        renewed.wait(30)

    sender.meta.events.register("before-call.sesv2.SendEmail", hold)
    sender.meta.events.register_first("before-send.sesv2.SendEmail", _throttle_once())
    options = {**FAST, "visibility_timeout": 4, "claim_lease": 2.0, "metrics_interval": 0.5}
    with running_worker(worker_aws, config, **options) as worker:
        first = svc.submit(change([a, b])).change
        recorder.wait(lambda x: x.operation == "ChangeMessageVisibilityBatch", "a visibility heartbeat")
        recorder.wait(
            lambda x: x.params.get("UpdateExpression") == "SET lock_until = :l", "a lane lease renewal"
        )
        renewed.set()
        settled(first.change_id, 2, EmailEvent.SUBMITTED, a)
        settled(first.change_id, 2, EmailEvent.SUBMITTED, b)
        # b removed after it was notified: its removal notice.
        svc.edit(first.model_copy(update={"customers": [a]}))
        settled(first.change_id, 3, EmailEvent.REMOVED, b)
        settled(first.change_id, 3, EmailEvent.SUBMITTED, a)

        # A legacy flat trigger whose name is not a change id: read only for the change id.
        flat = svc.submit(change([c])).change
        settled(flat.change_id, 2, EmailEvent.SUBMITTED, c)
        s3.put_object(Bucket=bucket, Key=f"customers/{c}/legacy-notice.json", Body=flat.to_json().encode())
        recorder.wait(
            lambda x: x.operation == "GetObject" and "legacy-notice" in x.params["Key"], "flat read"
        )

        # sqs-direct with an S3 payload reference, then poison (dead letter).
        direct = svc.submit(change([d])).change
        settled(direct.change_id, 2, EmailEvent.SUBMITTED, d)
        pkey = payload_key(d, direct.change_id, 2, EmailEvent.SUBMITTED)
        s3.put_object(Bucket=bucket, Key=pkey, Body=direct.to_json().encode())
        ref = direct_message(d, direct.change_id, 2, EmailEvent.SUBMITTED, bucket=bucket, key=pkey)
        send_raw(setup, config, d, ref)
        recorder.wait(lambda x: x.operation == "DeleteObject" and x.params["Key"] == pkey, "payload delete")
        send_raw(setup, config, d, "{poison")
        recorder.wait(
            lambda x: x.operation == "SendMessage" and x.params["QueueUrl"].endswith("-dlq"), "a dead letter"
        )

        # Requeue: another worker holds the lane until the message's last receive.
        held = ledger.acquire_lane(direct.change_id, d, "elsewhere/1")
        assert not isinstance(held, LaneBusy)
        send_raw(setup, config, d, direct_message(d, direct.change_id, 2, EmailEvent.SUBMITTED, change={}))
        source = queue_url(setup, config, d)
        recorder.wait(
            lambda x: x.operation == "SendMessage" and x.params["QueueUrl"] == source, "a requeue", 90
        )
        ledger.release_lane(held)

        # An operator resends a recipient whose outcome was left unknown.
        key = DeliveryKey(first.change_id, 3, EmailEvent.SUBMITTED, a)
        address = sorted(ledger.recipients(key))[0]
        setup.client("dynamodb").update_item(
            TableName=config.ledger_table_name,
            Key={"pk": {"S": f"DELIVERY#{first.change_id}#v3#submitted#{a}"}, "sk": {"S": rcpt_sk(address)}},
            UpdateExpression="SET #s = :u",
            ExpressionAttributeNames={"#s": "state"},
            ExpressionAttributeValues={":u": {"S": "unknown"}},
        )
        assert ResendService(setup, config).resend_delivery(key).resent == 1
        wait_until(lambda: ledger.recipients(key)[address].state == "sent", 60, what="the resend")

        # A change deleted while a message for it waited: its archive read answers 404.
        gone = svc.submit(change([c])).change
        settled(gone.change_id, 2, EmailEvent.SUBMITTED, c)
        svc.cancel(gone.change_id)
        settled(gone.change_id, 3, EmailEvent.CANCELLED, c)
        svc.delete(gone.change_id)
        send_raw(setup, config, c, direct_message(c, gone.change_id, 3, EmailEvent.CANCELLED, change={}))
        recorder.wait(lambda x: x.operation == "GetObject" and x.status == 404, "a missing archive read")
        recorder.wait(lambda x: x.service == "cloudwatch", "metrics")
        wait_until(lambda: worker.stats["results"].get("retry:throttled", 0) >= 1, 10, what="a retry")

    policy = worker_policy(config)
    roles = {code: ses_role_policy(config, code) for code in config.customer_mappings}
    seen = {(call.service, call.operation) for call in recorder.calls}
    denied = sorted(
        {
            f"{need} ({call.service}.{call.operation})"
            for call in recorder.calls
            for need in needs(call, config)
            if not allowed(roles[call.customer] if call.customer else policy, need)
        }
    )
    assert not denied, "denied by the Terraform policies:\n" + "\n".join(denied)
    assert all(call.service == "sesv2" for call in recorder.calls if call.customer)
    # The walk made every kind of call the worker makes (or this test would prove less than it says).
    assert {
        ("s3", "GetObject"),
        ("s3", "DeleteObject"),
        ("s3", "PutObject"),
        ("sqs", "GetQueueUrl"),
        ("sqs", "ReceiveMessage"),
        ("sqs", "DeleteMessageBatch"),
        ("sqs", "ChangeMessageVisibilityBatch"),
        ("sqs", "SendMessage"),
        ("dynamodb", "GetItem"),
        ("dynamodb", "PutItem"),
        ("dynamodb", "UpdateItem"),
        ("dynamodb", "Query"),
        ("sts", "AssumeRole"),
        ("sesv2", "ListContacts"),
        ("sesv2", "GetContactList"),
        ("sesv2", "SendEmail"),
        ("cloudwatch", "PutMetricData"),
    } <= seen, seen
    # A retry is a fresh copy (SendMessage); one message's visibility changes only when it is released at
    # shutdown or its copy cannot be sent: the action the heartbeat's batch call needs.
    queues = [m.sqs_queue_arn for m in config.customer_mappings.values()]
    assert all(allowed(policy, Need("sqs:ChangeMessageVisibility", arn)) for arn in queues)
    # Listing the account's contact lists is only needed where the default list is missing (not here).
    assert all(allowed(roles[code], Need("ses:ListContactLists", "*")) for code in roles)


def _denied(recorder: Recorder, config: Config) -> list[str]:
    policy = worker_policy(config)
    return sorted(
        {
            f"{need} ({call.service}.{call.operation})"
            for call in recorder.calls
            if call.customer is None
            for need in needs(call, config)
            if not allowed(policy, need)
        }
    )


@pytest.mark.timeout(180)
def test_doorbell_mode_calls_are_allowed_by_the_terraform_policies(
    make_stack: Any, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sqs-direct with the doorbell: the worker checks queue depths, long-polls and deletes rings, and
    rings with each retry copy; two shards, so the doorbell queues are the shards' own."""
    stack = make_stack(customers=3, contacts=1, transport="sqs-direct", worker_shards=2)
    config = stack.config
    setup = local_factory(moto_endpoint, max_attempts=1)
    svc = ChangeService(setup, config, operator="iam-suite")
    recorder = Recorder(lambda: "worker" if threading.current_thread().name.startswith("cc-") else None)
    recorder.install(monkeypatch)
    worker_aws = local_factory(moto_endpoint, max_attempts=1)
    codes = sorted(config.customer_mappings)
    throttle = _throttle_once()
    for code in codes:  # the first send of all is throttled: a retry copy, and its ring
        worker_aws.customer_send_client(config.customer(code)).meta.events.register_first(
            "before-send.sesv2.SendEmail", throttle
        )
    data = {"changeTitle": "Doorbell walk", "customers": codes, "implementationStart": START}
    workers = [running_worker(worker_aws, config, shard=(k, 2), worker_id=f"iam-{k}") for k in range(2)]
    with workers[0] as w0, workers[1] as w1:
        assert w0.worker.doorbell_on and w1.worker.doorbell_on
        change = svc.submit(Change.model_validate({**data, "implementationEnd": END})).change
        status = StatusStore(setup, config)
        wait_until(
            lambda: (
                all(r.is_final for r in status.records(change.change_id))
                and len(status.records(change.change_id)) == len(codes)
            ),
            90,
            what="every delivery final",
        )
        assert w0.stats["rings"] + w1.stats["rings"] >= len(codes)
    bells = {f"{config.doorbell.queue_prefix}-{k}-of-2" for k in range(2)}

    def on_bell(call: Any) -> bool:
        return str(call.params.get("QueueUrl", call.params.get("QueueName", ""))).rsplit("/", 1)[-1] in bells

    seen = {(call.operation, on_bell(call)) for call in recorder.calls if call.service == "sqs"}
    assert {
        ("GetQueueUrl", True),
        ("ReceiveMessage", True),
        ("DeleteMessageBatch", True),
        ("SendMessageBatch", True),
        ("GetQueueAttributes", False),
    } <= seen, seen
    assert not (denied := _denied(recorder, config)), "denied:\n" + "\n".join(denied)


def test_the_policy_check_denies_what_the_role_does_not_allow(make_stack: Any) -> None:
    """The checker itself: the old policy's gaps and a DLQ receive are refused."""
    config = make_stack(customers=1, contacts=0).config
    (code,) = config.customer_mappings
    policy = worker_policy(config)
    m = config.customer(code)
    dlq = m.effective_dlq_arn
    assert allowed(policy, Need("sqs:SendMessage", m.sqs_queue_arn))
    assert allowed(policy, Need("sqs:ReceiveMessage", m.sqs_queue_arn))
    assert not allowed(policy, Need("sqs:ReceiveMessage", dlq))
    assert allowed(policy, Need("sqs:SendMessage", dlq))
    table = f"arn:aws:dynamodb:{config.aws_region}:{LOCAL_ACCOUNT}:table/{config.ledger_table_name}"
    assert allowed(policy, Need("dynamodb:UpdateItem", table))
    assert not allowed(policy, Need("dynamodb:DeleteItem", table, {"dynamodb:LeadingKeys": ["DELIVERY#x"]}))
    assert allowed(policy, Need("dynamodb:DeleteItem", table, {"dynamodb:LeadingKeys": ["RECONCILE"]}))
    bucket = f"arn:aws:s3:::{config.s3_config.bucket_name}"
    assert allowed(policy, Need("s3:GetObject", f"{bucket}/archive/x.json"))
    assert not allowed(policy, Need("s3:GetObject", f"{bucket}/versions/x/v1.json"))
    assert not allowed(policy, Need("cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": "Other"}))
    assert not allowed(policy, Need("sts:AssumeRole", "arn:aws:iam::999999999999:role/other"))
