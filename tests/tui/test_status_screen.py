"""Pilot tests of the live status screen and the delivery drill-down (against the moto server)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Static

from changeconsole.models import Change, DeliveryRecord, DeliveryState, EmailEvent
from changeconsole.screens.delivery import DeliveryDetailScreen
from changeconsole.screens.format import format_duration
from changeconsole.screens.status import LiveStatusScreen, row_cells
from changeconsole.services.aws import AwsFactory
from changeconsole.services.bundle import Services
from changeconsole.services.ledger import Ledger
from changeconsole.services.live_status import LivePoll, LiveStatusQuery, newest_round
from changeconsole.services.status import DeliveryKey, StatusStore
from changeconsole.widgets.statebar import allocate
from support.console import FakeServices, console_app, show
from support.waiting import wait_for

CID = "CHG-2026-11-27T19-00-00-abc123"
NOW = datetime(2026, 11, 27, 20, 0, 0, tzinfo=UTC)


def seed(
    store: StatusStore,
    code: str,
    state: DeliveryState,
    *,
    version: int = 1,
    event: EmailEvent = EmailEvent.APPROVED,
    sent: int = 0,
    total: int = 0,
    failed: int = 0,
    attempts: int = 1,
    error: str | None = None,
    queued: str = "2026-11-27T19:58:00Z",
    finished: str | None = None,
) -> DeliveryKey:
    key = DeliveryKey(CID, version, event, code)
    fields: dict[str, Any] = {
        "state": state,
        "attempts": attempts,
        "recipients_total": total,
        "recipients_sent": sent,
        "recipients_failed": failed,
        "queued_at": queued,
        "updated_at": finished or queued,
    }
    if error:
        fields["last_error"] = error
    if finished:
        fields["finished_at"] = finished
    store.update(key, **fields)
    return key


@pytest.fixture
def services(make_stack: Any, aws_factory: AwsFactory) -> Services:
    stack = make_stack(customers=5, contacts=2)
    svc = Services(aws_factory, stack.config)
    svc.status.index_change(
        Change.model_validate(
            {"changeId": CID, "changeTitle": "Rotate TLS certificates", "customers": ["acme", "globex"]}
        )
    )
    return svc


def cell(screen: LiveStatusScreen, code: str, column: str) -> str:
    return str(screen.table.get_cell(code, column)).strip()


# -- pure helpers -------------------------------------------------------------------------


def test_format_duration_and_allocate() -> None:
    assert format_duration(None) == "-"
    assert format_duration(5.9) == "5s"
    assert format_duration(65) == "1m05s"
    assert format_duration(3723) == "1h02m03s"
    assert sum(allocate([1, 999], 50)) == 50
    assert allocate([1, 999], 50)[0] == 1  # a rare state stays visible
    assert allocate([0, 0], 10) == [0, 0]


def test_row_cells_use_the_clock_while_in_flight() -> None:
    rec = DeliveryRecord(
        change_id=CID,
        version=1,
        event=EmailEvent.APPROVED,
        customer="acme",
        state=DeliveryState.PROCESSING,
        queued_at="2026-11-27T19:59:30Z",
    )
    assert row_cells(rec, NOW)[5] == "30s"
    done = rec.model_copy(
        update={
            "state": DeliveryState.SENT,
            "finished_at": "2026-11-27T19:59:40Z",
            "recipients_total": 3,
            "recipients_sent": 3,
        }
    )
    assert row_cells(done, NOW)[1:6] == ("sent", "0", "3/3", "", "10s")


def test_newest_round_prefers_highest_version() -> None:
    def rec(v: int, e: EmailEvent, c: str) -> DeliveryRecord:
        return DeliveryRecord(change_id=CID, version=v, event=e, customer=c)

    got = newest_round(
        [
            rec(1, EmailEvent.SUBMITTED, "a"),
            rec(2, EmailEvent.APPROVED, "a"),
            rec(2, EmailEvent.APPROVED, "b"),
        ]
    )
    assert {(r.version, r.customer) for r in got} == {(2, "a"), (2, "b")}


def test_a_round_shows_its_removal_notices_and_marks_them() -> None:
    """An edit that drops a customer: the round is the version's notices plus its removal notices,
    whichever was written last, and a removed customer's row says so."""

    def rec(v: int, e: EmailEvent, c: str, at: str) -> DeliveryRecord:
        return DeliveryRecord(change_id=CID, version=v, event=e, customer=c, updated_at=at)

    records = [
        rec(2, EmailEvent.SUBMITTED, "b", "2026-11-27T19:00:00Z"),
        rec(3, EmailEvent.SUBMITTED, "a", "2026-11-27T19:10:00Z"),
        rec(3, EmailEvent.REMOVED, "b", "2026-11-27T19:20:00Z"),
    ]
    got = newest_round(records)
    assert {(r.version, r.event, r.customer) for r in got} == {
        (3, EmailEvent.SUBMITTED, "a"),
        (3, EmailEvent.REMOVED, "b"),
    }
    assert [row_cells(r, NOW)[0] for r in got] == ["a", "b (removed)"]


