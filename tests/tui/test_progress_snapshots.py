"""Snapshots of the submit progress screen: partial upload failure, archive failure, all done."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from textual.pilot import Pilot

from changeconsole.app import ChangeConsoleApp
from changeconsole.models import Change, Config, EmailEvent
from changeconsole.screens.progress import SubmitProgressScreen
from changeconsole.services.fanout import ARCHIVE, DestinationState, FanoutResult, ProgressEvent
from changeconsole.services.localstack import build_local_config
from support.console import FakeServices, console_app, settle, show
from support.waiting import wait_for

CID = "CHG-2026-11-27T19-00-00-abc123"
ENDPOINT = "http://127.0.0.1:9"
SIZES = [pytest.param((120, 40), id="120x40"), pytest.param((80, 24), id="80x24")]
CUSTOMERS = ["acme", "globex", "hooli", "initech", "stark-industries", "umbrella"]


def change() -> Change:
    return Change.model_validate(
        {
            "changeId": CID,
            "changeTitle": "Rotate TLS certificates on the edge load balancers",
            "customers": CUSTOMERS,
            "implementationStart": "2026-12-01T22:00:00Z",
            "implementationEnd": "2026-12-02T01:00:00Z",
            "status": "submitted",
            "version": 2,
        }
    )


def scripted(failures: dict[str, str]) -> Callable[[Callable[[ProgressEvent], None]], FanoutResult]:
    """A run that settles every destination, failing those in ``failures`` (archive first)."""

    def run(cb: Callable[[ProgressEvent], None]) -> FanoutResult:
        result = FanoutResult(change(), EmailEvent.SUBMITTED, {})
        for dest in [ARCHIVE, *CUSTOMERS]:
            if dest in failures:
                result.states[dest] = DestinationState.FAILED
                result.errors[dest] = failures[dest]
                cb(ProgressEvent(dest, DestinationState.FAILED, failures[dest]))
                if dest == ARCHIVE:  # nothing else is sent
                    result.states.update({c: DestinationState.PENDING for c in CUSTOMERS})
                    return result
            else:
                result.states[dest] = DestinationState.DONE
                cb(ProgressEvent(dest, DestinationState.DONE))
        return result

    return run


def console() -> ChangeConsoleApp:
    cfg = Config.model_validate(build_local_config(10, endpoint=ENDPOINT))
    return console_app(FakeServices(config=cfg, endpoint=ENDPOINT))


def finished(screen: SubmitProgressScreen) -> Callable[[Pilot[Any]], Any]:
    async def run_before(pilot: Pilot[Any]) -> None:
        await show(pilot, screen)
        await wait_for(
            pilot, lambda: not screen.running and (screen.result is not None or bool(screen.failure))
        )
        await settle(pilot)

    return run_before


@pytest.mark.parametrize("size", SIZES)
def test_progress_partial_upload_failure(snap_compare: Any, size: tuple[int, int]) -> None:
    failures = {
        "globex": "SendMessage: AWS.SimpleQueueService.NonExistentQueue: The specified queue does not exist.",
        "initech": "PutObject: AccessDenied: Access Denied",
    }
    screen = SubmitProgressScreen("submit", change(), scripted(failures), auto_follow=False)
    assert snap_compare(console(), terminal_size=size, run_before=finished(screen))


def test_progress_archive_failure(snap_compare: Any) -> None:
    failures = {
        ARCHIVE: "PutObject: PreconditionFailed: At least one of the pre-conditions you specified "
        "did not hold"
    }
    screen = SubmitProgressScreen("approve", change(), scripted(failures), auto_follow=False)
    assert snap_compare(console(), terminal_size=(120, 40), run_before=finished(screen))


@pytest.mark.parametrize("size", SIZES)
def test_progress_all_done(snap_compare: Any, size: tuple[int, int]) -> None:
    screen = SubmitProgressScreen("submit", change(), scripted({}))
    assert snap_compare(console(), terminal_size=size, run_before=finished(screen))


def test_progress_call_failed_before_any_result(snap_compare: Any) -> None:
    def boom(cb: Callable[[ProgressEvent], None]) -> FanoutResult:
        cb(ProgressEvent(ARCHIVE, DestinationState.UPLOADING))
        raise RuntimeError(
            "ConflictError: CHG-2026-11-27T19-00-00-abc123 was modified by bob at 2026-11-27T19:59:00Z"
        )

    screen = SubmitProgressScreen("approve", change(), boom, auto_follow=False)
    assert snap_compare(console(), terminal_size=(120, 40), run_before=finished(screen))
