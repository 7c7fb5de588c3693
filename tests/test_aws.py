"""The AWS client factory against the session's moto server: endpoints, profiles, customer role sessions."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from changeconsole.models import Config, CustomerMapping
from changeconsole.services.aws import LOCAL_ACCOUNT, LOCAL_ENDPOINT, AwsFactory, AwsSettings
from changeconsole.services.localstack import build_local_config, customer_account


@pytest.fixture
def config(moto_endpoint: str) -> Config:
    return Config.model_validate(build_local_config(4, endpoint=moto_endpoint))


def count_assumes(aws: AwsFactory) -> list[str]:
    """Record every AssumeRole the factory makes (first use and refreshes)."""
    calls: list[str] = []
    original: Callable[[CustomerMapping], dict[str, str]] = aws._assume

    def counting(customer: CustomerMapping) -> dict[str, str]:
        calls.append(customer.customer_code)
        return original(customer)

    aws._assume = counting  # type: ignore[method-assign]
    return calls


def account_of(aws: AwsFactory, customer: CustomerMapping) -> str:
    return str(aws.customer_client(customer, "sts").get_caller_identity()["Account"])


# -- settings -----------------------------------------------------------------------------------


def test_endpoint_precedence_flag_env_local(monkeypatch: pytest.MonkeyPatch) -> None:
    assert AwsSettings.resolve().endpoint_url is None
    assert AwsSettings.resolve(local=True).endpoint_url == LOCAL_ENDPOINT
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://env:1")
    assert AwsSettings.resolve(local=True).endpoint_url == "http://env:1"
    assert AwsSettings.resolve(endpoint_url="http://flag:2", local=True).endpoint_url == "http://flag:2"


def test_region_and_profile_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_REGION", raising=False)
    assert AwsSettings.resolve().region == "us-east-1"  # AWS_DEFAULT_REGION from conftest
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert AwsSettings.resolve().region == "eu-west-1"
    assert AwsSettings.resolve(region="ap-southeast-2").region == "ap-southeast-2"
    monkeypatch.setenv("AWS_PROFILE", "ops")
    assert AwsSettings.resolve().profile == "ops"
    assert AwsSettings.resolve(profile="audit").profile == "audit"


def test_environment_label() -> None:
    assert AwsSettings(local=True, endpoint_url="http://h:1").environment_label == "local http://h:1"
    assert AwsSettings(endpoint_url="http://h:1").environment_label == "endpoint http://h:1"
    assert AwsSettings(region="eu-west-1").environment_label == "aws eu-west-1"


def test_aws_profile_is_used_like_every_aws_tool(
    moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "credentials").write_text(
        "[ops]\naws_access_key_id = AKIAOPSPROFILE000001\naws_secret_access_key = secret\n"
    )
    (tmp_path / "config").write_text("[profile ops]\nregion = eu-west-1\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_PROFILE", "ops")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    aws = AwsFactory(AwsSettings.resolve(region="us-east-1", endpoint_url=moto_endpoint))
    creds = aws._session.get_credentials()
    assert creds is not None
    assert creds.access_key == "AKIAOPSPROFILE000001"
    assert aws.client("sts").get_caller_identity()["Account"] == LOCAL_ACCOUNT


def test_central_clients_use_endpoint_region_and_retry_mode(
    aws_factory: AwsFactory, moto_endpoint: str
) -> None:
    s3 = aws_factory.client("s3")
    assert s3 is aws_factory.client("s3")
    assert s3.meta.endpoint_url == moto_endpoint
    assert s3.meta.region_name == "us-east-1"
    other = aws_factory.client("s3", region="eu-west-1")
    assert other is not s3
    assert other.meta.region_name == "eu-west-1"
    assert s3.meta.config.retries["mode"] == "adaptive"
    assert aws_factory.caller_identity()["account"] == LOCAL_ACCOUNT


def test_operator_identity(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The local stack: the OS user unless --as (or CHANGECONSOLE_OPERATOR) names someone.
    monkeypatch.setattr("changeconsole.services.aws.os_user", lambda: "olga")
    assert AwsFactory(AwsSettings(endpoint_url=moto_endpoint, local=True)).operator_identity() == "olga"
    named = AwsFactory(AwsSettings(endpoint_url=moto_endpoint, local=True, acting_as="jane.doe"))
    assert named.operator().is_local and named.operator_identity() == "jane.doe"
    monkeypatch.setenv("CHANGECONSOLE_OPERATOR", "erin")
    assert AwsFactory(AwsSettings(endpoint_url=moto_endpoint, local=True)).operator_identity() == "erin"
    monkeypatch.delenv("CHANGECONSOLE_OPERATOR")
    # Any other endpoint: who STS says (moto's default caller is the IAM user "moto").
    emulator = AwsFactory(AwsSettings(endpoint_url=moto_endpoint))
    assert emulator.operator().kind == "iam-user" and emulator.operator_identity() == "moto"


# -- customer role sessions ---------------------------------------------------------------------


def test_customer_clients_land_in_the_customers_own_account(aws_factory: AwsFactory, config: Config) -> None:
    codes = sorted(config.customer_mappings)
    accounts = {code: account_of(aws_factory, config.customer(code)) for code in codes}
    expected = {code: customer_account(i) for i, code in enumerate(config.customer_mappings)}
    assert accounts == expected
    assert len(set(accounts.values())) == len(codes)
    assert LOCAL_ACCOUNT not in accounts.values()
    ident = aws_factory.customer_client(config.customer("acme"), "sts").get_caller_identity()
    assert ":assumed-role/changeconsole-ses-sender/changeconsole-acme" in ident["Arn"]
    assert aws_factory.client("sts").get_caller_identity()["Account"] == LOCAL_ACCOUNT


def test_customer_sessions_and_clients_are_cached(aws_factory: AwsFactory, config: Config) -> None:
    calls = count_assumes(aws_factory)
    acme = config.customer("acme")
    first = aws_factory.customer_client(acme, "sesv2")
    assert aws_factory.customer_client(acme, "sesv2") is first
    assert aws_factory.customer_session(acme) is aws_factory.customer_session(acme)
    sts = aws_factory.customer_client(acme, "sts")
    assert sts is not first
    for _ in range(3):
        assert sts.get_caller_identity()["Account"] == acme.account_id
    assert calls == ["acme"]
    aws_factory.forget_customer("acme")
    assert aws_factory.customer_client(acme, "sesv2") is not first
    assert calls == ["acme", "acme"]


def test_assume_role_parameters(aws_factory: AwsFactory, config: Config) -> None:
    seen: list[dict[str, Any]] = []

    def capture(params: dict[str, Any], **_: Any) -> None:
        seen.append(dict(params))

    aws_factory.client("sts").meta.events.register("provide-client-params.sts.AssumeRole", capture)
    mapping = config.customer("globex").model_copy(update={"ses_external_id": "ext-123"})
    account_of(aws_factory, mapping)
    assert seen == [
        {
            "RoleArn": mapping.ses_role_arn,
            "RoleSessionName": "changeconsole-globex",
            "DurationSeconds": 3600,
            "ExternalId": "ext-123",
        }
    ]


def test_concurrent_first_use_is_thread_safe(aws_factory: AwsFactory, config: Config) -> None:
    codes = sorted(config.customer_mappings)
    per_customer = 8
    barrier = threading.Barrier(len(codes) * per_customer)

    def first_use(code: str) -> tuple[str, int, str]:
        mapping = config.customer(code)
        barrier.wait(timeout=30)
        client = aws_factory.customer_client(mapping, "sts")
        return code, id(client), str(client.get_caller_identity()["Account"])

    jobs = [code for code in codes for _ in range(per_customer)]
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        results = list(pool.map(first_use, jobs))
    for code in codes:
        mine = [r for r in results if r[0] == code]
        assert len(mine) == per_customer
        assert len({client_id for _, client_id, _ in mine}) == 1, f"{code}: one cached client"
        assert {account for _, _, account in mine} == {config.customer(code).account_id}
    clients = {client_id for _, client_id, _ in results}
    assert len(clients) == len(codes)


def test_expired_credentials_are_refreshed(aws_factory: AwsFactory, config: Config) -> None:
    calls = count_assumes(aws_factory)
    mapping = config.customer("initech")
    assert account_of(aws_factory, mapping) == mapping.account_id
    creds = aws_factory.customer_session(mapping).get_credentials()
    assert creds is not None
    # The factory never trusts an expiry in the past (moto's is fixed), so it is well ahead now.
    assert creds._expiry_time > datetime.now(UTC) + AwsFactory.REFRESH_MARGIN  # type: ignore[attr-defined]
    before = creds.get_frozen_credentials()
    creds._expiry_time = datetime.now(UTC) - timedelta(seconds=1)  # type: ignore[attr-defined]
    assert account_of(aws_factory, mapping) == mapping.account_id
    after = creds.get_frozen_credentials()
    assert calls == ["initech", "initech"]
    assert after.access_key != before.access_key
    assert not creds.refresh_needed()  # type: ignore[attr-defined]


def test_call_listeners_reach_every_client(aws_factory: AwsFactory, config: Config) -> None:
    acme = config.customer("acme")
    before_central = aws_factory.client("sts")
    before_customer = aws_factory.customer_client(acme, "sts")
    seen: list[str] = []

    def listener(model: Any, **_: Any) -> None:
        seen.append(model.name)

    aws_factory.add_call_listener(listener)
    before_central.get_caller_identity()
    before_customer.get_caller_identity()
    aws_factory.client("sqs").list_queues()
    aws_factory.customer_client(config.customer("globex"), "sesv2").list_contact_lists()
    assert seen.count("GetCallerIdentity") == 2
    assert "ListQueues" in seen
    assert "ListContactLists" in seen


def test_customer_clients_reuse_parsed_service_models(aws_factory: AwsFactory, config: Config) -> None:
    """Hundreds of customers must not each re-read and re-parse botocore's models from disk."""
    central = aws_factory.client("sesv2").meta.service_model
    base_loader = aws_factory._session._session.get_component("data_loader")
    paths = list(base_loader.search_paths)
    for code in config.customer_mappings:
        model = aws_factory.customer_client(config.customer(code), "sesv2").meta.service_model
        assert model._service_description is central._service_description, code
    assert base_loader.search_paths == paths
