"""AWS calls recorded with botocore hooks, mapped to what IAM evaluates for them, and checked against
the policy statements Terraform plans (an IAM evaluator for the subset our policies use: Allow/Deny,
action and resource globs, ``${aws:PrincipalTag/…}`` variables, StringEquals/StringLike conditions and
``ForAllValues:StringLike`` on ``dynamodb:LeadingKeys``)."""

from __future__ import annotations

import fnmatch
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest

from changeconsole.models import Config
from changeconsole.services.aws import LOCAL_ACCOUNT, AwsFactory
from deploy.tfeval import REF_MARKER, Plan


@dataclass(frozen=True)
class Call:
    service: str  # botocore service name (s3, sqs, dynamodb, sts, sesv2, cloudwatch, …)
    operation: str
    params: dict[str, Any]
    region: str
    customer: str | None  # made in this customer's account (its assumed-role session)
    status: int
    label: str = ""  # what was being done (e.g. the operator action)


class Recorder:
    """Every call made, while ``label()`` names what is being done, by any client made while installed."""

    def __init__(self, label: Callable[[], str | None]) -> None:
        self.label = label
        self.calls: list[Call] = []
        self.seen = threading.Condition()

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        original = AwsFactory._make_client
        recorder = self

        def make_client(factory: AwsFactory, session: Any, service: str, region: str | None = None) -> Any:
            client = original(factory, session, service, region)
            customer = next(
                (code for (code, _), e in factory._customers.items() if e.session is session), None
            )

            def params(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
                context["cc_params"] = dict(params)

            def after(http_response: Any, model: Any, context: dict[str, Any], **_: Any) -> None:
                label = recorder.label()
                if label is None:
                    return
                status = int(getattr(http_response, "status_code", 0) or 0)
                call = Call(
                    service,
                    model.name,
                    context.get("cc_params", {}),
                    client.meta.region_name,
                    customer,
                    status,
                    label,
                )
                with recorder.seen:
                    recorder.calls.append(call)
                    recorder.seen.notify_all()

            client.meta.events.register("provide-client-params", params)
            client.meta.events.register("after-call", after)
            return client

        monkeypatch.setattr(AwsFactory, "_make_client", make_client)

    def wait(self, pred: Callable[[Call], bool], what: str, timeout: float = 60) -> Call:
        with self.seen:
            found = self.seen.wait_for(lambda: next((c for c in self.calls if pred(c)), None), timeout)
        assert found, f"never made {what}"
        return found


# -- calls → what IAM evaluates ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Need:
    action: str
    resource: str
    context: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def __str__(self) -> str:
        return f"{self.action} on {self.resource}"


# botocore operations whose IAM action is another name.
ACTION_OF = {
    ("sqs", "DeleteMessageBatch"): "sqs:DeleteMessage",
    ("sqs", "ChangeMessageVisibilityBatch"): "sqs:ChangeMessageVisibility",
    ("sqs", "SendMessageBatch"): "sqs:SendMessage",
    ("s3", "HeadObject"): "s3:GetObject",
    ("s3", "HeadBucket"): "s3:ListBucket",
    ("s3", "ListObjectsV2"): "s3:ListBucket",
    ("s3", "GetBucketNotificationConfiguration"): "s3:GetBucketNotification",
    ("s3", "PutBucketNotificationConfiguration"): "s3:PutBucketNotification",
    ("s3", "GetBucketEncryption"): "s3:GetEncryptionConfiguration",
    ("s3", "GetPublicAccessBlock"): "s3:GetBucketPublicAccessBlock",
    ("s3", "GetBucketLifecycleConfiguration"): "s3:GetLifecycleConfiguration",
    ("s3", "PutBucketLifecycleConfiguration"): "s3:PutLifecycleConfiguration",
    ("s3", "GetObjectLockConfiguration"): "s3:GetBucketObjectLockConfiguration",
}
PREFIX = {"sesv2": "ses"}
# Operations IAM does not authorize.
FREE = {("sts", "GetCallerIdentity")}
# DynamoDB transaction items → the action IAM checks for each.
TRANSACT_ACTION = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
}


