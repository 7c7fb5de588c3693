"""One moto server per test session, over HTTP with real boto3 clients."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from changeconsole.services.aws import AwsFactory
from changeconsole.services.localstack import (
    LocalServer,
    LocalStackResult,
    local_factory,
    provision_local,
    reset,
)
from support.aws import free_port

logging.getLogger("werkzeug").setLevel(logging.ERROR)


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep XDG config/data/cache of every test away from the real home directory."""
    base = tmp_path_factory.mktemp("xdg")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(base / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(base / "data"))
    monkeypatch.setenv("XDG_STATE_HOME", str(base / "state"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(base / "cache"))
    monkeypatch.delenv("CHANGECONSOLE_OPERATOR", raising=False)
    monkeypatch.delenv("CHANGECONSOLE_CONFIG", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    server = LocalServer(port=free_port()).start()
    try:
        yield server.endpoint
    finally:
        server.stop()


StackFactory = Callable[..., LocalStackResult]


@pytest.fixture
def make_stack(moto_endpoint: str, tmp_path: Path) -> StackFactory:
    """Reset the server and provision a fresh local stack: ``make_stack(customers=8, contacts=5)``."""

    def factory(customers: int = 6, contacts: int = 5, **kwargs: object) -> LocalStackResult:
        reset(moto_endpoint)
        return provision_local(
            moto_endpoint,
            customers=customers,
            contacts=contacts,
            config_path=tmp_path / "config.json",
            **kwargs,  # type: ignore[arg-type]
        )

    return factory


@pytest.fixture
def aws_factory(moto_endpoint: str) -> AwsFactory:
    """Clients that fail fast (no retries) so unimplemented calls surface at once."""
    return local_factory(moto_endpoint, max_attempts=1)
