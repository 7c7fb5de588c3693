"""Many writers under one identity race edits, approvals, completions and cancellations of the same
changes while workers are stopped, started and stopped again over the backlog. Whatever interleaving
wins, per recipient (issue 11):

- no email for a customer the version it names does not target (a removal notice aside, and only to a
  customer that was sent something before);
- nothing after a cancellation;
- lifecycle order: the versions of one change arrive strictly rising;
- 0 duplicates;
- the delivery records agree with what SES accepted;
- it ends on the current state: the final version's notice (a cancellation only where something was
  sent before), or a removal notice where the change no longer targets the customer.

Three rounds: racing edits and approvals with no worker running (a backlog); two workers start and the
writers go on, each waiting for its own write to be delivered; one worker stops, a third starts and the
writers race to complete or cancel. Short form (CI): 3 changes x 4 customers, 3 writers per change, 3
steps a round. Long form (CHANGECONSOLE_LONG=1): 10 changes x 8 customers, 4 writers, 5 steps. Set
CHANGECONSOLE_SEED to replay a run.
"""

from __future__ import annotations

import contextlib
import os
import random
import threading
from collections import Counter, defaultdict
from typing import Any

import pytest

from changeconsole.models import (
    Change,
    ChangeStatus,
    EmailEvent,
    IllegalTransition,
    topic_for,
)
from changeconsole.services.aws import AwsFactory
from changeconsole.services.changes import ConflictError
from changeconsole.services.lifecycle import EVENT_OF_STATUS, ChangeService
from changeconsole.services.status import StatusStore
from changeconsole.worker import WorkerHandle, WorkerOptions, start_background
from support.changes import END, START
from support.mail import outbox, subscribed
from support.suites import LONG, scaled
from support.waiting import wait_until

CONTACTS = 3  # approval: contacts 0 and 2; announce: 0 and 1
OPTIONS = {
    "poll_wait": 1,
    "visibility_timeout": 20,
    "backoff_base": 0.5,
    "backoff_cap": 2.0,
    "busy_retry": 1.0,
    "claim_lease": 5.0,
    "send_lease": 3.0,
    "ack_linger": 0.01,
    "health_port": 0,
    "emit_emf": False,
    "concurrency": 8,
    "metrics_interval": 3600.0,
}


