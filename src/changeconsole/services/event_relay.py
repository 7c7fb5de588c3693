"""LOCAL STACK ONLY: stands in for SES's event publishing, which moto does not have.

``ses_send_tap`` wraps the local stack's WSGI app (``localstack.LocalServer``) and notes every SES v2
``SendEmail`` it accepts: sending account, message id, destination, configuration set and email
tags. ``LocalEventRelay`` turns each noted send that names a configuration set into the events real
SES would publish, in the shape AWS documents, to the central events topic (SNS → the events queue,
as ``provision`` wires it):

- every accepted message: ``Send``, then ``Delivery``;
- the SES mailbox simulator addresses (``…@simulator.amazonses.com``): ``bounce`` → a permanent
  ``Bounce``; ``complaint`` → ``Delivery`` and ``Complaint``; ``suppressionlist`` → a permanent
  ``Bounce`` (``OnAccountSuppressionList``); ``ooto`` → ``Delivery`` (the auto-reply is no event);
  ``success`` → ``Delivery``.

It sees only sends to a stack running in this process (``local up``, the console with ``--local``,
the test suite); it never runs against AWS.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..models import Config, iso_utc, utcnow
from .aws import AwsFactory

log = logging.getLogger(__name__)

SEND_PATH = "/v2/email/outbound-emails"
SIMULATOR_DOMAIN = "simulator.amazonses.com"


@dataclass(frozen=True)
class NotedSend:
    account: str
    message_id: str
    source: str
    destination: tuple[str, ...]
    configuration_set: str | None
    tags: dict[str, str]
    at: str


@dataclass
class SendTap:
    """Sends the local stack accepted, while at least one relay listens (bounded)."""

    sends: deque[NotedSend] = field(default_factory=lambda: deque(maxlen=100_000))
    listeners: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, send: NotedSend) -> None:
        with self.lock:
            if self.listeners:
                self.sends.append(send)

    def take(self) -> list[NotedSend]:
        with self.lock:
            out = list(self.sends)
            self.sends.clear()
        return out


TAP = SendTap()  # the one tap of this process (the local stack's middleware writes here)


def ses_send_tap(app: Callable[..., Any], tap: SendTap = TAP) -> Callable[..., Any]:
    """WSGI middleware: note every SES v2 ``SendEmail`` the stack accepted (``NotedSend``)."""

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("REQUEST_METHOD") != "POST" or environ.get("PATH_INFO") != SEND_PATH:
            return app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        status: list[str] = []

        def capture(code: str, headers: Any, exc_info: Any = None) -> Any:
            status.append(code)
            return start_response(code, headers, exc_info) if exc_info else start_response(code, headers)

        chunks = list(app(environ, capture))
        if status and status[0].startswith("200"):
            try:
                _note(tap, environ, body, b"".join(chunks))
            except Exception:  # the send itself stands; only its events are missing
                log.exception("local event relay: could not note a send")
        return chunks

    return wrapped


def _note(tap: SendTap, environ: dict[str, Any], body: bytes, response: bytes) -> None:
    from moto.core.responses import BaseResponse
    from moto.iam.models import get_account_id_from

    match = BaseResponse.access_key_regex.search(str(environ.get("HTTP_AUTHORIZATION", "")))
    account = get_account_id_from(match.group("access_key")) if match else ""
    request = json.loads(body or b"{}")
    destination = request.get("Destination") or {}
    to = [*destination.get("ToAddresses", []), *destination.get("CcAddresses", [])]
    to += destination.get("BccAddresses", [])
    tap.note(
        NotedSend(
            account=account,
            message_id=str(json.loads(response).get("MessageId", "")),
            source=str(request.get("FromEmailAddress", "")),
            destination=tuple(to),
            configuration_set=request.get("ConfigurationSetName"),
            tags={t["Name"]: t["Value"] for t in request.get("EmailTags") or []},
            at=iso_utc(utcnow()),
        )
    )


def _simulator_box(address: str) -> str | None:
    """``bounce`` for ``bounce@simulator.amazonses.com`` (any ``+label``); None for other addresses."""
    local, _, domain = address.strip().casefold().rpartition("@")
    return local.partition("+")[0] if domain == SIMULATOR_DOMAIN else None


def ses_events(send: NotedSend, region: str) -> list[dict[str, Any]]:
    """The events real SES publishes for ``send`` (one per event, AWS's documented shape)."""
    domain = send.source.rpartition("@")[2]
    mail = {
        "timestamp": send.at,
        "source": send.source,
        "sourceArn": f"arn:aws:ses:{region}:{send.account}:identity/{domain}",
        "sendingAccountId": send.account,
        "messageId": send.message_id,
        "destination": list(send.destination),
        "headersTruncated": False,
        "tags": {
            "ses:configuration-set": [send.configuration_set or ""],
            "ses:from-domain": [domain],
            **{name: [value] for name, value in send.tags.items()},
        },
    }
    now = iso_utc(utcnow())
    out: list[dict[str, Any]] = [{"eventType": "Send", "mail": mail, "send": {}}]
    simulated = {_simulator_box(a) for a in send.destination} - {None}
    delivered = [a for a in send.destination if _simulator_box(a) not in ("bounce", "suppressionlist")]
    if delivered:
        out.append(
            {
                "eventType": "Delivery",
                "mail": mail,
                "delivery": {
                    "timestamp": now,
                    "processingTimeMillis": 1,
                    "recipients": delivered,
                    "smtpResponse": "250 2.6.0 Message received",
                    "reportingMTA": "local-event-relay",
                },
            }
        )
    for kind, sub in (("bounce", "General"), ("suppressionlist", "OnAccountSuppressionList")):
        if kind in simulated:
            out.append(
                {
                    "eventType": "Bounce",
                    "mail": mail,
                    "bounce": {
                        "bounceType": "Permanent",
                        "bounceSubType": sub,
                        "bouncedRecipients": [
                            {
                                "emailAddress": f"{kind}@{SIMULATOR_DOMAIN}",
                                "action": "failed",
                                "status": "5.1.1",
                                "diagnosticCode": "smtp; 550 5.1.1 user unknown",
                            }
                        ],
                        "timestamp": now,
                        "feedbackId": uuid.uuid4().hex,
                        "reportingMTA": "local-event-relay",
                    },
                }
            )
    if "complaint" in simulated:
        out.append(
            {
                "eventType": "Complaint",
                "mail": mail,
                "complaint": {
                    "complainedRecipients": [{"emailAddress": f"complaint@{SIMULATOR_DOMAIN}"}],
                    "timestamp": now,
                    "feedbackId": uuid.uuid4().hex,
                    "complaintFeedbackType": "abuse",
                    "userAgent": "local-event-relay",
                },
            }
        )
    return out


class LocalEventRelay:
    """Publishes the events of noted sends to the central events topic, every ``interval`` seconds."""

    def __init__(self, aws: AwsFactory, config: Config, *, tap: SendTap = TAP, interval: float = 0.1) -> None:
        self.aws = aws
        self.config = config
        self.tap = tap
        self.interval = interval
        self.published = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._topic_arn: str | None = None
        self._pending: list[dict[str, Any]] = []

    def start(self) -> LocalEventRelay:
        with self.tap.lock:
            self.tap.listeners += 1
        self._thread = threading.Thread(target=self._run, name="cc-local-event-relay", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        with self.tap.lock:
            self.tap.listeners = max(0, self.tap.listeners - 1)

    def __enter__(self) -> LocalEventRelay:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.relay_now()
        self.relay_now()

    def relay_now(self) -> int:
        """Publish what is noted so far (and what failed before: kept until published); how many events."""
        for send in self.tap.take():
            if send.configuration_set == self.config.events.configuration_set:
                # SES publishes events only through the configuration set's destination
                self._pending.extend(ses_events(send, self.config.aws_region))
        n = 0
        while self._pending:
            try:
                self._publish(self._pending[0])
            except Exception as exc:  # the stack is busy: the rest goes out next round, in order
                log.warning("local event relay: publish failed (%s); retrying", type(exc).__name__)
                break
            self._pending.pop(0)
            n += 1
        self.published += n
        return n

    def _publish(self, ses_event: dict[str, Any]) -> None:
        sns = self.aws.client("sns")
        if self._topic_arn is None:
            self._topic_arn = str(sns.create_topic(Name=self.config.events.topic_name)["TopicArn"])
        sns.publish(TopicArn=self._topic_arn, Message=json.dumps(ses_event))
