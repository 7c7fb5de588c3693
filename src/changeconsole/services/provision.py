"""Create or verify the central resources a config describes (bucket, queues, tables, audit retention).

``plan(config)`` is the desired state, also used by the Terraform parity test; ``apply`` makes
reality match it and reports one action per resource (``created``, ``updated`` or ``unchanged``).

Audit retention (``audit_retention``): one lifecycle rule ``audit-retention`` on ``audit/`` (transition
and expiry; the bucket's other rules are kept) and, with ``object_lock_mode``, Object Lock enabled on
the bucket (no default retention: the audit writer locks each object it puts; Object Lock cannot be
turned off again). ``operator_roles_report`` says which Identity Center permission sets and groups the
configured roles name, and whether they exist (they are Terraform's: ``modules/operator_access``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..errors import describe, error_code
from ..models import Config, CustomerMapping
from .authz import RoleRow, role_rows
from .aws import AwsFactory

QUEUE_VISIBILITY_TIMEOUT = 120
QUEUE_RETENTION = 4 * 24 * 3600
DLQ_RETENTION = 14 * 24 * 3600
LONG_POLL_SECONDS = 20
TRIGGER_SUFFIX = ".json"
LEDGER_TTL_ATTRIBUTE = "expires_at"
STATUS_GSI_CHANGES = "gsi1"  # gsi1pk = "CHANGES", gsi1sk = "<modifiedAt>#<index write time>#<changeId>"
STATUS_GSI_CUSTOMER = "gsi2"  # gsi2pk = "CUSTOMER#<code>", gsi2sk = "<updated_at>"
# gsi3pk = "CHANGE#<id>", gsi3sk = "<write time, µs>#v<version>#<event>#<code>": the records of a change
# written since a point in time (the live status screen's poll; services/status.changed_since).
STATUS_GSI_CHANGED = "gsi3"
EVENTS_RETENTION = 4 * 24 * 3600
# A ring carries no work (the customer's queue is the truth): kept an hour, received again 30 s after a
# worker took it and stopped before deleting it.
DOORBELL_RETENTION = 3600
DOORBELL_VISIBILITY = 30
EVENT_DESTINATION = "changeconsole-central"
# Every SES event type the worker reads (services/events.py).
SES_EVENT_TYPES = ["SEND", "DELIVERY", "BOUNCE", "COMPLAINT", "REJECT", "DELIVERY_DELAY", "RENDERING_FAILURE"]


# Event notification configurations S3 accepts per bucket (its quota).
S3_NOTIFICATION_LIMIT = 100


def notification_id(code: str) -> str:
    return f"changeconsole-{code}"


def trigger_prefix(code: str) -> str:
    return f"customers/{code}/"


@dataclass
class QueueSpec:
    customer: str
    name: str
    dlq_name: str
    attributes: dict[str, str]
    dlq_attributes: dict[str, str]


@dataclass
class NotificationSpec:
    id: str
    customer: str
    queue_arn: str
    prefix: str
    suffix: str
    events: list[str] = field(default_factory=lambda: ["s3:ObjectCreated:*"])


@dataclass
class TableSpec:
    name: str
    gsis: list[str]
    ttl_attribute: str | None


AUDIT_RULE_ID = "audit-retention"


@dataclass
class AuditSpec:
    rule: dict[str, Any] | None  # the lifecycle rule on audit/ (None: no transition, no expiry)
    object_lock: bool


def doorbell_attributes() -> dict[str, str]:
    return {
        "MessageRetentionPeriod": str(DOORBELL_RETENTION),
        "VisibilityTimeout": str(DOORBELL_VISIBILITY),
        "ReceiveMessageWaitTimeSeconds": str(LONG_POLL_SECONDS),
        "SqsManagedSseEnabled": "true",
    }


@dataclass
class Plan:
    bucket: str
    queues: list[QueueSpec]
    # sqs-direct with the doorbell: one queue per worker shard (``Config.doorbell_queues``).
    doorbells: list[str]
    notifications: list[NotificationSpec]
    tables: list[TableSpec]
    audit: AuditSpec


def audit_spec(config: Config) -> AuditSpec:
    r = config.audit_retention
    rule: dict[str, Any] = {"ID": AUDIT_RULE_ID, "Filter": {"Prefix": "audit/"}, "Status": "Enabled"}
    if r.transition_days:
        rule["Transitions"] = [{"Days": r.transition_days, "StorageClass": r.transition_storage_class}]
    if r.expire_days:
        rule["Expiration"] = {"Days": r.expire_days}
    kept = "Transitions" in rule or "Expiration" in rule
    return AuditSpec(rule if kept else None, r.object_lock_mode is not None)


def sqs_max_receive_count(config: Config) -> int:
    """The queue's RedrivePolicy maxReceiveCount: a backstop. The worker keeps both budgets of a
    message itself (``max_receive_count`` failed attempts, ``max_receives_without_outcome`` receives
    with no outcome, carried by each fresh copy; a crash is counted by its delivery's ledger claim, not
    here), so SQS only acts when the worker could not (its fresh copy could not be sent)."""
    return config.max_receive_count + config.max_receives_without_outcome


def queue_spec(config: Config, customer: CustomerMapping) -> QueueSpec:
    redrive = json.dumps(
        {"deadLetterTargetArn": customer.effective_dlq_arn, "maxReceiveCount": sqs_max_receive_count(config)},
        separators=(",", ":"),
    )
    return QueueSpec(
        customer=customer.customer_code,
        name=customer.queue_name,
        dlq_name=customer.dlq_name,
        attributes={
            "VisibilityTimeout": str(QUEUE_VISIBILITY_TIMEOUT),
            "MessageRetentionPeriod": str(QUEUE_RETENTION),
            "ReceiveMessageWaitTimeSeconds": str(LONG_POLL_SECONDS),
            "SqsManagedSseEnabled": "true",
            "RedrivePolicy": redrive,
        },
        dlq_attributes={
            "MessageRetentionPeriod": str(DLQ_RETENTION),
            "SqsManagedSseEnabled": "true",
        },
    )


def plan(config: Config) -> Plan:
    customers = [config.customer_mappings[c] for c in sorted(config.customer_mappings)]
    notifications = []
    if config.transport == "s3-events":
        notifications = [
            NotificationSpec(
                id=notification_id(c.customer_code),
                customer=c.customer_code,
                queue_arn=c.sqs_queue_arn,
                prefix=trigger_prefix(c.customer_code),
                suffix=TRIGGER_SUFFIX,
            )
            for c in customers
        ]
    return Plan(
        bucket=config.s3_config.bucket_name,
        queues=[queue_spec(config, c) for c in customers],
        doorbells=config.doorbell_queues(),
        notifications=notifications,
        tables=[
            TableSpec(
                config.status_table_name, [STATUS_GSI_CHANGES, STATUS_GSI_CUSTOMER, STATUS_GSI_CHANGED], None
            ),
            TableSpec(config.ledger_table_name, [], LEDGER_TTL_ATTRIBUTE),
        ],
        audit=audit_spec(config),
    )


@dataclass
class Action:
    kind: str  # bucket, queue, dlq, notifications, table
    name: str
    result: str  # created, updated, unchanged, would-create, would-update
    detail: str = ""


def _is_missing(exc: ClientError, *codes: str) -> bool:
    return error_code(exc) in codes


class Provisioner:
    """Creates or updates what ``config`` needs. ``only``: the per-customer part (queues, configuration
    sets) for these customer codes alone (``customer add``); the shared part is always checked."""

    def __init__(
        self,
        aws: AwsFactory,
        config: Config,
        *,
        dry_run: bool = False,
        threads: int = 16,
        only: Iterable[str] | None = None,
    ) -> None:
        self.aws = aws
        self.config = config
        self.dry_run = dry_run
        self.threads = threads
        self.plan = plan(config)
        self.customers = sorted(config.customer_mappings if only is None else set(only))
        self._lock = threading.Lock()
        self.actions: list[Action] = []

    def _record(self, kind: str, name: str, result: str, detail: str = "") -> None:
        if self.dry_run and result in ("created", "updated"):
            result = {"created": "would-create", "updated": "would-update"}[result]
        with self._lock:
            self.actions.append(Action(kind, name, result, detail))

    # -- bucket -------------------------------------------------------------------
    def bucket(self) -> None:
        s3 = self.aws.client("s3")
        name = self.plan.bucket
        try:
            s3.head_bucket(Bucket=name)
            exists = True
        except ClientError as exc:
            if not _is_missing(exc, "404", "NoSuchBucket", "NotFound"):
                raise
            exists = False
        changed = []
        if not exists:
            if not self.dry_run:
                kwargs: dict[str, Any] = {"Bucket": name}
                if self.aws.settings.region != "us-east-1":
                    kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.aws.settings.region}
                s3.create_bucket(**kwargs)
            self._record("bucket", name, "created")
            if self.dry_run:
                return
        versioning = s3.get_bucket_versioning(Bucket=name).get("Status")
        if versioning != "Enabled":
            changed.append("versioning")
            if not self.dry_run:
                s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        try:
            s3.get_bucket_encryption(Bucket=name)
        except ClientError as exc:
            if not _is_missing(exc, "ServerSideEncryptionConfigurationNotFoundError"):
                raise
            changed.append("encryption")
            if not self.dry_run:
                s3.put_bucket_encryption(
                    Bucket=name,
                    ServerSideEncryptionConfiguration={
                        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
                    },
                )
        block = {
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        }
        try:
            current = s3.get_public_access_block(Bucket=name)["PublicAccessBlockConfiguration"]
        except ClientError as exc:
            if not _is_missing(exc, "NoSuchPublicAccessBlockConfiguration"):
                raise
            current = {}
        if current != block:
            changed.append("public access block")
            if not self.dry_run:
                s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=block)
        if exists:
            self._record("bucket", name, "updated" if changed else "unchanged", ", ".join(changed))

    # -- queues ---------------------------------------------------------------------
    def _ensure_queue(self, kind: str, name: str, attributes: dict[str, str], account: str) -> None:
        sqs = self.aws.client("sqs")
        try:
            url = sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"]
        except ClientError as exc:
            if not _is_missing(exc, "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"):
                raise
            if not self.dry_run:
                sqs.create_queue(QueueName=name, Attributes=attributes)
            self._record(kind, name, "created")
            return
        current = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"]).get("Attributes", {})
        diff = {}
        for attr, want in attributes.items():
            have = current.get(attr)
            if attr == "RedrivePolicy" and have and _same_redrive(have, want):
                continue
            if have != want:
                diff[attr] = want
        if diff and not self.dry_run:
            sqs.set_queue_attributes(QueueUrl=url, Attributes=diff)
        self._record(kind, name, "updated" if diff else "unchanged", ", ".join(sorted(diff)))

    def _queue_policy(self, spec: QueueSpec, account: str) -> None:
        if self.dry_run or self.config.transport != "s3-events":
            return
        sqs = self.aws.client("sqs")
        url = sqs.get_queue_url(QueueName=spec.name, QueueOwnerAWSAccountId=account)["QueueUrl"]
        arn = self.config.customer_mappings[spec.customer].sqs_queue_arn
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "AllowS3Triggers",
                    "Effect": "Allow",
                    "Principal": {"Service": "s3.amazonaws.com"},
                    "Action": "sqs:SendMessage",
                    "Resource": arn,
                    "Condition": {"ArnLike": {"aws:SourceArn": f"arn:aws:s3:::{self.plan.bucket}"}},
                }
            ],
        }
        have = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"]).get("Attributes", {})
        if have.get("Policy") and json.loads(have["Policy"]) == policy:
            return
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(policy)})

    def queues(self) -> None:
        def one(spec: QueueSpec) -> None:
            account = self.config.customer_mappings[spec.customer].queue_account
            self._ensure_queue("dlq", spec.dlq_name, spec.dlq_attributes, account)
            self._ensure_queue("queue", spec.name, spec.attributes, account)
            self._queue_policy(spec, account)

        with ThreadPoolExecutor(max_workers=self.threads) as pool:
            list(pool.map(one, [q for q in self.plan.queues if q.customer in self.customers]))

    def doorbells(self) -> None:
        """The doorbell queues (``plan.doorbells``), in the account of the credentials used."""
        if not self.plan.doorbells:
            return
        account = self.aws.client("sts").get_caller_identity()["Account"]
        for name in self.plan.doorbells:
            self._ensure_queue("doorbell", name, doorbell_attributes(), account)

    # -- notifications -----------------------------------------------------------------
    def notifications(self) -> None:
        s3 = self.aws.client("s3")
        if self.dry_run and not any(a.kind == "bucket" and a.result == "unchanged" for a in self.actions):
            self._record(
                "notifications", self.plan.bucket, "created", f"{len(self.plan.notifications)} queues"
            )
            return
        current = s3.get_bucket_notification_configuration(Bucket=self.plan.bucket)
        have = {
            q.get("Id"): (q["QueueArn"], _filter_rules(q), sorted(q.get("Events", [])))
            for q in current.get("QueueConfigurations", [])
        }
        want = {
            n.id: (n.queue_arn, {"prefix": n.prefix, "suffix": n.suffix}, sorted(n.events))
            for n in self.plan.notifications
        }
        ours = {k: v for k, v in have.items() if k and str(k).startswith("changeconsole-")}
        if ours == want:
            self._record("notifications", self.plan.bucket, "unchanged", f"{len(want)} queues")
            return
        # Another system's entry for the same queue and prefix (the running system this replaces sets
        # up exactly ours): S3 refuses overlapping entries, and ours does the same, so it is adopted.
        same = {(n.queue_arn, n.prefix) for n in self.plan.notifications}
        foreign: list[dict[str, Any]] = []
        adopted: list[str] = []
        for q in current.get("QueueConfigurations", []):
            if str(q.get("Id", "")).startswith("changeconsole-"):
                continue
            if (q.get("QueueArn"), _filter_rules(q).get("prefix")) in same:
                adopted.append(str(q.get("Id") or q.get("QueueArn")))
            else:
                foreign.append(q)
        config: dict[str, Any] = {
            "QueueConfigurations": foreign
            + [
                {
                    "Id": n.id,
                    "QueueArn": n.queue_arn,
                    "Events": n.events,
                    "Filter": {
                        "Key": {
                            "FilterRules": [
                                {"Name": "prefix", "Value": n.prefix},
                                {"Name": "suffix", "Value": n.suffix},
                            ]
                        }
                    },
                }
                for n in self.plan.notifications
            ]
        }
        for extra in ("TopicConfigurations", "LambdaFunctionConfigurations", "EventBridgeConfiguration"):
            if current.get(extra):
                config[extra] = current[extra]
        if not self.dry_run:
            s3.put_bucket_notification_configuration(
                Bucket=self.plan.bucket, NotificationConfiguration=config
            )
        added = len(set(want) - set(ours))
        detail = f"{len(want)} queues ({added} added)"
        if adopted:
            detail += f"; replaced another system's: {', '.join(sorted(adopted))}"
        if len(config["QueueConfigurations"]) > S3_NOTIFICATION_LIMIT:
            detail += (
                f"; {len(config['QueueConfigurations'])} notification configurations, over the "
                f"{S3_NOTIFICATION_LIMIT} S3 allows per bucket: AWS refuses this, use transport "
                "sqs-direct (docs/capacity.md)"
            )
        self._record("notifications", self.plan.bucket, "created" if not ours else "updated", detail)

    # -- tables ----------------------------------------------------------------------
    def tables(self) -> None:
        ddb = self.aws.client("dynamodb")
        for spec in self.plan.tables:
            try:
                desc = ddb.describe_table(TableName=spec.name)["Table"]
            except ClientError as exc:
                if not _is_missing(exc, "ResourceNotFoundException"):
                    raise
                if not self.dry_run:
                    ddb.create_table(**table_definition(spec))
                    ddb.get_waiter("table_exists").wait(TableName=spec.name)
                    if spec.ttl_attribute:
                        ddb.update_time_to_live(
                            TableName=spec.name,
                            TimeToLiveSpecification={"Enabled": True, "AttributeName": spec.ttl_attribute},
                        )
                    _enable_pitr(ddb, spec.name)
                self._record("table", spec.name, "created")
                continue
            have = {g["IndexName"] for g in desc.get("GlobalSecondaryIndexes", [])}
            missing = [g for g in spec.gsis if g not in have]
            if not missing:
                self._record("table", spec.name, "unchanged")
                continue
            # DynamoDB adds one GSI per UpdateTable, online (the table stays usable while the index
            # backfills; readers fall back until it is ACTIVE). Run provision again for the next one.
            adding, later = missing[0], missing[1:]
            if not self.dry_run:
                ddb.update_table(**add_index_request(spec, adding))
            detail = f"adding index {adding} (backfills online)"
            if later:
                detail += f"; run provision again to add {', '.join(later)}"
            self._record("table", spec.name, "updated", detail)

    # -- audit retention --------------------------------------------------------------------
    def audit_retention(self) -> None:
        s3 = self.aws.client("s3")
        name, spec = self.plan.bucket, self.plan.audit
        if self.dry_run and not any(a.kind == "bucket" and a.result == "unchanged" for a in self.actions):
            self._record("audit", "audit/", "created", _audit_detail(spec))
            return
        try:
            rules = s3.get_bucket_lifecycle_configuration(Bucket=name).get("Rules", [])
        except ClientError as exc:
            if not _is_missing(exc, "NoSuchLifecycleConfiguration"):
                raise
            rules = []
        ours = next((r for r in rules if r.get("ID") == AUDIT_RULE_ID), None)
        changed = []
        if _normal_rule(ours) != _normal_rule(spec.rule):
            changed.append("lifecycle rule")
            others = [r for r in rules if r.get("ID") != AUDIT_RULE_ID]
            wanted = others + ([spec.rule] if spec.rule else [])
            if not self.dry_run:
                if wanted:
                    s3.put_bucket_lifecycle_configuration(
                        Bucket=name, LifecycleConfiguration={"Rules": wanted}
                    )
                else:
                    s3.delete_bucket_lifecycle(Bucket=name)
        if spec.object_lock:
            try:
                lock = s3.get_object_lock_configuration(Bucket=name).get("ObjectLockConfiguration", {})
            except ClientError as exc:
                if not _is_missing(exc, "ObjectLockConfigurationNotFoundError"):
                    raise
                lock = {}
            if lock.get("ObjectLockEnabled") != "Enabled":
                changed.append("object lock")
                if not self.dry_run:
                    s3.put_object_lock_configuration(
                        Bucket=name, ObjectLockConfiguration={"ObjectLockEnabled": "Enabled"}
                    )
        fresh = any(a.kind == "bucket" and a.result == "created" for a in self.actions)
        result = ("created" if fresh else "updated") if changed else "unchanged"
        detail = _audit_detail(spec) + (f" ({', '.join(changed)} set)" if changed else "")
        self._record("audit", "audit/", result, detail)

    # -- SES events: central topic and queue, a configuration set in each customer's account ----------
    def events(self) -> None:
        """SNS topic ``events.topic_name`` (SES of the customer accounts may publish) → SQS
        ``events.queue_name``, then each customer's configuration set and its event destination."""
        ev = self.config.events
        account = self.aws.client("sts").get_caller_identity()["Account"]
        region = self.config.aws_region
        topic_arn = f"arn:aws:sns:{region}:{account}:{ev.topic_name}"
        queue_arn = f"arn:aws:sqs:{region}:{account}:{ev.queue_name}"
        self._ensure_queue(
            "events_queue",
            ev.queue_name,
            {
                "MessageRetentionPeriod": str(EVENTS_RETENTION),
                "ReceiveMessageWaitTimeSeconds": str(LONG_POLL_SECONDS),
                "SqsManagedSseEnabled": "true",
            },
            account,
        )
        sns = self.aws.client("sns")
        topics = {
            t["TopicArn"] for p in sns.get_paginator("list_topics").paginate() for t in p.get("Topics", [])
        }
        accounts = sorted({c.account_id for c in self.config.customer_mappings.values()})
        topic_policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "AllowCustomerSesEvents",
                    "Effect": "Allow",
                    "Principal": {"Service": "ses.amazonaws.com"},
                    "Action": "SNS:Publish",
                    "Resource": topic_arn,
                    "Condition": {"StringEquals": {"AWS:SourceAccount": accounts}},
                }
            ],
        }
        if topic_arn not in topics:
            if not self.dry_run:
                sns.create_topic(Name=ev.topic_name)
            self._record("events_topic", ev.topic_name, "created")
        if topic_arn in topics:
            changed = self._topic_wiring(sns, topic_arn, topic_policy, queue_arn, account)
            self._record("events_topic", ev.topic_name, "updated" if changed else "unchanged", changed)
        elif not self.dry_run:
            self._topic_wiring(sns, topic_arn, topic_policy, queue_arn, account)
        with ThreadPoolExecutor(max_workers=self.threads) as pool:
            list(pool.map(lambda c: self.configuration_set(c, topic_arn), self.customers))

    def _topic_wiring(
        self, sns: Any, topic_arn: str, topic_policy: dict[str, Any], queue_arn: str, account: str
    ) -> str:
        """Topic policy, the queue's subscription, the queue policy letting the topic send: what changed
        (a dry run reads the topic only)."""
        changed = []
        have = sns.get_topic_attributes(TopicArn=topic_arn).get("Attributes", {})
        if not have.get("Policy") or json.loads(have["Policy"]) != topic_policy:
            changed.append("topic policy")
            if not self.dry_run:
                sns.set_topic_attributes(
                    TopicArn=topic_arn, AttributeName="Policy", AttributeValue=json.dumps(topic_policy)
                )
        subs = sns.list_subscriptions_by_topic(TopicArn=topic_arn).get("Subscriptions", [])
        if not any(s.get("Endpoint") == queue_arn for s in subs):
            changed.append("queue subscription")
            if not self.dry_run:
                sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
        if self.dry_run:
            return ", ".join(changed)
        sqs = self.aws.client("sqs")
        url = sqs.get_queue_url(QueueName=self.config.events.queue_name, QueueOwnerAWSAccountId=account)[
            "QueueUrl"
        ]
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "AllowSesEventsTopic",
                    "Effect": "Allow",
                    "Principal": {"Service": "sns.amazonaws.com"},
                    "Action": "sqs:SendMessage",
                    "Resource": queue_arn,
                    "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
                }
            ],
        }
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"]).get("Attributes", {})
        if not attrs.get("Policy") or json.loads(attrs["Policy"]) != policy:
            sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(policy)})
            changed.append("queue policy")
        return ", ".join(changed)

    def configuration_set(self, code: str, topic_arn: str) -> None:
        """The customer's configuration set (its own account) and its event destination to the topic.

        An endpoint without event destinations (moto, the local stack) gets the set only: the action
        says so, and the local event relay stands in (services/event_relay.py)."""
        name = self.config.events.configuration_set
        label = f"{code}:{name}"
        try:
            ses = self.aws.customer_client(self.config.customer(code), "sesv2")
            try:
                ses.get_configuration_set(ConfigurationSetName=name)
            except ClientError as exc:
                if not _is_missing(exc, "NotFoundException"):
                    raise
                if not self.dry_run:
                    ses.create_configuration_set(ConfigurationSetName=name)
                self._record("configuration_set", label, "created")
            else:
                self._record("configuration_set", label, "unchanged")
            if not self.dry_run:
                self._record("event_destination", label, *self._event_destination(ses, name, topic_arn))
        except (ClientError, BotoCoreError) as exc:
            self._record("configuration_set", label, "failed", describe(exc))

    @staticmethod
    def _event_destination(ses: Any, name: str, topic_arn: str) -> tuple[str, str]:
        want = {
            "Enabled": True,
            "MatchingEventTypes": SES_EVENT_TYPES,
            "SnsDestination": {"TopicArn": topic_arn},
        }
        try:
            have = ses.get_configuration_set_event_destinations(ConfigurationSetName=name).get(
                "EventDestinations", []
            )
        except (ClientError, BotoCoreError) as exc:
            return (
                "skipped",
                f"event destinations not supported here ({describe(exc)}); the local event relay stands in",
            )
        mine = next((d for d in have if d.get("Name") == EVENT_DESTINATION), None)
        if mine is None:
            ses.create_configuration_set_event_destination(
                ConfigurationSetName=name, EventDestinationName=EVENT_DESTINATION, EventDestination=want
            )
            return "created", ""
        same = (
            bool(mine.get("Enabled"))
            and sorted(mine.get("MatchingEventTypes", [])) == sorted(SES_EVENT_TYPES)
            and (mine.get("SnsDestination") or {}).get("TopicArn") == topic_arn
        )
        if same:
            return "unchanged", ""
        ses.update_configuration_set_event_destination(
            ConfigurationSetName=name, EventDestinationName=EVENT_DESTINATION, EventDestination=want
        )
        return "updated", ""

    def run(self) -> list[Action]:
        self.bucket()
        self.queues()
        self.doorbells()
        if self.plan.notifications:
            self.notifications()
        self.tables()
        self.audit_retention()
        self.events()
        order = {"bucket": 0, "audit": 1, "table": 2, "notifications": 3, "dlq": 4, "queue": 5, "doorbell": 6}
        self.actions.sort(key=lambda a: (order.get(a.kind, 9), a.name))
        return self.actions


