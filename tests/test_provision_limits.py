"""Provisioning against AWS quotas moto does not enforce."""

from __future__ import annotations

from typing import Any

from changeconsole.services.aws import AwsFactory
from changeconsole.services.provision import S3_NOTIFICATION_LIMIT, Provisioner


def test_s3_events_past_the_bucket_notification_limit_is_called_out(
    make_stack: Any, aws_factory: AwsFactory
) -> None:
    config = make_stack(customers=1, contacts=1).config
    ((code, mapping),) = config.customer_mappings.items()
    mappings = dict(config.customer_mappings)
    for i in range(S3_NOTIFICATION_LIMIT):  # one more than S3 allows, all on the one existing queue
        extra = f"{code}-{i}"
        mappings[extra] = mapping.model_copy(update={"customer_code": extra})
    crowded = config.model_copy(update={"customer_mappings": mappings})
    assert crowded.transport == "s3-events"

    shown = Provisioner(aws_factory, config)
    shown.notifications()
    assert "S3 allows" not in shown.actions[-1].detail

    over = Provisioner(aws_factory, crowded)
    over.notifications()
    detail = over.actions[-1].detail
    assert f"{S3_NOTIFICATION_LIMIT + 1} notification configurations" in detail
    assert "sqs-direct" in detail
