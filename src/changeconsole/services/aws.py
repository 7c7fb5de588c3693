"""The one place AWS clients are made.

Endpoint (``--endpoint-url``, ``AWS_ENDPOINT_URL`` or local mode), region, botocore retry mode,
per-customer assumed-role sessions with cached, auto-refreshed credentials, operator identity
(``operator()``, see ``services/identity``).

``customer_send_client`` is the SES client the worker sends with: botocore never retries it (one
attempt: ``total_max_attempts`` 1), because a retried ``SendEmail`` whose first attempt reached SES
(a read timeout, a dropped connection) would send the email twice. The worker retries what is safe.
"""

from __future__ import annotations

import copy
import os
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlparse

import boto3
import botocore.session
from botocore.config import Config as BotoConfig
from botocore.credentials import RefreshableCredentials

from ..models import CustomerMapping
from .identity import Operator, chosen_name, os_user, parse_caller

LOCAL_HOST = "127.0.0.1"
LOCAL_PORT = 4566
LOCAL_ENDPOINT = f"http://{LOCAL_HOST}:{LOCAL_PORT}"
LOCAL_ACCOUNT = "123456789012"
LOCAL_ACCESS_KEY = "testing"
LOCAL_SECRET_KEY = "testing"


@dataclass
class AwsSettings:
    region: str = "us-east-1"
    endpoint_url: str | None = None
    profile: str | None = None
    local: bool = False
    retry_mode: str = "adaptive"
    max_attempts: int = 6
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    max_pool_connections: int = 64
    # ``--as NAME``: who operates, on the local stack only (services/identity.py).
    acting_as: str | None = None

    @classmethod
    def resolve(
        cls,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        local: bool = False,
        profile: str | None = None,
        **kwargs: Any,
    ) -> AwsSettings:
        """Flag > ``AWS_ENDPOINT_URL`` > local default endpoint."""
        endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or (LOCAL_ENDPOINT if local else None)
        return cls(
            region=region
            or os.environ.get("AWS_REGION")
            or os.environ.get("AWS_DEFAULT_REGION")
            or "us-east-1",
            endpoint_url=endpoint,
            profile=profile or os.environ.get("AWS_PROFILE"),
            local=local,
            **kwargs,
        )

    @property
    def loopback_endpoint(self) -> bool:
        """True when the endpoint is on this machine (an emulator such as the local stack)."""
        if not self.endpoint_url:
            return False
        host = urlparse(self.endpoint_url).hostname or ""
        return host == "localhost" or host == "::1" or host.startswith("127.")

    @property
    def environment_label(self) -> str:
        if self.local:
            return f"local {self.endpoint_url}"
        if self.endpoint_url:
            return f"endpoint {self.endpoint_url}"
        return f"aws {self.region}"


# Total attempts (first try included) of the client the worker sends emails with: botocore never
# retries it. (botocore's ``max_attempts`` counts retries; ``total_max_attempts`` counts attempts.)
SEND_MAX_ATTEMPTS = 1
_SEND_CLIENT = "sesv2:send"


@dataclass
class _CustomerSession:
    session: boto3.Session
    clients: dict[str, Any] = field(default_factory=dict)


