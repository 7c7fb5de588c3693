"""Who the operator is: AWS says (``GetCallerIdentity``), except on the local stack (``--as NAME``).

- An Identity Center session (``assumed-role/AWSReservedSSO_<PermissionSet>_<hash>/<user name>``) is
  the person (the session name Identity Center sets: the user name) and the permission set.
- Another assumed role is ``<role>/<session>`` (the session name is chosen by whoever assumed the
  role, so it names a person only as far as that role's trust policy makes it so); an IAM user is its
  user name; a federated user its name.
- On an emulator (``--local``, or an endpoint on this machine) ``--as NAME`` (or
  ``CHANGECONSOLE_OPERATOR``) names the operator; ``--local`` without it is the OS user. Elsewhere
  both are refused: on AWS nobody chooses who they are.

``Directory`` looks up what the roles may name beyond the ARN: the Identity Center groups of a user
(``identitystore``) and principal tags (IAM tags, or the Identity Center user attribute a tag comes
from), cached in memory and on disk for ``identity_center.cache_seconds``.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import re
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import platformdirs
from botocore.exceptions import BotoCoreError, ClientError

from ..errors import InputError, describe
from ..models import Config

if TYPE_CHECKING:
    from .aws import AwsSettings

log = logging.getLogger(__name__)

ENV_OPERATOR = "CHANGECONSOLE_OPERATOR"
SSO_ROLE_RE = re.compile(r"^AWSReservedSSO_(?P<permission_set>.+)_(?P<hash>[0-9a-f]+)\Z")
_ARN_RE = re.compile(
    r"^arn:(?P<partition>aws[a-z-]*):(?P<service>sts|iam)::(?P<account>\d{12}):(?P<rest>.+)\Z"
)

# Operator kinds.
IDENTITY_CENTER = "identity-center"
ASSUMED_ROLE = "assumed-role"
IAM_USER = "iam-user"
FEDERATED = "federated-user"
ROOT = "root"
LOCAL = "local"


@dataclass(frozen=True)
class Operator:
    """Who acts. ``name`` is what ``submittedBy``/``approvedBy``/… and audit records say."""

    name: str
    kind: str
    arn: str | None = None
    account: str | None = None
    permission_set: str | None = None  # Identity Center sessions
    role_name: str | None = None  # assumed roles (Identity Center ones included)
    partition: str = "aws"

    @classmethod
    def local(cls, name: str) -> Operator:
        return cls(name=name, kind=LOCAL)

    @property
    def is_local(self) -> bool:
        return self.kind == LOCAL

    @property
    def role_arn(self) -> str | None:
        """The IAM role behind an assumed-role session (path unknown: ``role/<name>``)."""
        if self.role_name and self.account:
            return f"arn:{self.partition}:iam::{self.account}:role/{self.role_name}"
        return None

    @property
    def person(self) -> str | None:
        """The name a ``user:`` principal matches: only where the name is not the caller's choice."""
        return self.name if self.kind in (IDENTITY_CENTER, IAM_USER, LOCAL) else None

    def label(self) -> str:
        """For a header: ``jane@example.com (permission set ChangeManagers)``, ``alice (local)``."""
        if self.kind == IDENTITY_CENTER:
            return f"{self.name} (permission set {self.permission_set})"
        if self.kind == LOCAL:
            return f"{self.name} (local)"
        return self.name

    def audit_fields(self) -> dict[str, Any]:
        fields = {"operator": self.name, "operator_arn": self.arn, "permission_set": self.permission_set}
        return {k: v for k, v in fields.items() if v is not None}


def parse_caller(arn: str) -> Operator:
    """The operator behind a ``GetCallerIdentity`` ARN."""
    match = _ARN_RE.match(arn)
    if match is None:
        return Operator(name=arn, kind=ASSUMED_ROLE, arn=arn)
    account, partition, rest = match["account"], match["partition"], match["rest"]
    common: dict[str, Any] = {"arn": arn, "account": account, "partition": partition}
    if rest == "root":
        return Operator(name="root", kind=ROOT, **common)
    kind, _, tail = rest.partition("/")
    if kind == "assumed-role":
        role, _, session = tail.partition("/")
        sso = SSO_ROLE_RE.match(role)
        if sso:
            return Operator(
                name=session,
                kind=IDENTITY_CENTER,
                permission_set=sso["permission_set"],
                role_name=role,
                **common,
            )
        return Operator(name=f"{role}/{session}", kind=ASSUMED_ROLE, role_name=role, **common)
    if kind == "user":
        return Operator(name=tail.rsplit("/", 1)[-1], kind=IAM_USER, **common)
    if kind == "federated-user":
        return Operator(name=tail, kind=FEDERATED, **common)
    return Operator(name=tail.rsplit("/", 1)[-1] or arn, kind=ASSUMED_ROLE, **common)


def os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return os.environ.get("USER") or "operator"


def chosen_name(settings: AwsSettings) -> str | None:
    """The ``--as``/``CHANGECONSOLE_OPERATOR`` name, refused unless AWS is an emulator."""
    name = settings.acting_as or os.environ.get(ENV_OPERATOR) or None
    if name is None:
        return None
    if not (settings.local or settings.loopback_endpoint):
        source = "--as" if settings.acting_as else ENV_OPERATOR
        raise InputError(
            f"{source} names the operator only on the local stack; on AWS you are who "
            "GetCallerIdentity says (use your own credentials or AWS_PROFILE)"
        )
    name = name.strip()
    if not name or len(name) > 128 or any(c.isspace() for c in name):
        raise InputError(f"--as {name!r}: a name of 1-128 characters without spaces")
    return name


# -- directory: groups and principal tags --------------------------------------------------------


