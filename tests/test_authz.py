"""Identity parsing, principal matching, roles, scopes and separation of duties (no AWS)."""

from __future__ import annotations

from typing import Any

import pytest

from changeconsole.config import config_problems
from changeconsole.errors import InputError, NotAuthorized
from changeconsole.models import Change, Config, OperatorAction
from changeconsole.services.authz import OPEN_WARNING, Authorizer, principal_matches
from changeconsole.services.aws import AwsSettings
from changeconsole.services.identity import Facts, Operator, chosen_name, parse_caller
from changeconsole.services.localstack import build_local_config
from support.changes import make_change

A = OperatorAction
SSO = (
    "arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Change_Managers_0a1b2c3d4e5f6789/jane@example.com"
)


def test_identity_center_session_is_the_person_and_the_permission_set() -> None:
    op = parse_caller(SSO)
    assert (op.name, op.kind, op.permission_set) == ("jane@example.com", "identity-center", "Change_Managers")
    assert op.role_name == "AWSReservedSSO_Change_Managers_0a1b2c3d4e5f6789" and op.account == "123456789012"
    assert (
        op.person == "jane@example.com" and op.label() == "jane@example.com (permission set Change_Managers)"
    )


@pytest.mark.parametrize(
    ("arn", "name", "kind", "person"),
    [
        ("arn:aws:sts::111111111111:assumed-role/OpsAdmin/bob", "OpsAdmin/bob", "assumed-role", None),
        ("arn:aws:iam::111111111111:user/teams/alice", "alice", "iam-user", "alice"),
        ("arn:aws:iam::111111111111:root", "root", "root", None),
        ("arn:aws:sts::111111111111:federated-user/fed", "fed", "federated-user", None),
        ("arn:aws-us-gov:sts::111111111111:assumed-role/R/s", "R/s", "assumed-role", None),
    ],
)
def test_other_callers(arn: str, name: str, kind: str, person: str | None) -> None:
    op = parse_caller(arn)
    assert (op.name, op.kind, op.person) == (name, kind, person)


def test_as_is_for_the_local_stack_only(monkeypatch: pytest.MonkeyPatch) -> None:
    assert chosen_name(AwsSettings(local=True, acting_as="carol")) == "carol"
    assert chosen_name(AwsSettings(endpoint_url="http://127.0.0.1:4566", acting_as="carol")) == "carol"
    assert chosen_name(AwsSettings(local=True)) is None
    with pytest.raises(InputError, match="only on the local stack"):
        chosen_name(AwsSettings(acting_as="carol"))
    with pytest.raises(InputError, match="only on the local stack"):
        chosen_name(AwsSettings(endpoint_url="https://sts.amazonaws.com", acting_as="carol"))
    monkeypatch.setenv("CHANGECONSOLE_OPERATOR", "mallory")
    with pytest.raises(InputError, match="CHANGECONSOLE_OPERATOR"):
        chosen_name(AwsSettings())
    with pytest.raises(InputError, match="without spaces"):
        chosen_name(AwsSettings(local=True, acting_as="two words"))


@pytest.mark.parametrize(
    ("principal", "matches"),
    [
        ("Change_Managers", True),  # the permission set
        ("permission-set:Change_Managers", True),
        ("permission-set:Auditors", False),
        ("Team Change", True),  # an Identity Center group
        ("group:Team Change", True),
        ("group:Change_Managers", False),  # group: names a group only
        ("user:JANE@example.com", True),
        ("user:bob", False),
        (
            "arn:aws:iam::123456789012:role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_Change_Managers_*",
            True,
        ),
        ("arn:aws:iam::123456789012:role/AWSReservedSSO_Change_Managers_0a1b2c3d4e5f6789", True),
        ("arn:aws:iam::999999999999:role/AWSReservedSSO_Change_Managers_0a1b2c3d4e5f6789", False),
        ("arn:aws:iam::123456789012:user/jane@example.com", False),  # not an IAM user
    ],
)
def test_principals(principal: str, matches: bool) -> None:
    facts = Facts(groups=["Team Change"], tags={}, errors=[])
    assert principal_matches(principal, parse_caller(SSO), facts) is matches


