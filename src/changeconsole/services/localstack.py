"""The embedded local AWS stand-in: moto's server on 127.0.0.1, provisioned like production.

One central account holds the bucket, queues and tables; each customer gets its own simulated
account (reached by assuming its SES role) with a verified identity, a contact list and contacts.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import local_config_path, write_config
from ..models import (
    TOPIC_ANNOUNCE,
    TOPIC_APPROVAL,
    TOPIC_CALENDAR,
    Config,
    Transport,
)
from .aws import LOCAL_ACCOUNT, LOCAL_HOST, LOCAL_PORT, AwsFactory, AwsSettings
from .event_relay import ses_send_tap
from .provision import Action, provision
from .topics import DEFAULT_TOPICS

log = logging.getLogger(__name__)

LOCAL_REGION = "us-east-1"
LOCAL_BUCKET = "changeconsole-local-metadata"
LOCAL_SENDER_DOMAIN = "notices.msp.example.com"
LOCAL_SENDER = f"change-notices@{LOCAL_SENDER_DOMAIN}"

# Distinct, realistic customer codes and names for the local stack.
CUSTOMERS: list[tuple[str, str]] = [
    ("acme", "Acme Corporation"),
    ("globex", "Globex Corporation"),
    ("initech", "Initech"),
    ("umbrella", "Umbrella Corporation"),
    ("hooli", "Hooli"),
    ("stark-industries", "Stark Industries"),
    ("wayne-enterprises", "Wayne Enterprises"),
    ("cyberdyne", "Cyberdyne Systems"),
    ("soylent", "Soylent Corp"),
    ("tyrell", "Tyrell Corporation"),
    ("wonka", "Wonka Industries"),
    ("massive-dynamic", "Massive Dynamic"),
    ("aperture", "Aperture Science"),
    ("oscorp", "Oscorp"),
    ("gringotts", "Gringotts Bank"),
    ("monsters-inc", "Monsters, Inc."),
    ("pied-piper", "Pied Piper"),
    ("vandelay", "Vandelay Industries"),
    ("dunder-mifflin", "Dunder Mifflin"),
    ("prestige-worldwide", "Prestige Worldwide"),
    ("bluth-company", "The Bluth Company"),
    ("los-pollos", "Los Pollos Hermanos"),
    ("nakatomi", "Nakatomi Trading"),
    ("weyland-yutani", "Weyland-Yutani"),
    ("oceanic", "Oceanic Airlines"),
    ("buy-n-large", "Buy n Large"),
    ("virtucon", "Virtucon"),
    ("krusty-krab", "Krusty Krab"),
    ("duff", "Duff Beer"),
    ("sterling-cooper", "Sterling Cooper"),
]
ENVIRONMENTS = ("production", "staging", "production", "development")
FIRST_NAMES = ["alex", "sam", "jordan", "casey", "morgan", "riley", "taylor", "jamie", "drew", "quinn"]
LAST_NAMES = [
    "ng",
    "patel",
    "garcia",
    "smith",
    "kowalski",
    "okafor",
    "lindqvist",
    "tanaka",
    "silva",
    "murphy",
]


def customer_identity(index: int) -> tuple[str, str]:
    """(code, name) of the index-th local customer; beyond the named ones, numbered variants."""
    code, name = CUSTOMERS[index % len(CUSTOMERS)]
    round_ = index // len(CUSTOMERS)
    if round_:
        return f"{code}-{round_ + 1:02d}", f"{name} ({round_ + 1})"
    return code, name


def customer_account(index: int) -> str:
    return f"{210000000000 + index + 1:012d}"


# Contact profiles: (topic preferences, unsubscribe_all). Defaults (topics.DEFAULT_TOPICS): approval
# OPT_OUT, announce OPT_IN, calendar OPT_OUT.
PROFILES: list[tuple[dict[str, str], bool]] = [
    ({TOPIC_APPROVAL: "OPT_IN", TOPIC_ANNOUNCE: "OPT_IN", TOPIC_CALENDAR: "OPT_IN"}, False),
    ({}, False),  # defaults only: announce
    ({TOPIC_APPROVAL: "OPT_IN", TOPIC_ANNOUNCE: "OPT_OUT"}, False),
    ({TOPIC_APPROVAL: "OPT_IN", TOPIC_CALENDAR: "OPT_IN"}, False),
    ({TOPIC_APPROVAL: "OPT_IN", TOPIC_ANNOUNCE: "OPT_IN"}, True),  # unsubscribed from everything
]
TOPIC_DEFAULTS = {t.name: t.default for t in DEFAULT_TOPICS}


def contact_profile(index: int) -> tuple[dict[str, str], bool]:
    if index < len(PROFILES):
        return PROFILES[index]
    return PROFILES[index % 4]  # only one UnsubscribeAll per customer


def contact_address(code: str, index: int) -> str:
    first = FIRST_NAMES[index % len(FIRST_NAMES)]
    last = LAST_NAMES[(index // len(FIRST_NAMES) + index) % len(LAST_NAMES)]
    suffix = "" if index < len(FIRST_NAMES) else str(index)
    return f"{first}.{last}{suffix}@{code}.example.com"


def build_local_config(
    n_customers: int, *, endpoint: str, transport: Transport = "s3-events", worker_shards: int = 1
) -> dict[str, Any]:
    mappings: dict[str, Any] = {}
    for i in range(n_customers):
        code, name = customer_identity(i)
        mappings[code] = {
            "customer_code": code,
            "customer_name": name,
            "environment": ENVIRONMENTS[i % len(ENVIRONMENTS)],
            "region": LOCAL_REGION,
            "ses_role_arn": f"arn:aws:iam::{customer_account(i)}:role/changeconsole-ses-sender",
            "sqs_queue_arn": f"arn:aws:sqs:{LOCAL_REGION}:{LOCAL_ACCOUNT}:changeconsole-{code}",
            "restricted_recipients": [],
        }
    return {
        "aws_region": LOCAL_REGION,
        "s3_config": {"bucket_name": LOCAL_BUCKET},
        "email_config": {
            "sender_address": LOCAL_SENDER,
            "portal_base_url": "https://changes.msp.example.com",
        },
        "customer_mappings": mappings,
        "status_table_name": "changeconsole-status",
        "ledger_table_name": "changeconsole-ledger",
        "transport": transport,
        "worker_shards": worker_shards,
        "contact_list_name": "changeconsole",
        "branding": {"provider_name": "Example MSP", "footer": "Example MSP · 24x7 operations"},
        "local": {"endpoint_url": endpoint},
    }


def is_listening(host: str = LOCAL_HOST, port: int = LOCAL_PORT, timeout: float = 0.5) -> bool:
    """True when a moto server answers on host:port."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/moto-api/", timeout=timeout):
            return True
    except Exception:
        return False


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def atomic_dynamodb(app: Callable[..., Any]) -> Callable[..., Any]:
    """WSGI middleware: one DynamoDB request at a time.

    DynamoDB applies every request atomically (a conditional write checks and writes in one step; a
    read never sees half an update). moto's threaded server does not, so two conditional writes racing
    on one item could both succeed. The delivery ledger's locks rely on that atomicity."""
    lock = threading.Lock()

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if not str(environ.get("HTTP_X_AMZ_TARGET", "")).startswith("DynamoDB_"):
            return app(environ, start_response)
        with lock:
            return list(app(environ, start_response))

    return wrapped


