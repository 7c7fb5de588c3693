"""Contacts from Identity Center: members of configured groups become contacts, as the running system did.

Per customer (optional keys of its ``customer_mappings`` entry):

- ``identity_center_groups``: the group display names whose members are imported (required); a list,
  or an object ``{group: role}`` naming each group's role;
- ``identity_center_role_arn`` (the running system's key): the role to assume for reading Identity
  Center (its organisation's management account); without it, the customer's SES role is used;
- ``identity_store_id``: ``d-…``; found with ``sso-admin ListInstances`` when not given.

A group's role is the name after ``idp-<application>-`` in the running system's group names
(``ccoe-cloud-<account>-<account id>-…-idp-<application>-<role>``), else the group name itself.
Each new contact is opted in (explicit ``OPT_IN``) to the topics whose default is ``OPT_IN`` (active
users only) and to those whose ``OptInRoles`` name one of its roles (``SESConfig.json``, see
``services/topics.py``). Contacts that exist already are left alone: people manage their own
subscriptions.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..errors import InputError, describe
from ..models import Config, CustomerMapping, OperatorAction
from .audit import FAILED, OK
from .authz import ActionRecord, Authorizer
from .aws import AwsFactory
from .contact_admin import DEFAULT_RATE, ContactBook, ContactError, normalize_email
from .contacts import OPT_IN
from .dlq.ratelimit import RateLimiter
from .topics import TopicSpec

_RUNNING_SYSTEM_GROUP = re.compile(r"^ccoe-cloud-.+?-\d+-(?:.+-)?idp-[^-]+-(?P<role>[^-]+)")

Progress = Callable[[int, int], None]


class IdentityCenterError(InputError):
    """Identity Center sync cannot run as configured; the message names the key and the fix."""


def group_role(group: str) -> str:
    match = _RUNNING_SYSTEM_GROUP.match(group)
    return (match.group("role") if match else group).strip().lower()


def configured_groups(mapping: CustomerMapping) -> dict[str, str]:
    """``{group display name: role}`` from the customer's ``identity_center_groups``."""
    raw = (mapping.model_extra or {}).get("identity_center_groups")
    where = f"customer_mappings.{mapping.customer_code}.identity_center_groups"
    if not raw:
        raise IdentityCenterError(
            f"{where} is not set: list the Identity Center groups whose members are this customer's contacts"
        )
    if isinstance(raw, list) and all(isinstance(g, str) and g.strip() for g in raw):
        return {g.strip(): group_role(g.strip()) for g in raw}
    if isinstance(raw, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
        return {k.strip(): v.strip().lower() for k, v in raw.items()}
    raise IdentityCenterError(f"{where} must be a list of group names or an object {{group: role}}")


def topics_for(roles: set[str], active: bool, topics: list[TopicSpec]) -> list[str]:
    """The running system's rule: default-OPT_IN topics (active users) plus role opt-ins."""
    chosen = []
    for topic in topics:
        by_default = active and topic.default == OPT_IN
        by_role = bool(roles & set(topic.opt_in_roles))
        if by_default or by_role:
            chosen.append(topic.name)
    return chosen


@dataclass
class SyncedUser:
    user: str
    email: str
    groups: list[str]
    roles: list[str]
    topics: list[str]
    result: str  # created, exists, skipped, failed
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class SyncReport:
    customer: str
    identity_store_id: str
    contact_list: str
    dry_run: bool
    users: list[SyncedUser] = field(default_factory=list)
    missing_groups: list[str] = field(default_factory=list)
    not_on_list: list[str] = field(default_factory=list)  # topics of the file the list lacks
    error: str | None = None
    audit_key: str | None = None

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(("created", "exists", "skipped", "failed"), 0)
        for u in self.users:
            out[u.result] += 1
        return out

    @property
    def ok(self) -> bool:
        return (
            self.error is None
            and not self.missing_groups
            and not any(u.result == "failed" for u in self.users)
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "customer": self.customer,
            "identity_store_id": self.identity_store_id,
            "contact_list": self.contact_list,
            "dry_run": self.dry_run,
            "ok": self.ok,
            "counts": self.counts(),
            "missing_groups": self.missing_groups,
            "topics_not_on_list": self.not_on_list,
            "error": self.error,
            "audit_key": self.audit_key,
            "users": [u.to_json() for u in self.users],
        }


@dataclass
class _User:
    user_id: str
    name: str
    email: str | None
    active: bool
    groups: list[str] = field(default_factory=list)


def _paginate(call: Callable[..., dict[str, Any]], key: str, **kwargs: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        page = call(**kwargs, **({"NextToken": token} if token else {}))
        items.extend(page.get(key) or [])
        token = page.get("NextToken")
        if not token:
            return items


def _primary_email(user: dict[str, Any]) -> str | None:
    emails = [e for e in user.get("Emails") or [] if e.get("Value")]
    primary = [e for e in emails if e.get("Primary")]
    chosen = (primary or emails or [None])[0]
    return str(chosen["Value"]) if chosen else None


class IdentityCenterSync:
    def __init__(
        self,
        aws: AwsFactory,
        config: Config,
        code: str,
        *,
        operator: str | None = None,
        rate: float | None = DEFAULT_RATE,
        authz: Authorizer | None = None,
    ) -> None:
        self.aws = aws
        self.config = config
        self.code = code
        self.mapping = config.customer(code)
        self.book = ContactBook(aws, config, code, operator=operator, rate=rate, authz=authz)
        self.authz = self.book.authz
        self.rate = rate

    def _reader(self) -> CustomerMapping:
        """The identity whose session reads Identity Center: its own role, else the SES role."""
        role = (self.mapping.model_extra or {}).get("identity_center_role_arn")
        if not role:
            return self.mapping
        return self.mapping.model_copy(update={"ses_role_arn": str(role), "ses_external_id": None})

    def _store_id(self, reader: CustomerMapping) -> str:
        configured = (self.mapping.model_extra or {}).get("identity_store_id")
        if configured:
            return str(configured)
        instances = _paginate(self.aws.customer_client(reader, "sso-admin").list_instances, "Instances")
        ids = sorted({str(i["IdentityStoreId"]) for i in instances if i.get("IdentityStoreId")})
        if len(ids) != 1:
            raise IdentityCenterError(
                f"found {len(ids)} Identity Center instances; "
                f"set customer_mappings.{self.code}.identity_store_id"
            )
        return ids[0]

    def _users(self, ids: Any, store: str, groups: dict[str, str], report: SyncReport) -> dict[str, _User]:
        by_name = {
            str(g["DisplayName"]): str(g["GroupId"])
            for g in _paginate(ids.list_groups, "Groups", IdentityStoreId=store)
        }
        users: dict[str, _User] = {}
        for group in groups:
            group_id = by_name.get(group)
            if group_id is None:
                report.missing_groups.append(group)
                continue
            members = _paginate(
                ids.list_group_memberships, "GroupMemberships", IdentityStoreId=store, GroupId=group_id
            )
            for member in members:
                user_id = (member.get("MemberId") or {}).get("UserId")
                if not user_id:
                    continue
                if user_id not in users:
                    data = ids.describe_user(IdentityStoreId=store, UserId=user_id)
                    users[user_id] = _User(
                        user_id,
                        str(data.get("UserName") or user_id),
                        _primary_email(data),
                        data.get("UserStatus", "ENABLED") != "DISABLED",
                    )
                users[user_id].groups.append(group)
        return users

    def run(
        self, topics: list[TopicSpec], *, dry_run: bool = False, progress: Progress | None = None
    ) -> SyncReport:
        """Create a contact for each member of the customer's configured groups not yet on the list
        (``contacts.edit``, audited with a line per contact created; a dry run needs ``read``)."""
        if dry_run:
            self.authz.require(OperatorAction.READ, [self.code])
            return self._run(topics, dry_run=True, progress=progress)
        with self.authz.act(
            OperatorAction.CONTACTS_EDIT, [self.code], name="contacts.sync-identity-center"
        ) as record:
            return self._run(topics, dry_run=False, progress=progress, record=record)

    def _run(
        self,
        topics: list[TopicSpec],
        *,
        dry_run: bool,
        progress: Progress | None,
        record: ActionRecord | None = None,
    ) -> SyncReport:
        groups = configured_groups(self.mapping)
        reader = self._reader()
        store = self._store_id(reader)
        report = SyncReport(self.code, store, self.book.list_name, dry_run)
        ids = self.aws.customer_client(reader, "identitystore")
        users = self._users(ids, store, groups, report)
        on_list = {t.name for t in self.book.topics()}
        report.not_on_list = [t.name for t in topics if t.name not in on_list]
        usable = [t for t in topics if t.name in on_list]
        existing = {c.email.casefold() for c in self.book.contacts()}
        limiter = RateLimiter(self.rate)
        created: list[dict[str, Any]] = []
        ordered = sorted(users.values(), key=lambda u: u.name.casefold())
        for index, user in enumerate(ordered):
            if progress is not None:
                progress(index, len(ordered))
            roles = sorted({groups[g] for g in user.groups})
            entry = SyncedUser(user.name, user.email or "", sorted(user.groups), roles, [], "skipped")
            report.users.append(entry)
            if not user.email:
                entry.detail = "no email address in Identity Center"
                continue
            try:
                entry.email = normalize_email(user.email)
            except ContactError as exc:
                entry.detail = str(exc)
                continue
            if entry.email.casefold() in existing:
                entry.result, entry.detail = "exists", "already a contact: its own preferences are kept"
                continue
            entry.topics = topics_for(set(roles), user.active, usable)
            if not user.active:
                entry.detail = "inactive: role opt-ins only"
            if report.error is not None:
                entry.result, entry.detail = "skipped", "not attempted after the failure above"
                continue
            if not dry_run:
                try:
                    limiter.acquire(1)
                    self.book.create(entry.email, dict.fromkeys(entry.topics, OPT_IN))
                except (ClientError, BotoCoreError) as exc:
                    entry.result, entry.detail = "failed", describe(exc)
                    report.error = f"{user.name} ({entry.email}): {entry.detail}"
                    continue
                created.append(
                    {"email": entry.email, "user": user.name, "topics": entry.topics, "roles": roles}
                )
            existing.add(entry.email.casefold())
            entry.result = "created"
        if progress is not None:
            progress(len(ordered), len(ordered))
        if record is not None:
            report.audit_key = record.finish(
                FAILED if report.error else OK,
                identity_store_id=store,
                contact_list=report.contact_list,
                counts=report.counts(),
                detail=report.error,
                items=created,
            )
        return report
