"""``change …`` and ``status`` end to end against the moto server (click's CliRunner + one subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from changeconsole.cli import main
from changeconsole.models import DeliveryState, Ignore, iso_utc, parse_queue_message, utcnow
from changeconsole.services.aws import AwsFactory
from changeconsole.services.fanout import Fanout
from changeconsole.services.localstack import LocalStackResult
from changeconsole.services.status import DeliveryKey, StatusStore
from support.aws import audit_events, bucket_keys, data_keys, queue_url
from support.changes import change_data, triggers_by_customer
from support.cli import Cli


@pytest.fixture
def stack(make_stack) -> LocalStackResult:
    return make_stack(customers=8, contacts=0)


@pytest.fixture
def codes(stack: LocalStackResult) -> list[str]:
    return sorted(stack.config.customer_mappings)


@pytest.fixture
def cli(stack: LocalStackResult, tmp_path: Path) -> Cli:
    return Cli(stack, tmp_path)


class FakeWorker:
    """Marks each trigger's delivery record final as it arrives in the queues (stand-in for the worker)."""

    def __init__(self, aws: AwsFactory, stack: LocalStackResult, codes: list[str], fail: str | None = None):
        self.aws, self.config, self.codes, self.fail = aws, stack.config, codes, fail
        self.status = StatusStore(aws, stack.config)
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._serve, args=(c,), daemon=True) for c in codes]

    def _serve(self, code: str) -> None:
        sqs = self.aws.client("sqs")
        url = queue_url(self.aws, self.config, code)
        while not self.stop.is_set():
            msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
            for msg in msgs.get("Messages", []):
                trigger = parse_queue_message(msg["Body"])
                if isinstance(trigger, Ignore):
                    continue
                assert trigger.change_id and trigger.version and trigger.event
                key = DeliveryKey(trigger.change_id, trigger.version, trigger.event, code)
                state = DeliveryState.FAILED if code == self.fail else DeliveryState.SENT
                error = "SES rejected the sender" if state is DeliveryState.FAILED else None
                now = iso_utc(utcnow())
                self.status.update(key, state=state, finished_at=now, last_error=error, recipients_total=2)

    def __enter__(self) -> FakeWorker:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()


@pytest.fixture
def worker(aws_factory: AwsFactory, stack: LocalStackResult, codes: list[str]) -> Iterator[FakeWorker]:
    with FakeWorker(aws_factory, stack, codes) as fake:
        yield fake


def test_draft_saves_and_sends_nothing(cli: Cli, stack, aws_factory, codes) -> None:
    result = cli("change", "draft", cli.file(change_data(codes[:2])))
    assert result.exit_code == 0, result.stderr
    change_id = result.stdout.strip()
    assert change_id.startswith("CHG-") and "saved draft" in result.stderr
    data = cli.json("change", "draft", cli.file(change_data(codes[:1], changeTitle="second")))
    assert set(data) == {"change_id", "version", "status", "key", "change"}
    assert (data["status"], data["version"], data["key"]) == ("draft", 1, f"drafts/{data['change_id']}.json")
    assert data["change"]["createdBy"] == "alice"
    assert bucket_keys(aws_factory, stack.config, "customers/") == []
    assert bucket_keys(aws_factory, stack.config, "archive/") == []
    assert all(t == [] for t in triggers_by_customer(aws_factory, stack.config, {}).values())
    listed = cli.json("change", "list", "--status", "draft")
    assert {c["change_id"] for c in listed["changes"]} == {change_id, data["change_id"]}


@pytest.mark.parametrize("command", ["draft", "submit"])
def test_bad_fields_are_named_exit_2_nothing_written(cli: Cli, stack, aws_factory, command: str) -> None:
    bad = change_data(
        ["ACME!!", "nobody"],
        changeTitle="  ",
        implementationStart="next tuesday",
        timezone="Mars/Olympus_Mons",
        snowTicket="x" * 500,
    )
    result = cli("change", command, cli.file(bad))
    assert result.exit_code == 2, result.stderr
    for field in ("changeTitle", "customers", "implementationStart", "timezone", "snowTicket"):
        assert field in result.stderr, field
    assert "nothing was written" in result.stderr
    assert cli("change", command, cli.file({"changeTitle": 1}, "x.json")).exit_code == 2
    broken = cli.tmp_path / "broken.json"
    broken.write_text('{"changeTitle": "unterminated', encoding="utf-8")
    result = cli("change", command, str(broken))
    assert result.exit_code == 2 and "not valid JSON" in result.stderr
    assert bucket_keys(aws_factory, stack.config) == []
    assert cli.json("change", "list")["changes"] == []


