"""Pilot and snapshot tests of the DLQ screen on a deterministic fake DLQ service."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from textual.pilot import Pilot
from textual.widgets import Button, DataTable, Input, ProgressBar, Static

from changeconsole.app import ChangeConsoleApp
from changeconsole.config import data_dir
from changeconsole.models import EmailEvent, direct_message
from changeconsole.screens.dlq import DlqScreen
from changeconsole.services.dlq import (
    DlqMessage,
    DlqSummary,
    ExportResult,
    MessageFilter,
    PeekResult,
    PurgeRefused,
    PurgeResult,
    RedriveProgress,
    RedriveResult,
)
from support.console import NOW, fake_app, screen_text, settle
from support.waiting import wait_for

SIZES = [(120, 40), (80, 24)]
CID = "CHG-2026-11-27T18-00-00-abc123"


def _ms(minutes_ago: int) -> str:
    return str(int((NOW - timedelta(minutes=minutes_ago)).timestamp() * 1000))


def sample_message(n: int, reason: str, detail: str, *, minutes_ago: int) -> DlqMessage:
    change = {
        "object_type": "change",
        "changeId": CID,
        "changeTitle": "Rotate TLS certificates on the edge load balancers",
        "customers": ["acme"],
        "version": 2,
        "status": "approved",
    }
    attrs = {
        "cc-reason": reason,
        "cc-detail": detail,
        "cc-customer": "acme",
        "cc-change-id": CID,
        "cc-version": "2",
        "cc-event": "approved",
        "cc-failed-at": "2026-11-27T19:10:00Z",
        "cc-receive-count": "1",
    }
    return DlqMessage.from_sqs(
        {
            "MessageId": f"{n:08d}-1111-2222-3333-444455556666",
            "ReceiptHandle": f"rh-{n}",
            "Body": direct_message("acme", CID, 2, EmailEvent.APPROVED, change=change),
            "Attributes": {
                "SentTimestamp": _ms(minutes_ago),
                "ApproximateFirstReceiveTimestamp": _ms(minutes_ago - 1),
                "ApproximateReceiveCount": "1",
            },
            "MessageAttributes": {k: {"DataType": "String", "StringValue": v} for k, v in attrs.items()},
        }
    )


class FakeDlq:
    """The DlqService surface the screen uses; records calls; can hold a redrive open."""

    def __init__(self) -> None:
        self.messages: dict[str, list[DlqMessage]] = {
            "acme": [
                sample_message(
                    1,
                    "role_assume_failed",
                    "AccessDenied: not authorized to assume "
                    "arn:aws:iam::210000000001:role/changeconsole-ses-sender",
                    minutes_ago=50,
                ),
                sample_message(2, "isolation_violation", "trigger key names customer globex", minutes_ago=40),
                sample_message(3, "role_assume_failed", "AccessDenied (retry 2)", minutes_ago=30),
            ],
            "globex": [sample_message(4, "malformed_message", "body is not JSON", minutes_ago=5)],
        }
        self.calls: list[tuple[str, Any]] = []
        self.gate: threading.Event | None = None  # set: a redrive waits for it after its first batch
        self.export_recorded = False

    def now(self) -> Any:
        return NOW

    def summaries(self) -> list[DlqSummary]:
        codes = ["acme", "globex", "initech", "umbrella", "hooli", "stark-industries"]
        return [
            DlqSummary(
                customer=c,
                name=c.title(),
                queue=f"changeconsole-{c}-dlq",
                depth=len(self.messages.get(c, [])),
                in_flight=0,
                oldest_age_seconds=None,
                age_source="cloudwatch",
            )
            for c in codes
        ]

    def peek(self, code: str, *, max_messages: int = 10, filter: str | None = None) -> PeekResult:
        self.calls.append(("peek", (code, filter)))
        flt = MessageFilter(filter) if filter else None
        msgs = [m for m in self.messages.get(code, []) if flt is None or flt.matches(m)][:max_messages]
        oldest = min((m.sent_at for m in self.messages.get(code, []) if m.sent_at), default=None)
        return PeekResult(
            customer=code,
            queue=f"changeconsole-{code}-dlq",
            messages=msgs,
            scanned=len(self.messages.get(code, [])),
            depth=len(self.messages.get(code, [])),
            in_flight=0,
            oldest_age_seconds=(NOW - oldest).total_seconds() if oldest else None,
            visibility_seconds=15,
            filter=filter,
        )

    def redrive(
        self,
        code: str,
        *,
        message_ids: list[str],
        progress: Callable[[RedriveProgress], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> RedriveResult:
        self.calls.append(("redrive", (code, list(message_ids))))
        result = RedriveResult(
            customer=code,
            source_queue=f"changeconsole-{code}",
            dlq=f"changeconsole-{code}-dlq",
            mode="manual",
            dry_run=False,
            requested=list(message_ids),
        )
        for i, mid in enumerate(message_ids):
            if cancel is not None and cancel.is_set():
                result.cancelled = True
                break
            self.messages[code] = [m for m in self.messages[code] if m.message_id != mid]
            result.moved.append(mid)
            result.moved_count += 1
            if progress:
                progress(RedriveProgress(i + 1, 0, len(message_ids), "manual"))
            if self.gate is not None:
                assert self.gate.wait(10)
        return result

    def export_jsonl(self, code: str, path: str, *, filter: str | None = None) -> ExportResult:
        self.calls.append(("export", (code, path, filter)))
        self.export_recorded = True
        ids = [m.message_id for m in self.messages.get(code, [])]
        return ExportResult(code, f"changeconsole-{code}-dlq", path, len(ids), ids, "0" * 64)

    def check_export(self, code: str) -> dict[str, Any]:
        if not self.export_recorded:
            raise PurgeRefused(f"no export of {code}'s DLQ is recorded")
        return {"count": 3, "at": "2026-11-27T19:59:00Z", "by": "alice", "path": "/tmp/x.jsonl"}

    def purge(self, code: str, *, yes: bool = False) -> PurgeResult:
        self.calls.append(("purge", (code, yes)))
        deleted = [m.message_id for m in self.messages.pop(code, [])]
        return PurgeResult(customer=code, queue=f"changeconsole-{code}-dlq", mode="all" if yes else "export",
                           deleted=deleted)  # fmt: skip

    def import_jsonl(self, code: str, path: str, *, to: str = "dlq") -> Any:
        self.calls.append(("import", (code, path, to)))
        raise AssertionError("not expected in these tests")


def dlq_app(tmp_path: Path, *, readonly: bool = False) -> tuple[ChangeConsoleApp, FakeDlq]:
    app = fake_app(tmp_path, services_readonly=readonly)
    fake = FakeDlq()
    app.services.dlq = fake  # type: ignore[misc]
    return app, fake


async def open_dlq(pilot: Pilot[Any], customer: str | None = "acme") -> DlqScreen:
    await settle(pilot)
    pilot.app.open_dlq(customer)  # type: ignore[attr-defined]
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, DlqScreen), what="the DLQ screen")
    screen = pilot.app.screen
    assert isinstance(screen, DlqScreen)
    await wait_for(pilot, lambda: screen.idle and screen.peek_result is not None, what="the first peek")
    await settle(pilot)
    return screen


def plain(content: Any) -> str:
    if isinstance(content, str):
        return content
    console = Console(width=200, record=True, file=io.StringIO(), color_system=None)
    console.print(content)
    return console.export_text()


def text_of(screen: DlqScreen, selector: str) -> str:
    return plain(screen.query_one(selector, Static).content)


async def test_opens_on_the_customer_with_reason_and_detail(tmp_path: Path) -> None:
    app, fake = dlq_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_dlq(pilot)
        assert screen.customer == "acme"
        assert fake.calls[0] == ("peek", ("acme", None))
        table = screen.query_one("#dlq-messages", DataTable)
        assert table.row_count == 3
        detail = text_of(screen, "#dlq-detail-body")
        assert "role_assume_failed" in detail and "AccessDenied: not authorized" in detail
        assert "Rotate TLS certificates" in detail and "cc-customer" in detail
        assert "3 shown of 3" in text_of(screen, "#dlq-title")


async def test_without_customer_opens_the_first_with_messages(tmp_path: Path) -> None:
    app, _fake = dlq_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_dlq(pilot, None)
        assert screen.customer == "acme"
        customers = screen.query_one("#dlq-customers", DataTable)
        assert customers.row_count == 6
        await pilot.press("down", "enter")  # globex
        await wait_for(pilot, lambda: screen.idle and screen.customer == "globex")
        await settle(pilot)
        assert screen.query_one("#dlq-messages", DataTable).row_count == 1
        assert "malformed_message" in text_of(screen, "#dlq-detail-body")


async def test_mark_and_redrive_marked_after_confirming_the_count(tmp_path: Path) -> None:
    app, fake = dlq_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_dlq(pilot)
        screen.query_one("#dlq-messages", DataTable).focus()
        await pilot.press("space")  # marks the first, moves down
        await pilot.press("down", "space")  # skips the second, marks the third
        ids = [m.message_id for m in fake.messages["acme"]]
        assert screen.marked == {ids[0], ids[2]}
        assert "2 marked" in text_of(screen, "#dlq-title")
        await pilot.press("R")
        await wait_for(pilot, lambda: "Redrive 2 messages of acme?" in _modal_text(pilot))
        await pilot.press("n")  # declined: nothing happens
        await settle(pilot)
        assert not [c for c in fake.calls if c[0] == "redrive"]
        await pilot.press("R")
        await wait_for(pilot, lambda: "Redrive 2 messages" in _modal_text(pilot))
        await pilot.press("y")
        await wait_for(pilot, lambda: screen.idle and screen.last_result is not None, what="the redrive")
        await settle(pilot)
        assert ("redrive", ("acme", [ids[0], ids[2]])) in fake.calls
        assert "Redrove 2 messages of acme to changeconsole-acme" in text_of(screen, "#dlq-status")
        assert screen.marked == set()
        assert screen.query_one("#dlq-messages", DataTable).row_count == 1  # re-peeked


async def test_redrive_without_marks_takes_the_highlighted_message(tmp_path: Path) -> None:
    app, fake = dlq_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_dlq(pilot)
        screen.query_one("#dlq-messages", DataTable).focus()
        await pilot.press("down", "R")
        await wait_for(pilot, lambda: "Redrive 1 message of acme?" in _modal_text(pilot))
        await pilot.press("y")
        await wait_for(pilot, lambda: screen.idle and screen.last_result is not None)
        redrives = [c for c in fake.calls if c[0] == "redrive"]
        assert redrives == [("redrive", ("acme", ["00000002-1111-2222-3333-444455556666"]))]


async def test_redrive_warns_when_the_recorded_reason_will_recur(tmp_path: Path) -> None:
    """Issue 16: an isolation violation or malformed body dead-letters again; the dialog says so."""
    app, _fake = dlq_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_dlq(pilot)
        await pilot.press("a", "R")  # all three: two role problems (not ours to judge), one isolation
        await wait_for(pilot, lambda: "Redrive 3 messages of acme?" in _modal_text(pilot))
        text = screen_text(pilot.app)
        assert "⚠ 1 of them dead-lettered for isolation_violation" in text
        assert "it will dead-letter again" in " ".join(text.split())
        assert "Redrive anyway (y)" in " ".join(str(b.label) for b in pilot.app.screen.query(Button))
        assert pilot.app.focused is not None and pilot.app.focused.id == "no"  # enter does not redrive
        await pilot.press("n")
        await settle(pilot)
        screen.marked.clear()
        screen.query_one("#dlq-messages", DataTable).focus()
        await pilot.press("g", "R")  # the first: role_assume_failed, nothing recorded about recurring
        await wait_for(pilot, lambda: "Redrive 1 message of acme?" in _modal_text(pilot))
        assert "dead-letter again" not in _modal_text(pilot)


async def test_mark_all_toggles(tmp_path: Path) -> None:
    app, fake = dlq_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_dlq(pilot)
        await pilot.press("a")
        assert screen.marked == {m.message_id for m in fake.messages["acme"]}
        await pilot.press("a")
        assert screen.marked == set()


async def test_progress_and_cancel(tmp_path: Path) -> None:
    app, fake = dlq_app(tmp_path)
    fake.gate = threading.Event()
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_dlq(pilot)
        await pilot.press("a", "R")
        await wait_for(pilot, lambda: "Redrive 3 messages" in _modal_text(pilot))
        await pilot.press("y")
        bar = screen.query_one("#dlq-progress-bar", ProgressBar)
        await wait_for(pilot, lambda: bar.progress == 1, what="the first message moved")
        assert screen.query_one("#dlq-progress").display
        assert bar.total == 3
        assert screen.running and screen.check_action("cancel", ()) is True
        await pilot.press("c")
        assert screen.cancel_event is not None and screen.cancel_event.is_set()
        fake.gate.set()
        await wait_for(pilot, lambda: screen.idle and screen.last_result is not None)
        await settle(pilot)
        assert screen.last_result.cancelled and screen.last_result.moved_count == 1
        assert "cancelled" in text_of(screen, "#dlq-status")
        assert not screen.query_one("#dlq-progress").display
        assert screen.check_action("cancel", ()) is False


async def test_filter_rescans_with_the_filter(tmp_path: Path) -> None:
    app, fake = dlq_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_dlq(pilot)
        await pilot.press("slash")
        field = screen.query_one("#dlq-filter", Input)
        assert field.has_focus
        field.value = "cc-reason=isolation*"
        await pilot.press("enter")
        await wait_for(
            pilot, lambda: screen.idle and screen.peek_result is not None and screen.peek_result.filter
        )
        await settle(pilot)
        assert ("peek", ("acme", "cc-reason=isolation*")) in fake.calls
        assert screen.query_one("#dlq-messages", DataTable).row_count == 1
        assert "matching 'cc-reason=isolation*'" in text_of(screen, "#dlq-title")


async def test_export_asks_for_a_path(tmp_path: Path) -> None:
    app, fake = dlq_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_dlq(pilot)
        await pilot.press("e")
        await wait_for(pilot, lambda: pilot.app.screen.query("#path-input").first() is not None)
        field = pilot.app.screen.query_one("#path-input", Input)
        assert field.value == str(data_dir() / "dlq-exports" / "dlq-acme-20261127T200000Z.jsonl")
        field.value = str(tmp_path / "out.jsonl")
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.idle and any(c[0] == "export" for c in fake.calls))
        await settle(pilot)
        assert ("export", ("acme", str(tmp_path / "out.jsonl"), None)) in fake.calls
        assert "Exported 3 messages" in text_of(screen, "#dlq-status")


async def test_purge_needs_the_typed_customer_code(tmp_path: Path) -> None:
    app, fake = dlq_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_dlq(pilot)
        await pilot.press("P")
        await wait_for(pilot, lambda: "Purge acme's DLQ?" in _modal_text(pilot))
        assert "ALL 3 message(s)" in _modal_text(pilot)  # no export recorded: says it deletes all
        modal = pilot.app.screen
        await pilot.press(*"acm")
        assert modal.query_one("#confirm", Button).disabled
        await pilot.press("enter")  # wrong text: nothing happens
        await settle(pilot)
        assert not [c for c in fake.calls if c[0] == "purge"]
        await pilot.press("e", "enter")
        await wait_for(pilot, lambda: screen.idle and any(c[0] == "purge" for c in fake.calls))
        await settle(pilot)
        assert ("purge", ("acme", True)) in fake.calls
        assert "Purged 3 message(s)" in text_of(screen, "#dlq-status")


async def test_purge_after_export_deletes_only_the_export(tmp_path: Path) -> None:
    app, fake = dlq_app(tmp_path)
    fake.export_recorded = True
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_dlq(pilot)
        await pilot.press("P")
        await wait_for(pilot, lambda: "Only those messages are deleted" in _modal_text(pilot))
        await pilot.press(*"acme", "enter")
        await wait_for(pilot, lambda: screen.idle and any(c[0] == "purge" for c in fake.calls))
        assert ("purge", ("acme", False)) in fake.calls


async def test_readonly_hides_and_refuses_mutations(tmp_path: Path) -> None:
    app, fake = dlq_app(tmp_path, readonly=True)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_dlq(pilot)
        for action in ("redrive", "purge", "import_file"):
            assert screen.check_action(action, ()) is False
        keys = {b.binding.action for b in screen.active_bindings.values() if b.enabled}
        assert "redrive" not in keys and "purge" not in keys and "export" in keys
        await pilot.press("R", "P", "i")
        await settle(pilot)
        assert [c[0] for c in fake.calls] == ["peek"]
        screen.action_redrive()  # even when called directly
        await settle(pilot)
        assert not any(c[0] == "redrive" for c in fake.calls)


async def test_escape_goes_back(tmp_path: Path) -> None:
    app, _fake = dlq_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_dlq(pilot)
        await pilot.press("escape")
        await settle(pilot)
        assert not isinstance(pilot.app.screen, DlqScreen)


def _modal_text(pilot: Pilot[Any]) -> str:
    return " ".join(plain(w.content) for w in pilot.app.screen.query(Static))


@pytest.mark.parametrize("size", SIZES)
def test_snapshot_dlq(snap_compare: Any, tmp_path: Path, size: tuple[int, int]) -> None:
    app, _fake = dlq_app(tmp_path)

    async def run_before(pilot: Pilot[Any]) -> None:
        screen = await open_dlq(pilot)
        screen.query_one("#dlq-messages", DataTable).focus()
        await pilot.press("space")
        await settle(pilot)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


def test_snapshot_dlq_readonly(snap_compare: Any, tmp_path: Path) -> None:
    app, _fake = dlq_app(tmp_path, readonly=True)
    assert snap_compare(app, terminal_size=(120, 40), run_before=open_dlq)
