"""``change resend-unknown`` end to end: CliRunner against the local stack with a real worker."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner, Result

from changeconsole.cli import change_cmd, main
from changeconsole.models import DeliveryState, RecipientState
from changeconsole.services.aws import AwsFactory
from changeconsole.services.ledger import ClaimState, Ledger
from support.resend import expected_recipients, partial_delivery, received, settled
from support.waiting import wait_until
from support.worker import running_worker


def run(stack: Any, *args: str, input: str | None = None) -> Result:
    base = ["--config", str(stack.config_path), "--endpoint-url", stack.endpoint]
    env = {"CHANGECONSOLE_OPERATOR": "alice", "COLUMNS": "200"}
    return CliRunner().invoke(main, [*base, *args], env=env, input=input, catch_exceptions=False)


def test_resend_unknown_cli_refuses_without_yes_dry_runs_and_resends(
    make_stack: Any, aws_factory: AwsFactory, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack, change, key, lost, codes = partial_delivery(make_stack, aws_factory)
    config = stack.config
    ledger = Ledger(aws_factory, config)
    cid = change.change_id
    with running_worker(aws_factory, config):
        wait_until(
            lambda: settled(aws_factory, config, change, codes[0], DeliveryState.PARTIAL),
            60,
            what="first delivery partial",
        )

        # No terminal, no --yes: refused (exit 2), nothing changed.
        refused = run(stack, "change", "resend-unknown", cid, "--json")
        assert refused.exit_code == 2, (refused.stdout, refused.stderr)
        assert "--yes" in refused.stderr and "twice" in refused.stderr
        assert ledger.recipients(key)[lost].state == RecipientState.UNKNOWN

        # At a terminal the operator is asked; "no" changes nothing.
        monkeypatch.setattr(change_cmd, "_can_ask", lambda: True)
        declined = run(stack, "change", "resend-unknown", cid, input="n\n")
        assert declined.exit_code == 0, declined.stderr
        assert "twice" in declined.stderr and "nothing resent" in declined.stderr
        assert lost in declined.stdout  # the table of unknown recipients
        assert ledger.recipients(key)[lost].state == RecipientState.UNKNOWN
        monkeypatch.undo()

        # Dry run: lists and reports, changes nothing.
        dry = run(stack, "change", "resend-unknown", cid, "--dry-run", "--json")
        assert dry.exit_code == 0, dry.stderr
        doc = json.loads(dry.stdout)
        assert doc["dry_run"] is True and doc["resent"] == 1 and doc["audit_key"] is None
        assert [u["email"].lower() for u in doc["unknown"]] == [lost]
        assert doc["unknown"][0]["customer"] == codes[0]
        assert doc["deliveries"][0]["resend"] == [lost]
        assert ledger.recipients(key)[lost].state == RecipientState.UNKNOWN
        assert ledger.get_claim(key).state == ClaimState.DONE

        # Another customer, another version: nothing unknown there.
        other = run(stack, "change", "resend-unknown", cid, "--customer", codes[1], "--yes", "--json")
        assert other.exit_code == 0, other.stderr
        assert json.loads(other.stdout)["unknown"] == []
        none = run(stack, "change", "resend-unknown", cid, "--version", str(change.version + 1), "--yes")
        assert none.exit_code == 0 and "no unknown recipients" in none.stderr

        # Bad input; a read-only session may only look.
        base = ["--config", str(stack.config_path), "--endpoint-url", stack.endpoint]
        readonly = CliRunner().invoke(
            main, ["--readonly", *base, "change", "resend-unknown", cid, "--yes"], catch_exceptions=False
        )
        assert readonly.exit_code == 2 and "read-only" in readonly.stderr
        assert ledger.recipients(key)[lost].state == RecipientState.UNKNOWN
        assert run(stack, "change", "resend-unknown", cid, "--event", "submitted").exit_code == 2
        assert run(stack, "change", "resend-unknown", cid, "--customer", "nope", "--yes").exit_code == 2

        done = run(
            stack,
            "change",
            "resend-unknown",
            cid,
            "--customer",
            codes[0],
            "--version",
            str(change.version),
            "--event",
            "submitted",
            "--yes",
            "--json",
        )
        assert done.exit_code == 0, done.stderr
        doc = json.loads(done.stdout)
        assert doc["dry_run"] is False and doc["resent"] == 1 and doc["ok"] is True
        assert doc["operator"] == "alice" and doc["audit_key"]
        assert doc["deliveries"] == [
            {
                "change_id": cid,
                "version": change.version,
                "event": "submitted",
                "customer": codes[0],
                "resend": [lost],
                "refused": {},
                "triggered": True,
                "trigger_error": None,
                "retriggered_pending": False,
            }
        ]
        wait_until(
            lambda: settled(aws_factory, config, change, codes[0], DeliveryState.SENT),
            60,
            what="resent delivery sent",
        )
    got = received(moto_endpoint, change)
    assert set(got) == expected_recipients(codes) and set(got.values()) == {1}
    assert ledger.recipients(key)[lost].state == RecipientState.SENT
