"""The one authorization point: may this operator do this action on these customers? Audited.

Every operator action of the core passes through ``Authorizer.act`` (or ``require`` for a check before
a longer operation): the CLI and the console both reach it through the services, never around them.

- **Roles** come from ``config.operator_roles`` (``models.OperatorRole``): ``ChangeManagers``,
  ``CustomerManagers`` and ``Auditors`` have built-in actions (``models.BUILTIN_ROLES``), any role may
  add ``actions`` (the DLQ ones are given only that way). An operator holds every role one of whose
  principals matches them (``services.identity``); the actions add up.
- **Scope**: a role limited to ``customers`` (or to the code in its ``customer_tag`` principal tag)
  allows a customer-touching action only when every customer touched is in the scope of a role that
  grants it; the refusal names the customers outside.
- **Separation of duties** (``require_distinct_approver``; default on when roles are configured and
  the operator is not a local ``--as`` one): whoever submitted a version cannot approve it.
- **No roles configured** (``operator_roles`` absent or empty): nothing is refused and a warning says
  so (``open``); every action is still audited. Existing deployments keep working until they opt in.
- **Audit**: each action becomes one ``operator.action`` record (services/audit.py) with its result;
  a refusal is recorded before ``NotAuthorized`` is raised.
"""

from __future__ import annotations

import fnmatch
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..errors import InputError, NotAuthorized, describe
from ..models import (
    CUSTOMER_CODE_RE,
    UNSCOPED_ACTIONS,
    Change,
    Config,
    OperatorAction,
    OperatorRole,
)
from .audit import FAILED, OK, OPERATOR_ACTION, REFUSED, REJECTED, AuditLog
from .identity import IAM_USER, Directory, Facts, Operator

if TYPE_CHECKING:
    from .aws import AwsFactory

OPEN_WARNING = "no operator roles configured: every operator may do everything (set operator_roles)"


@dataclass(frozen=True)
class Grant:
    """A role the operator holds: its actions and the customers it covers (None: every customer)."""

    role: str
    actions: frozenset[OperatorAction]
    customers: frozenset[str] | None
    via: str  # the principal that matched

    def covers(self, code: str) -> bool:
        return self.customers is None or code in self.customers

    def scope_text(self) -> str:
        if self.customers is None:
            return "all customers"
        return ", ".join(sorted(self.customers)) or "no customer"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    action: OperatorAction
    reason: str = ""
    needs: tuple[str, ...] = ()  # roles of the config that grant the action
    outside: tuple[str, ...] = ()  # customers outside the operator's scope


def principal_matches(principal: str, operator: Operator, facts: Facts) -> bool:
    """Whether ``principal`` (an ``operator_roles`` entry) names ``operator``."""
    kind, sep, value = principal.partition(":")
    if sep and kind == "user":
        return operator.person is not None and operator.person.casefold() == value.casefold()
    if sep and kind == "group":
        return value in facts.groups
    if sep and kind == "permission-set":
        return operator.permission_set == value
    if principal.startswith("arn:"):
        match = re.match(r"^arn:[^:]+:iam::(\d{12}):(role|user)/(.+)\Z", principal)
        if match is None or operator.is_local:
            return False
        account, what, path = match.groups()
        name = path.rsplit("/", 1)[-1]
        if not fnmatch.fnmatchcase(operator.account or "", account):
            return False
        if what == "role":
            return operator.role_name is not None and fnmatch.fnmatchcase(operator.role_name, name)
        return operator.kind == IAM_USER and fnmatch.fnmatchcase(operator.name, name)
    if operator.is_local:
        return False
    return operator.permission_set == principal or principal in facts.groups


def tag_codes(value: str | None) -> frozenset[str]:
    """Customer codes in a principal tag value (one code; a list separated by spaces, commas or colons
    is read too, but IAM can enforce only a single code: see docs/runbooks/operators.md)."""
    if not value:
        return frozenset()
    return frozenset(c for c in re.split(r"[\s,:]+", value.strip()) if CUSTOMER_CODE_RE.match(c))


def grants_for(config: Config, operator: Operator, facts: Facts) -> tuple[list[Grant], list[str]]:
    """The roles ``operator`` holds, and warnings (e.g. a scope tag that is missing)."""
    grants: list[Grant] = []
    warnings: list[str] = []
    for name, role in config.operator_roles.items():
        via = next((p for p in role.principals if principal_matches(p, operator, facts)), None)
        if via is None:
            continue
        grants.append(Grant(name, role.effective_actions(name), _scope(name, role, facts, warnings), via))
    return grants, warnings


