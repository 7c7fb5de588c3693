"""Pilot tests of the submit progress screen: a real fan-out (moto) with a failing destination, retry."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from textual.widgets import Button, DataTable, Static

from changeconsole.models import Change, EmailEvent
from changeconsole.screens.progress import SubmitProgressScreen
from changeconsole.screens.status import LiveStatusScreen
from changeconsole.services.aws import AwsFactory
from changeconsole.services.bundle import Services
from changeconsole.services.fanout import ARCHIVE, DestinationState, FanoutResult, ProgressEvent
from support.console import FakeServices, console_app, show
from support.waiting import wait_for

CID = "CHG-2026-11-27T19-00-00-abc123"


def draft(customers: list[str]) -> Change:
    return Change.model_validate(
        {
            "changeId": CID,
            "changeTitle": "Rotate TLS certificates",
            "customers": customers,
            "implementationStart": "2026-12-01T22:00:00Z",
            "implementationEnd": "2026-12-02T01:00:00Z",
        }
    )


def state(screen: SubmitProgressScreen, dest: str) -> str:
    return str(screen.query_one("#progress-table", DataTable).get_cell(dest, "state"))


async def test_failed_destination_is_shown_and_r_retries_only_it(
    make_stack: Any, aws_factory: AwsFactory
) -> None:
    stack = make_stack(customers=3, contacts=1)
    config = stack.config.model_copy(update={"transport": "sqs-direct"})
    services = Services(aws_factory, config)
    sqs = aws_factory.client("sqs")
    globex = config.customer("globex")
    sqs.delete_queue(QueueUrl=sqs.get_queue_url(QueueName=globex.queue_name)["QueueUrl"])

    archived: list[Change] = []
    calls: list[str] = []

    def run(cb: Callable[[ProgressEvent], None]) -> FanoutResult:
        calls.append(threading.current_thread().name)
        return services.changes.submit(draft(["acme", "globex", "initech"]), progress=cb)

    screen = SubmitProgressScreen(
        "submit", draft(["acme", "globex", "initech"]), run, on_archived=archived.append, auto_follow=False
    )
    async with console_app(services, live=True).run_test(size=(120, 40)) as pilot:
        await show(pilot, screen)
        rows = screen.query_one("#progress-table", DataTable).rows
        assert [str(k.value) for k in rows] == [ARCHIVE, "acme", "globex", "initech"]  # before any event
        await wait_for(pilot, lambda: not screen.running and screen.result is not None)
        assert calls and calls[0] != threading.current_thread().name  # off the UI thread
        assert [state(screen, d) for d in (ARCHIVE, "acme", "globex", "initech")] == [
            "done",
            "done",
            "failed",
            "done",
        ]
        assert "does not exist" in screen.errors["globex"] or "NonExistentQueue" in screen.errors["globex"]
        errors = screen.query_one("#progress-errors", Static)
        assert not errors.has_class("hidden") and "globex" in str(errors.render())
        assert "1 of 4 destinations failed" in str(screen.query_one("#progress-status", Static).render())
        assert not screen.query_one("#progress-retry", Button).disabled
        assert [c.version for c in archived] == [archived[0].version] and archived[0].change_id == CID

        # The queue is back: r sends only to globex.
        sqs.create_queue(QueueName=globex.queue_name)
        before = {
            c: sqs.get_queue_attributes(
                QueueUrl=sqs.get_queue_url(QueueName=config.customer(c).queue_name)["QueueUrl"],
                AttributeNames=["ApproximateNumberOfMessages"],
            )["Attributes"]["ApproximateNumberOfMessages"]
            for c in ("acme", "globex")
        }
        await pilot.press("r")
        await wait_for(pilot, lambda: not screen.running and screen.attempts == 2)
        assert screen.result is not None and screen.result.ok
        assert [state(screen, d) for d in (ARCHIVE, "acme", "globex", "initech")] == ["done"] * 4
        assert screen.query_one("#progress-errors", Static).has_class("hidden")
        after = {
            c: sqs.get_queue_attributes(
                QueueUrl=sqs.get_queue_url(QueueName=config.customer(c).queue_name)["QueueUrl"],
                AttributeNames=["ApproximateNumberOfMessages"],
            )["Attributes"]["ApproximateNumberOfMessages"]
            for c in ("acme", "globex")
        }
        assert after["acme"] == before["acme"]  # not sent again
        assert int(after["globex"]) == int(before["globex"]) + 1
        assert len(calls) == 1  # retry went through ChangeService.retry, not the whole submit
        assert len(archived) == 1  # reported once

        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, LiveStatusScreen))
        live = pilot.app.screen
        assert isinstance(live, LiveStatusScreen)
        assert (live.change_id, live.version, live.event) == (CID, archived[0].version, EmailEvent.SUBMITTED)
        assert not any(isinstance(s, SubmitProgressScreen) for s in pilot.app.screen_stack)  # replaced


class FakeFanout:
    """A scripted fan-out: the archive fails on the first call, everything succeeds on retry."""

    def __init__(
        self, customers: list[str], *, fail_archive: bool = False, raise_first: Exception | None = None
    ) -> None:
        self.customers = customers
        self.fail_archive = fail_archive
        self.raise_first = raise_first
        self.runs = 0
        self.retries: list[list[str]] = []
        self.change = draft(customers).model_copy(update={"version": 2})

    def run(self, cb: Callable[[ProgressEvent], None]) -> FanoutResult:
        self.runs += 1
        if self.raise_first is not None and self.runs == 1:
            raise self.raise_first
        states = {ARCHIVE: DestinationState.PENDING, **{c: DestinationState.PENDING for c in self.customers}}
        result = FanoutResult(self.change, EmailEvent.SUBMITTED, states)
        cb(ProgressEvent(ARCHIVE, DestinationState.UPLOADING))
        if self.fail_archive:
            result.states[ARCHIVE] = DestinationState.FAILED
            result.errors[ARCHIVE] = "PutObject: ServiceUnavailable: Please reduce your request rate."
            cb(ProgressEvent(ARCHIVE, DestinationState.FAILED, result.errors[ARCHIVE]))
            return result
        for dest in [ARCHIVE, *self.customers]:
            result.states[dest] = DestinationState.DONE
            cb(ProgressEvent(dest, DestinationState.DONE))
        return result

    def retry(self, result: FanoutResult, cb: Callable[[ProgressEvent], None]) -> FanoutResult:
        self.retries.append(list(result.failed))
        states = {d: DestinationState.DONE for d in result.states}
        for dest in result.failed:
            cb(ProgressEvent(dest, DestinationState.UPLOADING))
            cb(ProgressEvent(dest, DestinationState.DONE))
        return FanoutResult(result.change, result.event, states)


async def test_archive_failure_then_retry_with_injected_retry() -> None:
    fake = FakeFanout(["acme", "globex"], fail_archive=True)
    archived: list[Change] = []
    screen = SubmitProgressScreen(
        "approve",
        CID,
        fake.run,
        retry=fake.retry,
        customers=["acme", "globex"],
        on_archived=archived.append,
        auto_follow=False,
    )
    async with console_app(FakeServices(), live=True).run_test(size=(100, 30)) as pilot:
        await show(pilot, screen)
        await wait_for(pilot, lambda: screen.result is not None and not screen.running)
        assert state(screen, ARCHIVE) == "failed" and state(screen, "acme") == "pending"
        assert not archived
        assert screen.query_one("#progress-live", Button).disabled  # nothing was sent
        await pilot.press("enter")  # refused: the archive is not written
        assert isinstance(pilot.app.screen, SubmitProgressScreen)
        await pilot.press("r")
        await wait_for(pilot, lambda: screen.attempts == 2 and not screen.running)
        assert fake.retries == [[ARCHIVE]]
        assert [state(screen, d) for d in (ARCHIVE, "acme", "globex")] == ["done"] * 3
        assert [c.change_id for c in archived] == [CID]


async def test_call_that_raises_is_shown_and_r_runs_it_again() -> None:
    fake = FakeFanout(["acme"], raise_first=RuntimeError("the archive changed under you"))
    screen = SubmitProgressScreen("complete", CID, fake.run, customers=["acme"], auto_follow=False)
    async with console_app(FakeServices(), live=True).run_test(size=(100, 30)) as pilot:
        await show(pilot, screen)
        await wait_for(pilot, lambda: screen.failure is not None)
        assert "the archive changed under you" in str(screen.query_one("#progress-status", Static).render())
        assert fake.runs == 1
        await pilot.press("r")  # no result to retry from: the whole call runs again
        await wait_for(pilot, lambda: screen.result is not None and not screen.running)
        assert fake.runs == 2 and screen.failure is None
        assert [state(screen, d) for d in (ARCHIVE, "acme")] == ["done", "done"]
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(pilot.app.screen, SubmitProgressScreen))


async def test_success_follows_to_live_status_by_itself() -> None:
    fake = FakeFanout(["acme"])

    class NoStatus:
        def latest_round(self, change_id: str) -> list[Any]:
            return []

        def records(self, change_id: str, **kwargs: Any) -> list[Any]:
            return []

        def get_summary(self, change_id: str) -> None:
            return None

    screen = SubmitProgressScreen("submit", draft(["acme"]), fake.run, follow_delay=0.2)
    async with console_app(FakeServices(status=NoStatus()), live=True).run_test(size=(100, 30)) as pilot:
        await show(pilot, screen)
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, LiveStatusScreen))
        live = pilot.app.screen
        assert isinstance(live, LiveStatusScreen) and live.version == 2
        await wait_for(pilot, lambda: live.loaded)  # let it finish mounting before the app exits