def test_a_chosen_session_name_is_not_a_person() -> None:
    role_session = parse_caller("arn:aws:sts::123456789012:assumed-role/Ops/jane@example.com")
    assert not principal_matches("user:jane@example.com", role_session, Facts([], {}, []))
    assert principal_matches("arn:aws:iam::123456789012:role/Ops", role_session, Facts([], {}, []))
    local = Operator.local("jane")
    assert principal_matches("user:jane", local, Facts([], {}, []))
    assert not principal_matches("jane", local, Facts([], {}, []))  # no permission sets locally


def config(roles: dict[str, Any], **extra: Any) -> Config:
    data = build_local_config(4, endpoint="http://127.0.0.1:4566")
    data["operator_roles"] = roles
    data.update(extra)
    return Config.model_validate(data)


ROLES: dict[str, Any] = {
    "ChangeManagers": ["user:carol", "user:dave"],
    "Regional": {
        "principals": ["user:rita"],
        "customers": ["acme", "globex"],
        "actions": ["change.draft", "change.submit"],
    },
    "CustomerManagers": {"principals": ["user:erin"], "customers": ["acme"]},
    "Auditors": ["user:ada", "user:carol"],
    "Tagged": {"principals": ["user:tom"], "customer_tag": "cc-customer", "actions": ["dlq.redrive"]},
}


class StubDirectory:
    def __init__(self, tags: dict[str, str] | None = None) -> None:
        self.tags = tags or {}

    def facts(self, operator: Operator) -> Facts:
        return Facts([], dict(self.tags), [])


class Recorder(Authorizer):
    """An authorizer whose audit records are kept here."""

    def __init__(self, cfg: Config, name: str, tags: dict[str, str] | None = None) -> None:
        super().__init__(None, cfg, operator=name, directory=StubDirectory(tags))  # type: ignore[arg-type]
        self.records: list[tuple[str, str, dict[str, Any]]] = []

    def record(self, name: str, result: str, **fields: Any) -> str | None:
        self.records.append((name, result, fields))
        return None


def test_roles_add_up_and_scopes_refuse_naming_the_customers() -> None:
    cfg = config(ROLES)
    carol = Recorder(cfg, "carol")
    assert carol.role_names() == ["ChangeManagers", "Auditors"]
    assert carol.allows(A.CHANGE_APPROVE, ["acme", "initech"]) and carol.allows(A.AUDIT_READ)
    assert not carol.allows(A.DLQ_PURGE, ["acme"])

    rita = Recorder(cfg, "rita")
    assert rita.allows(A.CHANGE_SUBMIT, ["acme", "globex"])
    decision = rita.decide(A.CHANGE_SUBMIT, ["acme", "initech", "hooli"])
    assert not decision.allowed and decision.outside == ("hooli", "initech")
    assert "hooli, initech" in decision.reason and "Regional: acme, globex" in decision.reason
    assert not rita.allows(A.CHANGE_APPROVE) and rita.decide(A.CHANGE_APPROVE).needs == ("ChangeManagers",)
    with pytest.raises(NotAuthorized) as err:
        rita.require(A.CHANGE_SUBMIT, ["initech"], change_id="CHG-x", version=2)
    assert err.value.customers == ["initech"] and err.value.roles == ["Regional"]
    ((name, result, fields),) = rita.records
    assert (name, result, fields["customers"], fields["outside"]) == (
        "change.submit",
        "refused",
        ["initech"],
        ["initech"],
    )

    erin = Recorder(cfg, "erin")
    assert erin.allows(A.CONTACTS_EDIT, ["acme"]) and not erin.allows(A.CONTACTS_EDIT, ["globex"])
    assert erin.allows(A.READ) and not erin.allows(A.AUDIT_READ)
    assert "change.submit needs ChangeManagers or Regional; erin has CustomerManagers" in (
        erin.decide(A.CHANGE_SUBMIT).reason
    )

    nobody = Recorder(cfg, "nina")
    assert nobody.summary() == "no role" and not nobody.allows(A.READ)
    assert "nina has no role" in nobody.decide(A.READ).reason


