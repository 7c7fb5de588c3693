"""Operators as AWS sees them on moto: Identity Center sessions (``AWSReservedSSO_<set>_<hash>`` roles
assumed with the person's name as the session), their groups, and a CLI that acts as one of them."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import boto3
from click.testing import CliRunner, Result

from changeconsole.cli import main
from changeconsole.models import Config

ACCOUNT = "123456789012"
SSO_PATH = "/aws-reserved/sso.amazonaws.com/"
_TRUST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}],
    }
)


def _client(endpoint: str, service: str, creds: dict[str, str] | None = None) -> Any:
    keys = creds or {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    return boto3.client(
        service,  # type: ignore[call-overload]
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=keys["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=keys["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=keys.get("AWS_SESSION_TOKEN"),
    )


def sso_role_name(permission_set: str) -> str:
    return f"AWSReservedSSO_{permission_set}_{hashlib.sha256(permission_set.encode()).hexdigest()[:16]}"


def sso_session(endpoint: str, permission_set: str, person: str) -> dict[str, str]:
    """Credentials (as environment variables) of ``person`` signed in with ``permission_set``."""
    iam = _client(endpoint, "iam")
    name = sso_role_name(permission_set)
    try:
        arn = iam.get_role(RoleName=name)["Role"]["Arn"]
    except iam.exceptions.NoSuchEntityException:
        arn = iam.create_role(RoleName=name, Path=SSO_PATH, AssumeRolePolicyDocument=_TRUST)["Role"]["Arn"]
    creds = _client(endpoint, "sts").assume_role(RoleArn=arn, RoleSessionName=person)["Credentials"]
    return {
        "AWS_ACCESS_KEY_ID": creds["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"],
        "AWS_SESSION_TOKEN": creds["SessionToken"],
    }


def caller_arn(endpoint: str, creds: dict[str, str]) -> str:
    return str(_client(endpoint, "sts", creds).get_caller_identity()["Arn"])


def identity_store(endpoint: str) -> str:
    """The Identity Center instance's identity store id (moto makes one per account)."""
    instances = _client(endpoint, "sso-admin").list_instances()["Instances"]
    return str(instances[0]["IdentityStoreId"])


def add_user(endpoint: str, store: str, user_name: str, groups: Iterable[str] = (), **attrs: Any) -> str:
    """An Identity Center user, member of ``groups`` (created as needed); its user id."""
    ids = _client(endpoint, "identitystore")
    user = ids.create_user(
        IdentityStoreId=store,
        UserName=user_name,
        DisplayName=user_name,
        Name={"GivenName": user_name, "FamilyName": "Operator"},
        **attrs,
    )["UserId"]
    known = {g["DisplayName"]: g["GroupId"] for g in ids.list_groups(IdentityStoreId=store)["Groups"]}
    for group in groups:
        group_id = known.get(group) or ids.create_group(IdentityStoreId=store, DisplayName=group)["GroupId"]
        known[group] = group_id
        ids.create_group_membership(IdentityStoreId=store, GroupId=group_id, MemberId={"UserId": user})
    return str(user)


def config_with_roles(config: Config, path: Path, roles: dict[str, Any], **extra: Any) -> Path:
    """``config`` plus ``operator_roles`` (and other keys), written to ``path``."""
    data = config.to_json_dict()
    data["operator_roles"] = roles
    data.update(extra)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


class OperatorCli:
    """``changeconsole`` run in-process as one operator (their session's credentials)."""

    def __init__(self, endpoint: str, config_path: Path) -> None:
        self.endpoint, self.config_path = endpoint, config_path
        self.runner = CliRunner()

    def __call__(self, creds: dict[str, str], *args: str) -> Result:
        base = ["--config", str(self.config_path), "--endpoint-url", self.endpoint]
        env = {**creds, "COLUMNS": "200"}
        return self.runner.invoke(main, [*base, *args], env=env, catch_exceptions=False)

    def json(self, creds: dict[str, str], *args: str) -> Any:
        result = self(creds, *args, "--json")
        assert result.exit_code == 0, (args, result.stdout, result.stderr)
        return json.loads(result.stdout)
