"""Per-customer operational facts for the console: queues, DLQs, contacts per topic, last delivery.

Textual-free; every method blocks on AWS, so screens call them from thread workers.

- Queue depths come from ``get_queue_attributes`` on the customer's queue and DLQ (central account),
  fetched for many customers in parallel with a bounded thread pool.
- Contacts per topic are computed in the customer's own account (assumed SES role): every page of
  ``list_contacts`` is read (no server-side filter is trusted) and SES subscription semantics are
  applied in our code with the topic defaults of ``get_contact_list`` (``services.contacts``, shared
  with the worker).
- The last delivery comes from the status table (``StatusStore.customer_deliveries``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any, TypeVar

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
)

from ..errors import describe
from ..models import ALL_TOPICS, Config, CustomerMapping, DeliveryRecord, OperatorAction
from .authz import Authorizer
from .aws import AwsFactory
from .contacts import Contact, ContactListResolver, is_subscribed, iter_contacts, topic_defaults
from .events import OutcomeStore, Reputation
from .queues import DELAYED, IN_FLIGHT, VISIBLE, QueueUrlCache, is_missing_queue, message_counts
from .status import StatusStore

R = TypeVar("R")
# Contact counts assume each customer's role: fewer at once than the central account's reads.
CONTACT_THREADS = 8

# -- data -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CustomerInfo:
    """What the config says about a customer (no AWS call)."""

    code: str
    name: str
    environment: str
    region: str | None
    account_id: str
    queue_name: str
    dlq_name: str
    restricted: int

    @classmethod
    def of(cls, mapping: CustomerMapping) -> CustomerInfo:
        return cls(
            code=mapping.customer_code,
            name=mapping.customer_name,
            environment=mapping.environment,
            region=mapping.region,
            account_id=mapping.account_id,
            queue_name=mapping.queue_name,
            dlq_name=mapping.dlq_name,
            restricted=len(mapping.restricted_recipients),
        )


@dataclass(frozen=True)
class QueueDepth:
    """Approximate message counts of one queue (``error`` set when they could not be read)."""

    visible: int = 0
    in_flight: int = 0
    delayed: int = 0
    error: str | None = None

    @property
    def total(self) -> int:
        """Messages waiting or being worked on (visible + not visible)."""
        return self.visible + self.in_flight

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class CustomerDepths:
    code: str
    queue: QueueDepth
    dlq: QueueDepth


@dataclass(frozen=True)
class ContactCounts:
    """Contacts of a customer's list, and how many receive each topic."""

    code: str
    list_name: str
    contacts: int = 0
    unsubscribed_all: int = 0
    # Subscribed per topic (SES semantics) and, of those, allowed by restricted_recipients.
    subscribed: dict[str, int] = field(default_factory=dict)
    deliverable: dict[str, int] = field(default_factory=dict)
    defaults: dict[str, str] = field(default_factory=dict)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class CustomerStats:
    """The cheap, central-account facts of one customer: depths and last delivery."""

    code: str
    depths: CustomerDepths
    last_delivery: DeliveryRecord | None
    last_delivery_error: str | None = None
    reputation: Reputation | None = None  # bounce and complaint rates from its SES events


