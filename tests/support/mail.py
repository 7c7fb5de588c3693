"""Who should receive what (the oracle, from the local stack's contact profiles, not our code), and
what moto's outbox holds."""

from __future__ import annotations

import urllib.error
from collections import Counter

from changeconsole.models import TOPIC_ANNOUNCE, TOPIC_APPROVAL, EmailEvent
from changeconsole.services.localstack import TOPIC_DEFAULTS, contact_address, contact_profile
from changeconsole.services.outbox import OutboxEmail, read_outbox

from .waiting import wait_until

TOPIC_OF = {EmailEvent.SUBMITTED: TOPIC_APPROVAL, EmailEvent.APPROVED: TOPIC_ANNOUNCE}


def subscribed(code: str, n_contacts: int, topic: str) -> set[str]:
    """The (lower-cased) addresses of ``code``'s first ``n_contacts`` contacts that receive ``topic``."""
    out = set()
    for i in range(n_contacts):
        prefs, unsubscribe_all = contact_profile(i)
        if not unsubscribe_all and prefs.get(topic, TOPIC_DEFAULTS[topic]) == "OPT_IN":
            out.add(contact_address(code, i).lower())
    return out


def outbox(endpoint: str, change_id: str | None = None) -> list[OutboxEmail]:
    """Every email moto's SES accepted (of one change, when given)."""
    read: list[list[OutboxEmail]] = []

    def attempt() -> bool:
        # moto's data API can answer 500 while other requests change its models: read again.
        try:
            read.append(read_outbox(endpoint, change_id=change_id))
        except (urllib.error.HTTPError, RuntimeError):
            return False
        return True

    wait_until(attempt, 10, what="a readable moto outbox")
    return read[-1]


def per_recipient(mails: list[OutboxEmail]) -> Counter[tuple[str, str, int | None, str | None, str | None]]:
    """(recipient, change, version, event, customer) → number of emails."""
    counts: Counter[tuple[str, str, int | None, str | None, str | None]] = Counter()
    for m in mails:
        for to in m.to:
            counts[(to.lower(), m.change_id or "", m.version, m.event, m.customer)] += 1
    return counts


EmailKey = tuple[str | None, int | None, str | None, str | None, str]


def email_keys(mails: list[OutboxEmail]) -> Counter[EmailKey]:
    """(change, version, event, customer, recipient) → emails, from the X-Changeconsole-* headers."""
    counts: Counter[EmailKey] = Counter()
    for m in mails:
        for to in m.to:
            counts[(m.change_id, m.version, m.event, m.customer, to.lower())] += 1
    return counts
