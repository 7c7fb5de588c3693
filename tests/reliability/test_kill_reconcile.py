"""20 SIGKILLs of the worker during a fan-out, with SES events flowing (the local event relay): every
subscribed recipient gets exactly one email and nobody does anything.

A kill inside a recipient's SES window leaves it ``unknown``; its Send event (SES accepted it) makes it
``sent``, and with no event by the end of the grace period it is sent again (once per send that ended
``unknown``: a second kill inside the resend's SES window earns one more). The test asserts 0
lost, 0 duplicates, no ``unknown`` left and no operator action (nothing calls ``resend-unknown``).
The seed is printed; set CHANGECONSOLE_SEED to replay one run.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import pytest

from changeconsole.models import TOPIC_APPROVAL, Change, DeliveryState, EmailEvent, RecipientState
from changeconsole.services.aws import AwsFactory
from changeconsole.services.event_relay import LocalEventRelay
from changeconsole.services.events import RECONCILER
from changeconsole.services.ledger import Ledger
from changeconsole.services.lifecycle import ChangeService
from changeconsole.services.provision import provision
from changeconsole.services.status import DeliveryKey, StatusStore
from support.aws import attrs, dlq_messages
from support.changes import END, START
from support.events import with_events
from support.mail import email_keys, outbox, subscribed
from support.waiting import wait_until
from support.worker import WorkerProcess

CONTACTS = 5
KILLS = 20
GRACE = 6.0  # seconds without a Send event before an unknown recipient is sent again


@pytest.mark.timeout(420)
def test_twenty_sigkills_lose_nothing_and_send_nothing_twice_without_an_operator(
    make_stack: Any, aws_factory: AwsFactory, moto_endpoint: str, tmp_path: Path
) -> None:
    seed = int(os.environ.get("CHANGECONSOLE_SEED") or random.SystemRandom().randrange(10**6))
    print(f"seed={seed}")
    rng = random.Random(seed)
    stack = make_stack(customers=3, contacts=CONTACTS)
    # The default maxReceiveCount (3): the receives of killed workers are crashes, which do not use it up.
    config = with_events(stack.config, stack.config_path, unknown_grace_seconds=GRACE)
    assert config.max_receive_count == 3
    provision(aws_factory, config)
    codes = sorted(config.customer_mappings)
    service = ChangeService(aws_factory, config, operator="reliability")
    keys = []
    for i in range(8):
        change = Change.model_validate(
            {
                "changeTitle": f"Kill-test change {i}",
                "customers": codes,
                "implementationStart": START,
                "implementationEnd": END,
            }
        )
        done = service.submit(change)
        assert done.ok, done.errors
        keys += [
            DeliveryKey(done.change.change_id, done.change.version, EmailEvent.SUBMITTED, c) for c in codes
        ]
    expected = {
        (k.change_id, k.version, k.event.value, k.customer, addr)
        for k in keys
        for addr in subscribed(k.customer, CONTACTS, TOPIC_APPROVAL)
    }
    status = StatusStore(aws_factory, config)
    ledger = Ledger(aws_factory, config)

    def sent_so_far(relay: LocalEventRelay) -> int:
        return relay.published // 2  # a Send and a Delivery event per accepted email

    def not_sent() -> list[str]:
        """What is not done yet (empty: every delivery sent, nothing left to reconcile)."""
        out = [
            f"{r.customer}/{r.change_id[-6:]}: {r.state.value} {r.last_error or ''}"
            for cid in {k.change_id for k in keys}
            for r in status.records(cid)
            if r.state is not DeliveryState.SENT
        ]
        return out + [
            f"reconcile {i.sk} due {i.due_at:.1f} resent {sorted(i.resent)}" for i in ledger.reconciles()
        ]

    def all_sent() -> bool:
        return not not_sent()

    worker = WorkerProcess(
        stack.config_path, moto_endpoint, "--concurrency", "4", log_path=tmp_path / "w.log"
    )
    kill_points = []
    with LocalEventRelay(aws_factory, config, interval=0.02) as relay:
        try:
            for k in range(KILLS):
                worker.start()
                # Spread the kills over the run, each at a random point of its stretch (some at start-up).
                lo = len(expected) * k // KILLS
                hi = max(lo + 1, len(expected) * (k + 1) // KILLS)
                target = rng.randrange(lo, hi)
                wait_until(
                    lambda t=target: sent_so_far(relay) >= t or all_sent(),  # type: ignore[misc]
                    120,
                    f"{target} emails before kill {k + 1} (not sent: {not_sent()})",
                    interval=0.01,
                )
                kill_points.append(sent_so_far(relay))
                worker.kill()
            worker.start()
            try:
                wait_until(all_sent, 180, "every delivery sent, nothing left to reconcile", interval=0.25)
            except AssertionError as exc:
                raise AssertionError(f"{exc}; kills after {kill_points}; not sent: {not_sent()}") from None
            worker.wait_started()
            assert worker.terminate() == 0
        finally:
            worker.kill()
    print(f"kills after {kill_points} of {len(expected)} emails")

    counts = email_keys(outbox(moto_endpoint))
    dupes = {k: n for k, n in counts.items() if n > 1}
    got = {(c or "", v or 0, e or "", cu or "", to) for (c, v, e, cu, to) in counts}
    assert not dupes, f"sent twice: {dupes}"
    assert got == expected, f"lost: {sorted(expected - got)[:5]}; unexpected: {sorted(got - expected)[:5]}"
    for key in keys:
        marks = ledger.recipients(key)
        assert {m.state for m in marks.values()} == {RecipientState.SENT}, (key, marks)
    for code in codes:  # nothing for an operator to redrive
        dead = [attrs(m) | {"body": m["Body"][-120:]} for m in dlq_messages(aws_factory, config, code)]
        assert not dead, (code, dead)
    markers = [m for k in keys if (m := ledger.resend_marker(k)) is not None]
    print(f"{len(markers)} delivery(ies) had recipients sent again by the reconciler")
    assert all(m.resend_by == RECONCILER for m in markers)  # nobody else reopened anything
