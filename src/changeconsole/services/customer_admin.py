"""Customers by command: onboard (``add``), check (``verify``) and offboard (``remove``).

- ``add`` provisions the customer's queue, DLQ and bucket notification (central account), writes its
  mapping into ``config.json`` (atomic, with a backup; every other key kept), gives its contact list
  the topics (customer account, assumed role) and verifies it. Safe to re-run after a partial failure.
- ``verify`` only reads: role assumable, SES identity verified, production access or sandbox, sending
  quota, which contact list is used and why, its topics and subscribers, queue, DLQ and notification.
- ``remove`` refuses while deliveries are in flight or the DLQ holds messages unless forced (a forced
  removal exports the DLQ first); it keeps the archive (changes, versions, audit) and the contacts,
  which belong to the customer's account.

Every ``add`` and ``remove`` is audited with the operator's identity.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..config import ConfigError, config_problems, read_config_document, write_config
from ..errors import InputError, describe, error_code, http_status
from ..models import (
    ALL_TOPICS,
    FINAL_STATES,
    Config,
    CustomerMapping,
    Ignore,
    OperatorAction,
    PermanentMessageError,
    parse_queue_message,
)
from . import audit
from .authz import Authorizer
from .aws import AwsFactory
from .contacts import ContactListChoice, choose_contact_list, is_subscribed, iter_contacts, topic_defaults
from .customers import CustomerService
from .dlq import DlqService
from .provision import Action, Provisioner, notification_id
from .queues import DELAYED, IN_FLIGHT, VISIBLE, is_missing_queue, message_counts
from .status import StatusStore
from .topics import DEFAULT_TOPICS, TopicSpec, TopicsReport, apply_topics

OK, WARN, FAIL, SKIPPED = "ok", "warn", "fail", "skipped"
# Queues with at most this many messages are looked at, so that an s3:TestEvent does not block removal.
PEEK_LIMIT = 10
# SES's sandbox: 200 messages per 24 hours, 1 per second.
SANDBOX_DAILY_QUOTA = 200.0


class CustomerAdminError(InputError):
    """A customer operation refused as asked; ``problems`` name each field."""

    title = "Customer refused"

    def __init__(self, message: str, problems: list[dict[str, str]] | None = None) -> None:
        super().__init__(message, problems=problems)


class CustomerBusy(CustomerAdminError):
    """``remove`` refused: deliveries in flight or messages in the DLQ (``--force`` overrides)."""


# -- verify ------------------------------------------------------------------------------------------


@dataclass
class Check:
    name: str
    status: str  # ok, warn, fail, skipped
    detail: str

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "detail": self.detail}


@dataclass
class VerifyReport:
    customer: str
    checks: list[Check] = field(default_factory=list)
    contact_list: ContactListChoice | None = None
    checked_at: str = ""

    @property
    def status(self) -> str:
        states = {c.status for c in self.checks}
        return FAIL if FAIL in states else WARN if WARN in states else OK

    @property
    def ok(self) -> bool:
        return self.status != FAIL

    def summary(self) -> str:
        bad = [c for c in self.checks if c.status in (FAIL, WARN)]
        if not bad:
            return f"all {len(self.checks)} checks passed"
        return "; ".join(f"{c.name}: {c.detail}" for c in bad)

    def to_json(self) -> dict[str, Any]:
        return {
            "customer": self.customer,
            "status": self.status,
            "checked_at": self.checked_at,
            "contact_list": self.contact_list.to_json() if self.contact_list else None,
            "checks": [c.to_json() for c in self.checks],
        }


def _unsupported(exc: BaseException) -> bool:
    """The endpoint does not implement the call (an emulator): neither pass nor fail."""
    unsupported = ("404", "UnknownOperationException", "NotImplemented")
    return error_code(exc) in unsupported or http_status(exc) == 404


class CustomerVerifier:
    """Read-only checks of customers' sides; never writes anything anywhere."""

    def __init__(
        self, aws: AwsFactory, config: Config, *, threads: int = 8, authz: Authorizer | None = None
    ) -> None:
        self.aws = aws
        self.config = config
        self.threads = threads
        self.authz = authz or Authorizer(aws, config, via="api")
        self.customers = CustomerService(aws, config, threads=threads, authz=self.authz)

    def verify(self, code: str) -> VerifyReport:
        """Check one customer's side (``customer.verify`` on it; audited with the outcome)."""
        with self.authz.act(OperatorAction.CUSTOMER_VERIFY, [code], name="customer.verify") as record:
            report = self._verify(code)
            record.finish(
                audit.OK if report.ok else audit.FAILED,
                status=report.status,
                failed=[c.name for c in report.checks if c.status == FAIL] or None,
            )
            return report

    def _verify(self, code: str) -> VerifyReport:
        mapping = self.config.customer(code)
        report = VerifyReport(code, checked_at=datetime.now(UTC).isoformat(timespec="seconds"))
        self._central(mapping, report)
        if not self._role(mapping, report):
            for name in ("identity", "account", "quota", "contact_list", "topics", "contacts"):
                report.checks.append(Check(name, SKIPPED, "the role could not be assumed"))
            return report
        ses = self.aws.customer_client(mapping, "sesv2")
        for step in (self._identity, self._account):
            try:
                step(mapping, ses, report)
            except (ClientError, BotoCoreError) as exc:
                report.checks.append(Check(step.__name__.strip("_"), FAIL, describe(exc)))
        try:
            self._contacts(mapping, ses, report)
        except (ClientError, BotoCoreError) as exc:
            report.checks.append(Check("contact_list", FAIL, describe(exc)))
        return report

    def verify_all(
        self, codes: Iterable[str] | None = None, *, on_result: Callable[[VerifyReport], None] | None = None
    ) -> list[VerifyReport]:
        wanted = sorted(codes) if codes is not None else sorted(self.config.customer_mappings)
        if not wanted:
            return []
        out: dict[str, VerifyReport] = {}
        with ThreadPoolExecutor(max_workers=min(self.threads, len(wanted))) as pool:
            for report in pool.map(self.verify, wanted):
                out[report.customer] = report
                if on_result is not None:
                    on_result(report)
        return [out[c] for c in wanted]

    # -- central account ---------------------------------------------------------------------
    def _central(self, mapping: CustomerMapping, report: VerifyReport) -> None:
        depths = self.customers.depths(mapping.customer_code)
        for name, depth, queue in (
            ("queue", depths.queue, mapping.queue_name),
            ("dlq", depths.dlq, mapping.dlq_name),
        ):
            if not depth.ok:
                missing = "does not exist" in (depth.error or "")
                detail = (depth.error or "unreadable") + ("; run provision" if missing else "")
                report.checks.append(Check(name, FAIL, detail))
            elif name == "dlq" and depth.total:
                report.checks.append(Check(name, WARN, f"{queue}: {depth.total} message(s) dead-lettered"))
            else:
                report.checks.append(
                    Check(name, OK, f"{queue}: {depth.visible} waiting, {depth.in_flight} in flight")
                )
        if self.config.transport != "s3-events":
            return
        try:
            conf = self.aws.client("s3").get_bucket_notification_configuration(
                Bucket=self.config.s3_config.bucket_name
            )
        except (ClientError, BotoCoreError) as exc:
            report.checks.append(Check("notification", FAIL, describe(exc)))
            return
        wanted = notification_id(mapping.customer_code)
        found = [q for q in conf.get("QueueConfigurations", []) if q.get("Id") == wanted]
        if not found:
            report.checks.append(
                Check("notification", FAIL, f"no bucket notification {wanted}; run provision")
            )
        elif found[0].get("QueueArn") != mapping.sqs_queue_arn:
            report.checks.append(Check("notification", FAIL, f"{wanted} targets {found[0].get('QueueArn')}"))
        else:
            report.checks.append(
                Check("notification", OK, f"customers/{mapping.customer_code}/ → {mapping.queue_name}")
            )

    # -- customer account ---------------------------------------------------------------------
    def _role(self, mapping: CustomerMapping, report: VerifyReport) -> bool:
        try:
            ident = self.aws.customer_client(mapping, "sts").get_caller_identity()
        except (ClientError, BotoCoreError) as exc:
            report.checks.append(
                Check("role", FAIL, f"cannot assume {mapping.ses_role_arn}: {describe(exc)}")
            )
            return False
        if ident.get("Account") != mapping.account_id:
            report.checks.append(
                Check(
                    "role",
                    FAIL,
                    f"assumed into account {ident.get('Account')}, expected {mapping.account_id}",
                )
            )
            return False
        report.checks.append(Check("role", OK, f"assumed {mapping.ses_role_arn}"))
        return True

    def _identity(self, mapping: CustomerMapping, ses: Any, report: VerifyReport) -> None:
        sender = self.config.sender_for(mapping.customer_code)
        for identity in (sender, sender.split("@", 1)[1]):
            try:
                data = ses.get_email_identity(EmailIdentity=identity)
            except ClientError as exc:
                if error_code(exc) in ("NotFoundException", "404"):
                    continue
                raise
            verified = data.get("VerifiedForSendingStatus") or data.get("VerificationStatus") == "SUCCESS"
            status = data.get("VerificationStatus") or ("SUCCESS" if verified else "PENDING")
            if verified:
                report.checks.append(Check("identity", OK, f"{identity} verified (sends as {sender})"))
            else:
                report.checks.append(
                    Check("identity", FAIL, f"{identity} is {status}: not verified for sending")
                )
            return
        report.checks.append(
            Check(
                "identity",
                FAIL,
                f"no SES identity for {sender} or its domain in account {mapping.account_id}",
            )
        )

    def _account(self, mapping: CustomerMapping, ses: Any, report: VerifyReport) -> None:
        try:
            account = ses.get_account()
        except ClientError as exc:
            if not _unsupported(exc):
                raise
            self._quota_v1(mapping, report)
            return
        if not account.get("SendingEnabled", True):
            report.checks.append(Check("account", FAIL, "sending is disabled for this account"))
        elif account.get("ProductionAccessEnabled"):
            report.checks.append(Check("account", OK, "production access"))
        else:
            report.checks.append(
                Check(
                    "account",
                    WARN,
                    "SES sandbox: only verified addresses receive mail; request production access",
                )
            )
        quota = account.get("SendQuota") or {}
        self._quota(
            report, quota.get("Max24HourSend"), quota.get("MaxSendRate"), quota.get("SentLast24Hours")
        )

    def _quota_v1(self, mapping: CustomerMapping, report: VerifyReport) -> None:
        quota = self.aws.customer_client(mapping, "ses").get_send_quota()
        daily = quota.get("Max24HourSend")
        sandbox = daily is not None and float(daily) <= SANDBOX_DAILY_QUOTA
        report.checks.append(
            Check(
                "account",
                WARN if sandbox else OK,
                "GetAccount is not available here; "
                + (
                    f"a {daily:.0f}/24h quota looks like the SES sandbox"
                    if sandbox
                    else "quota above the sandbox's"
                ),
            )
        )
        self._quota(report, daily, quota.get("MaxSendRate"), quota.get("SentLast24Hours"))

    @staticmethod
    def _quota(report: VerifyReport, daily: Any, rate: Any, sent: Any) -> None:
        if daily is None:
            report.checks.append(Check("quota", WARN, "sending quota unknown"))
            return
        daily, rate, sent = float(daily), float(rate or 0), float(sent or 0)
        used = sent / daily if daily > 0 else 1.0
        status = WARN if used >= 0.8 else OK
        report.checks.append(
            Check("quota", status, f"{sent:.0f} of {daily:.0f} sent in 24h ({used:.0%}), {rate:g}/s")
        )

    def _contacts(self, mapping: CustomerMapping, ses: Any, report: VerifyReport) -> None:
        code = mapping.customer_code
        choice = choose_contact_list(ses, self.config, code)
        report.contact_list = choice
        if not choice.exists:
            report.checks.append(
                Check(
                    "contact_list", FAIL, f"{choice.name} ({choice.reason}) does not exist; run topics apply"
                )
            )
            report.checks.append(Check("topics", SKIPPED, "no contact list"))
            report.checks.append(Check("contacts", SKIPPED, "no contact list"))
            return
        report.checks.append(Check("contact_list", OK, f"{choice.name}: {choice.reason}"))
        defaults = topic_defaults(ses, choice.name)
        missing = [t for t in ALL_TOPICS if t not in defaults]
        if missing:
            report.checks.append(
                Check(
                    "topics",
                    FAIL,
                    f"missing {', '.join(missing)}: those notices reach nobody; run topics apply",
                )
            )
        else:
            report.checks.append(
                Check(
                    "topics",
                    OK,
                    ", ".join(f"{t} ({defaults[t]})" for t in ALL_TOPICS) + f"; {len(defaults)} in all",
                )
            )
        contacts = {c.email.casefold(): c for c in iter_contacts(ses, choice.name)}.values()
        receiving = {
            t: sum(1 for c in contacts if is_subscribed(c, t, defaults) and mapping.allows_recipient(c.email))
            for t in ALL_TOPICS
            if t in defaults
        }
        nobody = [t for t, n in receiving.items() if n == 0]
        detail = f"{len(contacts)} contacts; " + ", ".join(f"{t}: {n}" for t, n in receiving.items())
        report.checks.append(Check("contacts", WARN if nobody or not contacts else OK, detail))


