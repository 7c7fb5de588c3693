"""The DLQ story end to end on the moto server, with the real worker and the real console.

A change goes to a customer whose SES role is broken: the worker dead-letters it with the reason.
The operator opens the DLQ screen, sees the reason, fixes the config, redrives from the screen, and
every subscribed recipient of that customer receives exactly one email.
"""

from __future__ import annotations

import io
from typing import Any

from botocore.awsrequest import AWSResponse
from rich.console import Console
from textual.widgets import DataTable, Static

from changeconsole.app import ChangeConsoleApp
from changeconsole.models import TOPIC_APPROVAL, DeliveryState
from changeconsole.screens.dlq import DlqScreen
from changeconsole.services.aws import AwsFactory
from changeconsole.services.bundle import Services
from changeconsole.services.dlq import DlqService
from support.changes import CHANGE_ID, change_doc
from support.console import settle
from support.mail import outbox, per_recipient, subscribed
from support.waiting import wait_for
from support.worker import record, running_worker, submit

CONTACTS = 5
REVOKED = "arn:aws:iam::999999999999:role/changeconsole-ses-sender-revoked"


def _denied(status: int, code: str) -> tuple[AWSResponse, dict[str, Any]]:
    http = AWSResponse("https://injected.invalid/", status, {}, None)
    parsed = {
        "Error": {"Code": code, "Message": f"injected {code}"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return http, parsed


def plain(content: Any) -> str:
    console = Console(width=200, record=True, file=io.StringIO(), color_system=None)
    console.print(content)
    return console.export_text()


async def test_broken_role_dead_letters_then_redrive_from_the_screen_delivers_once(
    make_stack: Any, aws_factory: AwsFactory, moto_endpoint: str
) -> None:
    stack = make_stack(customers=2, contacts=CONTACTS)
    config = stack.config
    broken, healthy = sorted(config.customer_mappings)
    good = config.customer(broken)
    # The config points at a role the customer revoked (moto trusts every role, so STS refuses it here).
    config.customer_mappings[broken] = good.model_copy(update={"ses_role_arn": REVOKED})

    def deny(params: dict[str, Any], **_: Any) -> Any:
        body = params.get("body")
        if isinstance(body, dict) and body.get("RoleArn") == REVOKED:
            return _denied(403, "AccessDenied")
        return None

    aws_factory.forget_customer(broken)
    aws_factory.client("sts").meta.events.register("before-call.sts.AssumeRole", deny)
    services = Services(aws_factory, config)
    app = ChangeConsoleApp(services, live=False)

    with running_worker(aws_factory, config):
        submit(aws_factory, config, change_doc([broken, healthy]))
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(
                pilot,
                lambda: (
                    (r := record(aws_factory, config, broken)) is not None
                    and r.state is DeliveryState.DEAD_LETTERED
                ),
                timeout=60,
                what="the broken customer's delivery dead-lettered",
            )
            await wait_for(
                pilot,
                lambda: (
                    (r := record(aws_factory, config, healthy)) is not None and r.state is DeliveryState.SENT
                ),
                timeout=60,
                what="the healthy customer's delivery sent",
            )
            assert outbox(moto_endpoint, CHANGE_ID) and all(
                m.customer == healthy for m in outbox(moto_endpoint, CHANGE_ID)
            )

            # The operator opens the DLQ screen of that customer (as the live status row does).
            app.open_dlq(broken)
            await wait_for(pilot, lambda: isinstance(app.screen, DlqScreen))
            screen = app.screen
            assert isinstance(screen, DlqScreen)
            await wait_for(pilot, lambda: screen.idle and screen.peek_result is not None, timeout=30)
            await settle(pilot)
            assert screen.query_one("#dlq-messages", DataTable).row_count == 1
            detail = plain(screen.query_one("#dlq-detail-body", Static).content)
            assert "role_unavailable" in detail and "AccessDenied" in detail

            # Fix the config (the right role again), then redrive from the screen.
            config.customer_mappings[broken] = good
            screen.query_one("#dlq-messages", DataTable).focus()
            await pilot.press("R")
            await wait_for(
                pilot, lambda: any("Redrive 1 message" in plain(w.content) for w in app.screen.query(Static))
            )
            await pilot.press("y")
            await wait_for(pilot, lambda: screen.idle and screen.last_result is not None, timeout=30)
            assert screen.last_result is not None and screen.last_result.moved_count == 1
            await wait_for(
                pilot,
                lambda: (
                    (r := record(aws_factory, config, broken)) is not None and r.state is DeliveryState.SENT
                ),
                timeout=60,
                what="the redriven delivery sent",
            )
            await settle(pilot)

    expected = {
        (addr.lower(), CHANGE_ID, 2, "submitted", code)
        for code in (broken, healthy)
        for addr in subscribed(code, CONTACTS, TOPIC_APPROVAL)
    }
    counts = per_recipient(outbox(moto_endpoint, CHANGE_ID))
    assert set(counts) == expected
    assert all(n == 1 for n in counts.values()), counts
    assert DlqService(aws_factory, config).summary(broken).depth == 0