def test_submit_needs_dates_exit_2(cli: Cli, stack, aws_factory, codes) -> None:
    result = cli(
        "change", "submit", cli.file(change_data(codes[:1], implementationStart=None, implementationEnd=None))
    )
    assert result.exit_code == 2
    assert "implementationStart" in result.stderr and "implementationEnd" in result.stderr
    assert data_keys(aws_factory, stack.config) == []
    (rejected,) = audit_events(aws_factory, stack.config)
    assert (rejected["action"], rejected["result"], rejected["operator"]) == (
        "change.submit",
        "rejected",
        "alice",
    )


def test_submit_file_to_five_customers(cli: Cli, stack, aws_factory, codes) -> None:
    targets = [codes[i] for i in (0, 1, 3, 4, 6)]
    data = cli.json("change", "submit", cli.file(change_data(codes)), "--customers", ",".join(targets))
    assert set(data) == {"change_id", "version", "status", "event", "ok", "failed", "destinations", "wait"}
    assert (data["version"], data["status"], data["event"], data["ok"], data["wait"]) == (
        2,
        "submitted",
        "submitted",
        True,
        None,
    )
    assert [d["destination"] for d in data["destinations"]] == ["archive", *targets]
    assert {d["state"] for d in data["destinations"]} == {"done"}
    found = triggers_by_customer(aws_factory, stack.config, {c: 1 for c in targets})
    assert [len(found[c]) for c in codes] == [1 if c in targets else 0 for c in codes]
    status = cli.json("status", data["change_id"])
    assert set(status) == {"change_id", "version", "event", "counts", "all_final", "records"}
    assert [r["customer"] for r in status["records"]] == targets
    assert {r["state"] for r in status["records"]} == {"queued"}
    assert status["counts"]["queued"] == 5 and status["all_final"] is False
    human = cli("status", data["change_id"])
    assert human.exit_code == 0 and human.stdout.count("queued") == 5
    assert "5 queued" in human.stderr


def test_human_submit_narrates_progress_on_stderr(cli: Cli, codes) -> None:
    result = cli("change", "submit", cli.file(change_data(codes[:2])))
    assert result.exit_code == 0, result.stderr
    for dest in ("archive", codes[0], codes[1]):
        assert f"{dest}: done" in result.stderr
    assert "archive" in result.stdout and "done" in result.stdout  # the result table


def test_lifecycle_history_diff_show_list(cli: Cli, codes) -> None:
    draft = cli.json("change", "draft", cli.file(change_data(codes[:3], changeTitle="Upgrade Kafka")))
    cid = draft["change_id"]
    assert cli.json("change", "submit", cid)["version"] == 2
    approved = cli.json("change", "approve", cid, operator="bob")
    assert (approved["version"], approved["event"], approved["status"]) == (3, "approved", "approved")
    history = cli.json("change", "history", cid)
    assert [(v["version"], v["status"], v["what"]) for v in history["versions"]] == [
        (1, "draft", "created"),
        (2, "submitted", "submitted"),
        (3, "approved", "approved"),
    ]
    assert history["versions"][2]["by"] == "bob"
    human = cli("change", "history", cid)
    assert human.exit_code == 0 and "approved" in human.stdout and "bob" in human.stdout
    diff = cli.json("change", "history", cid, "--diff", "2", "3")
    fields = {d["field"]: d for d in diff["diffs"]}
    assert (diff["a"], diff["b"]) == (2, 3)
    assert fields["status"]["old"] == "submitted" and fields["status"]["new"] == "approved"
    assert fields["approvedBy"]["new"] == "bob"
    human_diff = cli("change", "history", cid, "--diff", "2", "3")
    assert human_diff.exit_code == 0 and "approvedBy" in human_diff.stdout
    shown = cli.json("change", "show", cid, "--version", "2")
    assert (shown["changeId"], shown["status"], shown["version"]) == (cid, "submitted", 2)
    assert cli.json("change", "show", cid)["approvedBy"] == "bob"
    assert cli("change", "show", cid, "--version", "9").exit_code == 2
    assert "Upgrade Kafka" in cli("change", "show", cid).stdout
    other = cli.json(
        "change",
        "draft",
        cli.file(
            change_data(
                codes[5:6],
                implementationStart="2031-01-01T00:00:00Z",
                implementationEnd="2031-01-01T01:00:00Z",
            )
        ),
    )

    def listed(*args: str) -> list[str]:
        return [c["change_id"] for c in cli.json("change", "list", *args)["changes"]]

    assert listed("--status", "approved") == [cid]
    assert listed("--customer", codes[5]) == [other["change_id"]]
    assert listed("--search", "kafka") == [cid]
    assert listed("--from", "2030-12-31") == [other["change_id"]]
    assert listed("--to", "2030-12-31") == [cid]
    assert listed("--from", "2031-01-01T00:00:00Z", "--to", "2031-01-01") == [other["change_id"]]
    assert cli("change", "list", "--from", "someday").exit_code == 2
    table = cli("change", "list")
    assert table.exit_code == 0 and cid in table.stdout and "2 change(s)" in table.stderr