# -- add / remove ------------------------------------------------------------------------------------


@dataclass
class NewCustomer:
    """What ``customer add`` needs; everything else gets a default from the config."""

    code: str
    name: str
    role_arn: str
    environment: str = "production"
    region: str | None = None
    queue_arn: str | None = None
    contact_list_name: str | None = None
    sender_address: str | None = None
    external_id: str | None = None
    restricted_recipients: list[str] = field(default_factory=list)

    def mapping(self, config: Config, central_account: str) -> dict[str, Any]:
        queue_arn = self.queue_arn or default_queue_arn(config, self.code, central_account)
        data: dict[str, Any] = {
            "customer_code": self.code,
            "customer_name": self.name,
            "environment": self.environment,
            "region": self.region or config.aws_region,
            "ses_role_arn": self.role_arn,
            "sqs_queue_arn": queue_arn,
            "restricted_recipients": list(self.restricted_recipients),
        }
        optional = {
            "contact_list_name": self.contact_list_name,
            "sender_address": self.sender_address,
            "ses_external_id": self.external_id,
        }
        data.update({k: v for k, v in optional.items() if v})
        return data


def default_queue_arn(config: Config, code: str, central_account: str) -> str:
    """The queue the other customers' naming suggests (their common prefix), else ``changeconsole-<code>``."""
    prefixes = {
        m.queue_name[: -len(m.customer_code)]
        for m in config.customer_mappings.values()
        if m.queue_name.endswith(m.customer_code)
    }
    prefix = prefixes.pop() if len(prefixes) == 1 else "changeconsole-"
    return f"arn:aws:sqs:{config.aws_region}:{central_account}:{prefix}{code}"