@dataclass
class Facts:
    """What a directory says about an operator beyond the ARN."""

    groups: list[str]
    tags: dict[str, str]
    errors: list[str]


class Directory:
    """Identity Center groups and principal tags of operators (``identitystore``, ``iam``), cached."""

    def __init__(self, aws: Any, config: Config, *, cache_path: Path | None = None) -> None:
        self.aws = aws
        self.config = config
        ic = config.identity_center
        self.ttl = ic.cache_seconds if ic else 300
        self.cache_path = cache_path or Path(platformdirs.user_cache_dir("changeconsole")) / "identity.json"
        self._lock = threading.Lock()
        self._memory: dict[str, Facts] = {}

    def _wanted_tags(self) -> list[str]:
        return sorted({r.customer_tag for r in self.config.operator_roles.values() if r.customer_tag})

    def _needs_groups(self) -> bool:
        return any(
            not p.startswith(("arn:", "user:", "permission-set:"))
            for r in self.config.operator_roles.values()
            for p in r.principals
        )

    def facts(self, operator: Operator) -> Facts:
        if operator.is_local or not operator.arn:
            return Facts([], {}, [])
        key = operator.arn
        with self._lock:
            if key in self._memory:
                return self._memory[key]
        facts = self._from_disk(key)
        if facts is None:
            facts = self._lookup(operator)
            if not facts.errors:
                self._to_disk(key, facts)
        with self._lock:
            self._memory[key] = facts
        return facts

    # -- lookups --------------------------------------------------------------------------------
    def _lookup(self, operator: Operator) -> Facts:
        facts = Facts([], {}, [])
        tags = self._wanted_tags()
        ic = self.config.identity_center
        try:
            if operator.kind == IDENTITY_CENTER and ic and ic.identity_store_id:
                if self._needs_groups() or any(t in ic.attributes for t in tags):
                    self._identity_center(operator, ic.identity_store_id, tags, facts)
            elif tags and operator.kind == IAM_USER:
                resp = self.aws.client("iam").list_user_tags(UserName=operator.name)
                facts.tags = {t["Key"]: t["Value"] for t in resp.get("Tags", []) if t["Key"] in tags}
            elif tags and operator.kind == ASSUMED_ROLE and operator.role_name:
                resp = self.aws.client("iam").list_role_tags(RoleName=operator.role_name)
                facts.tags = {t["Key"]: t["Value"] for t in resp.get("Tags", []) if t["Key"] in tags}
        except (ClientError, BotoCoreError) as exc:
            facts.errors.append(describe(exc))
            log.warning("operator directory lookup failed for %s: %s", operator.arn, describe(exc))
        return facts

    def _identity_center(self, operator: Operator, store: str, tags: list[str], facts: Facts) -> None:
        ic = self.config.identity_center
        assert ic is not None
        ids = self.aws.client("identitystore", region=ic.region)
        try:
            user_id = ids.get_user_id(
                IdentityStoreId=store,
                AlternateIdentifier={
                    "UniqueAttribute": {"AttributePath": "userName", "AttributeValue": operator.name}
                },
            )["UserId"]
        except ClientError as exc:
            if "NotFound" in str(exc.response.get("Error", {}).get("Code", "")):
                facts.errors.append(f"no Identity Center user {operator.name!r} in {store}")
                return
            raise
        if self._needs_groups():
            group_ids: list[str] = []
            paginator = ids.get_paginator("list_group_memberships_for_member")
            for page in paginator.paginate(IdentityStoreId=store, MemberId={"UserId": user_id}):
                group_ids += [m["GroupId"] for m in page.get("GroupMemberships", [])]
            facts.groups = sorted(
                ids.describe_group(IdentityStoreId=store, GroupId=g)["DisplayName"] for g in group_ids
            )
        sources = {t: ic.attributes[t] for t in tags if t in ic.attributes}
        if sources:
            user = ids.describe_user(IdentityStoreId=store, UserId=user_id)
            for tag, path in sources.items():
                value = _attribute(user, path)
                if value is not None:
                    facts.tags[tag] = value

    # -- disk cache -------------------------------------------------------------------------------
    def _from_disk(self, key: str) -> Facts | None:
        if not self.ttl:
            return None
        try:
            entry = json.loads(self.cache_path.read_text(encoding="utf-8")).get(key)
        except (OSError, ValueError, AttributeError):
            return None
        if not isinstance(entry, dict) or time.time() - float(entry.get("at", 0)) > self.ttl:
            return None
        try:
            return Facts(list(entry["groups"]), dict(entry["tags"]), [])
        except (KeyError, TypeError):
            return None

    def _to_disk(self, key: str, facts: Facts) -> None:
        if not self.ttl:
            return
        try:
            try:
                data = json.loads(self.cache_path.read_text(encoding="utf-8"))
                data = data if isinstance(data, dict) else {}
            except (OSError, ValueError):
                data = {}
            now = time.time()
            data = {k: v for k, v in data.items() if now - float(v.get("at", 0)) <= self.ttl}
            data[key] = {"at": now, "groups": facts.groups, "tags": facts.tags}
            self.cache_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.cache_path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(data), encoding="utf-8")
            tmp.chmod(0o600)
            tmp.replace(self.cache_path)
        except (OSError, ValueError) as exc:  # a cache that cannot be written costs a lookup, nothing more
            log.debug("identity cache not written: %s", exc)


def _attribute(user: dict[str, Any], path: str) -> str | None:
    """A string attribute of an ``identitystore`` user by its path (``userType``, ``name.givenName``)."""
    value: Any = user
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        match = {k.casefold(): v for k, v in value.items()}.get(part.casefold())
        value = match
    return value if isinstance(value, str) else None


def facts_json(facts: Facts) -> dict[str, Any]:
    return asdict(facts)