def test_illegal_transition_exit_2_names_allowed(cli: Cli, codes) -> None:
    cid = cli.json("change", "submit", cli.file(change_data(codes[:1])))["change_id"]
    result = cli("change", "complete", cid)
    assert result.exit_code == 2
    assert "allowed from submitted: approved, cancelled" in result.stderr
    assert cli("change", "approve", "CHG-2030-01-01T00-00-00-zzzzzz").exit_code == 2
    assert cli.json("change", "cancel", cid, "--reason", "Window clashes")["status"] == "cancelled"
    assert cli.json("change", "show", cid)["modifications"][-1]["reason"] == "Window clashes"
    assert "none (final state)" in cli("change", "approve", cid).stderr


def test_submit_file_of_archived_change_edits_and_refuses_stale(cli: Cli, stack, aws_factory, codes) -> None:
    cid = cli.json("change", "submit", cli.file(change_data(codes[:2])))["change_id"]
    cli.json("change", "approve", cid, operator="bob")
    exported = cli.json("change", "show", cid)  # v3, approved
    exported["changeTitle"] = "Rotate certificates (rescheduled)"
    edited = cli.json("change", "submit", cli.file(exported, "edit.json"))
    assert (edited["version"], edited["status"], edited["event"]) == (4, "submitted", "submitted")
    keys = bucket_keys(aws_factory, stack.config, "customers/")
    assert sum("v0004-submitted" in k for k in keys) == 2
    # The same file again: it still says version 3, the archive is at 4 → conflict, exit 1.
    exported["changeTitle"] = "yet another title"
    stale = cli("change", "submit", cli.file(exported, "edit.json"), operator="carol")
    assert stale.exit_code == 1
    assert "changed by alice at" in stale.stderr
    # Without a version the file would silently overwrite whatever is current: refused (exit 2) naming
    # the way out; --force applies it to the current version (unchanged content sends nothing).
    current = cli.json("change", "show", cid)
    current.pop("version")
    unpinned = cli("change", "submit", cli.file(current, "same.json"))
    assert unpinned.exit_code == 2
    assert '"version"' in unpinned.stderr and "--force" in unpinned.stderr
    same = cli.json("change", "submit", cli.file(current, "same.json"), "--force")
    assert same["destinations"] == [] and same["version"] == 4