@dataclass
class AddReport:
    customer: str
    config_path: str
    config_result: str = ""  # written, unchanged
    backup: str | None = None
    provision: list[Action] = field(default_factory=list)
    topics: TopicsReport | None = None
    topics_error: str | None = None
    identity: str | None = None  # an emulator endpoint only: the sender identity created
    verify: VerifyReport | None = None
    audit_key: str | None = None
    mapping: dict[str, Any] = field(default_factory=dict)  # as written to the config

    @property
    def ok(self) -> bool:
        return self.topics_error is None and (self.verify is None or self.verify.ok)

    def to_json(self) -> dict[str, Any]:
        return {
            "customer": self.customer,
            "ok": self.ok,
            "config": {"path": self.config_path, "result": self.config_result, "backup": self.backup},
            "provision": [a.__dict__ for a in self.provision],
            "topics": self.topics.to_json() if self.topics else None,
            "topics_error": self.topics_error,
            "local_identity": self.identity,
            "verify": self.verify.to_json() if self.verify else None,
            "audit_key": self.audit_key,
        }


@dataclass
class RemoveReport:
    customer: str
    config_path: str
    dry_run: bool
    forced: bool
    in_flight: int
    queued: int
    dead_lettered: int
    backup: str | None = None
    dlq_export: str | None = None
    deleted_queues: list[str] = field(default_factory=list)
    notifications: list[Action] = field(default_factory=list)
    audit_key: str | None = None
    busy: list[str] = field(default_factory=list)  # what was still going on (--force)
    mapping: dict[str, Any] = field(default_factory=dict)  # as it was in the config

    def to_json(self) -> dict[str, Any]:
        return {
            "customer": self.customer,
            "config_path": self.config_path,
            "dry_run": self.dry_run,
            "forced": self.forced,
            "in_flight_deliveries": self.in_flight,
            "queued_messages": self.queued,
            "dead_lettered_messages": self.dead_lettered,
            "backup": self.backup,
            "dlq_export": self.dlq_export,
            "deleted_queues": self.deleted_queues,
            "notifications": [a.__dict__ for a in self.notifications],
            "kept": [
                "archive/, versions/, drafts/ and audit/ in the bucket",
                "the customer's contacts and SES",
            ],
            "audit_key": self.audit_key,
        }


