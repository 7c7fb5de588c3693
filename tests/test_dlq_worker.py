"""DLQ redrive with the real worker: a repeat (crash between send and delete) sends nothing twice."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from changeconsole.models import TOPIC_APPROVAL, DeliveryState
from changeconsole.services.aws import AwsFactory
from changeconsole.services.dlq import DlqService, RedriveFailure
from support.aws import queue_depth
from support.changes import CHANGE_ID, change_doc
from support.mail import outbox, per_recipient, subscribed
from support.waiting import wait_until
from support.worker import record, running_worker, submit

CONTACTS = 4
REVOKED = "arn:aws:iam::999999999999:role/revoked"


def _deny_revoked(aws: AwsFactory) -> None:
    def deny(params: dict[str, Any], **_: Any) -> Any:
        body = params.get("body")
        if isinstance(body, dict) and body.get("RoleArn") == REVOKED:
            http = AWSResponse("https://injected.invalid/", 403, {}, None)
            return http, {"Error": {"Code": "AccessDenied", "Message": "injected"}, "ResponseMetadata": {}}
        return None

    aws.client("sts").meta.events.register("before-call.sts.AssumeRole", deny)


def test_redrive_repeated_after_a_failed_delete_delivers_exactly_once(
    make_stack: Any, aws_factory: AwsFactory, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = make_stack(customers=1, contacts=CONTACTS)
    config = stack.config
    (code,) = config.customer_mappings
    good = config.customer(code)
    config.customer_mappings[code] = good.model_copy(update={"ses_role_arn": REVOKED})
    _deny_revoked(aws_factory)
    svc = DlqService(aws_factory, config)
    with running_worker(aws_factory, config):
        submit(aws_factory, config, change_doc([code]))
        wait_until(lambda: svc.summary(code).depth == 1, 60, what="dead-lettered")
        rec = record(aws_factory, config, code)
        assert rec is not None and rec.state is DeliveryState.DEAD_LETTERED
        (dead,) = svc.peek(code).messages
        assert dead.reason == "role_unavailable"

        config.customer_mappings[code] = good  # the fix
        # First redrive "crashes" between send and delete: the copy goes out, the original stays.
        real_delete = svc._delete

        def failing_delete(url: str, messages: Any, failures: list[RedriveFailure]) -> set[str]:
            failures.extend(RedriveFailure(m.message_id, "delete", "injected crash") for m in messages)
            return set()

        monkeypatch.setattr(svc, "_delete", failing_delete)
        first = svc.redrive(code, message_ids=[dead.message_id])
        assert (
            first.moved == []
            and [f.stage for f in first.failed] == ["delete"]
            and dead.message_id in first.new_ids
        )
        wait_until(
            lambda: (r := record(aws_factory, config, code)) is not None and r.state is DeliveryState.SENT,
            60,
            what="delivered after the first redrive",
        )
        sent_once = per_recipient(outbox(moto_endpoint, CHANGE_ID))
        assert svc.summary(code).depth == 1  # the original is still in the DLQ

        monkeypatch.setattr(svc, "_delete", real_delete)
        second = svc.redrive(code, all_messages=True)
        assert second.moved == [dead.message_id] and second.ok
        wait_until(lambda: queue_depth(aws_factory, config, code) == 0, 60, what="the repeat processed")
    expected = {
        (a.lower(), CHANGE_ID, 2, "submitted", code) for a in subscribed(code, CONTACTS, TOPIC_APPROVAL)
    }
    counts = per_recipient(outbox(moto_endpoint, CHANGE_ID))
    assert set(counts) == expected and all(n == 1 for n in counts.values()), counts
    assert counts == sent_once
    assert svc.summary(code).depth == 0