def _scope(name: str, role: OperatorRole, facts: Facts, warnings: list[str]) -> frozenset[str] | None:
    if role.customer_tag is not None:
        codes = tag_codes(facts.tags.get(role.customer_tag))
        if not codes:
            warnings.append(f"{name}: principal tag {role.customer_tag!r} holds no customer code")
        return codes
    if role.all_customers:
        return None
    return frozenset(role.customers or [])


def roles_granting(config: Config, action: OperatorAction) -> list[str]:
    return [name for name, role in config.operator_roles.items() if action in role.effective_actions(name)]


class ActionRecord:
    """An action under way: ``update`` adds what is learnt while doing it, ``finish`` writes the record
    (``act`` finishes it with ``ok``/``failed``/``rejected`` when the caller did not)."""

    def __init__(
        self,
        authz: Authorizer,
        action: OperatorAction,
        name: str,
        customers: Iterable[str] | None,
        change_id: str | None,
        version: int | None,
        details: dict[str, Any],
    ) -> None:
        self.authz = authz
        self.action = action
        self.name = name
        self.customers = sorted(set(customers)) if customers is not None else None
        self.change_id = change_id
        self.version = version
        self.details = details
        self.key: str | None = None
        self.written = False

    def update(
        self,
        *,
        customers: Iterable[str] | None = None,
        change_id: str | None = None,
        version: int | None = None,
        **details: Any,
    ) -> None:
        if customers is not None:
            self.customers = sorted(set(customers))
        self.change_id = change_id or self.change_id
        self.version = version if version is not None else self.version
        self.details.update(details)

    def check(self, customers: Iterable[str], *, version: int | None = None) -> None:
        """Authorize the customers learnt while acting (e.g. the loaded change's): ``NotAuthorized``
        (recorded) when one is outside the operator's scope."""
        self.update(customers=customers, version=version)
        self.authz.require(
            self.action, self.customers, name=self.name, change_id=self.change_id, version=self.version
        )

    def finish(
        self,
        result: str = OK,
        *,
        customers: Iterable[str] | None = None,
        change_id: str | None = None,
        version: int | None = None,
        items: Iterable[dict[str, Any]] = (),
        **details: Any,
    ) -> str | None:
        """Write the record once (with a line per changed ``item`` after it, e.g. each contact of an
        import); its S3 key (None when S3 refused it: the log line still has it)."""
        if self.written:
            return self.key
        self.written = True
        self.update(customers=customers, change_id=change_id, version=version, **details)
        self.key = self.authz.record(
            self.name,
            result,
            customers=self.customers,
            change_id=self.change_id,
            version=self.version,
            items=list(items),
            **self.details,
        )
        return self.key


