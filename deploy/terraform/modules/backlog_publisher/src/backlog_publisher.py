"""Publish the total backlog of the changeconsole customer queues as one CloudWatch metric.

Runs every minute (EventBridge -> Lambda). Sums ApproximateNumberOfMessages over every queue named
``<QUEUE_NAME_PREFIX>*`` except the DLQs (``*<DLQ_SUFFIX>``) and publishes, in ``METRIC_NAMESPACE`` with
dimension ``Deployment=<DEPLOYMENT>``:

* ``QueueBacklog``: messages waiting in customer queues (the autoscaling signal; ECS divides it by the
  running task count, KEDA by the replica count);
* ``QueueInFlight``: messages received and not yet deleted;
* ``DlqBacklog``: messages in the DLQs.

With ``SHARD_COUNT`` N > 1 it also publishes ``QueueBacklog`` per worker shard (dimensions
``Deployment`` and ``Shard=K/N``): the backlog of the queues shard K serves, for that shard's own
autoscaling (ECS service per shard, KEDA ScaledObject per shard). A queue's customer code is its name
without ``QUEUE_NAME_PREFIX`` (the naming ``changeconsole provision`` and Terraform use); the shard is
``changeconsole.worker.options.shard_of`` (repeated here: the function ships without the package).

A metric math expression over the per-queue AWS/SQS metrics cannot do this: alarms and target tracking
accept at most 10 metrics, and there is one queue per customer.
"""

from __future__ import annotations

import hashlib
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
        "shards": os.environ.get("SHARD_COUNT", "1"),
    }


def shard_of(code: str, n: int) -> int:
    """The worker's shard of a customer code: sha256, first 8 bytes big-endian, modulo n."""
    return int.from_bytes(hashlib.sha256(code.encode("utf-8")).digest()[:8], "big") % n


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


def collect(
    sqs: Any, prefix: str, dlq_suffix: str, threads: int = 16, shards: int = 1
) -> tuple[dict[str, int], dict[str, int]]:
    """Totals, and the QueueBacklog per shard ("K/N" => messages; empty when ``shards`` is 1)."""
    urls = list_queue_urls(sqs, prefix)

    def one(url: str) -> tuple[str, bool, int, int]:
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=ATTRIBUTES).get("Attributes", {})
        name = url.rsplit("/", 1)[-1]
        return (
            name,
            name.endswith(dlq_suffix),
            int(attrs.get("ApproximateNumberOfMessages", 0)),
            int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0)),
        )

    totals = {"QueueBacklog": 0, "QueueInFlight": 0, "DlqBacklog": 0, "Queues": 0}
    per_shard = {f"{k}/{shards}": 0 for k in range(shards)} if shards > 1 else {}
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for name, is_dlq, visible, in_flight in pool.map(one, urls):
            if is_dlq:
                totals["DlqBacklog"] += visible
            else:
                totals["Queues"] += 1
                totals["QueueBacklog"] += visible
                totals["QueueInFlight"] += in_flight
                if per_shard:
                    per_shard[f"{shard_of(name.removeprefix(prefix), shards)}/{shards}"] += visible
    return totals, per_shard


def publish(
    cloudwatch: Any, namespace: str, deployment: str, totals: dict[str, int], per_shard: dict[str, int]
) -> None:
    dimensions = [{"Name": "Deployment", "Value": deployment}]
    data = [
        {"MetricName": name, "Dimensions": dimensions, "Value": float(value), "Unit": "Count"}
        for name, value in sorted(totals.items())
    ]
    data += [
        {
            "MetricName": "QueueBacklog",
            "Dimensions": [*dimensions, {"Name": "Shard", "Value": shard}],
            "Value": float(value),
            "Unit": "Count",
        }
        for shard, value in sorted(per_shard.items())
    ]
    for i in range(0, len(data), 1000):  # PutMetricData takes at most 1,000 metrics per call
        cloudwatch.put_metric_data(Namespace=namespace, MetricData=data[i : i + 1000])


def handler(event: Any = None, context: Any = None, *, session: Any = None) -> dict[str, int]:
    s = _settings()
    session = session or boto3.session.Session()
    config = Config(retries={"mode": "adaptive", "max_attempts": 5}, max_pool_connections=32)
    sqs = session.client("sqs", config=config)
    totals, per_shard = collect(sqs, s["prefix"], s["dlq_suffix"], shards=max(1, int(s["shards"])))
    publish(session.client("cloudwatch", config=config), s["namespace"], s["deployment"], totals, per_shard)
    return totals
