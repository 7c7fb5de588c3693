"""SES sends are never retried by botocore; ambiguous send errors are ``unknown``; one AssumeRole per
customer even when several threads use the customer for the first time at once."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    ReadTimeoutError,
)

from changeconsole.models import Config, CustomerMapping, RecipientState
from changeconsole.services.aws import SEND_MAX_ATTEMPTS, AwsFactory, AwsSettings
from changeconsole.services.localstack import build_local_config
from changeconsole.worker.errors import classify

URL = "https://email.us-east-1.amazonaws.com/v2/email/outbound-emails"


@pytest.fixture
def config(moto_endpoint: str) -> Config:
    return Config.model_validate(build_local_config(3, endpoint=moto_endpoint))


def ses_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "x"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "SendEmail",
    )


UNKNOWN, RETRY, FAILED = RecipientState.UNKNOWN, RecipientState.RETRY, RecipientState.FAILED


@pytest.mark.parametrize(
    ("exc", "state"),
    [
        # The request may have reached SES and the answer was lost: maybe sent.
        (ReadTimeoutError(endpoint_url=URL), UNKNOWN),
        (ConnectionClosedError(endpoint_url=URL), UNKNOWN),
        (HTTPClientError(error="connection reset by peer"), UNKNOWN),
        # SES answered: nothing was sent, safe to send again.
        (ses_error("ThrottlingException", 400), RETRY),
        (ses_error("TooManyRequestsException", 429), RETRY),
        (ses_error("InternalFailure", 500), RETRY),
        (ses_error("ServiceUnavailable", 503), RETRY),
        # The connection was never made: nothing was sent.
        (ConnectTimeoutError(endpoint_url=URL), RETRY),
        (EndpointConnectionError(endpoint_url=URL), RETRY),
        # SES rejected this one recipient.
        (ses_error("MessageRejected", 400), FAILED),
    ],
)
def test_send_errors_are_classified_by_whether_ses_may_have_sent(exc: BaseException, state: str) -> None:
    f = classify(exc, "send")
    assert f.recipient_state == state
    assert not f.permanent or f.recipient_only


def test_a_read_timeout_outside_a_send_is_a_plain_transient_error() -> None:
    f = classify(ReadTimeoutError(endpoint_url=URL), "contacts")
    assert not f.ambiguous and not f.permanent
    assert classify(ses_error("ThrottlingException", 400), "send").throttled


def test_the_send_client_is_never_retried_by_botocore(moto_endpoint: str, config: Config) -> None:
    aws = AwsFactory(AwsSettings(region="us-east-1", endpoint_url=moto_endpoint, local=True, max_attempts=6))
    mapping = config.customer(sorted(config.customer_mappings)[0])
    send = aws.customer_send_client(mapping)
    other = aws.customer_client(mapping, "sesv2")
    assert SEND_MAX_ATTEMPTS == 1
    # botocore: total_max_attempts counts the first try (max_attempts=N means N retries).
    assert send.meta.config.retries["total_max_attempts"] == 1
    assert other.meta.config.retries["total_max_attempts"] == 7, "other clients keep botocore's retries"
    assert send is not other and aws.customer_send_client(mapping) is send
    assert aws.client("dynamodb").meta.config.retries["total_max_attempts"] == 7

    # Behaviour, not only config: a 500 on SendEmail reaches the caller after exactly one attempt.
    attempts: list[int] = []

    def fail(request: Any, **_: Any) -> AWSResponse:
        attempts.append(1)
        resp = AWSResponse(request.url, 500, {"Content-Type": "application/json"}, None)
        resp._content = b'{"message": "boom"}'
        return resp

    send.meta.events.register("before-send.sesv2.SendEmail", fail)
    with pytest.raises(ClientError) as caught:
        send.send_email(
            FromEmailAddress="a@example.com",
            Destination={"ToAddresses": ["b@example.com"]},
            Content={"Raw": {"Data": b"Subject: x\r\n\r\nx"}},
        )
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert len(attempts) == 1
    assert classify(caught.value, "send").recipient_state == RETRY


def test_concurrent_first_use_of_a_customer_assumes_its_role_once(moto_endpoint: str, config: Config) -> None:
    aws = AwsFactory(AwsSettings(region="us-east-1", endpoint_url=moto_endpoint, local=True, max_attempts=1))
    codes = sorted(config.customer_mappings)
    per_customer = 6
    threads = len(codes) * per_customer
    calls: list[str] = []
    calls_lock = threading.Lock()
    started = threading.Barrier(threads)
    entered = [0]
    all_in = threading.Condition()
    original: Callable[[CustomerMapping], dict[str, str]] = aws._assume

    def slow_assume(customer: CustomerMapping) -> dict[str, str]:
        with calls_lock:
            calls.append(customer.customer_code)
        # Hold the first AssumeRole until every thread has asked for its customer's session, so the
        # other first uses of the same customer overlap with it.
        with all_in:
            assert all_in.wait_for(lambda: entered[0] == threads, timeout=30)
        return original(customer)

    aws._assume = slow_assume  # type: ignore[method-assign]

    def first_use(code: str) -> int:
        started.wait(timeout=30)
        with all_in:
            entered[0] += 1
            all_in.notify_all()
        return id(aws.customer_session(config.customer(code)))

    jobs = [code for code in codes for _ in range(per_customer)]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        sessions = list(pool.map(first_use, jobs))
    assert sorted(calls) == codes, f"one AssumeRole per customer, got {sorted(calls)}"
    by_code: dict[str, set[int]] = {}
    for code, sid in zip(jobs, sessions, strict=True):
        by_code.setdefault(code, set()).add(sid)
    assert all(len(ids) == 1 for ids in by_code.values())