class AwsFactory:
    """Builds and caches boto3 clients; thread-safe (boto3 clients are, sessions are not)."""

    # Refresh assumed-role credentials this long before they expire.
    REFRESH_MARGIN = timedelta(minutes=5)

    def __init__(self, settings: AwsSettings) -> None:
        self.settings = settings
        self._lock = threading.RLock()
        self._session = self._base_session()
        self._clients: dict[str, Any] = {}
        self._customers: dict[tuple[str, str], _CustomerSession] = {}
        # One lock per customer (code, role): concurrent first uses assume the role once.
        self._assume_locks: dict[tuple[str, str], threading.Lock] = {}
        # The total-attempts cap of the client being made on this thread (see ``customer_send_client``):
        # subclasses override ``_make_client(session, service, region)``, so it does not travel as an
        # argument.
        self._making = threading.local()
        self._identity: dict[str, str] | None = None
        self._operator: Operator | None = None
        self.call_listeners: list[Any] = []

    # -- sessions ---------------------------------------------------------------
    def _base_session(self) -> boto3.Session:
        kwargs: dict[str, Any] = {"region_name": self.settings.region}
        if self.settings.profile and not self.settings.local:
            kwargs["profile_name"] = self.settings.profile
        if self.settings.local and not os.environ.get("AWS_ACCESS_KEY_ID"):
            kwargs["aws_access_key_id"] = LOCAL_ACCESS_KEY
            kwargs["aws_secret_access_key"] = LOCAL_SECRET_KEY
        session = boto3.Session(**kwargs)
        if self.settings.loopback_endpoint and session.get_credentials() is None:
            # A local emulator accepts any keys; don't fail for lack of a credential chain.
            kwargs.pop("profile_name", None)
            session = boto3.Session(
                aws_access_key_id=LOCAL_ACCESS_KEY, aws_secret_access_key=LOCAL_SECRET_KEY, **kwargs
            )
        return session

    def botocore_config(self, total_attempts: int | None = None) -> BotoConfig:
        """Client config. ``total_attempts`` (first try included; 1 = never retried) overrides the
        settings' ``max_attempts`` (botocore's meaning: retries after the first try)."""
        s = self.settings
        total = total_attempts or getattr(self._making, "total_attempts", None)
        retries: dict[str, Any] = {"mode": s.retry_mode}
        if total:
            retries["total_max_attempts"] = total
        else:
            retries["max_attempts"] = s.max_attempts
        return BotoConfig(
            region_name=s.region,
            retries=retries,  # type: ignore[arg-type]
            connect_timeout=s.connect_timeout,
            read_timeout=s.read_timeout,
            max_pool_connections=s.max_pool_connections,
            tcp_keepalive=True,
        )

    def _make_client(self, session: boto3.Session, service: str, region: str | None = None) -> Any:
        client = session.client(
            service,  # type: ignore[call-overload]
            endpoint_url=self.settings.endpoint_url,
            region_name=region or self.settings.region,
            config=self.botocore_config(),
        )
        for listener in self.call_listeners:
            client.meta.events.register("after-call", listener)
        return client

    def client(self, service: str, region: str | None = None) -> Any:
        """A client of the central (operator/worker) account."""
        key = f"{service}:{region or self.settings.region}"
        with self._lock:
            if key not in self._clients:
                self._clients[key] = self._make_client(self._session, service, region)
            return self._clients[key]

    def add_call_listener(self, listener: Any) -> None:
        """Register ``after-call`` on every client made (and already made)."""
        with self._lock:
            self.call_listeners.append(listener)
            for client in self._clients.values():
                client.meta.events.register("after-call", listener)
            for entry in self._customers.values():
                for client in entry.clients.values():
                    client.meta.events.register("after-call", listener)

    # -- customer role sessions -------------------------------------------------------
    def _assume(self, customer: CustomerMapping) -> dict[str, str]:
        sts = self.client("sts")
        kwargs: dict[str, Any] = {
            "RoleArn": customer.ses_role_arn,
            "RoleSessionName": f"changeconsole-{customer.customer_code}"[:64],
            "DurationSeconds": 3600,
        }
        if customer.ses_external_id:
            kwargs["ExternalId"] = customer.ses_external_id
        creds = sts.assume_role(**kwargs)["Credentials"]
        expiry = creds["Expiration"]
        if isinstance(expiry, datetime):
            expiry = expiry.astimezone(UTC)
        else:
            expiry = datetime.fromisoformat(str(expiry).replace("Z", "+00:00"))
        # moto returns a fixed far-past/future expiry; never trust one in the past.
        now = datetime.now(UTC)
        if expiry <= now + self.REFRESH_MARGIN:
            expiry = now + timedelta(hours=1)
        return {
            "access_key": creds["AccessKeyId"],
            "secret_key": creds["SecretAccessKey"],
            "token": creds["SessionToken"],
            "expiry_time": expiry.isoformat(),
        }

    def _shared_loader(self) -> Any:
        """A data loader sharing the central session's cache of parsed service models.

        A fresh botocore session would re-read and re-parse every model from disk (~0.5 s and
        megabytes per customer client); with hundreds of customers that dominates start-up.
        """
        base = self._session._session.get_component("data_loader")
        loader = copy.copy(base)  # shares base._cache (the parsed models)
        loader._search_paths = list(base.search_paths)  # boto3 appends its path per session
        return loader

    def customer_session(self, customer: CustomerMapping) -> boto3.Session:
        key = (customer.customer_code, customer.ses_role_arn)
        with self._lock:
            cached = self._customers.get(key)
            if cached is not None:
                return cached.session
            assume_lock = self._assume_locks.setdefault(key, threading.Lock())
        # Assume under the customer's own lock, outside the factory's: concurrent first uses of one
        # customer make one AssumeRole call, and one slow customer never blocks the others.
        with assume_lock:
            with self._lock:
                cached = self._customers.get(key)
                if cached is not None:
                    return cached.session
            return self._new_customer_session(key, customer)

    def _new_customer_session(self, key: tuple[str, str], customer: CustomerMapping) -> boto3.Session:
        first = self._assume(customer)
        creds = RefreshableCredentials.create_from_metadata(
            metadata=first,
            refresh_using=lambda: self._assume(customer),
            method="sts-assume-role",
        )
        core = botocore.session.get_session()
        core.register_component("data_loader", self._shared_loader())
        core._credentials = creds  # type: ignore[attr-defined]  # refreshable assumed-role session
        core.set_config_variable("region", customer.region or self.settings.region)
        session = boto3.Session(botocore_session=core)
        with self._lock:
            existing = self._customers.get(key)
            if existing is not None:
                return existing.session
            self._customers[key] = _CustomerSession(session)
            return session

    def customer_client(self, customer: CustomerMapping, service: str) -> Any:
        """A client acting in the customer's own account through its SES role."""
        key = (customer.customer_code, customer.ses_role_arn)
        session = self.customer_session(customer)
        with self._lock:
            entry = self._customers[key]
            if service not in entry.clients:
                entry.clients[service] = self._make_client(session, service, customer.region)
            return entry.clients[service]

    def customer_send_client(self, customer: CustomerMapping) -> Any:
        """The customer's SES client for ``SendEmail``: botocore never retries it (one attempt).

        A retried send whose first attempt reached SES would duplicate the email; the worker's own
        retry (message visibility, per-recipient ledger) covers what is safe to retry.
        """
        key = (customer.customer_code, customer.ses_role_arn)
        session = self.customer_session(customer)
        with self._lock:
            entry = self._customers[key]
            if _SEND_CLIENT not in entry.clients:
                self._making.total_attempts = SEND_MAX_ATTEMPTS
                try:
                    entry.clients[_SEND_CLIENT] = self._make_client(session, "sesv2", customer.region)
                finally:
                    self._making.total_attempts = None
            return entry.clients[_SEND_CLIENT]

    def forget_customer(self, code: str) -> None:
        """Drop cached sessions of a customer (e.g. after its role ARN changed)."""
        with self._lock:
            for key in [k for k in self._customers if k[0] == code]:
                del self._customers[key]
            for key in [k for k in self._assume_locks if k[0] == code]:
                del self._assume_locks[key]

    # -- identity ----------------------------------------------------------------
    def caller_identity(self) -> dict[str, str]:
        with self._lock:
            if self._identity is not None:
                return self._identity
        ident = self.client("sts").get_caller_identity()
        result = {"account": ident["Account"], "arn": ident["Arn"], "user_id": ident["UserId"]}
        with self._lock:
            self._identity = result
        return result

    def operator(self) -> Operator:
        """Who acts (services/identity.py): ``--as`` on the local stack, else the AWS caller."""
        with self._lock:
            if self._operator is not None:
                return self._operator
        name = chosen_name(self.settings)
        if name is not None:
            operator = Operator.local(name)
        elif self.settings.local:
            operator = Operator.local(os_user())
        else:
            operator = parse_caller(self.caller_identity()["arn"])
        with self._lock:
            self._operator = operator
        return operator

    def operator_identity(self) -> str:
        """Who is acting, for ``*By`` fields: the operator's name."""
        return self.operator().name