class CustomerService:
    """Operational view of every configured customer."""

    def __init__(
        self, aws: AwsFactory, config: Config, *, threads: int = 16, authz: Authorizer | None = None
    ) -> None:
        self.aws = aws
        self.config = config
        self.authz = authz or Authorizer(aws, config, via="api")
        self.threads = max(1, threads)
        self.status = StatusStore(aws, config)
        self.contact_lists = ContactListResolver(config)
        self._urls = QueueUrlCache()

    # -- config --------------------------------------------------------------------------
    def customers(self) -> list[CustomerInfo]:
        """Every configured customer, sorted by code."""
        mappings = self.config.customer_mappings
        return [CustomerInfo.of(mappings[c]) for c in sorted(mappings)]

    def info(self, code: str) -> CustomerInfo:
        return CustomerInfo.of(self.config.customer(code))

    # -- queues --------------------------------------------------------------------------
    def _sqs(self, region: str) -> Any:
        return self.aws.client("sqs", region)

    def _queue_url(self, name: str, account: str, region: str) -> str:
        return self._urls.lookup(self._sqs(region), name, account)

    def _depth(self, name: str, account: str, region: str) -> QueueDepth:
        try:
            url = self._queue_url(name, account, region)
            counts = message_counts(self._sqs(region), url, (VISIBLE, IN_FLIGHT, DELAYED))
        except (ClientError, BotoCoreError) as exc:
            if is_missing_queue(exc):
                self._urls.forget((name, account))
                return QueueDepth(error=f"queue {name} does not exist")
            return QueueDepth(error=describe(exc))
        return QueueDepth(visible=counts[VISIBLE], in_flight=counts[IN_FLIGHT], delayed=counts[DELAYED])

    def queue_depth(self, code: str) -> QueueDepth:
        m = self.config.customer(code)
        return self._depth(m.queue_name, m.queue_account, m.queue_region)

    def dlq_depth(self, code: str) -> QueueDepth:
        """Messages in the customer's dead-letter queue (visible + in flight)."""
        m = self.config.customer(code)
        account, region = m.queue_account, m.queue_region
        if m.dlq_arn:
            parts = m.dlq_arn.split(":")
            region, account = parts[3], parts[4]
        return self._depth(m.dlq_name, account, region)

    def depths(self, code: str) -> CustomerDepths:
        return CustomerDepths(code, self.queue_depth(code), self.dlq_depth(code))

    # -- deliveries ------------------------------------------------------------------------
    def last_delivery(self, code: str) -> DeliveryRecord | None:
        records = self.status.customer_deliveries(code, 1)
        return records[0] if records else None

    def recent_deliveries(self, code: str, limit: int = 20) -> list[DeliveryRecord]:
        return self.status.customer_deliveries(code, limit)

    def stats(self, code: str) -> CustomerStats:
        depths = self.depths(code)
        try:
            last = self.last_delivery(code)
            reputation = OutcomeStore(self.aws, self.config).reputation(code)
        except (ClientError, BotoCoreError) as exc:
            return CustomerStats(code, depths, None, describe(exc))
        return CustomerStats(code, depths, last, reputation=reputation)

    def all_stats(
        self,
        codes: Iterable[str] | None = None,
        *,
        on_result: Callable[[CustomerStats], None] | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> dict[str, CustomerStats]:
        """Depths and last delivery of many customers in parallel (at most ``threads`` at once).

        ``on_result`` is called (on a pool thread) as each customer completes; ``cancelled`` stops
        scheduling further work when it returns True.
        """
        wanted = list(codes) if codes is not None else sorted(self.config.customer_mappings)
        return self._parallel(wanted, self.stats, self.threads, on_result, cancelled)

    def all_contact_counts(
        self, codes: Iterable[str], *, on_result: Callable[[ContactCounts], None] | None = None
    ) -> dict[str, ContactCounts]:
        """``contact_counts`` of many customers in parallel (each assumes the customer's role, so at most
        ``CONTACT_THREADS`` at once); ``on_result`` as in ``all_stats``."""
        return self._parallel(list(codes), self.contact_counts, CONTACT_THREADS, on_result, None)

    @staticmethod
    def _parallel(
        codes: list[str],
        work: Callable[[str], R],
        threads: int,
        on_result: Callable[[R], None] | None,
        cancelled: Callable[[], bool] | None,
    ) -> dict[str, R]:
        def unless_cancelled(code: str) -> tuple[str, R] | None:
            if cancelled is not None and cancelled():
                return None
            return code, work(code)

        out: dict[str, R] = {}
        if not codes:
            return out
        with ThreadPoolExecutor(max_workers=min(threads, len(codes))) as pool:
            for future in as_completed([pool.submit(unless_cancelled, c) for c in codes]):
                done = future.result()
                if done is None:
                    continue
                out[done[0]] = done[1]
                if on_result is not None:
                    on_result(done[1])
        return out

    # -- contacts (customer account) -----------------------------------------------------------
    def list_all_contacts(self, code: str) -> list[Contact]:
        """Every contact of the customer's list, every page (no server-side filter is trusted).

        A server that ignores paging may repeat contacts across pages: each address counts once.
        """
        m = self.config.customer(code)
        ses = self.aws.customer_client(m, "sesv2")
        unique: dict[str, Contact] = {}
        for contact in iter_contacts(ses, self.contact_lists.name(ses, code)):
            unique.setdefault(contact.email.casefold(), contact)
        return list(unique.values())

    def contact_counts(self, code: str, topics: Iterable[str] = ALL_TOPICS) -> ContactCounts:
        """How many contacts receive each topic, computed with SES semantics in our code
        (``services.contacts``), and how many of those the customer's whitelist allows. Without
        ``contacts.read`` on the customer the counts say so (a read: nothing is audited)."""
        list_name = self.config.contact_list_for(code)
        decision = self.authz.decide(OperatorAction.CONTACTS_READ, [code])
        if not decision.allowed:
            return ContactCounts(code, list_name, error=f"not allowed: {decision.reason}")
        try:
            m = self.config.customer(code)
            ses = self.aws.customer_client(m, "sesv2")
            list_name = self.contact_lists.name(ses, code)
            defaults = topic_defaults(ses, list_name)
            contacts = self.list_all_contacts(code)
        except (ClientError, BotoCoreError) as exc:
            return ContactCounts(code, list_name, error=describe(exc))
        topic_list = list(topics)
        subscribed = dict.fromkeys(topic_list, 0)
        deliverable = dict.fromkeys(topic_list, 0)
        for contact in contacts:
            allowed = m.allows_recipient(contact.email)
            for topic in topic_list:
                if is_subscribed(contact, topic, defaults):
                    subscribed[topic] += 1
                    if allowed:
                        deliverable[topic] += 1
        return ContactCounts(
            code,
            list_name,
            contacts=len(contacts),
            unsubscribed_all=sum(1 for c in contacts if c.unsubscribe_all),
            subscribed=subscribed,
            deliverable=deliverable,
            defaults=defaults,
        )
