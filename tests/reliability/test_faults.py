"""Fault injection into a worker running in this process, through botocore event hooks.

``before-send`` handlers answer in place of the local stack, one HTTP attempt at a time, so botocore's
own retries and the worker's retries (message visibility with backoff) both see the faults exactly as
they would see a real throttle or 5xx:

* SES ``SendEmail``: 30 % of attempts fail (half throttled 429, half 500);
* S3 ``GetObject`` of the trigger: 30 % of attempts fail with 500;
* STS ``AssumeRole`` of one customer's role: always AccessDenied.

Expected: every other customer gets every email exactly once; the failing customer alone is dead-
lettered (``cc-reason`` = role_unavailable) and gets nothing.
"""

from __future__ import annotations

import json
import random
import threading
from collections import Counter
from typing import Any
from urllib.parse import parse_qs

import pytest
from botocore.awsrequest import AWSResponse

from changeconsole.models import FINAL_STATES, TOPIC_APPROVAL, Change, DeliveryState, EmailEvent
from changeconsole.services.aws import AwsFactory, AwsSettings
from changeconsole.services.lifecycle import ChangeService
from changeconsole.services.status import DeliveryKey, StatusStore
from changeconsole.worker import WorkerOptions, start_background
from support.changes import END, START
from support.mail import email_keys, outbox, subscribed
from support.suites import LONG, scaled
from support.waiting import wait_until

CONTACTS = 5
S3_500 = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code>'
    b"<Message>We encountered an internal error. Please try again.</Message></Error>"
)
STS_DENIED = (
    b'<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
    b"<Code>AccessDenied</Code><Message>not authorized to perform sts:AssumeRole</Message></Error>"
    b"</ErrorResponse>"
)


def _response(request: Any, status: int, body: bytes, headers: dict[str, str]) -> AWSResponse:
    resp = AWSResponse(request.url, status, headers, None)
    resp._content = body
    return resp


class Faults:
    """Decides, per HTTP attempt, whether to answer with a fault instead of the local stack."""

    def __init__(self, seed: int, rate: float, denied_role: str) -> None:
        self.rng = random.Random(seed)
        self.rate = rate
        self.denied_role = denied_role
        self.lock = threading.Lock()
        self.injected: Counter[str] = Counter()
        self.attempts: Counter[str] = Counter()

    def _roll(self) -> float:
        with self.lock:
            return self.rng.random()

    def _count(self, what: str, injected: bool) -> None:
        with self.lock:
            self.attempts[what] += 1
            if injected:
                self.injected[what] += 1

    def ses_send(self, request: Any, **_: Any) -> AWSResponse | None:
        roll = self._roll()
        if roll < self.rate / 2:
            self._count("ses.SendEmail", True)
            body = json.dumps(
                {"__type": "TooManyRequestsException", "message": "Maximum sending rate exceeded."}
            )
            return _response(request, 429, body.encode(), {"x-amzn-ErrorType": "TooManyRequestsException"})
        if roll < self.rate:
            self._count("ses.SendEmail", True)
            body = json.dumps({"__type": "InternalFailure", "message": "internal failure"})
            return _response(request, 500, body.encode(), {"x-amzn-ErrorType": "InternalFailure"})
        self._count("ses.SendEmail", False)
        return None

    def s3_get(self, request: Any, **_: Any) -> AWSResponse | None:
        if "/archive/" not in request.url:  # the worker reads the change from the archive
            return None
        injected = self._roll() < self.rate
        self._count("s3.GetObject", injected)
        return _response(request, 500, S3_500, {"Content-Type": "application/xml"}) if injected else None

    def sts_assume(self, request: Any, **_: Any) -> AWSResponse | None:
        body = request.body
        text = body.decode() if isinstance(body, bytes) else str(body or "")
        role = (parse_qs(text).get("RoleArn") or [""])[0]
        denied = role == self.denied_role
        self._count("sts.AssumeRole", denied)
        return _response(request, 403, STS_DENIED, {"Content-Type": "text/xml"}) if denied else None


class FaultyFactory(AwsFactory):
    """Every client it makes (central and per customer) carries the fault hooks."""

    def __init__(self, settings: AwsSettings, faults: Faults) -> None:
        self.faults = faults
        super().__init__(settings)

    def _make_client(self, session: Any, service: str, region: str | None = None) -> Any:
        client = super()._make_client(session, service, region)
        events = client.meta.events
        events.register("before-send.sesv2.SendEmail", self.faults.ses_send)
        events.register("before-send.s3.GetObject", self.faults.s3_get)
        events.register("before-send.sts.AssumeRole", self.faults.sts_assume)
        return client


