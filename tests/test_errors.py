"""One errors module: every service error sits on InputError (exit 2) or OperationError (exit 1), and
the CLI's one handler (``cli/common.handle_errors``) prints it the same way for every command."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import pytest
from botocore.exceptions import ClientError
from click.testing import CliRunner

from changeconsole.cli.common import handle_errors
from changeconsole.config import ConfigError
from changeconsole.errors import InputError, OperationError, describe, is_missing_object
from changeconsole.models import Change, ChangeStatus
from changeconsole.services.changes import ChangeNotFound, ConflictError
from changeconsole.services.lifecycle import ChangeRejected, NotDeletable
from changeconsole.services.waiting import WaitTimeout
from support.changes import make_change

CID = "CHG-2026-03-01T10-00-00-err123"


def _run(exc: BaseException) -> Any:
    @click.command()
    @handle_errors
    def fail() -> None:
        raise exc

    return CliRunner().invoke(fail, [])


def _approved() -> Change:
    return make_change(["acme"]).model_copy(update={"status": ChangeStatus.APPROVED})


@pytest.mark.parametrize(
    ("exc", "base", "code", "stderr"),
    [
        (ChangeNotFound(CID, "archive"), InputError, 2, f"no change {CID} in archive"),
        (NotDeletable(_approved()), InputError, 2, "only cancelled, draft changes can be deleted"),
        (ConflictError(CID, "bob", "2026-03-01T10:00:00Z"), OperationError, 1, f"{CID} was changed by bob"),
        (WaitTimeout(1, [], ["acme"]), OperationError, 1, "after 1s 1 customer(s) not final yet: acme"),
    ],
)
def test_service_errors_map_to_their_exit_code(exc: Exception, base: type, code: int, stderr: str) -> None:
    assert isinstance(exc, base)
    result = _run(exc)
    assert result.exit_code == code, result.output
    assert stderr in " ".join(result.output.split())  # the console may wrap it
    assert "Traceback" not in result.output


def test_an_error_listing_problems_prints_its_summary_then_each_problem() -> None:
    problems = [{"path": "changeTitle", "message": "required"}, {"path": "customers", "message": "empty"}]
    rejected = ChangeRejected(f"{CID} cannot be submitted", problems)
    # The message spells the problems out (one line for the console) ...
    assert describe(rejected) == f"{CID} cannot be submitted: changeTitle: required; customers: empty"
    # ... the CLI prints the summary and each problem on its own line.
    result = _run(rejected)
    assert result.exit_code == 2
    lines = result.output.splitlines()
    assert lines[0] == f"error: {CID} cannot be submitted"
    assert [line.strip() for line in lines[1:]] == ["changeTitle: required", "customers: empty"]

    config = ConfigError(Path("config.json"), [{"path": "aws_region", "message": "required"}])
    result = _run(config)
    assert result.exit_code == 2
    assert result.output.splitlines() == ["error: invalid config config.json", "  aws_region: required"]


def test_missing_objects_are_recognised_by_code() -> None:
    def s3_error(code: str) -> ClientError:
        return ClientError({"Error": {"Code": code, "Message": "x"}}, "GetObject")

    assert all(is_missing_object(s3_error(c)) for c in ("NoSuchKey", "404", "NotFound"))
    assert not is_missing_object(s3_error("AccessDenied"))
    assert not is_missing_object(ValueError("NoSuchKey"))