def queue_arn(url: str, region: str) -> str:
    account, name = urlsplit(url).path.strip("/").split("/")[-2:]
    return f"arn:aws:sqs:{region}:{account}:{name}"


def _leading_key(item: Any) -> str | None:
    value = (item or {}).get("pk")
    return value.get("S") if isinstance(value, dict) else value


def needs(call: Call, config: Config) -> list[Need]:
    """What IAM evaluates for ``call``: each action on each resource, with its condition context."""
    p, region = call.params, call.region
    if (call.service, call.operation) in FREE:
        return []
    default = f"{PREFIX.get(call.service, call.service)}:{call.operation}"
    action = ACTION_OF.get((call.service, call.operation), default)
    if call.service == "s3":
        if "Key" in p:
            out = [Need(action, f"arn:aws:s3:::{p['Bucket']}/{p['Key']}")]
            if call.operation in ("GetObject", "HeadObject") and call.status == 404:
                out.append(Need("s3:ListBucket", f"arn:aws:s3:::{p['Bucket']}"))  # a 404, not a 403
            if call.operation == "PutObject" and p.get("ObjectLockMode"):
                out.append(Need("s3:PutObjectRetention", f"arn:aws:s3:::{p['Bucket']}/{p['Key']}"))
            return out
        return [Need(action, f"arn:aws:s3:::{p['Bucket']}")]
    if call.service == "sqs":
        if call.operation in ("GetQueueUrl", "CreateQueue"):
            account = p.get("QueueOwnerAWSAccountId", LOCAL_ACCOUNT)
            return [Need(action, f"arn:aws:sqs:{region}:{account}:{p['QueueName']}")]
        if call.operation in ("StartMessageMoveTask", "ListMessageMoveTasks"):
            return [Need(action, p["SourceArn"])]
        return [Need(action, queue_arn(p["QueueUrl"], region))]
    if call.service == "dynamodb":

        def table(name: str, index: str | None = None) -> str:
            arn = f"arn:aws:dynamodb:{region}:{LOCAL_ACCOUNT}:table/{name}"
            return f"{arn}/index/{index}" if index else arn

        if call.operation == "TransactWriteItems":
            out = []
            for item in p["TransactItems"]:
                ((kind, body),) = item.items()
                pk = _leading_key(body.get("Key") or body.get("Item"))
                out.append(
                    Need(TRANSACT_ACTION[kind], table(body["TableName"]), {"dynamodb:LeadingKeys": [pk]})
                )
            return out
        pk = _leading_key(p.get("Key") or p.get("Item"))
        ctx = {"dynamodb:LeadingKeys": [pk]} if pk else {}
        return [Need(action, table(p["TableName"], p.get("IndexName")), ctx)]
    if call.service == "sts":
        return [Need(action, p["RoleArn"])]
    if call.service == "cloudwatch":
        ctx = {"cloudwatch:namespace": p["Namespace"]} if "Namespace" in p else {}
        return [Need(action, "*", ctx)]
    if call.service == "sesv2":
        assert call.customer is not None, call
        base = f"arn:aws:ses:{region}:{config.customer(call.customer).account_id}"
        if call.operation == "SendEmail":
            ctx = {"ses:FromAddress": p["FromEmailAddress"]}
            out = [Need(action, f"{base}:identity/{p['FromEmailAddress'].rpartition('@')[2]}", ctx)]
            if p.get("ConfigurationSetName"):  # SES also authorises the send on the configuration set
                out.append(Need(action, f"{base}:configuration-set/{p['ConfigurationSetName']}", ctx))
            return out
        if call.operation in ("ListContactLists", "GetSuppressedDestination"):  # no resource-level permission
            return [Need(action, "*")]
        if "ConfigurationSetName" in p:
            return [Need(action, f"{base}:configuration-set/{p['ConfigurationSetName']}")]
        return [Need(action, f"{base}:contact-list/{p['ContactListName']}")]
    if call.service == "sns":
        if call.operation == "ListTopics":  # no resource-level permission
            return [Need(action, "*")]
        if call.operation == "CreateTopic":
            return [Need(action, f"arn:aws:sns:{region}:{LOCAL_ACCOUNT}:{p['Name']}")]
        return [Need(action, p["TopicArn"])]
    raise AssertionError(f"no IAM mapping for {call.service}.{call.operation}")


