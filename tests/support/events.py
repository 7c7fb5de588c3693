"""SES events as AWS publishes them (through the local relay's shapes), and configs with short grace."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from changeconsole.models import Config
from changeconsole.services.aws import AwsFactory
from changeconsole.services.event_relay import NotedSend, ses_events
from changeconsole.services.events import email_tags
from changeconsole.services.status import DeliveryKey


def with_events(
    config: Config, path: Path | None = None, *, top: dict[str, Any] | None = None, **events: Any
) -> Config:
    """``config`` with ``events`` keys (and ``top``-level keys) set, written to ``path`` for a worker
    subprocess."""
    raw = {**config.to_json_dict(), **(top or {})}
    raw["events"] = {**raw.get("events", {}), **events}
    if path is not None:
        path.write_text(json.dumps(raw), encoding="utf-8")
    return Config.model_validate(raw)


def noted(
    config: Config,
    key: DeliveryKey,
    address: str,
    token: str,
    *,
    account: str | None = None,
    topic: str = "aws-approval",
    message_id: str = "local-msg-1",
) -> NotedSend:
    """A send of ``address`` for ``key`` holding ``token``, from ``account`` (default: the customer's)."""
    return NotedSend(
        account=account or config.customer(key.customer).account_id,
        message_id=message_id,
        source=config.sender_for(key.customer),
        destination=(address,),
        configuration_set=config.events.configuration_set,
        tags={t["Name"]: t["Value"] for t in email_tags(key, token, topic)},
        at="2030-01-01T00:00:00.000Z",
    )


def sns_body(event: dict[str, Any], message_id: str = "sns-1") -> str:
    """An SES event inside the SNS envelope an SQS subscriber receives."""
    return json.dumps(
        {
            "Type": "Notification",
            "MessageId": message_id,
            "TopicArn": "arn:aws:sns:us-east-1:000000000000:changeconsole-ses-events",
            "Message": json.dumps(event),
            "Timestamp": "2030-01-01T00:00:00.000Z",
        }
    )


def publish(aws: AwsFactory, config: Config, send: NotedSend, kinds: tuple[str, ...] = ("Send",)) -> int:
    """Publish the events of ``send`` whose type is in ``kinds`` to the central events topic."""
    sns = aws.client("sns")
    arn = sns.create_topic(Name=config.events.topic_name)["TopicArn"]
    n = 0
    for event in ses_events(send, config.aws_region):
        if event["eventType"] in kinds:
            sns.publish(TopicArn=arn, Message=json.dumps(event))
            n += 1
    return n