# -- live status against DynamoDB --------------------------------------------------------------


async def test_cells_update_in_place_keeping_cursor_and_filter(services: Services) -> None:
    store = services.status
    seed(store, "acme", DeliveryState.QUEUED, attempts=0)
    seed(store, "globex", DeliveryState.PROCESSING, total=5, sent=2)
    seed(store, "initech", DeliveryState.QUEUED, attempts=0)
    screen = LiveStatusScreen(CID, interval=0.1)
    async with console_app(services, live=True).run_test(size=(120, 40)) as pilot:
        await show(pilot, screen)
        await wait_for(pilot, lambda: screen.table.row_count == 3)
        assert [str(r.key.value) for r in screen.table.ordered_rows] == ["acme", "globex", "initech"]
        await pilot.press("down")
        assert screen.table.cursor_row == 1

        seed(store, "globex", DeliveryState.SENT, total=5, sent=5, finished="2026-11-27T19:59:00Z")
        await wait_for(pilot, lambda: cell(screen, "globex", "state") == "sent")
        assert cell(screen, "globex", "recipients") == "5/5"
        assert screen.table.cursor_row == 1  # still on globex
        # Only globex's changed cells were touched, no rows added/removed.
        n = screen.fetch_count
        await wait_for(pilot, lambda: screen.fetch_count > n)
        assert screen.last_sync.added == screen.last_sync.removed == 0
        assert screen.last_sync.cells == 0  # nothing changed since

        # A filter survives refreshes and new rows.
        await pilot.press("slash", *"glo", "enter")
        await wait_for(pilot, lambda: screen.table.row_count == 1)
        seed(
            store, "globex", DeliveryState.SENT, total=5, sent=5, attempts=2, finished="2026-11-27T19:59:00Z"
        )
        seed(store, "hooli", DeliveryState.QUEUED)
        await wait_for(pilot, lambda: "hooli" in screen.records)
        await wait_for(pilot, lambda: cell(screen, "globex", "attempts") == "2")
        assert screen.table.row_count == 1
        assert screen.filter_text == "glo"
        assert screen.table.has_focus

        # Clearing the filter brings every row back, in code order, cursor kept on globex.
        await pilot.press("slash", "backspace", "backspace", "backspace", "enter")
        await wait_for(pilot, lambda: screen.table.row_count == 4)
        assert [str(r.key.value) for r in screen.table.ordered_rows] == ["acme", "globex", "hooli", "initech"]
        assert (
            str(screen.table.coordinate_to_cell_key(screen.table.cursor_coordinate).row_key.value) == "globex"
        )