# -- evaluating statements --------------------------------------------------------------------------------

_VARIABLE = re.compile(r"\$\{(aws:PrincipalTag/[^}]+)\}")


def _substitute(text: str, principal: dict[str, str]) -> str | None:
    """``${aws:PrincipalTag/x}`` replaced by the principal's tag (None: the tag is missing)."""
    missing = False

    def one(m: re.Match[str]) -> str:
        nonlocal missing
        if m.group(1) not in principal:
            missing = True
            return ""
        return principal[m.group(1)]

    out = _VARIABLE.sub(one, text)
    return None if missing else out


def _condition_holds(cond: dict[str, Any], ctx: dict[str, Any], principal: dict[str, str]) -> bool:
    test, key = cond["test"], cond["variable"]
    values = [v for v in (_substitute(x, principal) for x in cond["values"]) if v is not None]
    have = ctx.get(key, principal.get(key))
    if test == "ForAllValues:StringLike":
        return all(any(fnmatch.fnmatchcase(str(h), v) for v in values) for h in (have or []))
    if have is None:
        return False
    if test == "StringEquals":
        return have in values
    if test == "StringLike":
        return any(fnmatch.fnmatchcase(str(have), v) for v in values)
    raise AssertionError(f"no evaluator for condition {test}")


def allowed(statements: list[dict[str, Any]], need: Need, principal: dict[str, str] | None = None) -> bool:
    """Whether ``statements`` allow ``need`` for a principal with these tags (``aws:PrincipalTag/…``)."""
    tags = principal or {}

    def applies(s: dict[str, Any]) -> bool:
        acts = s.get("actions", [])
        if not any(fnmatch.fnmatchcase(need.action.lower(), a.lower()) for a in acts):
            return False
        patterns = [r for r in (_substitute(x, tags) for x in s.get("resources", [])) if r is not None]
        return any(fnmatch.fnmatchcase(need.resource, r) for r in patterns)

    def conditions(s: dict[str, Any]) -> bool:
        return all(_condition_holds(c, need.context, tags) for c in s.get("condition", []))

    if any(s["effect"] == "Deny" and applies(s) and conditions(s) for s in statements):
        return False
    return any(s["effect"] == "Allow" and applies(s) and conditions(s) for s in statements)


# -- the Terraform, planned ---------------------------------------------------------------------------------


def known(plan: Plan, value: Any, facts: dict[str, str]) -> Any:
    """Replace values only known after apply by what they are for this deployment."""
    if isinstance(value, list):
        return [known(plan, v, facts) for v in value]
    if not isinstance(value, str):
        value = str(value)

    def one(m: re.Match[str]) -> str:
        address, attr = m.group(1).rsplit(".", 1)
        if attr in facts:
            return facts[attr]
        inst = plan.resolve(m.group(0))
        if inst.rtype == "aws_s3_bucket" and attr == "arn":
            return f"arn:aws:s3:::{inst.args['bucket']}"
        if inst.rtype == "aws_dynamodb_table" and attr == "arn":
            return f"arn:aws:dynamodb:{facts['region']}:{facts['account_id']}:table/{inst.args['name']}"
        if inst.rtype == "aws_sqs_queue" and attr == "arn":
            return f"arn:aws:sqs:{facts['region']}:{facts['account_id']}:{inst.args['name']}"
        raise AssertionError(f"no known value for {address}.{attr}")

    return REF_MARKER.sub(one, value)


def statements_of(plan: Plan, doc: Any, facts: dict[str, str]) -> list[dict[str, Any]]:
    """A planned ``aws_iam_policy_document``'s statements with their ARNs resolved."""
    return [{**s, "resources": known(plan, s["resources"], facts)} for s in doc.args.get("statement", [])]
