"""`changeconsole dlq …` end to end against moto: JSON shapes, exit codes, safety refusals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from changeconsole.cli import main
from changeconsole.models import Config
from changeconsole.services.localstack import LocalStackResult, local_factory, provision_local, reset
from support.aws import audit_events, drain, empty_stack, visible
from support.dlq import put_dead_letters


@pytest.fixture(scope="module")
def _module_stack(moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> LocalStackResult:
    reset(moto_endpoint)
    path = tmp_path_factory.mktemp("dlq-cli") / "config.json"
    return provision_local(moto_endpoint, customers=2, contacts=1, config_path=path)


@pytest.fixture
def stack(_module_stack: LocalStackResult, monkeypatch: pytest.MonkeyPatch) -> LocalStackResult:
    monkeypatch.setenv("CHANGECONSOLE_OPERATOR", "ops-cli")
    empty_stack(local_factory(_module_stack.endpoint, max_attempts=1), _module_stack.config)
    return _module_stack


@pytest.fixture
def aws(stack: LocalStackResult) -> Any:
    return local_factory(stack.endpoint, max_attempts=1)


def cli(stack: LocalStackResult, *args: str, readonly: bool = False) -> Result:
    pre = ["--readonly"] if readonly else []
    return CliRunner().invoke(main, [*pre, "--config", str(stack.config_path), "--local", "dlq", *args])


def code_of(config: Config) -> str:
    return sorted(config.customer_mappings)[0]


def test_list_json_and_table(stack: LocalStackResult, aws: Any) -> None:
    code = code_of(stack.config)
    put_dead_letters(aws, stack.config, code, 2)
    result = cli(stack, "list", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    rows = {r["customer"]: r for r in data["customers"]}
    assert data["total_messages"] == 2 and rows[code]["depth"] == 2
    assert set(rows[code]) == {
        "customer", "name", "queue", "depth", "in_flight", "oldest_age_seconds", "age_source", "error"
    }  # fmt: skip
    human = cli(stack, "list")
    assert human.exit_code == 0 and code in human.stdout
    assert "2 dead-lettered message(s) in 1 of 2 customer DLQs" in human.stderr


def test_peek_json_with_filter_and_the_visibility_warning(stack: LocalStackResult, aws: Any) -> None:
    code = code_of(stack.config)
    put_dead_letters(aws, stack.config, code, 2, reason="role_assume_failed")
    put_dead_letters(aws, stack.config, code, 1, reason="isolation_violation")
    result = cli(stack, "peek", code, "--filter", "cc-reason=isolation*", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["matched"] == 1 and data["scanned"] == 3 and data["age_source"] == "peek"
    (msg,) = data["messages"]
    assert msg["reason"] == "isolation_violation" and msg["attributes"]["cc-customer"] == code
    assert msg["body"].startswith("{") and msg["first_received_at"].endswith("Z")
    assert "invisible" in result.stderr and "receive count" in result.stderr
    human = cli(stack, "peek", code, "--max", "3")
    assert human.exit_code == 0 and "role_assume_failed" in human.stdout
    lines = human.stdout.strip().splitlines()
    assert len(lines) == 4 and msg["message_id"] in human.stdout  # a header and one line per message
    bad = cli(stack, "peek", code, "--max", "0")
    assert bad.exit_code == 2


def test_unknown_customer_is_bad_input(stack: LocalStackResult) -> None:
    result = cli(stack, "peek", "nobody")
    assert result.exit_code == 2 and "unknown customer" in result.stderr


def test_redrive_selected_dry_run_and_json(stack: LocalStackResult, aws: Any) -> None:
    config = stack.config
    code = code_of(config)
    ids = put_dead_letters(aws, config, code, 3)
    dry = cli(stack, "redrive", code, "--message-id", ids[0], "--message-id", ids[2], "--dry-run", "--json")
    assert dry.exit_code == 0, dry.stderr
    data = json.loads(dry.stdout)
    assert data["dry_run"] and sorted(m["message_id"] for m in data["would_move"]) == sorted([ids[0], ids[2]])
    assert (
        visible(aws, config.customer(code).dlq_name) == 3
        and visible(aws, config.customer(code).queue_name) == 0
    )
    moved = cli(stack, "redrive", code, "--message-id", ids[0], "--message-id", ids[2], "--json")
    assert moved.exit_code == 0, moved.stderr
    data = json.loads(moved.stdout)
    assert sorted(data["moved"]) == sorted([ids[0], ids[2]]) and data["ok"] and data["mode"] == "manual"
    assert set(data["new_ids"]) == set(data["moved"])
    assert visible(aws, config.customer(code).dlq_name) == 1
    assert len(drain(aws, config.customer(code).queue_name)) == 2


def test_redrive_all_with_rate_falls_back_and_reports(stack: LocalStackResult, aws: Any) -> None:
    code = code_of(stack.config)
    put_dead_letters(aws, stack.config, code, 2)
    result = cli(stack, "redrive", code, "--all", "--rate", "50")
    assert result.exit_code == 0, result.stderr
    assert "moved 2 message(s)" in result.stderr and "native move unavailable" in result.stderr
    assert len(result.stdout.strip().splitlines()) == 2


def test_redrive_input_errors_and_partial_failure(stack: LocalStackResult, aws: Any) -> None:
    code = code_of(stack.config)
    assert cli(stack, "redrive", code).exit_code == 2
    assert cli(stack, "redrive", code, "--all", "--message-id", "x").exit_code == 2
    assert cli(stack, "redrive", code, "--all", "--rate", "0").exit_code == 2
    missing = cli(stack, "redrive", code, "--message-id", "does-not-exist", "--json")
    assert missing.exit_code == 1 and json.loads(missing.stdout)["not_found"] == ["does-not-exist"]


def test_export_purge_import_via_cli(stack: LocalStackResult, aws: Any, tmp_path: Path) -> None:
    config = stack.config
    code = code_of(config)
    ids = put_dead_letters(aws, config, code, 3)
    refused = cli(stack, "purge", code)
    assert refused.exit_code == 2 and "no export" in refused.stderr
    assert visible(aws, config.customer(code).dlq_name) == 3

    path = tmp_path / "dlq.jsonl"
    exported = cli(stack, "export", code, str(path), "--json")
    assert exported.exit_code == 0, exported.stderr
    assert json.loads(exported.stdout)["count"] == 3 and len(path.read_text().splitlines()) == 3

    purged = cli(stack, "purge", code, "--json")
    assert purged.exit_code == 0, purged.stderr
    data = json.loads(purged.stdout)
    assert data["mode"] == "export" and sorted(data["deleted"]) == sorted(ids)
    assert visible(aws, config.customer(code).dlq_name) == 0

    back = cli(stack, "import", code, str(path), "--json")
    assert back.exit_code == 0, back.stderr
    assert json.loads(back.stdout)["sent"] == 3
    again = cli(stack, "import", code, str(path))
    assert again.exit_code == 0 and "3 already there, skipped" in again.stderr
    assert visible(aws, config.customer(code).dlq_name) == 3

    assert cli(stack, "purge", code, "--yes").exit_code == 0
    assert visible(aws, config.customer(code).dlq_name) == 0
    to_source = cli(stack, "import", code, str(path), "--to", "source")
    assert to_source.exit_code == 0 and visible(aws, config.customer(code).queue_name) == 3
    events = audit_events(aws, config)
    done = sorted(e["action"] for e in events if e["result"] == "ok")
    assert done == ["dlq.export", "dlq.import", "dlq.import", "dlq.import", "dlq.purge", "dlq.purge"]
    assert [(e["action"], "no export" in e["detail"]) for e in events if e["result"] == "rejected"] == [
        ("dlq.purge", True)
    ]
    assert all(e["operator"] == "ops-cli" and e["via"] == "cli" for e in events)


def test_import_of_a_bad_file_is_exit_2_with_line_numbers(stack: LocalStackResult, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{nope\n")
    result = cli(stack, "import", code_of(stack.config), str(bad))
    assert result.exit_code == 2 and "line 1" in result.stderr


def test_readonly_refuses_mutations_but_not_dry_run(
    stack: LocalStackResult, aws: Any, tmp_path: Path
) -> None:
    code = code_of(stack.config)
    ids = put_dead_letters(aws, stack.config, code, 1)
    for args in (
        ("redrive", code, "--all"),
        ("purge", code, "--yes"),
        ("import", code, str(Path(__file__))),
    ):
        result = cli(stack, *args, readonly=True)
        assert result.exit_code == 2 and "read-only" in result.stderr, args
    assert cli(stack, "redrive", code, "--message-id", ids[0], "--dry-run", readonly=True).exit_code == 0
    assert visible(aws, stack.config.customer(code).dlq_name) == 1
