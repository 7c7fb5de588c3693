"""The topics of a customer's contact list, from a file in the running system's ``SESConfig.json`` format.

The format: each ``topic_group_prefix`` (e.g. ``["aws"]``) with each of ``topic_group_members``
gives a grouped topic ``<prefix>-<member>`` (``aws-approval``, ``aws-announce``, ``aws-calendar``);
``topics`` are taken as they are. Each topic has ``TopicName``, ``DisplayName``, ``Description``,
``DefaultSubscriptionStatus`` (``OPT_IN``/``OPT_OUT``) and optionally ``OptInRoles``: the roles whose
members are opted in when imported from Identity Center (``services/identity_center.py``).

``apply_topics`` makes the customer's contact list (in its own account) carry these topics and
reports the drift per topic. A topic on the list that the file does not name is kept: dropping a
topic drops every contact's preference for it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..errors import InputError, describe
from ..models import ALL_TOPICS, TOPIC_ANNOUNCE, TOPIC_APPROVAL, TOPIC_CALENDAR, Config, OperatorAction
from .audit import OK
from .authz import Authorizer
from .aws import AwsFactory
from .contacts import OPT_IN, OPT_OUT, choose_contact_list

# SES: at most 20 topics per contact list.
MAX_TOPICS = 20
_TOPIC_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")
_STATUSES = (OPT_IN, OPT_OUT)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    display_name: str
    description: str
    default: str
    opt_in_roles: tuple[str, ...] = ()

    def to_api(self) -> dict[str, str]:
        return {
            "TopicName": self.name,
            "DisplayName": self.display_name,
            "Description": self.description,
            "DefaultSubscriptionStatus": self.default,
        }

    def to_json(self) -> dict[str, Any]:
        return {**self.to_api(), "OptInRoles": list(self.opt_in_roles)}

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> TopicSpec:
        return cls(
            name=str(data["TopicName"]),
            display_name=str(data.get("DisplayName") or data["TopicName"]),
            description=str(data.get("Description") or ""),
            default=str(data.get("DefaultSubscriptionStatus") or OPT_OUT),
        )


# The topics changeconsole sends on, for a customer onboarded without a topics file.
DEFAULT_TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(TOPIC_APPROVAL, "Change Approval Requests", "Approval requests for changes", OPT_OUT),
    TopicSpec(TOPIC_ANNOUNCE, "Change Announcements", "What, why and when of changes", OPT_IN),
    TopicSpec(TOPIC_CALENDAR, "Change Calendar Invites", "Calendar invites for scheduled changes", OPT_OUT),
)


class TopicsFileError(InputError):
    """A topics file that cannot be used; ``problems`` name each field."""

    title = "Unusable topics file"

    def __init__(self, source: str, problems: list[dict[str, str]]) -> None:
        self.source = source
        super().__init__(f"{source}: unusable topics file", problems=problems)


def _group_description(group: str, description: str) -> str:
    """The running system's grouped description: the group, upper-cased, after the first word."""
    words = description.split()
    return " ".join([*words[:1], group.upper(), *words[1:]])


def _member(raw: Any, path: str, problems: list[dict[str, str]]) -> TopicSpec | None:
    if not isinstance(raw, dict):
        problems.append({"path": path, "message": "must be an object"})
        return None
    name = raw.get("TopicName")
    if not isinstance(name, str) or not _TOPIC_NAME_RE.match(name):
        problems.append({"path": f"{path}.TopicName", "message": "letters, digits, '-' or '_' (1-64)"})
        return None
    default = raw.get("DefaultSubscriptionStatus", OPT_OUT)
    if default not in _STATUSES:
        problems.append({"path": f"{path}.DefaultSubscriptionStatus", "message": "must be OPT_IN or OPT_OUT"})
        return None
    roles = raw.get("OptInRoles") or []
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        problems.append({"path": f"{path}.OptInRoles", "message": "must be a list of role names"})
        return None
    display = raw.get("DisplayName")
    description = raw.get("Description")
    return TopicSpec(
        name=name,
        display_name=display if isinstance(display, str) and display.strip() else name,
        description=description if isinstance(description, str) else "",
        default=str(default),
        opt_in_roles=tuple(r.strip().lower() for r in roles if r.strip()),
    )