class LocalServer:
    """moto's threaded server in this process, DynamoDB requests made atomic (``atomic_dynamodb``), SES
    sends noted for the local event relay (``event_relay.ses_send_tap``)."""

    def __init__(self, port: int = LOCAL_PORT, host: str = LOCAL_HOST) -> None:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from moto.server import ThreadedMotoServer
        from werkzeug.serving import make_server

        class _Server(ThreadedMotoServer):
            def _server_entry(self) -> None:  # moto's, with the middleware around its app
                app = ses_send_tap(atomic_dynamodb(DomainDispatcherApplication(create_backend_app)))
                self._server = make_server(
                    self._ip_address, self._port, app, True, request_handler=MotoRequestHandler
                )
                self._server_ready_event.set()
                self._server.serve_forever()

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.host, self.port = host, port
        self._server = _Server(ip_address=host, port=port, verbose=False)

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> LocalServer:
        if port_in_use(self.host, self.port):
            raise RuntimeError(f"port {self.port} on {self.host} is already in use")
        self._server.start()
        deadline = time.monotonic() + 15
        while not is_listening(self.host, self.port):
            if time.monotonic() > deadline:
                raise RuntimeError(f"local AWS stack did not start on {self.endpoint}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self._server.stop()


@dataclass
class LocalStackResult:
    config: Config
    config_path: Path
    endpoint: str
    actions: list[Action]
    seconds: float
    contacts: int

    def summary(self) -> str:
        n = len(self.config.customer_mappings)
        return (
            f"local stack ready at {self.endpoint}: {n} customers, {n} queues + {n} DLQs, "
            f"{self.contacts} contacts, bucket {self.config.s3_config.bucket_name} "
            f"(provisioned in {self.seconds:.1f}s)"
        )


def local_factory(endpoint: str, region: str = LOCAL_REGION, **kwargs: Any) -> AwsFactory:
    return AwsFactory(AwsSettings(region=region, endpoint_url=endpoint, local=True, **kwargs))


def provision_customer_account(aws: AwsFactory, config: Config, code: str, n_contacts: int) -> int:
    """The customer's own account: SES identity, contact list with topics, contacts."""
    customer = config.customer(code)
    ses = aws.customer_client(customer, "sesv2")
    sender = config.sender_for(code)
    identities = {i["IdentityName"] for i in ses.list_email_identities().get("EmailIdentities", [])}
    domain = sender.split("@", 1)[1]
    if domain not in identities:
        ses.create_email_identity(EmailIdentity=domain)
    list_name = config.contact_list_for(code)
    lists = {c["ContactListName"] for c in ses.list_contact_lists().get("ContactLists", [])}
    if list_name not in lists:
        ses.create_contact_list(ContactListName=list_name, Topics=[t.to_api() for t in DEFAULT_TOPICS])
    existing = {c["EmailAddress"] for c in ses.list_contacts(ContactListName=list_name).get("Contacts", [])}
    created = 0
    for i in range(n_contacts):
        address = contact_address(code, i)
        if address in existing:
            continue
        prefs, unsubscribe_all = contact_profile(i)
        ses.create_contact(
            ContactListName=list_name,
            EmailAddress=address,
            TopicPreferences=[{"TopicName": t, "SubscriptionStatus": s} for t, s in prefs.items()],
            UnsubscribeAll=unsubscribe_all,
        )
        created += 1
    return created


def provision_local(
    endpoint: str,
    *,
    customers: int = 6,
    contacts: int = 5,
    config_path: Path | None = None,
    threads: int = 16,
    progress: Callable[[str], None] | None = None,
    transport: Transport = "s3-events",
    worker_shards: int = 1,
) -> LocalStackResult:
    """Provision the central account and every customer account; write config.json."""
    started = time.monotonic()
    raw = build_local_config(customers, endpoint=endpoint, transport=transport, worker_shards=worker_shards)
    config = Config.model_validate(raw)
    path = config_path or local_config_path()
    aws = local_factory(endpoint, max_attempts=3)
    actions = provision(aws, config, threads=threads)
    if progress:
        progress(f"central account: {len(actions)} resources checked")
    codes = sorted(config.customer_mappings)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        made = list(pool.map(lambda c: provision_customer_account(aws, config, c, contacts), codes))
    if progress:
        progress(f"customer accounts: {len(codes)} ready")
    write_config(raw, path)
    return LocalStackResult(
        config=config,
        config_path=path,
        endpoint=endpoint,
        actions=actions,
        seconds=time.monotonic() - started,
        contacts=sum(made) if any(made) else contacts * len(codes),
    )


def reset(endpoint: str) -> None:
    """Wipe every resource of the local stack (moto's reset API)."""
    req = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")
    with urllib.request.urlopen(req, timeout=10):
        pass


def moto_data(endpoint: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{endpoint}/moto-api/data.json", timeout=30) as resp:
        return json.loads(resp.read())