def test_customer_tag_scope() -> None:
    cfg = config(ROLES)
    tagged = Recorder(cfg, "tom", {"cc-customer": "globex"})
    assert tagged.allows(A.DLQ_REDRIVE, ["globex"]) and not tagged.allows(A.DLQ_REDRIVE, ["acme"])
    untagged = Recorder(cfg, "tom")
    assert not untagged.allows(A.DLQ_REDRIVE, ["globex"])
    assert untagged.warnings == ["Tagged: principal tag 'cc-customer' holds no customer code"]


def test_without_roles_everything_is_allowed_with_a_warning() -> None:
    cfg = config({})
    anyone = Recorder(cfg, "zed")
    assert not anyone.enforced and anyone.allows(A.DLQ_PURGE, ["acme"]) and anyone.allows(A.AUDIT_READ)
    assert anyone.warnings == [OPEN_WARNING] and anyone.summary() == "no roles configured"
    assert not anyone.distinct_approver_required


def submitted_by(name: str) -> Change:
    return make_change(["acme"]).model_copy(update={"submitted_by": name, "version": 2})


def test_separation_of_duties() -> None:
    change = submitted_by("Carol")
    enforced = config(ROLES)
    # Local operators (--as) are exempt by default; AWS identities are not; the config decides both.
    assert Recorder(enforced, "carol").approval_refusal(change) is None
    sso = Authorizer(None, enforced, operator=parse_caller(SSO.replace("jane", "carol")))  # type: ignore[arg-type]
    assert sso.distinct_approver_required
    strict = Recorder(config(ROLES, require_distinct_approver=True), "carol")
    reason = strict.approval_refusal(change)
    assert reason and "Carol submitted v2" in reason
    with pytest.raises(NotAuthorized, match="separation of duties"):
        strict.require_distinct_approver(change)
    assert strict.records[0][1] == "refused"
    assert Recorder(config(ROLES, require_distinct_approver=True), "dave").approval_refusal(change) is None
    assert Recorder(config({}, require_distinct_approver=True), "carol").approval_refusal(change)


def test_act_records_the_outcome_once() -> None:
    carol = Recorder(config(ROLES), "carol")
    with carol.act(A.CHANGE_SUBMIT, ["acme"], change_id="CHG-1") as record:
        record.update(version=2)
    with pytest.raises(ValueError), carol.act(A.CHANGE_CANCEL, ["acme"], change_id="CHG-2"):
        raise ValueError("illegal")
    with pytest.raises(RuntimeError), carol.act(A.CHANGE_APPROVE, change_id="CHG-3") as record:
        record.check(["globex"], version=4)
        raise RuntimeError("AWS down")
    with carol.act(A.CHANGE_RESEND, ["acme"]) as record:
        record.finish("partial", failed=["acme"])
    outcomes = [(n, r, f.get("change_id"), f.get("version")) for n, r, f in carol.records]
    assert outcomes == [
        ("change.submit", "ok", "CHG-1", 2),
        ("change.cancel", "rejected", "CHG-2", None),
        ("change.approve", "failed", "CHG-3", 4),
        ("change.resend", "partial", None, None),
    ]
    assert carol.records[2][2]["customers"] == ["globex"]


def test_role_config_problems_name_the_field() -> None:
    data = build_local_config(2, endpoint="http://127.0.0.1:4566")
    data["operator_roles"] = {
        "X": {"principals": ["arn:aws:s3:::bucket"], "customers": ["ACME"], "actions": ["fly"]},
        "Y": {"principals": ["a"], "customers": ["acme"], "customer_tag": "t"},
        "Z": [""],
    }
    data["audit_retention"] = {"object_lock_mode": "GOVERNANCE"}
    paths = {p["path"] for p in config_problems(data)}
    assert paths >= {
        "operator_roles.X.principals",
        "operator_roles.X.customers",
        "operator_roles.X.actions[0]",
        "operator_roles.Y",
        "operator_roles.Z.principals",
        "audit_retention",
    }


def test_short_role_form_round_trips() -> None:
    cfg = config({"Auditors": ["Auditors", "user:ada"], "Ops": {"principals": ["x"], "note": "kept"}})
    out = cfg.to_json_dict()["operator_roles"]
    assert out["Auditors"] == ["Auditors", "user:ada"]
    assert out["Ops"]["note"] == "kept" and out["Ops"]["principals"] == ["x"]
    assert Config.model_validate(cfg.to_json_dict()).operator_roles == cfg.operator_roles