def parse_topics(raw: Any, source: str = "topics file") -> list[TopicSpec]:
    """Every topic a ``SESConfig.json`` document defines, grouped ones expanded, in file order."""
    problems: list[dict[str, str]] = []
    if not isinstance(raw, dict):
        raise TopicsFileError(source, [{"path": "$", "message": "must be a JSON object (SESConfig.json)"}])
    prefixes = raw.get("topic_group_prefix") or []
    members = raw.get("topic_group_members") or []
    plain = raw.get("topics") or []
    for key, value in (("topic_group_prefix", prefixes), ("topic_group_members", members), ("topics", plain)):
        if not isinstance(value, list):
            problems.append({"path": key, "message": "must be a list"})
    if problems:
        raise TopicsFileError(source, problems)
    topics: list[TopicSpec] = []
    for p_index, prefix in enumerate(prefixes):
        if not isinstance(prefix, str) or not _TOPIC_NAME_RE.match(prefix):
            problems.append(
                {"path": f"topic_group_prefix[{p_index}]", "message": "must be a topic name part"}
            )
            continue
        for m_index, raw_member in enumerate(members):
            member = _member(raw_member, f"topic_group_members[{m_index}]", problems)
            if member is not None:
                topics.append(
                    TopicSpec(
                        name=f"{prefix.lower()}-{member.name}",
                        display_name=f"{prefix.upper()} {member.display_name}",
                        description=_group_description(prefix, member.description),
                        default=member.default,
                        opt_in_roles=member.opt_in_roles,
                    )
                )
    for index, raw_topic in enumerate(plain):
        topic = _member(raw_topic, f"topics[{index}]", problems)
        if topic is not None:
            topics.append(topic)
    seen: set[str] = set()
    for topic in topics:
        if topic.name in seen:
            problems.append({"path": topic.name, "message": "topic defined twice"})
        seen.add(topic.name)
    if not topics and not problems:
        problems.append({"path": "$", "message": "defines no topics"})
    if len(topics) > MAX_TOPICS:
        problems.append(
            {"path": "$", "message": f"{len(topics)} topics; SES allows {MAX_TOPICS} per contact list"}
        )
    if problems:
        raise TopicsFileError(source, problems)
    return topics


def load_topics_file(path: Path) -> list[TopicSpec]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TopicsFileError(str(path), [{"path": "$", "message": f"cannot read: {exc.strerror}"}]) from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TopicsFileError(
            str(path), [{"path": "$", "message": f"not JSON: {exc.msg} at line {exc.lineno}"}]
        ) from None
    return parse_topics(raw, str(path))


# -- applying ------------------------------------------------------------------------------------


@dataclass
class TopicDrift:
    topic: str
    result: str  # created, updated, unchanged, kept (on the list, not in the file)
    changes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"topic": self.topic, "result": self.result, "changes": self.changes}


@dataclass
class TopicsReport:
    customer: str
    list_name: str
    list_reason: str
    list_created: bool
    dry_run: bool
    topics: list[TopicDrift] = field(default_factory=list)
    # Topics changeconsole sends on that the list will not have: those emails reach nobody.
    missing_event_topics: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.list_created or any(t.result in ("created", "updated") for t in self.topics)

    def to_json(self) -> dict[str, Any]:
        return {
            "customer": self.customer,
            "contact_list": self.list_name,
            "contact_list_reason": self.list_reason,
            "contact_list_created": self.list_created,
            "dry_run": self.dry_run,
            "changed": self.changed,
            "topics": [t.to_json() for t in self.topics],
            "missing_event_topics": self.missing_event_topics,
        }


