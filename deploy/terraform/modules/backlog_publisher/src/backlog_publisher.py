"""Publish the total backlog of the changeconsole customer queues as one CloudWatch metric.

Runs every minute (EventBridge -> Lambda). Sums ApproximateNumberOfMessages over every queue named
``<QUEUE_NAME_PREFIX>*`` except the DLQs (``*<DLQ_SUFFIX>``) and publishes, in ``METRIC_NAMESPACE`` with
dimension ``Deployment=<DEPLOYMENT>``:

* ``QueueBacklog``: messages waiting in customer queues (the autoscaling signal; ECS divides it by the
  running task count, KEDA by the replica count);
* ``QueueInFlight``: messages received and not yet deleted;
* ``DlqBacklog``: messages in the DLQs.

A metric math expression over the per-queue AWS/SQS metrics cannot do this: alarms and target tracking
accept at most 10 metrics, and there is one queue per customer.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
from botocore.config import Config

ATTRIBUTES = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]


def _settings() -> dict[str, str]:
    return {
        "prefix": os.environ.get("QUEUE_NAME_PREFIX", "changeconsole-"),
        "dlq_suffix": os.environ.get("DLQ_SUFFIX", "-dlq"),
        "namespace": os.environ.get("METRIC_NAMESPACE", "ChangeConsole"),
        "deployment": os.environ.get("DEPLOYMENT", "changeconsole"),
    }


def list_queue_urls(sqs: Any, prefix: str) -> list[str]:
    urls: list[str] = []
    kwargs: dict[str, Any] = {"QueueNamePrefix": prefix, "MaxResults": 1000}
    while True:
        page = sqs.list_queues(**kwargs)
        urls.extend(page.get("QueueUrls", []))
        token = page.get("NextToken")
        if not token:
            return urls
        kwargs["NextToken"] = token


def collect(sqs: Any, prefix: str, dlq_suffix: str, threads: int = 16) -> dict[str, int]:
    urls = list_queue_urls(sqs, prefix)

    def one(url: str) -> tuple[bool, int, int]:
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=ATTRIBUTES).get("Attributes", {})
        is_dlq = url.rsplit("/", 1)[-1].endswith(dlq_suffix)
        return (
            is_dlq,
            int(attrs.get("ApproximateNumberOfMessages", 0)),
            int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0)),
        )

    totals = {"QueueBacklog": 0, "QueueInFlight": 0, "DlqBacklog": 0, "Queues": 0}
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for is_dlq, visible, in_flight in pool.map(one, urls):
            if is_dlq:
                totals["DlqBacklog"] += visible
            else:
                totals["Queues"] += 1
                totals["QueueBacklog"] += visible
                totals["QueueInFlight"] += in_flight
    return totals


def publish(cloudwatch: Any, namespace: str, deployment: str, totals: dict[str, int]) -> None:
    dimensions = [{"Name": "Deployment", "Value": deployment}]
    cloudwatch.put_metric_data(
        Namespace=namespace,
        MetricData=[
            {"MetricName": name, "Dimensions": dimensions, "Value": float(value), "Unit": "Count"}
            for name, value in sorted(totals.items())
        ],
    )


def handler(event: Any = None, context: Any = None, *, session: Any = None) -> dict[str, int]:
    s = _settings()
    session = session or boto3.session.Session()
    config = Config(retries={"mode": "adaptive", "max_attempts": 5}, max_pool_connections=32)
    totals = collect(session.client("sqs", config=config), s["prefix"], s["dlq_suffix"])
    publish(session.client("cloudwatch", config=config), s["namespace"], s["deployment"], totals)
    return totals
