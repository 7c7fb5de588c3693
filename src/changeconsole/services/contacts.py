"""A customer's SES contacts and who receives a topic, with SES subscription semantics computed here.

A contact receives a topic when it has not ``UnsubscribeAll`` and its own preference for the topic is
``OPT_IN``, or it has no preference and the topic's ``DefaultSubscriptionStatus`` is ``OPT_IN``.
We read every page and never pass a server-side filter. A configured ``restricted_recipients``
whitelist (case-insensitive) then keeps only listed addresses (fail-closed).

Which list: the customer's configured ``contact_list_name``; without one, the list the account
already has when it has exactly one (SES allows one per account; the running system used it), else
the config's default ``contact_list_name`` (``choose_contact_list``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from ..errors import error_code
from ..models import Config, CustomerMapping

OPT_IN = "OPT_IN"
OPT_OUT = "OPT_OUT"


@dataclass(frozen=True)
class Contact:
    email: str
    unsubscribe_all: bool = False
    preferences: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Contact:
        prefs = {
            str(p["TopicName"]): str(p["SubscriptionStatus"])
            for p in data.get("TopicPreferences") or []
            if p.get("TopicName") and p.get("SubscriptionStatus")
        }
        return cls(
            email=str(data["EmailAddress"]).strip(),
            unsubscribe_all=bool(data.get("UnsubscribeAll", False)),
            preferences=prefs,
        )


def is_subscribed(contact: Contact, topic: str, defaults: dict[str, str]) -> bool:
    """SES semantics: UnsubscribeAll never; an explicit preference wins; else the topic default.

    A topic missing from the list's defaults counts as OPT_OUT.
    """
    if contact.unsubscribe_all:
        return False
    explicit = contact.preferences.get(topic)
    if explicit is not None:
        return explicit == OPT_IN
    return defaults.get(topic, OPT_OUT) == OPT_IN


def iter_contacts(ses: Any, list_name: str, *, page_size: int = 1000) -> Iterator[Contact]:
    """Every contact of the list, following NextToken (no Filter: we decide who is subscribed)."""
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"ContactListName": list_name, "PageSize": page_size}
        if token:
            kwargs["NextToken"] = token
        page = ses.list_contacts(**kwargs)
        for item in page.get("Contacts") or []:
            if item.get("EmailAddress"):
                yield Contact.from_api(item)
        token = page.get("NextToken")
        if not token:
            return


def topic_defaults(ses: Any, list_name: str) -> dict[str, str]:
    resp = ses.get_contact_list(ContactListName=list_name)
    return {
        str(t["TopicName"]): str(t.get("DefaultSubscriptionStatus", OPT_OUT))
        for t in resp.get("Topics") or []
        if t.get("TopicName")
    }


def whitelist_filter(mapping: CustomerMapping, addresses: Iterable[str]) -> list[str]:
    """Keep only whitelisted addresses when the customer has a whitelist (case-insensitive)."""
    if not mapping.restricted_recipients:
        return list(addresses)
    allowed = {str(a).casefold() for a in mapping.restricted_recipients}
    return [a for a in addresses if a.casefold() in allowed]


@dataclass
class Audience:
    """Who receives one email: address → the topics that qualified it (first spelling kept)."""

    recipients: dict[str, set[str]]
    total_contacts: int
    excluded_by_whitelist: int

    def addresses(self) -> list[str]:
        return sorted(self.recipients, key=str.casefold)

    def has_topic(self, address: str, topic: str) -> bool:
        return topic in self.recipients.get(address, set())


def audience(
    contacts: Iterable[Contact], defaults: dict[str, str], topics: Iterable[str], mapping: CustomerMapping
) -> Audience:
    """Recipients subscribed to any of ``topics`` (deduplicated case-insensitively), whitelist applied."""
    topics = list(topics)
    by_key: dict[str, tuple[str, set[str]]] = {}
    total = 0
    for contact in contacts:
        total += 1
        matched = {t for t in topics if is_subscribed(contact, t, defaults)}
        if not matched:
            continue
        key = contact.email.casefold()
        if key in by_key:
            by_key[key][1].update(matched)
        else:
            by_key[key] = (contact.email, matched)
    subscribed = {email: matched for email, matched in by_key.values()}
    kept = set(whitelist_filter(mapping, subscribed))
    return Audience(
        recipients={e: t for e, t in subscribed.items() if e in kept},
        total_contacts=total,
        excluded_by_whitelist=len(subscribed) - len(kept),
    )


def contact_list_names(ses: Any) -> list[str]:
    """Every contact list of the account (every page)."""
    names: list[str] = []
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"PageSize": 100}
        if token:
            kwargs["NextToken"] = token
        page = ses.list_contact_lists(**kwargs)
        names.extend(
            str(c["ContactListName"]) for c in page.get("ContactLists") or [] if c.get("ContactListName")
        )
        token = page.get("NextToken")
        if not token:
            return sorted(set(names))


@dataclass(frozen=True)
class ContactListChoice:
    """The list a customer's notices go to, and why that one."""

    name: str
    reason: str
    exists: bool
    account_lists: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "reason": self.reason,
            "exists": self.exists,
            "account_lists": list(self.account_lists),
        }


