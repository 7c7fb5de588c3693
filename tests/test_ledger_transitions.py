"""The ledger's recipient writes follow ``models.RECIPIENT_TRANSITIONS``, and its readers survive items
they did not write.

Every conditional write of a recipient item is one of the ledger's named ``RECIPIENT_WRITES``: a walk
through every path that writes one (send, retry, reject, maybe-sent, a dead sender's lease, a taken-over
delivery, a withdrawal, an operator's reopening) records each write's condition and the item's state
before and after it, and checks every change against a row of the table.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from changeconsole.models import RECIPIENT_TRANSITIONS, EmailEvent, RecipientState
from changeconsole.services.aws import AwsFactory
from changeconsole.services.ledger import (
    RCPT_PREFIX,
    RECIPIENT_WRITES,
    ClaimState,
    Ledger,
    RecipientWrite,
    SlotOutcome,
    delivery_pk,
    rcpt_sk,
)
from changeconsole.services.status import DeliveryKey, to_item

KEY = DeliveryKey("CHG-2026-03-01T10-00-00-trn123", 1, EmailEvent.SUBMITTED, "acme")
_R = RecipientState


class Recorder:
    """A DynamoDB client that notes, for each write of a recipient item, its condition and the item's
    state right before and after (the test is single-threaded, so nothing else moves it)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.writes: list[tuple[str, str, RecipientState | None, RecipientState | None, bool]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def _state(self, table: str, key: dict[str, Any]) -> RecipientState | None:
        item = self.client.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item")
        return RecipientState(item["state"]["S"]) if item else None

    def _watched(self, requests: list[dict[str, Any]], call: Any) -> Any:
        """``requests``: each item the call writes (table, key, condition); recipient items are noted."""
        rcpt = [r for r in requests if r["Key"]["sk"]["S"].startswith(RCPT_PREFIX)]
        before = [self._state(r["TableName"], r["Key"]) for r in rcpt]
        ok = False
        try:
            result = call()
            ok = True
        finally:  # a refused write raises (ConditionalCheckFailed, TransactionCanceled) to the ledger
            for r, was in zip(rcpt, before, strict=True):
                after = self._state(r["TableName"], r["Key"])
                self.writes.append((r["Key"]["sk"]["S"], r.get("ConditionExpression", ""), was, after, ok))
        return result

    def put_item(self, **kwargs: Any) -> Any:
        key = {"pk": kwargs["Item"]["pk"], "sk": kwargs["Item"]["sk"]}
        return self._watched([{**kwargs, "Key": key}], lambda: self.client.put_item(**kwargs))

    def update_item(self, **kwargs: Any) -> Any:
        return self._watched([kwargs], lambda: self.client.update_item(**kwargs))

    def transact_write_items(self, **kwargs: Any) -> Any:
        requests = []
        for item in kwargs["TransactItems"]:
            ((_kind, request),) = item.items()
            key = request.get("Key") or {"pk": request["Item"]["pk"], "sk": request["Item"]["sk"]}
            requests.append({**request, "Key": key})
        return self._watched(requests, lambda: self.client.transact_write_items(**kwargs))


class RecordingLedger(Ledger):
    recorder: Recorder

    @property
    def _ddb(self) -> Any:  # type: ignore[override]
        return self.recorder


def _ledger(aws: AwsFactory, config: Any, recorder: Recorder, **kwargs: Any) -> RecordingLedger:
    ledger = RecordingLedger(aws, config, **kwargs)
    ledger.recorder = recorder
    return ledger


def test_every_named_write_is_a_row_of_the_table() -> None:
    for write in RECIPIENT_WRITES:
        for source in write.sources:
            assert set(write.targets) <= RECIPIENT_TRANSITIONS[source], write.name
    with pytest.raises(ValueError, match="not in RECIPIENT_TRANSITIONS"):
        RecipientWrite("resend_sent", (_R.SENT,), (_R.SENDING,))
    # A settled recipient never changes again.
    assert RECIPIENT_TRANSITIONS[_R.SENT] == RECIPIENT_TRANSITIONS[_R.FAILED] == frozenset()


def test_every_conditional_write_of_a_recipient_matches_a_row(
    make_stack: Any, aws_factory: AwsFactory
) -> None:
    config = make_stack(customers=1, contacts=0).config
    recorder = Recorder(aws_factory.client("dynamodb"))
    ledger = _ledger(aws_factory, config, recorder)
    dying = _ledger(aws_factory, config, recorder, send_lease=-1.0)  # its marks have run out at once
    a, b, c, d, e, f = (f"{n}@acme.example.com" for n in "abcdef")
    assert ledger.claim(KEY, "w1").acquired

    assert ledger.begin_send(KEY, a, "w1").outcome is SlotOutcome.GO  # none -> sending
    ledger.record_sent(KEY, a, "w1", "msg-a")  # sending -> sent
    assert ledger.begin_send(KEY, a, "w1").outcome is SlotOutcome.SENT  # refused: sent is final

    assert ledger.begin_send(KEY, b, "w1").outcome is SlotOutcome.GO
    ledger.record_failure(KEY, b, "w1", _R.RETRY, "Throttling")  # sending -> retry
    assert ledger.begin_send(KEY, b, "w1").outcome is SlotOutcome.GO  # retry -> sending
    ledger.record_failure(KEY, b, "w1", _R.FAILED, "MessageRejected")  # sending -> failed
    ledger.record_sent(KEY, b, "w9", "msg-b")  # refused: not the owner's, and failed is final

    assert ledger.begin_send(KEY, c, "w1").outcome is SlotOutcome.GO
    ledger.record_failure(KEY, c, "w1", _R.UNKNOWN, "ReadTimeoutError")  # sending -> unknown
    ledger.record_sent(KEY, c, "w1", "msg-c")  # unknown -> sent: its sender knows better

    assert dying.begin_send(KEY, d, "w-dead").outcome is SlotOutcome.GO
    assert ledger.begin_send(KEY, d, "w2").outcome is SlotOutcome.UNKNOWN  # run-out lease -> unknown

    assert ledger.begin_send(KEY, e, "w1").outcome is SlotOutcome.GO
    tally = ledger.reconcile(KEY)  # the lane's new holder: a live mark -> unknown (maybe sent)
    assert (tally.sent, tally.unknown, tally.failed) == (2, 2, 1)

    assert ledger.begin_send(KEY, f, "w1").outcome is SlotOutcome.GO
    ledger.record_failure(KEY, f, "w1", _R.RETRY, "Throttling")
    assert ledger.withdraw(KEY, f, "unsubscribed")  # retry -> failed
    assert not ledger.withdraw(KEY, f, "unsubscribed")

    g = "g@acme.example.com"
    assert ledger.begin_send(KEY, g, "w1", token="t-g").outcome is SlotOutcome.GO
    ledger.record_failure(KEY, g, "w1", _R.UNKNOWN, "ReadTimeoutError", token="t-g")
    assert not ledger.confirm_sent(KEY, g, "t-other", "msg-x")  # another send's event: refused
    assert ledger.confirm_sent(KEY, g, "t-g", "msg-g")  # its own SES event: unknown -> sent
    assert not ledger.confirm_sent(KEY, g, "t-g", "msg-g")  # again: sent is final

    assert ledger.finish_claim(KEY, "w1", done=True, result="partial")
    out = ledger.reopen_for_resend(KEY, [d, e, a], by="op", resend_id="r1")  # a refused, then retried
    assert sorted(out.reopened) == [d, e] and set(out.refused) == {a}

    conditions = {w.condition: w for w in RECIPIENT_WRITES}
    used = set()
    for sk, condition, before, after, ok in recorder.writes:
        assert condition in conditions, f"{sk}: unnamed condition {condition!r}"
        used.add(conditions[condition].name)
        if ok:
            assert after in RECIPIENT_TRANSITIONS[before], f"{sk}: {before} -> {after} is not a row"
            assert after in conditions[condition].targets
        else:
            assert after == before, f"{sk}: a refused write changed it ({before} -> {after})"
    assert used == {w.name for w in RECIPIENT_WRITES}
    states = {m.address: m.state for m in ledger.recipients(KEY).values()}
    assert states == {
        a: _R.SENT,
        b: _R.FAILED,
        c: _R.SENT,
        d: _R.RETRY,
        e: _R.RETRY,
        f: _R.FAILED,
        g: _R.SENT,
    }


def test_readers_skip_and_log_items_they_cannot_read(
    make_stack: Any, aws_factory: AwsFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A keys-only item (moto shows one in the middle of an UpdateItem) or another writer's item is
    skipped and logged; the rest reads as typed records."""
    config = make_stack(customers=1, contacts=0).config
    ledger = Ledger(aws_factory, config)
    put = aws_factory.client("dynamodb").put_item
    table = config.ledger_table_name
    pk = delivery_pk(KEY)
    ok = "ok@acme.example.com"
    assert ledger.begin_send(KEY, ok, "w1").outcome is SlotOutcome.GO
    ledger.record_sent(KEY, ok, "w1", "msg-ok")
    put(TableName=table, Item={"pk": {"S": pk}, "sk": {"S": rcpt_sk("ghost@acme.example.com")}})
    put(TableName=table, Item=to_item({"pk": pk, "sk": rcpt_sk("alien@acme.example.com"), "state": "?"}))
    put(TableName=table, Item={"pk": {"S": pk}, "sk": {"S": "CLAIM"}})

    with caplog.at_level(logging.WARNING, logger="changeconsole.services.ledger"):
        marks = ledger.recipients(KEY)
        assert list(marks) == [ok]
        assert marks[ok].state is _R.SENT and marks[ok].message_id == "msg-ok"
        assert ledger.get_claim(KEY) is None
        plan = ledger.plan_resend(KEY, ["ghost@acme.example.com"])
        assert plan.claim_state is None and plan.refused == {
            "ghost@acme.example.com": "not a recipient of this delivery"
        }
        # A claim mid-write reads as held elsewhere: retried later, never taken over.
        busy = ledger.claim(KEY, "w2")
        assert not busy.acquired and busy.owner is None
    skipped = [r.getMessage() for r in caplog.records]
    assert any(f"{pk}/{rcpt_sk('ghost@acme.example.com')}: it holds only its keys" in m for m in skipped)
    assert any(f"{pk}/{rcpt_sk('alien@acme.example.com')}: not readable" in m for m in skipped)
    assert any(f"{pk}/CLAIM: it holds only its keys" in m for m in skipped)


def test_claim_states_read_as_enums(make_stack: Any, aws_factory: AwsFactory) -> None:
    config = make_stack(customers=1, contacts=0).config
    ledger = Ledger(aws_factory, config)
    assert ledger.claim(KEY, "w1").acquired
    claim = ledger.get_claim(KEY)
    assert claim is not None and claim.state is ClaimState.IN_PROGRESS and claim.owner == "w1"
    assert ledger.finish_claim(KEY, "w1", done=True, result="sent")
    claim = ledger.get_claim(KEY)
    assert claim is not None and claim.state is ClaimState.DONE and claim.result == "sent"
    assert ledger.claim(KEY, "w2").outcome == "done"
