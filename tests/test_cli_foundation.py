"""The foundation CLI: `config validate`, `provision`, `local up`, and where the config comes from."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from changeconsole.cli import main
from changeconsole.config import ENV_CONFIG, default_config_path, local_config_path, write_config
from changeconsole.models import Config
from changeconsole.services.localstack import LocalStackResult, build_local_config, local_factory, reset

StackFactory = Callable[..., LocalStackResult]


def cli(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env)


def broken() -> dict[str, Any]:
    raw = build_local_config(2, endpoint="http://127.0.0.1:4566")
    raw["aws_region"] = "mars-1"
    raw["email_config"]["sender_address"] = "nobody"
    raw["customer_mappings"]["acme"]["ses_role_arn"] = "arn:aws:iam::1:role/x"
    raw["customer_mappings"]["globex"]["customer_code"] = "initech"
    raw["customer_mappings"]["globex"]["restricted_recipients"] = ["ok@globex.example.com", "broken"]
    raw["max_receive_count"] = "three"
    return raw


BROKEN = {
    "aws_region",
    "email_config.sender_address",
    "customer_mappings.acme.ses_role_arn",
    "customer_mappings.globex.customer_code",
    "customer_mappings.globex.restricted_recipients[1]",
    "max_receive_count",
}


def write(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


# -- config validate ------------------------------------------------------------------------------


def test_validate_accepts_the_config_written_by_the_local_stack(make_stack: StackFactory) -> None:
    stack = make_stack(customers=2, contacts=1)
    human = cli("config", "validate", "--config", str(stack.config_path))
    assert human.exit_code == 0, human.output
    assert "valid" in human.stderr
    assert "2 customers" in human.stderr
    machine = cli("--config", str(stack.config_path), "config", "validate", "--json")
    assert machine.exit_code == 0
    assert json.loads(machine.stdout) == {
        "path": str(stack.config_path),
        "origin": "flag",
        "valid": True,
        "problems": [],
    }


def test_validate_lists_every_problem_with_its_path(tmp_path: Path) -> None:
    path = write(tmp_path / "broken.json", broken())
    human = cli("config", "validate", "--config", str(path))
    assert human.exit_code == 2
    lines = human.stdout.splitlines()
    assert {line.split(": ", 1)[0] for line in lines} == BROKEN
    assert all(": " in line for line in lines)
    assert f"{len(BROKEN)} problem(s)" in human.stderr
    machine = cli("config", "validate", "--json", "--config", str(path))
    assert machine.exit_code == 2
    report = json.loads(machine.stdout)
    assert report["valid"] is False
    assert report["origin"] == "flag"
    assert {p["path"] for p in report["problems"]} == BROKEN
    assert all(p["message"] for p in report["problems"])


@pytest.mark.parametrize(
    ("content", "fragment"),
    [(None, "cannot read"), ("{not json", "not JSON"), ("[1, 2]", "JSON object")],
)
def test_validate_unusable_files(tmp_path: Path, content: str | None, fragment: str) -> None:
    path = tmp_path / "config.json"
    if content is not None:
        write(path, content)
    result = cli("config", "validate", "--json", "--config", str(path))
    assert result.exit_code == 2
    problems = json.loads(result.stdout)["problems"]
    assert [p["path"] for p in problems] == ["$"]
    assert fragment in problems[0]["message"]


def test_config_precedence_flag_env_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good = build_local_config(2, endpoint="http://127.0.0.1:4566")
    xdg = write(default_config_path(), good)

    def origin(*args: str) -> tuple[str, str, int]:
        result = cli("config", "validate", "--json", *args)
        report = json.loads(result.stdout)
        return report["origin"], report["path"], result.exit_code

    assert origin() == ("xdg", str(xdg), 0)
    env_file = write(tmp_path / "env.json", broken())
    monkeypatch.setenv(ENV_CONFIG, str(env_file))
    assert origin() == ("env", str(env_file), 2)
    assert origin("--local") == ("env", str(env_file), 2)
    flag_file = write(tmp_path / "flag.json", good)
    assert origin("--config", str(flag_file)) == ("flag", str(flag_file), 0)
    monkeypatch.delenv(ENV_CONFIG)
    assert origin("--local") == ("local", str(local_config_path()), 2)  # none written yet


# -- provision --------------------------------------------------------------------------------------


def test_provision_dry_run_then_create_then_nothing_changed(moto_endpoint: str, tmp_path: Path) -> None:
    reset(moto_endpoint)
    raw = build_local_config(2, endpoint=moto_endpoint)
    path = tmp_path / "config.json"
    write_config(raw, path)
    base = ["--config", str(path), "--endpoint-url", moto_endpoint, "provision"]

    dry = cli(*base, "--dry-run", "--json")
    assert dry.exit_code == 0, dry.stderr
    plan = json.loads(dry.stdout)
    assert plan["dry_run"] is True
    assert {a["result"] for a in plan["actions"]} == {"would-create"}
    kinds = {a["kind"] for a in plan["actions"]}
    assert kinds == {
        "bucket",
        "audit",
        "dlq",
        "queue",
        "table",
        "notifications",
        "events_queue",
        "events_topic",
        "configuration_set",
    }
    s3 = local_factory(moto_endpoint, max_attempts=1).client("s3")
    assert s3.list_buckets()["Buckets"] == []

    first = cli(*base, "--json")
    assert first.exit_code == 0, first.stderr
    created = json.loads(first.stdout)
    # and the SES events queue and topic, each customer's configuration set; its event destination is
    # skipped (moto has none) and changes nothing
    assert created["changed"] == 1 + 1 + 2 + 1 + 2 * 2 + 2 + 2
    assert len(created["actions"]) == created["changed"] + 2
    audit = next(a for a in created["actions"] if a["kind"] == "audit")
    assert (audit["name"], audit["detail"]) == ("audit/", "to GLACIER_IR after 90 d (lifecycle rule set)")
    rules = s3.get_bucket_lifecycle_configuration(Bucket=raw["s3_config"]["bucket_name"])["Rules"]
    assert [r["ID"] for r in rules] == ["audit-retention"]
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == [raw["s3_config"]["bucket_name"]]

    second = cli(*base, "--json")
    assert second.exit_code == 0
    again = json.loads(second.stdout)
    assert again["changed"] == 0
    assert {a["result"] for a in again["actions"]} == {"unchanged", "skipped"}
    human = cli(*base)
    assert human.exit_code == 0
    assert "nothing to change" in human.stderr


def test_provision_refuses_a_broken_config(tmp_path: Path, moto_endpoint: str) -> None:
    path = write(tmp_path / "broken.json", broken())
    result = cli("--config", str(path), "--endpoint-url", moto_endpoint, "provision", "--json")
    assert result.exit_code == 2
    assert result.stdout == ""
    for p in BROKEN:
        assert p in result.stderr


# -- local up -------------------------------------------------------------------------------------


def test_local_up_provisions_a_running_server_and_returns(moto_endpoint: str, tmp_path: Path) -> None:
    reset(moto_endpoint)
    port = moto_endpoint.rsplit(":", 1)[1]
    out = tmp_path / "local" / "config.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "changeconsole",
            "local",
            "up",
            "--port",
            port,
            "--customers",
            "3",
            "--contacts",
            "2",
            "--config-out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "reusing the local stack" in proc.stderr
    assert f"endpoint:    {moto_endpoint}" in proc.stdout
    assert str(out) in proc.stdout
    assert "3 customers, 3 queues + 3 DLQs, 6 contacts" in proc.stdout
    written = json.loads(out.read_text())
    assert len(written["customer_mappings"]) == 3
    assert written["local"]["endpoint_url"] == moto_endpoint
    validated = cli("config", "validate", "--config", str(out))
    assert validated.exit_code == 0
    aws = local_factory(moto_endpoint, max_attempts=1)
    urls = aws.client("sqs").list_queues(QueueNamePrefix="changeconsole-")["QueueUrls"]
    assert len(urls) == 6 + 1  # and the SES events queue
    cfg = Config.model_validate(written)
    for code in cfg.customer_mappings:
        ses = aws.customer_client(cfg.customer(code), "sesv2")
        assert len(ses.list_contacts(ContactListName=cfg.contact_list_for(code))["Contacts"]) == 2


def test_local_up_fails_cleanly_when_the_port_is_taken_by_something_else(tmp_path: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        port = blocker.getsockname()[1]
        result = cli("local", "up", "--port", str(port), "--config-out", str(tmp_path / "c.json"))
    assert result.exit_code == 1
    assert "already in use" in result.stderr
    assert not (tmp_path / "c.json").exists()


def test_bad_options_exit_2() -> None:
    assert cli("local", "up", "--port", "0").exit_code == 2
    assert cli("config", "validate", "--bogus").exit_code == 2
    assert cli("no-such-command").exit_code == 2
