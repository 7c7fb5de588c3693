"""Who receives a topic: SES subscription semantics computed by us, every page, whitelist."""

from __future__ import annotations

from typing import Any

import pytest

from changeconsole.models import ALL_TOPICS, Config, CustomerMapping
from changeconsole.services.aws import AwsFactory
from changeconsole.services.contacts import (
    Contact,
    ContactListResolver,
    TopicDefaultsCache,
    audience,
    choose_contact_list,
    is_subscribed,
    iter_contacts,
    subscribed_audience,
)
from changeconsole.services.topics import DEFAULT_TOPICS
from support.mail import subscribed

T = "aws-announce"


@pytest.mark.parametrize(
    ("unsubscribe_all", "prefs", "defaults", "expected"),
    [
        (True, {T: "OPT_IN"}, {T: "OPT_IN"}, False),  # UnsubscribeAll beats everything
        (True, {}, {T: "OPT_IN"}, False),
        (False, {T: "OPT_OUT"}, {T: "OPT_IN"}, False),  # explicit preference wins over the default
        (False, {T: "OPT_IN"}, {T: "OPT_OUT"}, True),
        (False, {}, {T: "OPT_IN"}, True),  # no preference: the topic default
        (False, {}, {T: "OPT_OUT"}, False),
        (False, {"aws-approval": "OPT_IN"}, {T: "OPT_OUT"}, False),  # another topic's preference
        (False, {}, {}, False),  # topic unknown to the list: fail closed
    ],
)
def test_subscription_semantics(
    unsubscribe_all: bool, prefs: dict[str, str], defaults: dict[str, str], expected: bool
) -> None:
    contact = Contact("a@example.com", unsubscribe_all=unsubscribe_all, preferences=prefs)
    assert is_subscribed(contact, T, defaults) is expected