@pytest.mark.timeout(900 if LONG else 240)
def test_throttling_5xx_sts_and_s3_faults_deliver_everything_once_and_isolate_the_failing_customer(
    make_stack: Any, aws_factory: AwsFactory, moto_endpoint: str
) -> None:
    n_customers = scaled(4, 8)
    n_changes = scaled(3, 12)
    seed = random.SystemRandom().randrange(10**6)
    print(f"seed={seed}")
    stack = make_stack(customers=n_customers, contacts=CONTACTS)
    codes = sorted(stack.config.customer_mappings)
    victim = codes[1]
    # 30 % faults exhaust a maxReceiveCount of 3 now and then: give transient retries room, as an
    # operator would for a throttled SES account; permanent failures still dead-letter at once.
    config = stack.config.model_copy(update={"max_receive_count": 50})
    sqs = aws_factory.client("sqs")
    for code in codes:
        m = config.customer(code)
        url = sqs.get_queue_url(QueueName=m.queue_name)["QueueUrl"]
        redrive = {"deadLetterTargetArn": m.effective_dlq_arn, "maxReceiveCount": 50}
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"RedrivePolicy": json.dumps(redrive)})

    faults = Faults(seed, rate=0.3, denied_role=config.customer(victim).ses_role_arn)
    worker_aws = FaultyFactory(
        AwsSettings(region="us-east-1", endpoint_url=moto_endpoint, local=True, max_attempts=2), faults
    )
    service = ChangeService(aws_factory, config, operator="reliability")
    status = StatusStore(aws_factory, config)
    keys: list[DeliveryKey] = []
    for i in range(n_changes):
        change = Change.model_validate(
            {
                "changeTitle": f"Fault-injection change {i}",
                "customers": codes,
                "implementationStart": START,
                "implementationEnd": END,
            }
        )
        result = service.submit(change)
        assert result.ok, result.errors
        keys += [
            DeliveryKey(result.change.change_id, result.change.version, EmailEvent.SUBMITTED, c)
            for c in codes
        ]

    options = WorkerOptions(
        poll_wait=1,
        visibility_timeout=10,
        backoff_base=0.5,
        backoff_cap=2.0,
        claim_lease=5,
        send_lease=5,
        health_port=0,
        emit_emf=False,
        concurrency=8,
    )

    def settled() -> bool:
        for change_id in {k.change_id for k in keys}:
            recs = status.records(change_id)
            if len(recs) < len(codes) or any(r.state not in FINAL_STATES for r in recs):
                return False
        return True

    handle = start_background(worker_aws, config, options=options)
    try:
        wait_until(settled, timeout=scaled(180, 600), what="every delivery settled", interval=0.25)
    finally:
        handle.stop(timeout=15)
    print(f"attempts {dict(faults.attempts)}; faults injected {dict(faults.injected)}")
    assert faults.injected["ses.SendEmail"] > 0 and faults.injected["s3.GetObject"] > 0

    # Every other customer: every record sent, every subscribed recipient exactly once.
    counts = email_keys(outbox(moto_endpoint))
    assert all(n == 1 for n in counts.values()), {k: n for k, n in counts.items() if n > 1}
    for key in keys:
        got = {
            to
            for (cid, v, e, cu, to) in counts
            if (cid, v, e, cu) == (key.change_id, key.version, "submitted", key.customer)
        }
        rec = next(r for r in status.records(key.change_id) if r.customer == key.customer)
        if key.customer == victim:
            assert not got, f"the customer whose role fails got email: {got}"
            assert rec.state is DeliveryState.DEAD_LETTERED, rec
        else:
            assert got == subscribed(key.customer, CONTACTS, TOPIC_APPROVAL), key
            assert rec.state is DeliveryState.SENT, rec

    # The victim's messages are in its DLQ with the typed reason; nobody else's are.
    for code in codes:
        m = config.customer(code)
        url = sqs.get_queue_url(QueueName=m.dlq_name)["QueueUrl"]
        msgs: list[dict[str, Any]] = []
        while batch := sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], VisibilityTimeout=30
        ).get("Messages", []):
            msgs += batch
        if code == victim:
            assert len(msgs) == n_changes
            reasons = {x["MessageAttributes"]["cc-reason"]["StringValue"] for x in msgs}
            assert reasons == {"role_unavailable"}
        else:
            assert not msgs, (code, msgs)