class Writers:
    """Threads acting on shared changes as one operator identity, each pinned to what it read."""

    def __init__(self, svc: ChangeService, status: StatusStore, codes: list[str], rng: random.Random) -> None:
        self.svc, self.status, self.codes, self.rng = svc, status, codes, rng
        self.lock = threading.Lock()
        self.outcomes: Counter[str] = Counter()

    def pick(self, *options: str) -> str:
        with self.lock:
            return self.rng.choice(options)

    def customers(self) -> list[str]:
        with self.lock:
            return sorted(self.rng.sample(self.codes, self.rng.randint(1, len(self.codes))))

    def step(self, change_id: str, finishing: bool) -> Change | None:
        """One edit, approval, completion or cancellation of what this writer just read."""
        current = self.svc.load(change_id)
        status, seen = current.status, current.version
        if status in (ChangeStatus.COMPLETED, ChangeStatus.CANCELLED):
            return None
        if finishing:
            action = self.pick("cancel", "complete" if status is ChangeStatus.APPROVED else "approve", "edit")
        else:
            action = self.pick("edit", "edit", "approve" if status is ChangeStatus.SUBMITTED else "edit")
        try:
            if action == "edit":
                title = f"{current.title.split(' #')[0]} #{seen}-{self.pick('a', 'b', 'c')}"
                result = self.svc.edit(
                    current.model_copy(update={"customers": self.customers(), "title": title})
                )
            else:
                result = getattr(self.svc, action)(change_id, expected_version=seen)
        except (ConflictError, IllegalTransition) as exc:
            self.count(type(exc).__name__)
            return None
        self.count(action)
        return result if isinstance(result, Change) else result.change

    def count(self, what: str) -> None:
        with self.lock:
            self.outcomes[what] += 1

    def delivered(self, change: Change) -> bool:
        recs = self.status.records(change.change_id, version=change.version)
        return bool(recs) and all(r.is_final for r in recs)

    def run(self, change_ids: list[str], writers: int, steps: int, *, paced: bool, finishing: bool) -> None:
        """``writers`` threads per change, ``steps`` each; ``paced``: a writer whose write won waits
        (a condition, bounded) until its version was delivered, so later steps meet notified customers."""

        def one(change_id: str) -> None:
            for _ in range(steps):
                written = self.step(change_id, finishing)
                if written is not None and paced:
                    with contextlib.suppress(AssertionError):
                        wait_until(
                            lambda w=written: self.delivered(w), 3, "the version delivered", interval=0.1
                        )

        threads = [
            threading.Thread(target=one, args=(cid,), name=f"writer-{cid[-6:]}-{i}")
            for cid in change_ids
            for i in range(writers)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(180)


@pytest.mark.timeout(900 if LONG else 240)
def test_racing_writers_and_restarted_workers_deliver_the_current_state_in_order(
    make_stack: Any, aws_factory: AwsFactory, moto_endpoint: str
) -> None:
    seed = int(os.environ.get("CHANGECONSOLE_SEED") or random.SystemRandom().randrange(10**6))
    print(f"seed={seed}")
    rng = random.Random(seed)
    stack = make_stack(customers=scaled(4, 8), contacts=CONTACTS)
    config = stack.config
    codes = sorted(config.customer_mappings)
    svc = ChangeService(aws_factory, config, operator="ops")  # every writer is the same identity
    status = StatusStore(aws_factory, config)
    change_ids = [
        svc.submit(
            Change.model_validate(
                {
                    "changeTitle": f"Race {i}",
                    "customers": sorted(rng.sample(codes, rng.randint(1, len(codes)))),
                    "implementationStart": START,
                    "implementationEnd": END,
                }
            )
        ).change.change_id
        for i in range(scaled(3, 10))
    ]
    writers = Writers(svc, status, codes, rng)
    n_writers, steps = scaled(3, 4), scaled(2, 5)

    def start(name: str) -> WorkerHandle:
        return start_background(aws_factory, config, options=WorkerOptions(worker_id=name, **OPTIONS))

    # A backlog builds with no worker running; two workers start while the writers go on; one stops
    # and a third takes over while the writers race to complete or cancel.
    writers.run(change_ids, n_writers, steps, paced=False, finishing=False)
    first, second = start("w1"), start("w2")
    writers.run(change_ids, n_writers, steps, paced=True, finishing=False)
    first.stop(timeout=5)
    third = start("w3")
    writers.run(change_ids, n_writers, 2, paced=False, finishing=True)
    print(f"writers: {dict(writers.outcomes)}")

    def settled() -> bool:
        recs = [r for cid in change_ids for r in status.records(cid)]
        return bool(recs) and all(r.is_final for r in recs)

    try:
        wait_until(settled, scaled(120, 600), "every delivery settled", interval=0.25)
    finally:
        second.stop(timeout=10)
        third.stop(timeout=10)

    mails = [m for m in outbox(moto_endpoint) if m.change_id in change_ids]
    history = {cid: {v.version: v for v in svc.history(cid)} for cid in change_ids}
    problems: list[str] = []
    # 0 duplicates.
    sent = Counter((m.change_id, m.version, m.event, m.customer, to.lower()) for m in mails for to in m.to)
    problems += [f"duplicate {k}" for k, n in sent.items() if n > 1]
    # Per recipient and change, in the order SES accepted them.
    seq: dict[tuple[str, str, str], list[tuple[int, str]]] = defaultdict(list)
    for m in mails:
        assert m.change_id and m.version and m.event and m.customer
        for to in m.to:
            seq[(m.change_id, m.customer, to.lower())].append((m.version, m.event))
    notified: dict[tuple[str, str], bool] = defaultdict(bool)
    for (cid, code, to), got in seq.items():
        versions = [v for v, _ in got]
        if versions != sorted(set(versions)):
            problems.append(f"{cid} {to}: versions out of order or repeated: {got}")
        if any(e == "cancelled" for _, e in got[:-1]):
            problems.append(f"{cid} {to}: email after a cancellation: {got}")
        for i, (v, e) in enumerate(got):
            targeted = code in history[cid][v].customers
            if e == EmailEvent.REMOVED.value:
                if targeted or i == 0:
                    problems.append(
                        f"{cid} {to}: removal notice at v{v} (targeted {targeted}, first {i == 0})"
                    )
            elif not targeted:
                problems.append(f"{cid} {to}: {e} of v{v}, which does not target {code}")
            else:
                notified[(cid, code)] = True
    # It ends on the current state.
    for cid in change_ids:
        final = history[cid][max(history[cid])]
        due = EVENT_OF_STATUS[final.status]
        for code in codes:
            for to in subscribed(code, CONTACTS, topic_for(due, ever_approved=final.ever_approved)):
                got = seq.get((cid, code, to), [])
                if code in final.customers:
                    if due is EmailEvent.CANCELLED and not notified[(cid, code)]:
                        if got:
                            problems.append(f"{cid} {to}: {got} though cancelled before it heard of it")
                    elif not got or got[-1] != (final.version, due.value):
                        problems.append(f"{cid} {to}: ends on {got[-1:]} not v{final.version} {due.value}")
            if code not in final.customers:
                for to in {t for (c, k, t) in seq if (c, k) == (cid, code)}:
                    got = seq[(cid, code, to)]
                    if got and any(e != "removed" for _, e in got) and got[-1][1] != "removed":
                        problems.append(f"{cid} {to}: removed from the change but last got {got[-1]}")
    # The records agree with what SES accepted.
    for cid in change_ids:
        for r in status.records(cid):
            accepted = sum(
                n
                for (c, v, e, cu, _to), n in sent.items()
                if (c, v, e, cu) == (cid, r.version, r.event, r.customer)
            )
            if accepted != r.recipients_sent:
                problems.append(
                    f"record {cid} v{r.version} {r.event.value} {r.customer}: {r} vs {accepted} sent"
                )
    recorded = {
        (cid, r.version, r.event.value, r.customer) for cid in change_ids for r in status.records(cid)
    }
    problems += [f"email without a record: {k}" for k in {k[:4] for k in sent} - recorded]
    print(f"{len(mails)} emails to {len(seq)} recipient/change pairs")
    assert not problems, "\n".join(problems[:40])