def _normal_rule(rule: dict[str, Any] | None) -> Any:
    """A lifecycle rule as comparable data (S3 answers with the fields we set, maybe more)."""
    if rule is None:
        return None
    keys = ("ID", "Status", "Filter", "Transitions", "Expiration")
    return json.dumps({k: rule.get(k) for k in keys}, sort_keys=True, default=str)


def _audit_detail(spec: AuditSpec) -> str:
    parts = []
    rule = spec.rule or {}
    for t in rule.get("Transitions", []):
        parts.append(f"to {t['StorageClass']} after {t['Days']} d")
    if "Expiration" in rule:
        parts.append(f"expire after {rule['Expiration']['Days']} d")
    if spec.object_lock:
        parts.append("object lock")
    return ", ".join(parts) or "kept forever"


def _same_redrive(have: str, want: str) -> bool:
    a, b = json.loads(have), json.loads(want)
    return a.get("deadLetterTargetArn") == b.get("deadLetterTargetArn") and int(
        a.get("maxReceiveCount", 0)
    ) == int(b.get("maxReceiveCount", 0))


def _filter_rules(qc: dict[str, Any]) -> dict[str, str]:
    rules = qc.get("Filter", {}).get("Key", {}).get("FilterRules", [])
    return {r["Name"].lower(): r["Value"] for r in rules}