def _validated(raw: dict[str, Any], path: Path) -> Config:
    problems = config_problems(raw)
    if problems:
        raise ConfigError(path, problems)
    return Config.model_validate(raw)


class CustomerAdmin:
    """Adds and removes customers of the config at ``config_path`` (the file, every key kept)."""

    def __init__(
        self,
        aws: AwsFactory,
        config_path: Path,
        *,
        operator: str | None = None,
        threads: int = 16,
        authz: Authorizer | None = None,
    ) -> None:
        self.aws = aws
        self.config_path = config_path
        self._given_operator = operator
        self._authz = authz
        self.threads = threads

    @property
    def authz(self) -> Authorizer:
        """The authorization point (roles as in the config file when this service was first asked)."""
        if self._authz is None:
            config = _validated(read_config_document(self.config_path), self.config_path)
            self._authz = Authorizer(self.aws, config, operator=self._given_operator, via="api")
        return self._authz

    @property
    def operator(self) -> str:
        return self.authz.operator.name

    def add(self, new: NewCustomer, *, topics: list[TopicSpec] | None = None) -> AddReport:
        """Add a customer (``customer.add`` on its code): central resources, config, topics, a check."""
        with self.authz.act(OperatorAction.CUSTOMER_ADD, [new.code], name="customer.add") as record:
            report = self._add(new, topics)
            record.finish(
                audit.OK if report.topics_error is None else audit.PARTIAL,
                mapping=report.mapping,
                config_result=report.config_result,
                topics=report.topics.to_json() if report.topics else None,
                detail=report.topics_error,
                verify=report.verify.status if report.verify else None,
            )
            report.audit_key = record.key
            return report

    def _add(self, new: NewCustomer, topics: list[TopicSpec] | None) -> AddReport:
        raw = read_config_document(self.config_path)
        current = _validated(raw, self.config_path)
        central = self.aws.caller_identity()["account"]
        mapping = new.mapping(current, central)
        report = AddReport(new.code, str(self.config_path))
        existing = raw.get("customer_mappings", {}).get(new.code)
        if existing is not None:
            differs = sorted(k for k, v in mapping.items() if existing.get(k) != v)
            if differs:
                raise CustomerAdminError(
                    f"{new.code} is already configured with other values ({', '.join(differs)}); "
                    "edit config.json or remove the customer first",
                    [
                        {"path": f"customer_mappings.{new.code}.{k}", "message": f"is {existing.get(k)!r}"}
                        for k in differs
                    ],
                )
        updated = copy.deepcopy(raw)
        updated.setdefault("customer_mappings", {})[new.code] = {**(existing or {}), **mapping}
        config = _validated(updated, self.config_path)
        # Central resources first: a config naming a queue that does not exist would dead-end triggers.
        actions = Provisioner(self.aws, config, threads=self.threads, only=[new.code]).run()
        mine = {config.customer(new.code).queue_name, config.customer(new.code).dlq_name}
        report.provision = [
            a
            for a in actions
            if a.name in mine
            or a.name.startswith(f"{new.code}:")
            or a.kind in ("notifications", "bucket", "table", "events_queue", "events_topic")
        ]
        if existing is None:
            report.backup = _str(write_config(updated, self.config_path, backup=True))
            report.config_result = "written"
        else:
            report.config_result = "unchanged"
        customer = config.customer(new.code)
        try:
            ses = self.aws.customer_client(customer, "sesv2")
            if self.aws.settings.loopback_endpoint:  # an emulator: the customer cannot verify one
                report.identity = ensure_local_identity(ses, config.sender_for(new.code))
            report.topics = apply_topics(ses, config, new.code, topics or list(DEFAULT_TOPICS))
        except (ClientError, BotoCoreError) as exc:
            report.topics_error = describe(exc)
        verifier = CustomerVerifier(self.aws, config, authz=self.authz.within(OperatorAction.CUSTOMER_ADD))
        report.verify = verifier.verify(new.code)
        report.mapping = mapping
        return report

    def remove(
        self, code: str, *, force: bool = False, dry_run: bool = False, export_dir: Path | None = None
    ) -> RemoveReport:
        """Remove a customer (``customer.remove`` on its code; a dry run needs ``read``); its dead
        letters are exported first, as part of the removal (which then needs ``dlq.export`` too)."""
        if dry_run:
            self.authz.require(OperatorAction.READ, [code])
            return self._remove(code, force=force, dry_run=True, export_dir=export_dir)
        with self.authz.act(OperatorAction.CUSTOMER_REMOVE, [code], name="customer.remove") as record:
            report = self._remove(code, force=force, dry_run=False, export_dir=export_dir)
            record.finish(
                audit.OK,
                forced=force,
                mapping=report.mapping,
                busy=report.busy or None,
                dlq_export=report.dlq_export,
                deleted_queues=report.deleted_queues,
            )
            report.audit_key = record.key
            return report

    def _remove(self, code: str, *, force: bool, dry_run: bool, export_dir: Path | None) -> RemoveReport:
        raw = read_config_document(self.config_path)
        config = _validated(raw, self.config_path)
        mapping = config.customer(code)
        if len(config.customer_mappings) == 1:
            raise CustomerAdminError(f"{code} is the only customer; a config needs at least one")
        service = CustomerService(self.aws, config)
        depths = service.depths(code)
        for depth in (depths.queue, depths.dlq):
            if not depth.ok and depth.error and "does not exist" not in depth.error:
                raise CustomerAdminError(f"cannot read {code}'s queues: {depth.error}")
        in_flight = [
            r
            for r in StatusStore(self.aws, config).customer_deliveries(code, 200)
            if r.state not in FINAL_STATES
        ]
        queued = depths.queue.total + depths.queue.delayed
        if 0 < queued <= PEEK_LIMIT:
            queued = self._pending_triggers(mapping)
        report = RemoveReport(
            code,
            str(self.config_path),
            dry_run,
            force,
            in_flight=len(in_flight),
            queued=queued,
            dead_lettered=depths.dlq.total,
        )
        busy = []
        if report.in_flight:
            busy.append(f"{report.in_flight} delivery(ies) in flight")
        if report.queued:
            busy.append(f"{report.queued} message(s) in its queue")
        if report.dead_lettered:
            busy.append(f"{report.dead_lettered} message(s) in its DLQ")
        if busy and not force:
            raise CustomerBusy(f"{code} still has {', '.join(busy)}; wait, redrive or purge, or use --force")
        report.busy = busy
        report.mapping = raw["customer_mappings"][code]
        if dry_run:
            return report
        if report.dead_lettered:
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            target = (export_dir or self.config_path.parent) / f"{code}-dlq-{stamp}.jsonl"
            # Exporting needs dlq.export too (a customer manager without it has a DLQ operator empty
            # the DLQ first): IAM gives the DLQ and dlq-exports/ to those who have it.
            part = self.authz.within(OperatorAction.CUSTOMER_REMOVE)
            report.dlq_export = str(DlqService(self.aws, config, authz=part).export_jsonl(code, target).path)
        updated = copy.deepcopy(raw)
        del updated["customer_mappings"][code]
        remaining = _validated(updated, self.config_path)
        report.backup = _str(write_config(updated, self.config_path, backup=True))
        if remaining.transport == "s3-events":
            provisioner = Provisioner(self.aws, remaining, threads=self.threads)
            provisioner.notifications()
            report.notifications = provisioner.actions
        report.deleted_queues = self._delete_queues(mapping)
        self.aws.forget_customer(code)
        return report

    def _pending_triggers(self, mapping: CustomerMapping) -> int:
        """Messages of the queue that ask for a delivery (an ``s3:TestEvent`` does not).

        Looked at without hiding them (visibility 0); a message being processed is not returned and
        counts as pending.
        """
        sqs = self.aws.client("sqs")
        url = sqs.get_queue_url(QueueName=mapping.queue_name, QueueOwnerAWSAccountId=mapping.queue_account)[
            "QueueUrl"
        ]
        counts = message_counts(sqs, url, (VISIBLE, IN_FLIGHT, DELAYED))
        resp = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=PEEK_LIMIT, VisibilityTimeout=0, WaitTimeSeconds=0
        )
        ignorable = 0
        for message in resp.get("Messages", []):
            try:
                if isinstance(parse_queue_message(message["Body"]), Ignore):
                    ignorable += 1
            except PermanentMessageError:
                continue
        return max(0, sum(counts.values()) - ignorable)

    def _delete_queues(self, mapping: CustomerMapping) -> list[str]:
        sqs = self.aws.client("sqs")
        deleted = []
        for name in (mapping.queue_name, mapping.dlq_name):
            try:
                url = sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=mapping.queue_account)[
                    "QueueUrl"
                ]
                sqs.delete_queue(QueueUrl=url)
                deleted.append(name)
            except ClientError as exc:
                if not is_missing_queue(exc):
                    raise
        return deleted


def ensure_local_identity(ses: Any, sender: str) -> str | None:
    """Against an emulator only (the local stack): the sender's domain as an SES identity, as the
    customer would verify it."""
    domain = sender.split("@", 1)[1]
    names = {i["IdentityName"] for i in ses.list_email_identities().get("EmailIdentities", [])}
    if domain in names or sender in names:
        return None
    ses.create_email_identity(EmailIdentity=domain)
    return domain


def _str(path: Path | None) -> str | None:
    return str(path) if path is not None else None
