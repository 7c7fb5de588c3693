"""The errors of changeconsole and the one way to turn any error into text (``describe``) or an AWS
error code (``error_code``). Used by the core, the CLI, the console and the worker alike.

Our errors derive from ``ChangeconsoleError`` (a message, a short ``title`` for notifications and
optional per-field ``problems``) through the base that says what the operator can do:

- ``InputError`` (also a ``ValueError``): the request cannot be done as asked; fix it (CLI exit 2),
  e.g. ``ChangeRejected``, ``ChangeNotFound``, ``NotDeletable``, ``IllegalTransition``, ``ConfigError``.
- ``OperationError``: the request was fine but failed (AWS, a conflict, a timeout); retry (exit 1),
  e.g. ``ConflictError``, ``WaitTimeout``, ``DlqError``.
- ``NotAuthorized``: the operator's roles do not allow it (``services.authz``); ask for the role (exit 3).
- ``models.PermanentMessageError``: a queue message that can never succeed; the worker dead-letters it.
"""

from __future__ import annotations

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)
from pydantic import ValidationError

# S3 (and moto) answer a missing object with one of these codes.
MISSING_OBJECT_CODES = frozenset({"NoSuchKey", "404", "NotFound"})


class ChangeconsoleError(Exception):
    """Base of our errors: ``str(exc)`` is the message; ``title`` heads a notification."""

    title = "Error"

    def __init__(
        self,
        message: str = "",
        *,
        title: str | None = None,
        problems: list[dict[str, str]] | None = None,
        summary: str | None = None,
    ) -> None:
        super().__init__(message)
        if title is not None:
            self.title = title
        self.problems: list[dict[str, str]] = problems or []
        self._summary = summary

    @property
    def message(self) -> str:
        return str(self)

    @property
    def summary(self) -> str:
        """The line a list of ``problems`` follows (CLI): ``describe(self)`` unless one was given (for a
        message that already spells the problems out)."""
        return self._summary if self._summary is not None else describe(self)


class InputError(ChangeconsoleError, ValueError):
    """What was asked cannot be done as asked (bad input, a refused step): CLI exit 2."""

    title = "Invalid input"


class OperationError(ChangeconsoleError):
    """What was asked failed while being done (AWS, a conflict, a timeout): CLI exit 1."""

    title = "Operation failed"


class NotAuthorized(ChangeconsoleError):
    """The operator may not do this: no role grants the action, a customer is outside the role's scope,
    or separation of duties forbids it (CLI exit 3). The refusal is already in the audit trail."""

    title = "Not authorized"

    def __init__(
        self,
        message: str,
        *,
        action: str,
        operator: str,
        roles: list[str] | None = None,
        needs: list[str] | None = None,
        customers: list[str] | None = None,
    ) -> None:
        super().__init__(message)
        self.action = action
        self.operator = operator
        self.roles = roles or []  # the operator's roles
        self.needs = needs or []  # roles that grant the action
        self.customers = customers or []  # customers outside the operator's scope


def error_code(exc: BaseException) -> str:
    """The AWS error code of a ``ClientError`` (``""`` for anything else)."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def is_missing_object(exc: BaseException) -> bool:
    """S3 answered that the object (or key) does not exist."""
    return error_code(exc) in MISSING_OBJECT_CODES


def http_status(exc: BaseException) -> int:
    """The HTTP status AWS answered a ``ClientError`` with (0 for anything else)."""
    if isinstance(exc, ClientError):
        return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return 0


def error_message(exc: BaseException) -> str:
    """The message AWS gave with a ``ClientError`` (``""`` for anything else)."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Message", ""))
    return ""


def validation_problems(exc: ValidationError, prefix: str = "") -> list[dict[str, str]]:
    """Each pydantic error as ``{"path": "a.b[0]", "message": ...}`` using the JSON names."""
    problems = []
    for err in exc.errors():
        parts: list[str] = []
        for loc in err["loc"]:
            if isinstance(loc, int):
                parts.append(f"[{loc}]")
            elif loc and not str(loc).startswith("function-"):
                parts.append(("." if parts else "") + str(loc))
        path = prefix + "".join(parts)
        msg = err["msg"].removeprefix("Value error, ")
        problems.append({"path": path or "$", "message": msg})
    return problems


def describe(exc: BaseException) -> str:
    """One line naming the cause of a failure, for an operator: never a traceback, never a body."""
    if isinstance(exc, ClientError):
        status = http_status(exc)
        where = f" (HTTP {status})" if status else ""
        text = f"AWS {exc.operation_name} failed{where}: {error_code(exc) or '?'}: {error_message(exc)}"
        text = text.rstrip(": ")
    elif isinstance(exc, EndpointConnectionError):  # also connect timeouts: nothing was sent
        text = f"AWS unreachable: cannot connect to {exc.kwargs.get('endpoint_url', 'the endpoint')}"
    elif isinstance(exc, ReadTimeoutError):
        text = f"AWS timed out: {exc}"
    elif isinstance(exc, ConnectionClosedError):
        text = f"AWS connection lost: {exc}"
    elif isinstance(exc, NoCredentialsError):
        text = "AWS credentials not found (set AWS_PROFILE or the standard credential chain)"
    elif isinstance(exc, BotoCoreError):
        text = f"AWS unreachable or misconfigured: {exc}"
    elif isinstance(exc, ValidationError):
        problems = validation_problems(exc)
        text = "invalid: " + "; ".join(f"{p['path']}: {p['message']}" for p in problems[:5])
    elif isinstance(exc, ChangeconsoleError):
        text = str(exc) or type(exc).__name__  # ours are written to be read
    else:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return " ".join(text.split())


def title_of(exc: BaseException) -> str:
    """A short heading for a notification about ``exc``."""
    if isinstance(exc, ChangeconsoleError):
        return exc.title
    if isinstance(exc, BotoCoreError | ClientError):
        return "AWS error"
    return "Error"