class FakeSes:
    """Pages of contacts; records every call so we can check the arguments."""

    def __init__(self, pages: list[list[dict[str, Any]]], defaults: dict[str, str]) -> None:
        self.pages = pages
        self.defaults = defaults
        self.calls: list[dict[str, Any]] = []

    def list_contacts(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        index = int(kwargs.get("NextToken", "0"))
        resp: dict[str, Any] = {"Contacts": self.pages[index]}
        if index + 1 < len(self.pages):
            resp["NextToken"] = str(index + 1)
        return resp

    def get_contact_list(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        return {
            "ContactListName": kwargs["ContactListName"],
            "Topics": [
                {"TopicName": t, "DefaultSubscriptionStatus": s, "DisplayName": t}
                for t, s in self.defaults.items()
            ],
        }


def _c(email: str, prefs: dict[str, str] | None = None, unsub: bool = False) -> dict[str, Any]:
    return {
        "EmailAddress": email,
        "UnsubscribeAll": unsub,
        "TopicPreferences": [{"TopicName": t, "SubscriptionStatus": s} for t, s in (prefs or {}).items()],
    }


def _mapping(whitelist: list[str] | None = None) -> CustomerMapping:
    return CustomerMapping(
        customer_code="acme",
        customer_name="Acme",
        ses_role_arn="arn:aws:iam::210000000001:role/x",
        sqs_queue_arn="arn:aws:sqs:us-east-1:123456789012:changeconsole-acme",
        restricted_recipients=whitelist or [],
    )


def test_every_page_is_read_and_no_server_side_filter_is_used() -> None:
    pages = [[_c(f"p{p}-{i}@acme.example.com") for i in range(3)] for p in range(4)]
    ses = FakeSes(pages, {T: "OPT_IN"})
    got = [c.email for c in iter_contacts(ses, "changeconsole")]
    assert got == [c["EmailAddress"] for page in pages for c in page]
    listing = [c for c in ses.calls if "PageSize" in c]
    assert [c.get("NextToken") for c in listing] == [None, "1", "2", "3"]
    assert all("Filter" not in c for c in ses.calls)
    aud = subscribed_audience(ses, _mapping(), "changeconsole", [T])
    assert len(aud.recipients) == 12 and aud.total_contacts == 12


def test_whitelist_is_case_insensitive_fail_closed_and_adds_nobody() -> None:
    contacts = [
        Contact("Alice@Acme.example.com"),
        Contact("bob@acme.example.com"),
        Contact("carol@acme.example.com", preferences={T: "OPT_OUT"}),
    ]
    defaults = {T: "OPT_IN"}
    open_list = audience(contacts, defaults, [T], _mapping())
    assert open_list.addresses() == ["Alice@Acme.example.com", "bob@acme.example.com"]
    wl = _mapping(["alice@acme.example.com", "carol@acme.example.com", "dave@elsewhere.example.com"])
    restricted = audience(contacts, defaults, [T], wl)
    # carol is whitelisted but opted out; dave is whitelisted but not a contact.
    assert restricted.addresses() == ["Alice@Acme.example.com"]
    assert restricted.excluded_by_whitelist == 1
    nobody = audience(contacts, defaults, [T], _mapping(["zed@elsewhere.example.com"]))
    assert nobody.addresses() == []


def test_duplicate_addresses_count_once_and_topics_are_tracked() -> None:
    contacts = [
        Contact("a@x.example.com", preferences={T: "OPT_IN"}),
        Contact("A@X.example.com", preferences={"aws-calendar": "OPT_IN"}),
        Contact("b@x.example.com", preferences={"aws-calendar": "OPT_IN"}),
    ]
    aud = audience(contacts, {T: "OPT_OUT", "aws-calendar": "OPT_OUT"}, [T, "aws-calendar"], _mapping())
    assert aud.addresses() == ["a@x.example.com", "b@x.example.com"]
    assert aud.recipients["a@x.example.com"] == {T, "aws-calendar"}
    assert aud.has_topic("b@x.example.com", "aws-calendar") and not aud.has_topic("b@x.example.com", T)


def test_topic_defaults_are_cached_briefly() -> None:
    ses = FakeSes([[]], {T: "OPT_IN"})
    cache = TopicDefaultsCache(ttl=60)
    assert cache.get(ses, "acme", "l") == {T: "OPT_IN"}
    assert cache.get(ses, "acme", "l") == {T: "OPT_IN"}
    assert len([c for c in ses.calls if "PageSize" not in c]) == 1
    expired = TopicDefaultsCache(ttl=0)
    expired.get(ses, "acme", "l")
    expired.get(ses, "acme", "l")
    assert len([c for c in ses.calls if "PageSize" not in c]) == 3


def test_the_local_stack_contact_lists_give_the_expected_audiences(
    make_stack: Any, aws_factory: AwsFactory
) -> None:
    stack = make_stack(customers=2, contacts=9)
    config: Config = stack.config
    for code in sorted(config.customer_mappings):
        mapping = config.customer(code)
        ses = aws_factory.customer_client(mapping, "sesv2")
        for topic in ALL_TOPICS:
            aud = subscribed_audience(ses, mapping, config.contact_list_for(code), [topic])
            assert set(aud.addresses()) == subscribed(code, 9, topic), (code, topic)


def test_the_list_is_found_with_one_call_when_the_default_exists_and_by_listing_when_not(
    make_stack: Any, aws_factory: AwsFactory
) -> None:
    """Choice as ``choose_contact_list`` (configured > the account's only list > the default): one
    ``GetContactList`` of the default answers it when the default exists (and primes the topic
    defaults); otherwise the account's lists are listed."""
    config: Config = make_stack(customers=2, contacts=1).config
    code, other = sorted(config.customer_mappings)
    calls: list[str] = []
    ses = aws_factory.customer_client(config.customer(code), "sesv2")
    ses.meta.events.register("after-call", lambda model, **_: calls.append(model.name))
    defaults = TopicDefaultsCache()
    assert ContactListResolver(config).name(ses, code, defaults) == config.contact_list_name
    assert calls == ["GetContactList"]
    assert defaults.get(ses, code, config.contact_list_name) == {t.name: t.default for t in DEFAULT_TOPICS}
    assert calls == ["GetContactList"]  # primed: no second read

    # The other account's only list has another name: the default is missing, so its lists are listed.
    other_ses = aws_factory.customer_client(config.customer(other), "sesv2")
    other_ses.delete_contact_list(ContactListName=config.contact_list_name)
    other_ses.create_contact_list(ContactListName="their-list")
    other_calls: list[str] = []
    other_ses.meta.events.register("after-call", lambda model, **_: other_calls.append(model.name))
    assert ContactListResolver(config).name(other_ses, other, TopicDefaultsCache()) == "their-list"
    assert other_calls == ["GetContactList", "ListContactLists"]
    assert choose_contact_list(other_ses, config, other).name == "their-list"