def _enable_pitr(ddb: Any, table: str) -> None:
    try:
        ddb.update_continuous_backups(
            TableName=table, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
        )
    except ClientError as exc:  # some emulators lack PITR; the table is still usable
        if not _is_missing(exc, "UnknownOperationException", "ContinuousBackupsUnavailableException"):
            raise


def _gsi_definition(gsi: str) -> dict[str, Any]:
    return {
        "IndexName": gsi,
        "KeySchema": [
            {"AttributeName": f"{gsi}pk", "KeyType": "HASH"},
            {"AttributeName": f"{gsi}sk", "KeyType": "RANGE"},
        ],
        "Projection": {"ProjectionType": "ALL"},
    }


def add_index_request(spec: TableSpec, gsi: str) -> dict[str, Any]:
    """``UpdateTable`` arguments adding one GSI of ``spec`` to an existing table."""
    return {
        "TableName": spec.name,
        "AttributeDefinitions": [
            {"AttributeName": f"{gsi}pk", "AttributeType": "S"},
            {"AttributeName": f"{gsi}sk", "AttributeType": "S"},
        ],
        "GlobalSecondaryIndexUpdates": [{"Create": _gsi_definition(gsi)}],
    }


def table_definition(spec: TableSpec) -> dict[str, Any]:
    attrs = [{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}]
    gsis = []
    for gsi in spec.gsis:
        attrs += [
            {"AttributeName": f"{gsi}pk", "AttributeType": "S"},
            {"AttributeName": f"{gsi}sk", "AttributeType": "S"},
        ]
        gsis.append(_gsi_definition(gsi))
    definition: dict[str, Any] = {
        "TableName": spec.name,
        "KeySchema": [
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        "AttributeDefinitions": attrs,
        "BillingMode": "PAY_PER_REQUEST",
    }
    if gsis:
        definition["GlobalSecondaryIndexes"] = gsis
    return definition


def provision(aws: AwsFactory, config: Config, *, dry_run: bool = False, threads: int = 16) -> list[Action]:
    return Provisioner(aws, config, dry_run=dry_run, threads=threads).run()


def operator_roles_report(aws: AwsFactory, config: Config) -> list[RoleRow]:
    """The configured roles (actions, scope) and, with ``identity_center.instance_arn`` (and
    ``identity_store_id``), whether each permission set and group they name exists; ``notes`` say so."""
    rows = role_rows(config)
    ic = config.identity_center
    if not rows or ic is None or not ic.instance_arn:
        for row in rows:
            row.notes.append("Identity Center not checked (set identity_center.instance_arn)")
        return rows
    try:
        names, groups = _identity_center_names(aws, ic.instance_arn, ic.identity_store_id, ic.region)
    except (ClientError, BotoCoreError) as exc:  # e.g. run from an account that cannot read it
        for row in rows:
            row.notes.append(f"Identity Center not readable: {describe(exc)}")
        return rows
    for row in rows:
        for principal in row.principals:
            kind, sep, value = principal.partition(":")
            if principal.startswith("arn:") or (sep and kind == "user"):
                continue
            if sep and kind == "permission-set":
                found = value in names
            elif sep and kind == "group":
                found = value in groups
            else:
                found = principal in names or principal in groups
            if not found:
                row.notes.append(f"{principal}: no such permission set or group in Identity Center")
        if not row.notes:
            row.notes.append("present in Identity Center")
    return rows


def _identity_center_names(
    aws: AwsFactory, instance_arn: str, store: str | None, region: str | None
) -> tuple[set[str], set[str]]:
    """The permission set names of the instance and the group names of its identity store."""
    sso = aws.client("sso-admin", region=region)
    names: set[str] = set()
    for page in sso.get_paginator("list_permission_sets").paginate(InstanceArn=instance_arn):
        for arn in page.get("PermissionSets", []):
            described = sso.describe_permission_set(InstanceArn=instance_arn, PermissionSetArn=arn)
            names.add(str(described["PermissionSet"]["Name"]))
    groups: set[str] = set()
    if store:
        ids = aws.client("identitystore", region=region)
        for page in ids.get_paginator("list_groups").paginate(IdentityStoreId=store):
            groups.update(str(g["DisplayName"]) for g in page.get("Groups", []))
    return names, groups