class Authorizer:
    """Who the operator is, which roles they hold, and the decision on each action (audited)."""

    def __init__(
        self,
        aws: AwsFactory,
        config: Config,
        *,
        operator: Operator | str | None = None,
        directory: Directory | None = None,
        via: str = "cli",
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.aws = aws
        self.config = config
        self._operator = Operator.local(operator) if isinstance(operator, str) else operator
        self.directory = directory or Directory(aws, config)
        self.via = via
        self.clock = clock or (lambda: datetime.now(UTC))
        self.audit = AuditLog(aws, config, source=via, clock=self.clock)
        self._lock = threading.Lock()
        self._grants: list[Grant] | None = None
        self._warnings: list[str] = []

    # -- who -------------------------------------------------------------------------------------
    @property
    def operator(self) -> Operator:
        if self._operator is None:
            operator = self.aws.operator()
            with self._lock:
                self._operator = operator
        return self._operator

    @property
    def enforced(self) -> bool:
        """False when no roles are configured: nothing is refused (see ``OPEN_WARNING``)."""
        return bool(self.config.operator_roles)

    def grants(self) -> list[Grant]:
        with self._lock:
            if self._grants is not None:
                return self._grants
        operator = self.operator
        facts = self.directory.facts(operator) if self.enforced else Facts([], {}, [])
        grants, warnings = grants_for(self.config, operator, facts)
        warnings += [f"directory lookup failed: {e}" for e in facts.errors]
        with self._lock:
            self._grants, self._warnings = grants, warnings
        return grants

    @property
    def warnings(self) -> list[str]:
        """What the operator should know about their authorization (shown by both front ends)."""
        if not self.enforced:
            return [OPEN_WARNING]
        self.grants()
        return list(self._warnings)

    def role_names(self) -> list[str]:
        return [g.role for g in self.grants()] if self.enforced else []

    def summary(self) -> str:
        """``ChangeManagers · CustomerManagers (acme)`` for a header; ``no role`` when none matches."""
        if not self.enforced:
            return "no roles configured"
        parts = [g.role + ("" if g.customers is None else f" ({g.scope_text()})") for g in self.grants()]
        return " · ".join(parts) or "no role"

    @property
    def distinct_approver_required(self) -> bool:
        configured = self.config.require_distinct_approver
        if configured is not None:
            return configured
        return self.enforced and not self.operator.is_local

    # -- deciding --------------------------------------------------------------------------------
    def decide(self, action: OperatorAction, customers: Iterable[str] | None = None) -> Decision:
        """Allowed or not, and why. ``customers`` None: allowed on some customer at least."""
        if not self.enforced:
            return Decision(True, action)
        needs = tuple(roles_granting(self.config, action))
        grants = self.grants()
        holding = [g for g in grants if action in g.actions]
        who = self.operator.name
        if not holding:
            wanted = " or ".join(needs) if needs else "a role with it (none in operator_roles has it)"
            if not grants:
                reason = (
                    f"{who} has no role (no operator_roles entry names this identity); "
                    f"{action.value} needs {wanted}"
                )
                return Decision(False, action, reason, needs)
            have = ", ".join(g.role for g in grants)
            return Decision(False, action, f"{action.value} needs {wanted}; {who} has {have}", needs)
        if customers is None or action in UNSCOPED_ACTIONS:
            return Decision(True, action, needs=needs)
        outside = tuple(sorted(c for c in set(customers) if not any(g.covers(c) for g in holding)))
        if outside:
            scope = "; ".join(f"{g.role}: {g.scope_text()}" for g in holding)
            return Decision(
                False,
                action,
                f"{action.value} on {', '.join(outside)}: outside {who}'s scope ({scope})",
                needs,
                outside,
            )
        return Decision(True, action, needs=needs)

    def allows(self, action: OperatorAction, customers: Iterable[str] | None = None) -> bool:
        return self.decide(action, customers).allowed

    def require(
        self,
        action: OperatorAction,
        customers: Iterable[str] | None = None,
        *,
        name: str | None = None,
        change_id: str | None = None,
        version: int | None = None,
    ) -> Decision:
        """The decision when allowed; otherwise a ``refused`` record and ``NotAuthorized``."""
        codes = sorted(set(customers)) if customers is not None else None
        decision = self.decide(action, codes)
        if not decision.allowed:
            self._refuse(name or action.value, decision.reason, action, decision, codes, change_id, version)
        return decision

    def approval_refusal(self, change: Change) -> str | None:
        """Why separation of duties forbids this operator to approve ``change`` (None: it does not)."""
        if not self.distinct_approver_required:
            return None
        submitter = change.submitted_by
        if submitter and submitter.casefold() == self.operator.name.casefold():
            return (
                f"separation of duties: {submitter} submitted v{change.version} of {change.change_id}; "
                "another change manager must approve it (require_distinct_approver)"
            )
        return None

    def require_distinct_approver(self, change: Change) -> None:
        """Separation of duties: the submitter of ``change`` (this version) may not approve it."""
        reason = self.approval_refusal(change)
        if reason is not None:
            action = OperatorAction.CHANGE_APPROVE
            decision = Decision(False, action, reason, tuple(roles_granting(self.config, action)))
            self._refuse(
                action.value, reason, action, decision, change.customers, change.change_id, change.version
            )

    def record_refusal(
        self, decision: Decision, customers: Iterable[str] | None = None, *, change_id: str | None = None
    ) -> str | None:
        """A refusal a front end made from ``decide`` before calling anything (a disabled key
        pressed): recorded like the refusals of ``require``."""
        return self.record(
            decision.action.value,
            REFUSED,
            customers=sorted(set(customers)) if customers is not None else None,
            change_id=change_id,
            detail=decision.reason,
            needs=list(decision.needs) or None,
            outside=list(decision.outside) or None,
        )

    def _refuse(
        self,
        name: str,
        reason: str,
        action: OperatorAction,
        decision: Decision,
        customers: list[str] | None,
        change_id: str | None,
        version: int | None,
    ) -> None:
        self.record(
            name,
            REFUSED,
            customers=customers,
            change_id=change_id,
            version=version,
            detail=reason,
            needs=list(decision.needs) or None,
            outside=list(decision.outside) or None,
        )
        raise NotAuthorized(
            reason,
            action=action.value,
            operator=self.operator.name,
            roles=self.role_names(),
            needs=list(decision.needs),
            customers=list(decision.outside),
        )

    @contextmanager
    def act(
        self,
        action: OperatorAction,
        customers: Iterable[str] | None = None,
        *,
        name: str | None = None,
        change_id: str | None = None,
        version: int | None = None,
        **details: Any,
    ) -> Iterator[ActionRecord]:
        """Authorize, run the block, record the outcome (once, whatever happens)."""
        codes = sorted(set(customers)) if customers is not None else None
        self.require(action, codes, name=name, change_id=change_id, version=version)
        record = ActionRecord(self, action, name or action.value, codes, change_id, version, dict(details))
        try:
            yield record
        except NotAuthorized:  # a refusal inside (separation of duties): already recorded
            raise
        except (InputError, ValueError, KeyError) as exc:
            record.finish(REJECTED, detail=describe(exc))
            raise
        except BaseException as exc:
            record.finish(FAILED, detail=describe(exc))
            raise
        else:
            record.finish(OK)

    # -- audit -------------------------------------------------------------------------------------
    def record(
        self,
        name: str,
        result: str,
        *,
        customers: list[str] | None = None,
        change_id: str | None = None,
        version: int | None = None,
        items: list[dict[str, Any]] | None = None,
        **details: Any,
    ) -> str | None:
        """One ``operator.action`` audit record now (and one ``<action>.item`` line per item), in one
        S3 object: its key (None when S3 refused it)."""
        operator = self.operator
        who: dict[str, Any] = {
            "ts": self.clock().astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            **operator.audit_fields(),
            "roles": self.role_names() if self.enforced else None,
            "via": self.via,
            "customers": customers,
        }
        event: dict[str, Any] = {
            **who,
            "type": OPERATOR_ACTION,
            "action": name,
            "result": result,
            "change_id": change_id,
            "version": version,
            "items": len(items) if items else None,
            **details,
        }
        lines = [event] + [{**who, "type": f"{name}.item", **item} for item in items or []]
        return self.audit.write([{k: v for k, v in e.items() if v is not None} for e in lines])

    def within(self, action: OperatorAction) -> Authorizer:
        """This operator's authorizer for the steps of ``action`` (e.g. the check after a customer add,
        the DLQ export of a removal): each step is decided as usual, its record says part of what."""
        return _Within(self, action)


@dataclass
class RoleRow:
    """One role of the config as ``provision`` and the docs show it."""

    name: str
    principals: list[str]
    actions: list[str]
    scope: str
    notes: list[str] = field(default_factory=list)


def role_rows(config: Config) -> list[RoleRow]:
    rows = []
    for name, role in sorted(config.operator_roles.items()):
        if role.customer_tag:
            scope = f"tag {role.customer_tag}"
        elif role.all_customers:
            scope = "all customers"
        else:
            scope = ", ".join(role.customers or [])
        rows.append(
            RoleRow(name, list(role.principals), sorted(a.value for a in role.effective_actions(name)), scope)
        )
    return rows


class _Within(Authorizer):
    """``Authorizer.within``: the parent's operator, roles, decisions and audit; records say part of what."""

    def __init__(self, parent: Authorizer, action: OperatorAction) -> None:
        super().__init__(
            parent.aws,
            parent.config,
            operator=parent.operator,
            directory=parent.directory,
            via=parent.via,
            clock=parent.clock,
        )
        self.parent, self.part_of = parent, action

    def grants(self) -> list[Grant]:
        return self.parent.grants()

    @property
    def warnings(self) -> list[str]:
        return self.parent.warnings

    def decide(self, action: OperatorAction, customers: Iterable[str] | None = None) -> Decision:
        return self.parent.decide(action, customers)

    def record(self, name: str, result: str, **fields: Any) -> str | None:
        return self.parent.record(name, result, part_of=self.part_of.value, **fields)
