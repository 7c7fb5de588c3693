"""The worker's SES event stage: reads the central events queue (``services.events.EventRecorder``)
and runs the reconciler of ``unknown`` recipients (``services.events.Reconciler``), in one thread."""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from ..models import Config, direct_message
from ..services.audit import AuditLog
from ..services.aws import AwsFactory
from ..services.doorbell import Doorbell
from ..services.events import EventRecorder, Outcome, OutcomeStore, Reconciler
from ..services.ledger import Ledger
from ..services.status import DeliveryKey, StatusStore
from .errors import classify
from .observe import Metrics, event

if TYPE_CHECKING:
    from .runtime import Queues

RATE_OUTCOMES = (Outcome.SENT, Outcome.BOUNCED, Outcome.COMPLAINED)
QUEUE_RETRY_SECONDS = 30.0  # an events queue that does not exist (yet) is looked for again after this


class EventStage:
    def __init__(
        self,
        aws: AwsFactory,
        config: Config,
        *,
        queues: Queues,
        ledger: Ledger,
        status: StatusStore,
        audit: AuditLog,
        metrics: Metrics,
        customers: list[str],
        poll_wait: int,
        worker_id: str,
    ) -> None:
        self.aws = aws
        self.config = config
        self.queues = queues
        self.doorbell = Doorbell(aws, config)
        self.metrics = metrics
        self.poll_wait = poll_wait
        self.recorder = EventRecorder(
            aws, config, ledger=ledger, status=status, audit=audit, count=metrics.count, actor=worker_id
        )
        self.reconciler = Reconciler(
            aws,
            config,
            ledger=ledger,
            status=status,
            audit=audit,
            customers=customers,
            send_trigger=self._send_trigger,
        )
        self.outcomes = OutcomeStore(aws, config)
        self._url: str | None = None
        self._url_checked = 0.0
        self.applied = 0
        self.refused = 0

    @property
    def reconcile_every(self) -> float:
        """How often due reconcile items are looked for: a quarter of the grace period, at most a
        minute (an item acts at most this late; at rest each look is a query and a depth check)."""
        return max(0.5, min(60.0, self.config.events.unknown_grace_seconds / 4))

    def run(self, stop: threading.Event) -> None:
        next_reconcile = 0.0
        while not stop.is_set():
            try:
                empty = self._poll(min(self.poll_wait, int(self.reconcile_every) or 1))
                # Only with every waiting event applied: an event still queued (e.g. published while
                # no worker ran) may confirm what the reconciler would otherwise send again.
                if empty and time.monotonic() >= next_reconcile and self._drained():
                    next_reconcile = time.monotonic() + self.reconcile_every
                    self._reconcile()
            except Exception as exc:
                event(logging.WARNING, "events.failed", error=classify(exc, "central").detail)
                stop.wait(1.0)

    def _sqs(self) -> Any:
        return self.aws.client("sqs")

    def _queue_url(self) -> str | None:
        if self._url is not None or time.monotonic() < self._url_checked:
            return self._url
        self._url_checked = time.monotonic() + QUEUE_RETRY_SECONDS
        try:
            self._url = str(self._sqs().get_queue_url(QueueName=self.config.events.queue_name)["QueueUrl"])
        except Exception as exc:
            event(
                logging.WARNING,
                "events.queue_missing",
                queue=self.config.events.queue_name,
                error=classify(exc, "central").detail,
                hint="run `changeconsole provision`: SES events are not read until the queue exists",
            )
        return self._url

    def _poll(self, wait: int) -> bool:
        """Apply what the events queue holds; True when it answered empty.

        Without the queue nothing is drained: the reconciler never resends what no event can confirm."""
        url = self._queue_url()
        if url is None:
            time.sleep(min(wait, 1))
            return False
        sqs = self._sqs()
        # A worker that dies holding events must not hide them past the grace period: the reconciler
        # would resend what they confirm. So they come back well within it.
        visibility = int(max(2.0, min(30.0, self.config.events.unknown_grace_seconds / 3)))
        resp = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=wait, VisibilityTimeout=visibility
        )
        done = []
        rates: set[str] = set()
        for i, msg in enumerate(resp.get("Messages", [])):
            try:
                handled = self.recorder.handle(str(msg.get("Body", "")))
            except Exception as exc:  # left in the queue: it comes back after its visibility timeout
                event(logging.WARNING, "events.apply_failed", error=classify(exc, "central").detail)
                continue
            if handled.refused:
                self.refused += 1
            else:
                self.applied += 1
            if handled.result == "applied" and handled.customer and handled.outcome in RATE_OUTCOMES:
                rates.add(handled.customer)
            event(logging.DEBUG, "events.message", result=handled.result, message_id=msg.get("MessageId"))
            done.append({"Id": str(i), "ReceiptHandle": msg["ReceiptHandle"]})
        if done:
            sqs.delete_message_batch(QueueUrl=url, Entries=done)
        if not resp.get("Messages"):
            return True
        for code in rates:  # the customer's rates as metrics (CloudWatch alarms watch them)
            rep = self.outcomes.reputation(code)
            if rep.sends:
                self.metrics.gauge(code, "BounceRate", 100.0 * (rep.bounce_rate or 0.0))
                self.metrics.gauge(code, "ComplaintRate", 100.0 * (rep.complaint_rate or 0.0))
        return False

    def _drained(self) -> bool:
        """Nothing visible in the events queue and none held elsewhere either (a worker that died
        holding events hides them until their visibility runs out)."""
        url = self._queue_url()
        if url is None:
            return False
        attrs = (
            self._sqs()
            .get_queue_attributes(
                QueueUrl=url,
                AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
            )
            .get("Attributes", {})
        )
        return all(int(attrs.get(a, "0")) == 0 for a in attrs) and len(attrs) == 2

    def _reconcile(self) -> None:
        report = self.reconciler.run_once()
        if report.resent or report.held:
            event(
                logging.WARNING,
                "reconcile.acted",
                resent=report.resent or None,
                held=report.held or None,
                confirmed=report.confirmed or None,
            )

    def _send_trigger(self, key: DeliveryKey) -> None:
        """A direct trigger in the customer's queue: it only rings the bell (the worker reads the archive)."""
        mapping = self.config.customer(key.customer)
        body = direct_message(
            key.customer,
            key.change_id,
            key.version,
            key.event,
            change={"changeId": key.change_id, "version": key.version},
        )
        self.queues.client(mapping).send_message(QueueUrl=self.queues.url(mapping), MessageBody=body)
        self.doorbell.ring([key.customer])