def choose_contact_list(ses: Any, config: Config, code: str) -> ContactListChoice:
    """Configured for the customer > the account's only list > the config's default name."""
    mapping = config.customer(code)
    lists = tuple(contact_list_names(ses))
    if mapping.contact_list_name:
        name = mapping.contact_list_name
        return ContactListChoice(
            name, "configured for the customer (contact_list_name)", name in lists, lists
        )
    if len(lists) == 1:
        return ContactListChoice(lists[0], "the account's only contact list", True, lists)
    default = config.contact_list_name
    if not lists:
        why = "the config's default (contact_list_name); the account has no contact list yet"
    else:
        why = f"the config's default (contact_list_name); the account has {len(lists)} lists"
    return ContactListChoice(default, why, default in lists, lists)


class ContactListResolver:
    """``choose_contact_list`` per customer, remembered for a while (a list is rarely replaced).

    A customer with a configured ``contact_list_name`` costs no call at all.
    """

    def __init__(self, config: Config, ttl: float = 300.0) -> None:
        self.config = config
        self.ttl = ttl
        self._lock = threading.Lock()
        self._data: dict[str, tuple[float, str]] = {}

    def name(self, ses: Any, code: str, defaults: TopicDefaultsCache | None = None) -> str:
        """The list's name. Without a configured one, ``GetContactList`` of the config's default is
        asked first: when it exists it is the choice whatever else the account has (the only list,
        or the default among several), and its answer primes ``defaults`` (one call instead of
        ``ListContactLists`` then ``GetContactList``). Only when it is missing are the lists listed."""
        configured = self.config.customer(code).contact_list_name
        if configured:
            return configured
        now = time.monotonic()
        with self._lock:
            hit = self._data.get(code)
            if hit and now - hit[0] < self.ttl:
                return hit[1]
        default = self.config.contact_list_name
        try:
            found = topic_defaults(ses, default)
        except ClientError as exc:
            if error_code(exc) != "NotFoundException":
                raise
            name = choose_contact_list(ses, self.config, code).name
        else:
            name = default
            if defaults is not None:
                defaults.put(code, name, found)
        with self._lock:
            self._data[code] = (now, name)
        return name

    def forget(self, code: str) -> None:
        with self._lock:
            self._data.pop(code, None)


class TopicDefaultsCache:
    """Topic defaults per (customer, list) for a short time: they change rarely, contacts are always fresh."""

    def __init__(self, ttl: float = 60.0) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._data: dict[tuple[str, str], tuple[float, dict[str, str]]] = {}

    def get(self, ses: Any, customer: str, list_name: str) -> dict[str, str]:
        key = (customer, list_name)
        now = time.monotonic()
        with self._lock:
            hit = self._data.get(key)
            if hit and now - hit[0] < self.ttl:
                return hit[1]
        defaults = topic_defaults(ses, list_name)
        self.put(customer, list_name, defaults)
        return defaults

    def put(self, customer: str, list_name: str, defaults: dict[str, str]) -> None:
        """Remember ``defaults`` read elsewhere (``ContactListResolver.name``) from now on."""
        with self._lock:
            self._data[(customer, list_name)] = (time.monotonic(), defaults)


def subscribed_audience(
    ses: Any,
    mapping: CustomerMapping,
    list_name: str,
    topics: Iterable[str],
    *,
    defaults_cache: TopicDefaultsCache | None = None,
) -> Audience:
    """Read the customer's contact list (every page) and compute who receives ``topics``."""
    if defaults_cache is not None:
        defaults = defaults_cache.get(ses, mapping.customer_code, list_name)
    else:
        defaults = topic_defaults(ses, list_name)
    return audience(iter_contacts(ses, list_name), defaults, topics, mapping)