def _differences(have: TopicSpec, want: TopicSpec) -> list[str]:
    out = []
    if have.default != want.default:
        out.append(f"default {have.default} → {want.default}")
    if have.display_name != want.display_name:
        out.append(f"display name {have.display_name!r} → {want.display_name!r}")
    if have.description != want.description:
        out.append("description")
    return out


def apply_topics(
    ses: Any, config: Config, code: str, specs: list[TopicSpec], *, dry_run: bool = False
) -> TopicsReport:
    """Create the customer's contact list or update its topics to ``specs``; report the drift."""
    choice = choose_contact_list(ses, config, code)
    report = TopicsReport(code, choice.name, choice.reason, not choice.exists, dry_run)
    current: dict[str, TopicSpec] = {}
    description: str | None = None
    if choice.exists:
        listed = ses.get_contact_list(ContactListName=choice.name)
        current = {t.name: t for t in (TopicSpec.from_api(x) for x in listed.get("Topics") or [])}
        description = listed.get("Description")
    wanted = {s.name: s for s in specs}
    for spec in specs:
        have = current.get(spec.name)
        if have is None:
            report.topics.append(TopicDrift(spec.name, "created"))
        else:
            changes = _differences(have, spec)
            report.topics.append(TopicDrift(spec.name, "updated" if changes else "unchanged", changes))
    kept = [t for name, t in current.items() if name not in wanted]
    report.topics.extend(TopicDrift(t.name, "kept", ["on the list, not in the file"]) for t in kept)
    final = [*specs, *kept]
    report.missing_event_topics = [t for t in ALL_TOPICS if t not in {s.name for s in final}]
    if len(final) > MAX_TOPICS:
        raise TopicsFileError(
            code,
            [{"path": "$", "message": f"{len(final)} topics with the list's own; SES allows {MAX_TOPICS}"}],
        )
    if dry_run or not report.changed:
        return report
    topics = [s.to_api() for s in final]
    if choice.exists:
        # UpdateContactList replaces the whole list's metadata: the description goes along.
        extra = {"Description": description} if description else {}
        ses.update_contact_list(ContactListName=choice.name, Topics=topics, **extra)
    else:
        ses.create_contact_list(
            ContactListName=choice.name, Description="Change notices (changeconsole)", Topics=topics
        )
    return report


@dataclass
class TopicsRun:
    """``apply_topics`` for several customers: one customer's failure never stops the others."""

    reports: list[TopicsReport] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    audit_keys: list[str] = field(default_factory=list)


def apply_topics_for(
    aws: AwsFactory,
    config: Config,
    codes: list[str],
    specs: list[TopicSpec],
    *,
    dry_run: bool = False,
    operator: str | None = None,
    authz: Authorizer | None = None,
) -> TopicsRun:
    """Apply ``specs`` to each customer's list in its own account (``topics.apply`` on every customer,
    checked before any is touched; a dry run needs ``read``); audit each customer's outcome."""
    authz = authz or Authorizer(aws, config, operator=operator, via="api")
    authz.require(OperatorAction.READ if dry_run else OperatorAction.TOPICS_APPLY, codes)
    run = TopicsRun()
    for code in codes:
        if dry_run:
            try:
                run.reports.append(_apply(aws, config, code, specs, dry_run=True))
            except (ClientError, BotoCoreError) as exc:
                run.failed[code] = describe(exc)
            continue
        try:
            with authz.act(OperatorAction.TOPICS_APPLY, [code], name="topics.apply") as record:
                report = _apply(aws, config, code, specs, dry_run=False)
                key = record.finish(OK, **report.to_json())
        except (ClientError, BotoCoreError) as exc:
            run.failed[code] = describe(exc)
            continue
        run.reports.append(report)
        if key:
            run.audit_keys.append(key)
    return run


def _apply(
    aws: AwsFactory, config: Config, code: str, specs: list[TopicSpec], *, dry_run: bool
) -> TopicsReport:
    ses = aws.customer_client(config.customer(code), "sesv2")
    return apply_topics(ses, config, code, specs, dry_run=dry_run)
