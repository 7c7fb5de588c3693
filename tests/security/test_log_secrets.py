"""No secret, credential or email body ever appears in the worker's logs, audit trail or DLQ attributes.

The worker runs as a process (``changeconsole worker --log-level debug``) with canary credentials; it
assumes every customer's role (moto issues real-looking secret keys and session tokens, read back from
the in-process stand-in), sends emails whose bodies carry a canary, and dead-letters a poison message
that carries the canary too. Every log line, every audit object and every DLQ attribute is scanned.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from changeconsole.models import Change, DeliveryState, EmailEvent, direct_message, new_change_id
from changeconsole.services.aws import AwsFactory
from changeconsole.services.lifecycle import ChangeService
from changeconsole.services.status import StatusStore
from support.changes import END, START
from support.waiting import wait_until
from support.worker import WorkerProcess

CANARY_KEY_ID = "AKIACANARY0000000042"
CANARY_SECRET = "cAnArYsEcReT/0123456789+abcdefghijKLMNOPQ"
CANARY_TOKEN = "CANARYSESSIONTOKEN//" + "x" * 40
BODY_CANARY = "BODY-CANARY-9f1c3e"


def _moto_credentials() -> set[str]:
    """Every secret key and session token the in-process moto STS handed out."""
    from moto.sts.models import sts_backends

    out: set[str] = set()
    for _account, regions in sts_backends.items():
        for _region, backend in regions.items():
            for role in getattr(backend, "assumed_roles", []):
                out.add(role.secret_access_key)
                out.add(role.session_token)
    return {s for s in out if s and len(s) >= 16}


@pytest.mark.timeout(240)
def test_logs_audit_and_dlq_hold_no_secret_and_no_email_body(
    make_stack: Any, aws_factory: AwsFactory, moto_endpoint: str
) -> None:
    stack = make_stack(customers=3, contacts=5)
    config = stack.config
    codes = sorted(config.customer_mappings)
    body = f"{BODY_CANARY} drain the node, patch, reboot. {BODY_CANARY}"
    change = ChangeService(aws_factory, config, operator="security-suite").submit(
        Change.model_validate(
            {
                "changeTitle": "Log hygiene",
                "changeReason": body,
                "implementationPlan": body,
                "testPlan": body,
                "customerImpact": body,
                "rollbackPlan": body,
                "customers": codes,
                "implementationStart": START,
                "implementationEnd": END,
            }
        )
    )
    assert change.ok
    # A poison message carrying the canary (invalid change: end before start) and one that is not JSON.
    sqs = aws_factory.client("sqs")
    url = sqs.get_queue_url(QueueName=config.customer(codes[0]).queue_name)["QueueUrl"]
    bad = {
        "changeId": new_change_id(),
        "changeTitle": "bad",
        "changeReason": body,
        "customers": [codes[0]],
        "implementationStart": END,
        "implementationEnd": START,
        "status": "submitted",
        "version": 2,
    }
    aws_factory.client("s3").put_object(  # the worker reads the change from the archive
        Bucket=config.s3_config.bucket_name, Key=f"archive/{bad['changeId']}.json", Body=json.dumps(bad)
    )
    sqs.send_message(
        QueueUrl=url,
        MessageBody=direct_message(codes[0], bad["changeId"], 2, EmailEvent.SUBMITTED, change=bad),
    )
    sqs.send_message(QueueUrl=url, MessageBody="{" + BODY_CANARY)

    env = {
        "AWS_ACCESS_KEY_ID": CANARY_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": CANARY_SECRET,
        "AWS_SESSION_TOKEN": CANARY_TOKEN,
    }
    worker = WorkerProcess(stack.config_path, moto_endpoint, "--log-level", "debug", env=env)
    status = StatusStore(aws_factory, config)
    dlq_url = sqs.get_queue_url(QueueName=config.customer(codes[0]).dlq_name)["QueueUrl"]
    try:
        worker.start()
        wait_until(
            lambda: (
                len(status.records(change.change.change_id)) == len(codes)
                and all(r.state is DeliveryState.SENT for r in status.records(change.change.change_id))
            ),
            90,
            "the change sent",
        )
        wait_until(
            lambda: (
                int(
                    sqs.get_queue_attributes(
                        QueueUrl=dlq_url, AttributeNames=["ApproximateNumberOfMessages"]
                    )["Attributes"]["ApproximateNumberOfMessages"]
                )
                >= 2
            ),
            60,
            "both poison messages dead-lettered",
        )
    finally:
        assert worker.terminate() == 0
    logs = "".join(worker.lines)
    assert '"delivery.' in logs or '"email.' in logs, "the worker logged its work"

    secrets = {CANARY_SECRET, CANARY_TOKEN, *_moto_credentials()}
    assert len(secrets) > 2, "the worker assumed customer roles"
    s3 = aws_factory.client("s3")
    bucket = config.s3_config.bucket_name
    audit = ""
    for obj in s3.list_objects_v2(Bucket=bucket, Prefix="audit/").get("Contents", []):
        audit += s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read().decode()
    dead = sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"])
    dlq_attrs = json.dumps([m.get("MessageAttributes", {}) for m in dead.get("Messages", [])])
    assert dead.get("Messages"), "poison messages reached the DLQ"

    for name, text in (("worker logs", logs), ("audit trail", audit), ("DLQ attributes", dlq_attrs)):
        for secret in secrets:
            assert secret not in text, f"a credential ({secret[:6]}…) appears in the {name}"
        assert BODY_CANARY not in text, f"email body text appears in the {name}"
        for pattern in (
            r"(?i)secret_?access_?key",
            r"(?i)session_?token",
            r"AWS4-HMAC-SHA256",
            r"X-Amz-Security-Token",
        ):
            assert not re.search(pattern, text), f"{pattern} in the {name}"