async def test_a_refresh_reads_and_redraws_only_the_changed_record(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = services.status
    store.clock = lambda: datetime(2026, 11, 27, 19, 59, 0, tzinfo=UTC)  # written well before now
    codes = [f"c{i:02d}" for i in range(40)]
    for code in codes:
        seed(store, code, DeliveryState.SENT, total=2, sent=2, finished="2026-11-27T19:59:00Z")
    store.clock = None
    polls: list[LivePoll] = []
    poll = LiveStatusQuery.poll

    def recorded(self: LiveStatusQuery) -> LivePoll:
        polls.append(poll(self))
        return polls[-1]

    monkeypatch.setattr(LiveStatusQuery, "poll", recorded)
    screen = LiveStatusScreen(CID, interval=0.1)
    async with console_app(services, live=True).run_test(size=(120, 40)) as pilot:
        await show(pilot, screen)
        await wait_for(pilot, lambda: screen.table.row_count == 40)
        syncs: list[Any] = []
        sync_table = screen.sync_table

        def sync(touched: Any = None) -> Any:
            syncs.append(sync_table(touched))
            return syncs[-1]

        screen.sync_table = sync  # type: ignore[method-assign]
        seen = len(polls)
        seed(store, "c17", DeliveryState.FAILED, total=2, sent=1, failed=1, error="Throttling: slow down")
        await wait_for(pilot, lambda: cell(screen, "c17", "state") == "failed")
        assert cell(screen, "c17", "failed") == "1"
        after = polls[seen:]
        assert after and all(not p.full for p in after)  # delta reads of the index only
        # Each read returned the one record written since, nothing else (a refresh right after may
        # read it again from the overlap window, as known and unchanged).
        assert max(p.items for p in after) == 1
        assert [p.changed for p in after if p.changed] == [{"c17"}]
        assert sum(s.visited for s in syncs) == 1  # one row compared, the other 39 left alone
        assert sum(s.cells for s in syncs) == 4  # state, recipients, failed, last error
        assert cell(screen, "c18", "state") == "sent"


async def test_rows_added_and_removed_by_key_keep_the_cursor(services: Services) -> None:
    store = services.status
    for code in ("acme", "hooli", "umbrella"):
        seed(store, code, DeliveryState.QUEUED)
    screen = LiveStatusScreen(CID, interval=0.1)
    async with console_app(services, live=True).run_test(size=(120, 40)) as pilot:
        await show(pilot, screen)
        await wait_for(pilot, lambda: screen.table.row_count == 3)
        await pilot.press("down", "down")  # umbrella
        seed(store, "globex", DeliveryState.QUEUED)  # sorts before the cursor row
        await wait_for(pilot, lambda: screen.table.row_count == 4)
        assert [str(r.key.value) for r in screen.table.ordered_rows] == [
            "acme",
            "globex",
            "hooli",
            "umbrella",
        ]
        assert screen.table.cursor_row == 3  # followed umbrella
        # A newer round replaces the rows (removed by key).
        seed(store, "acme", DeliveryState.QUEUED, version=2, event=EmailEvent.COMPLETED)
        await wait_for(pilot, lambda: screen.table.row_count == 1)
        assert cell(screen, "acme", "state") == "queued"
        title = str(screen.query_one("#status-title", Static).render())
        assert "v2 · completed" in title and "Rotate TLS certificates" in title


async def test_pause_stops_refreshes_and_plus_minus_change_interval(services: Services) -> None:
    seed(services.status, "acme", DeliveryState.QUEUED)
    screen = LiveStatusScreen(CID, interval=0.05)
    async with console_app(services, live=True).run_test(size=(120, 40)) as pilot:
        await show(pilot, screen)
        await wait_for(pilot, lambda: screen.fetch_count >= 3)
        await pilot.press("p")
        assert screen.paused
        line = str(screen.query_one("#status-line", Static).render())
        assert "paused" in line
        await wait_for(pilot, lambda: not screen._inflight)
        paused_at = screen.fetch_count
        for _ in range(10):  # ten ticks of the refresh timer while paused: no query may run
            screen._tick()
            await pilot.pause()
        assert not screen._inflight and screen.fetch_count == paused_at
        # Resume queries again.
        await pilot.press("p")
        await wait_for(pilot, lambda: screen.fetch_count > paused_at)
        # + lengthens, - shortens the interval along the steps, shown in the status line.
        await pilot.press("plus")
        assert screen.interval == 0.5
        await pilot.press("plus", "plus")
        assert screen.interval == 2.0
        assert "every 2s" in str(screen.query_one("#status-line", Static).render())
        await pilot.press("minus")
        assert screen.interval == 1.0
        assert screen.refresh_timer is not None and screen.refresh_timer._interval == 1.0


async def test_unreachable_store_keeps_last_state_and_shows_error(services: Services) -> None:
    seed(services.status, "acme", DeliveryState.SENT, total=2, sent=2, finished="2026-11-27T19:59:00Z")
    screen = LiveStatusScreen(CID, interval=0.05)
    async with console_app(services, live=True).run_test(size=(120, 40)) as pilot:
        await show(pilot, screen)
        await wait_for(pilot, lambda: screen.table.row_count == 1)

        class Broken:
            def latest_round(self, change_id: str) -> list[DeliveryRecord]:
                from botocore.exceptions import EndpointConnectionError

                raise EndpointConnectionError(endpoint_url="http://127.0.0.1:9/")

        services.__dict__["status"] = Broken()
        await wait_for(pilot, lambda: screen.error is not None)
        assert "AWS unreachable" in (screen.error or "")
        assert screen.table.row_count == 1  # last known state kept
        assert not screen.query_one("#status-error").has_class("hidden")


async def test_query_runs_off_the_ui_thread_and_1000_rows_touch_only_changed_cells() -> None:
    class FakeStore:
        def __init__(self) -> None:
            self.threads: set[int] = set()
            self.records = [
                DeliveryRecord(
                    change_id=CID,
                    version=1,
                    event=EmailEvent.SUBMITTED,
                    customer=f"c{i:04d}",
                    state=DeliveryState.SENT,
                    recipients_total=3,
                    recipients_sent=3,
                    queued_at="2026-11-27T19:58:00Z",
                    finished_at="2026-11-27T19:58:05Z",
                )
                for i in range(1000)
            ]

        def latest_round(self, change_id: str) -> list[DeliveryRecord]:
            self.threads.add(threading.get_ident())
            return list(self.records)

        def get_summary(self, change_id: str) -> None:
            return None

    fake = FakeServices(status=FakeStore())
    screen = LiveStatusScreen(CID, interval=0.05)
    async with console_app(fake, live=True).run_test(size=(120, 40)) as pilot:
        await show(pilot, screen)
        await wait_for(pilot, lambda: screen.table.row_count == 1000)
        assert screen.last_sync.added == 1000 or screen.fetch_count > 1
        assert threading.get_ident() not in fake.status.threads
        await pilot.press("pagedown")
        cursor = screen.table.cursor_row
        syncs: list[Any] = []  # every sync from here on (refreshes may follow each other quickly)
        sync_table = screen.sync_table

        def recorded(touched: Any = None) -> Any:
            syncs.append(sync_table(touched))
            return syncs[-1]

        screen.sync_table = recorded  # type: ignore[method-assign]
        n = screen.fetch_count
        await wait_for(pilot, lambda: screen.fetch_count > n + 1)
        # Nothing changed and every record is final: a refresh compares no row at all.
        assert syncs and all(s.visited == 0 and s.cells == 0 for s in syncs)
        records = list(fake.status.records)
        for i in range(0, 1000, 100):  # ten customers fail
            records[i] = records[i].model_copy(
                update={"state": DeliveryState.FAILED, "last_error": "Throttling: slow down"}
            )
        fake.status.records = records  # at once: one refresh sees all ten
        await wait_for(pilot, lambda: cell(screen, "c0900", "state") == "failed")
        assert sum(s.added + s.removed for s in syncs) == 0
        assert sum(s.cells for s in syncs) == 20  # state + last error of ten rows
        assert sum(s.visited for s in syncs) == 10  # only the changed rows were compared
        assert screen.table.cursor_row == cursor
        assert cell(screen, "c0100", "state") == "failed"


# -- drill-down ----------------------------------------------------------------------------------


async def test_enter_drills_into_recipients_error_and_dlq(
    services: Services, aws_factory: AwsFactory
) -> None:
    store = services.status
    seed(store, "acme", DeliveryState.SENT, total=1, sent=1, finished="2026-11-27T19:59:00Z")
    key = seed(
        store,
        "globex",
        DeliveryState.DEAD_LETTERED,
        total=2,
        sent=1,
        failed=1,
        attempts=3,
        error="MessageRejected: Email address is not verified",
        finished="2026-11-27T19:59:30Z",
    )
    ledger = Ledger(aws_factory, services.config)
    assert ledger.claim(key, "worker-1").acquired
    assert ledger.begin_send(key, "alex.ng@globex.example.com", "worker-1").outcome == "go"
    ledger.record_sent(key, "alex.ng@globex.example.com", "worker-1", "msg-0001")
    assert ledger.begin_send(key, "sam.patel@globex.example.com", "worker-1").outcome == "go"
    ledger.record_failure(key, "sam.patel@globex.example.com", "worker-1", "failed", "MessageRejected: bad")
    ledger.finish_claim(key, "worker-1", done=True, result="partial")
    mapping = services.config.customer("globex")
    sqs = aws_factory.client("sqs")
    url = sqs.get_queue_url(QueueName=mapping.dlq_name)["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="{}")

    screen = LiveStatusScreen(CID, interval=5.0)
    async with console_app(services, live=True).run_test(size=(120, 40)) as pilot:
        await show(pilot, screen)
        await wait_for(pilot, lambda: screen.table.row_count == 2)
        await pilot.press("down", "enter")
        await wait_for(pilot, lambda: isinstance(app_screen(pilot), DeliveryDetailScreen))
        detail = app_screen(pilot)
        assert isinstance(detail, DeliveryDetailScreen)
        await wait_for(pilot, lambda: detail.detail is not None)
        table = detail.query_one("#detail-recipients", DataTable)
        assert table.row_count == 2
        assert str(table.get_cell("sam.patel@globex.example.com", "state")) == "failed"
        assert str(table.get_cell("alex.ng@globex.example.com", "message_id")) == "msg-0001"
        assert detail.detail is not None and detail.detail.dlq is not None
        assert detail.detail.dlq.total == 1
        assert "1 message in globex's DLQ" in str(detail.query_one("#detail-dlq", Static).render())
        assert "not verified" in str(detail.query_one("#detail-error", Static).render())
        await pilot.press("escape")
        await wait_for(pilot, lambda: app_screen(pilot) is screen)


def app_screen(pilot: Pilot[Any]) -> Any:
    return pilot.app.screen


def test_cells_are_text_never_markup() -> None:
    from changeconsole.screens.customers import customer_cell
    from changeconsole.screens.status import styled_cell

    for text in (styled_cell("error", "[/oops] [b]bold?[/b]"), customer_cell("name", "Acme [EU]")):
        assert text.plain in ("[/oops] [b]bold?[/b]", "Acme [EU]")
        assert not text.spans or all(span.style != "bold" for span in text.spans)
