"""Error classification by type (botocore error codes and exception classes, our typed errors).

Never by message text. ``transient`` failures are retried via message visibility with jittered
exponential backoff; ``permanent`` ones go to the customer's DLQ at once with ``reason``.

Decisions:
- A customer role that cannot be assumed (AccessDenied & co. on ``AssumeRole``) is a config problem:
  permanent, reason ``role_unavailable``, so the operator fixes the role and redrives.
- SES refusing the customer's account as a whole (AccessDenied, suspended, sending paused, missing
  contact list) is permanent too; SES rejecting one recipient (``MessageRejected``, bad address)
  fails that recipient only.
- Errors of the central account (S3, DynamoDB, SQS), 5xx, throttling, timeouts and connection
  errors are transient: they are a deployment or service problem, not the message's.
- During a send (``stage="send"``; botocore never retries it, see ``AwsFactory.customer_send_client``):
  throttling (429 or a throttling code) and explicit 5xx answers are ``retry``: SES answered, nothing
  was sent. A failure after the request may have reached SES — ``ReadTimeoutError``,
  ``ConnectionClosedError`` or any other HTTP-level error that is not a connection failure — is
  *ambiguous*: SES may have accepted the email, so that recipient is never sent again (at-most-once)
  and an operator decides (``change resend-unknown``). A connection that was never made
  (``ConnectionError``: connect timeout, endpoint unreachable) sent nothing: ``retry``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectionError,
    HTTPClientError,
    ParamValidationError,
    ReadTimeoutError,
)

from ..errors import describe, error_code, http_status
from ..models import PermanentMessageError, RecipientState


class FailureKind(StrEnum):
    TRANSIENT = "transient"  # retried via message visibility, with backoff
    PERMANENT = "permanent"  # to the customer's DLQ at once


THROTTLE_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestThrottledException",
        "ProvisionedThroughputExceededException",
        "SlowDown",
        "LimitExceededException",
        "BandwidthLimitExceeded",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
    }
)
TRANSIENT_CODES = frozenset(
    {
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "InternalServiceError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
        "RequestTimeoutException",
        "TransactionInProgressException",
        "IDPCommunicationError",
        "ExpiredToken",
        "ExpiredTokenException",
        "RequestExpired",
        "KMS.ThrottlingException",
        "AWS.SimpleQueueService.ServiceUnavailable",
    }
)
ROLE_PERMANENT_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "InvalidClientTokenId",
        "RegionDisabledException",
        "MalformedPolicyDocument",
        "PackedPolicyTooLarge",
        "ValidationError",
        "InvalidParameterValue",
    }
)
SES_ACCOUNT_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "AccountSuspendedException",
        "SendingPausedException",
        "MailFromDomainNotVerifiedException",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "NotFoundException",
    }
)
SES_RECIPIENT_CODES = frozenset({"MessageRejected", "BadRequestException", "InvalidParameterValue"})

# Stages of processing that act in the customer's own account.
CUSTOMER_STAGES = frozenset({"assume_role", "contacts", "send"})


@dataclass(frozen=True)
class Failure:
    kind: FailureKind
    reason: str  # typed reason code (DLQ cc-reason)
    detail: str  # one line, no message text of ours beyond the error's own
    throttled: bool = False
    ambiguous: bool = False  # an SES send may have gone through
    recipient_only: bool = False  # SES rejected this one recipient

    @property
    def permanent(self) -> bool:
        return self.kind is FailureKind.PERMANENT

    @property
    def recipient_state(self) -> RecipientState:
        """What the ledger records for a recipient whose send failed like this: ``unknown`` when SES may
        have sent it, ``failed`` when SES rejected it, else ``retry`` (nothing was sent)."""
        if self.ambiguous:
            return RecipientState.UNKNOWN
        return RecipientState.FAILED if self.recipient_only else RecipientState.RETRY


def _detail(exc: BaseException) -> str:
    return describe(exc)[:500]


def classify(exc: BaseException, stage: str = "") -> Failure:
    """What to do about ``exc`` raised during ``stage`` of processing one message."""
    detail = _detail(exc)
    if isinstance(exc, PermanentMessageError):
        return Failure(FailureKind.PERMANENT, exc.reason, detail)
    if isinstance(exc, ClientError):
        code, status = error_code(exc), http_status(exc)
        customer_side = stage in CUSTOMER_STAGES
        if code in THROTTLE_CODES or status == 429:
            return Failure(FailureKind.TRANSIENT, "throttled", detail, throttled=customer_side)
        if exc.operation_name == "AssumeRole":
            if code in ROLE_PERMANENT_CODES or (400 <= status < 500 and code not in TRANSIENT_CODES):
                return Failure(FailureKind.PERMANENT, "role_unavailable", detail)
            return Failure(FailureKind.TRANSIENT, "aws_error", detail)
        if status >= 500 or code in TRANSIENT_CODES:
            return Failure(FailureKind.TRANSIENT, "aws_error", detail)
        if customer_side:
            if code == "NotFoundException":
                return Failure(FailureKind.PERMANENT, "contact_list_missing", detail)
            if code in SES_ACCOUNT_CODES:
                return Failure(FailureKind.PERMANENT, "ses_unavailable", detail)
            if stage == "send" and code in SES_RECIPIENT_CODES:
                return Failure(FailureKind.PERMANENT, "recipient_rejected", detail, recipient_only=True)
        return Failure(FailureKind.TRANSIENT, "aws_error", detail)
    if isinstance(exc, (ReadTimeoutError, ConnectionClosedError)):
        return Failure(FailureKind.TRANSIENT, "aws_timeout", detail, ambiguous=stage == "send")
    if isinstance(exc, ConnectionError):  # connect timeouts, endpoint unreachable: nothing was sent
        return Failure(FailureKind.TRANSIENT, "aws_unreachable", detail)
    if isinstance(exc, HTTPClientError):  # the request may have been sent: the answer was lost
        return Failure(FailureKind.TRANSIENT, "aws_connection_lost", detail, ambiguous=stage == "send")
    if isinstance(exc, ParamValidationError) and stage == "send":
        return Failure(FailureKind.PERMANENT, "recipient_rejected", detail, recipient_only=True)
    if isinstance(exc, BotoCoreError):
        return Failure(FailureKind.TRANSIENT, "aws_client_error", detail)
    return Failure(FailureKind.TRANSIENT, "internal_error", detail)


def backoff_delay(receive_count: int, base: float, cap: float, rng: random.Random | None = None) -> int:
    """Visibility delay before the next attempt: exponential in the receive count, equal jitter."""
    rng = rng or random.Random()
    ceiling = min(cap, base * (2 ** max(0, receive_count - 1)))
    return int(max(1.0, min(cap, ceiling / 2 + rng.uniform(0, ceiling / 2))))