def test_partial_failure_exit_1_then_resend(cli: Cli, stack, aws_factory, codes, monkeypatch) -> None:
    broken = codes[1]
    original = Fanout._send

    def send(self: Fanout, code: str, *args: Any) -> None:
        if code == broken:
            raise ConnectionError("endpoint reset")
        original(self, code, *args)

    monkeypatch.setattr(Fanout, "_send", send)
    result = cli("change", "submit", cli.file(change_data(codes[:3])), "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["ok"] is False and data["failed"] == [broken]
    assert "endpoint reset" in {d["destination"]: d["error"] for d in data["destinations"]}[broken]
    assert f"change resend {data['change_id']} --customers {broken}" in result.stderr
    monkeypatch.setattr(Fanout, "_send", original)
    resent = cli.json("change", "resend", data["change_id"], "--customers", broken)
    assert resent["ok"] and [d["destination"] for d in resent["destinations"]] == [broken]
    found = triggers_by_customer(aws_factory, stack.config, {c: 1 for c in codes[:3]})
    assert [len(found[c]) for c in codes[:3]] == [1, 1, 1]


def test_wait_exits_0_when_every_customer_is_sent(cli: Cli, codes, worker: FakeWorker) -> None:
    data = cli.json("change", "submit", cli.file(change_data(codes[:4])), "--wait", "--timeout", "60")
    assert (
        data["wait"]["ok"] is True and data["wait"]["not_sent"] == [] and data["wait"]["timed_out"] is False
    )
    assert sorted(r["customer"] for r in data["wait"]["records"]) == codes[:4]
    human = cli("change", "approve", data["change_id"], "--wait", "--timeout", "60")
    assert human.exit_code == 0, human.stderr
    assert "sent" in human.stderr
    watch = cli.json("status", data["change_id"], "--watch", "--timeout", "60")
    assert watch["all_final"] is True and watch["event"] == "approved"


def test_wait_exits_1_naming_who_was_not_sent(cli: Cli, aws_factory, stack, codes) -> None:
    with FakeWorker(aws_factory, stack, codes, fail=codes[2]):
        result = cli("change", "submit", cli.file(change_data(codes[:4])), "--wait", "--timeout", "60")
    assert result.exit_code == 1
    assert "not sent" in result.stdout and codes[2] in result.stdout
    assert f"did not reach sent: {codes[2]}" in result.stderr


def test_wait_timeout_is_clear_and_exit_1(cli: Cli, codes) -> None:
    result = cli("change", "submit", cli.file(change_data(codes[:2])), "--wait", "--timeout", "1", "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["wait"]["timed_out"] is True and data["wait"]["not_sent"] == codes[:2]
    assert "timed out after 1s" in result.stderr


def test_duplicate_and_delete(cli: Cli, codes) -> None:
    cid = cli.json("change", "submit", cli.file(change_data(codes[:1])))["change_id"]
    copy = cli.json("change", "duplicate", cid)
    assert copy["duplicated_from"] == cid and copy["change"]["status"] == "draft"
    assert cli("change", "delete", cid).exit_code == 2  # submitted
    assert cli.json("change", "delete", copy["change_id"]) == {
        "change_id": copy["change_id"],
        "deleted": True,
    }
    assert [c["change_id"] for c in cli.json("change", "list")["changes"]] == [cid]


def test_console_script_subprocess(stack: LocalStackResult, codes, tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps(change_data(codes[:2])), encoding="utf-8")
    env = {**os.environ, "CHANGECONSOLE_OPERATOR": "erin"}
    base = [sys.executable, "-m", "changeconsole", "--config", str(stack.config_path)]
    out = subprocess.run(
        [*base, "change", "submit", str(path), "--endpoint-url", stack.endpoint, "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["ok"] and data["change_id"] in out.stderr


@pytest.mark.parametrize("columns", ["160", "120"])
def test_list_never_cuts_the_id_and_names_who_saved_a_draft(
    cli: Cli, stack: LocalStackResult, codes, columns: str
) -> None:
    """Issue 16 (8): the id is the value one copies; a draft's "by" is its creator."""
    title = "Rotate every TLS certificate of the edge load balancers in all regions of the estate"
    ids = [
        cli.json(
            "change", "draft", cli.file(change_data(codes, changeTitle=f"{title} {i}")), operator="carol"
        )["change_id"]
        for i in range(2)
    ]
    runner = CliRunner()
    base = ["--config", str(stack.config_path), "--endpoint-url", stack.endpoint]
    result = runner.invoke(main, [*base, "change", "list"], env={"COLUMNS": columns}, catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    for cid in ids:
        row = next(line for line in lines if cid in line)  # whole, on one line
        assert "carol" in row


def test_list_on_80_columns_leaves_columns_out_instead_of_squashing_them(
    cli: Cli, stack: LocalStackResult, codes
) -> None:
    """A pipe is 80 columns: the id stays whole and the title readable; start, customers and "by"
    give way first (they were squashed to nothing)."""
    cid = cli.json("change", "draft", cli.file(change_data(codes, changeTitle="Patch VPN")))["change_id"]
    base = ["--config", str(stack.config_path), "--endpoint-url", stack.endpoint]
    runner = CliRunner()
    result = runner.invoke(main, [*base, "change", "list"], env={"COLUMNS": "80"}, catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    header = next(line for line in lines if line.split()[:1] == ["id"])
    assert header.split() == ["id", "status", "v", "title", "modified"]
    row = next(line for line in lines if cid in line)
    assert "Patch VPN" in row and max(len(line) for line in lines) <= 80
