"""What one customer receives for one event of one change version: topics, recipients, the email.

``prepare_notice`` is the one place that decides it, called by the worker before it sends and by the
preview (``services/preview.py``) before an operator sends anything: so what is previewed is what is
sent. It picks the topics (and the calendar part) of the event, reads the customer's contact list
through its own SES account and computes who is subscribed (``restricted_recipients`` applied), and
renders the bodies once; ``Notice.addressed`` builds the MIME message of one recipient.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from ..models import (
    TOPIC_ANNOUNCE,
    TOPIC_APPROVAL,
    TOPIC_CALENDAR,
    Change,
    ChangeStatus,
    Config,
    CustomerMapping,
    EmailEvent,
    topic_for,
)
from . import emails
from .contacts import Audience, ContactListResolver, TopicDefaultsCache, subscribed_audience


@dataclass(frozen=True)
class Told:
    """What the customer was sent of this change before (the ledger's lane): topics and invite."""

    topics: frozenset[str] = frozenset()
    invite_version: int | None = None


@dataclass(frozen=True)
class NoticePlan:
    """The topics whose subscribers receive the email (the first is its own) and the calendar method."""

    event: EmailEvent
    topics: tuple[str, ...]
    ics_method: str | None

    @property
    def topic(self) -> str:
        return self.topics[0]


def plan_notice(change: Change, event: EmailEvent, told: Told) -> NoticePlan:
    """Which topics and which calendar part an ``event`` of ``change`` goes with."""
    scheduled = change.start_dt is not None and change.end_dt is not None
    if event is EmailEvent.REMOVED:
        # Those who were told: the topics of the notices sent; calendars that got an invite.
        earlier = [t for t in (TOPIC_ANNOUNCE, TOPIC_APPROVAL) if t in told.topics]
        topics = earlier or [topic_for(EmailEvent.CANCELLED, ever_approved=change.ever_approved)]
        if scheduled and told.invite_version:
            return NoticePlan(event, (*topics, TOPIC_CALENDAR), emails.ICS_CANCEL)
        return NoticePlan(event, tuple(topics), None)
    primary = topic_for(event, ever_approved=change.ever_approved)
    if event is EmailEvent.APPROVED and change.include_meeting and scheduled:
        return NoticePlan(event, (primary, TOPIC_CALENDAR), emails.ICS_REQUEST)
    if (
        event is EmailEvent.SUBMITTED
        and change.prior_status is ChangeStatus.APPROVED
        and scheduled
        and told.invite_version
    ):
        # An approved change edited back to submitted: the invite its approval sent is void.
        return NoticePlan(event, (primary, TOPIC_CALENDAR), emails.ICS_CANCEL)
    if (
        event is EmailEvent.CANCELLED
        and change.ever_approved
        and scheduled
        and (change.include_meeting or told.invite_version)
    ):
        return NoticePlan(event, (primary, TOPIC_CALENDAR), emails.ICS_CANCEL)
    return NoticePlan(event, (primary,), None)


@dataclass(frozen=True)
class Addressed:
    """The email of one recipient: the message, the topic it goes under, the calendar part if any."""

    message: EmailMessage
    topic: str
    ics: bytes | None


@dataclass(frozen=True)
class Notice:
    """One event's email for one customer, rendered once; ``addressed`` makes a recipient's copy."""

    change: Change
    mapping: CustomerMapping
    config: Config
    plan: NoticePlan
    plain: emails.Bodies
    with_ics: emails.Bodies  # the bodies that mention the calendar part (``plain`` when none)

    @property
    def sender(self) -> str:
        return self.config.sender_for(self.mapping.customer_code)

    @property
    def link(self) -> str | None:
        return emails.change_link(self.config, self.change.change_id)

    def addressed(self, address: str, topics: Collection[str]) -> Addressed:
        """The message for ``address``, subscribed to ``topics`` (an audience's entry)."""
        plan = self.plan
        topic = next(t for t in plan.topics if t in topics)
        ics = None
        if plan.ics_method is not None and TOPIC_CALENDAR in topics:
            ics = emails.calendar_invite(
                self.change, method=plan.ics_method, organizer=self.sender, attendee=address, link=self.link
            )
        message = emails.build_message(
            self.with_ics if ics else self.plain,
            self.change,
            plan.event,
            self.mapping,
            self.config,
            recipient=address,
            topic=topic,
            ics=ics,
            ics_method=plan.ics_method,
        )
        return Addressed(message, topic, ics)

    def send_kwargs(
        self,
        addressed: Addressed,
        address: str,
        list_name: str,
        *,
        configuration_set: str | None = None,
        tags: list[dict[str, str]] | None = None,
    ) -> dict[str, Any]:
        """``SendEmail`` arguments (with the configuration set and email tags its SES events carry)."""
        return emails.send_kwargs(
            addressed.message,
            sender=self.sender,
            recipient=address,
            list_name=list_name,
            topic=addressed.topic,
            configuration_set=configuration_set,
            tags=tags,
        )


def render_notice(change: Change, plan: NoticePlan, mapping: CustomerMapping, config: Config) -> Notice:
    plain = emails.render_bodies(change, plan.event, mapping, config)
    with_ics = (
        emails.render_bodies(change, plan.event, mapping, config, invite=plan.ics_method)
        if plan.ics_method
        else plain
    )
    return Notice(change, mapping, config, plan, plain, with_ics)


@dataclass(frozen=True)
class PreparedNotice:
    """Everything decided before the first send: the list, the plan, who receives it, the email."""

    list_name: str
    plan: NoticePlan
    audience: Audience
    notice: Notice


def prepare_notice(
    ses: Any,
    config: Config,
    change: Change,
    event: EmailEvent,
    customer: str,
    told: Told,
    *,
    contact_lists: ContactListResolver,
    defaults_cache: TopicDefaultsCache | None = None,
) -> PreparedNotice:
    """The notice ``customer`` receives for ``event`` of ``change`` (the worker and the preview).

    ``ses``: a SES v2 client in the customer's own account (its contact list is read, every page)."""
    mapping = config.customer(customer)
    plan = plan_notice(change, event, told)
    list_name = contact_lists.name(ses, customer, defaults_cache)
    audience = subscribed_audience(ses, mapping, list_name, plan.topics, defaults_cache=defaults_cache)
    return PreparedNotice(list_name, plan, audience, render_notice(change, plan, mapping, config))
