"""config.json: every problem with its JSON path, loading, and where the file is found."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from changeconsole.config import (
    ENV_CONFIG,
    ConfigError,
    config_problems,
    default_config_path,
    load_config,
    local_config_path,
    parse_config_text,
    resolve_config_path,
    write_config,
)
from changeconsole.models import Config
from changeconsole.services.localstack import build_local_config


def good_config() -> dict[str, Any]:
    return build_local_config(3, endpoint="http://127.0.0.1:4566")


def broken_config() -> dict[str, Any]:
    """One of each kind of problem; BROKEN_PATHS lists where each must be reported."""
    raw = good_config()
    raw["aws_region"] = "Virginia"
    raw["s3_config"] = {"bucket_name": "Bad_Bucket"}
    raw["email_config"] = {"sender_address": "not-an-address", "portal_base_url": "ftp://x"}
    raw["transport"] = "carrier-pigeon"
    raw["max_receive_count"] = 0
    raw["branding"] = {"accent_color": "red"}
    acme = raw["customer_mappings"]["acme"]
    acme["ses_role_arn"] = "arn:aws:iam::12345:user/bob"
    acme["sqs_queue_arn"] = "https://sqs.us-east-1.amazonaws.com/123456789012/q"
    acme["restricted_recipients"] = ["ok@acme.example.com", "nope"]
    globex = raw["customer_mappings"]["globex"]
    globex["customer_code"] = "globex-corp"
    globex["customer_name"] = ""
    del raw["customer_mappings"]["initech"]["ses_role_arn"]
    raw["customer_mappings"]["Bad Key"] = dict(raw["customer_mappings"]["initech"], customer_code="Bad Key")
    return raw


BROKEN_PATHS = {
    "aws_region",
    "s3_config.bucket_name",
    "email_config.sender_address",
    "email_config.portal_base_url",
    "transport",
    "max_receive_count",
    "branding.accent_color",
    "customer_mappings.acme.ses_role_arn",
    "customer_mappings.acme.sqs_queue_arn",
    "customer_mappings.acme.restricted_recipients[1]",
    "customer_mappings.globex.customer_code",
    "customer_mappings.globex.customer_name",
    "customer_mappings.initech.ses_role_arn",
    "customer_mappings.Bad Key",
    "customer_mappings.Bad Key.customer_code",
}


def test_local_config_is_valid() -> None:
    assert config_problems(good_config()) == []
    cfg = parse_config_text(json.dumps(good_config()))
    assert sorted(cfg.customer_mappings) == ["acme", "globex", "initech"]


def test_every_problem_is_reported_with_its_json_path() -> None:
    problems = config_problems(broken_config())
    paths = [p["path"] for p in problems]
    assert set(paths) >= BROKEN_PATHS
    assert len(paths) == len(set(paths)), "each problem once"
    assert all(p["message"] for p in problems)
    by_path = {p["path"]: p["message"] for p in problems}
    assert "must equal its key" in by_path["customer_mappings.globex.customer_code"]
    assert "required" in by_path["customer_mappings.initech.ses_role_arn"].lower()


def test_key_mismatch_alone_is_reported_once() -> None:
    raw = good_config()
    raw["customer_mappings"]["acme"]["customer_code"] = "globex"
    problems = config_problems(raw)
    assert [p["path"] for p in problems] == ["customer_mappings.acme.customer_code"]
    with pytest.raises(ConfigError):
        parse_config_text(json.dumps(raw))


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ([], "$"),
        ("config", "$"),
        ({}, "aws_region"),
        ({**good_config(), "customer_mappings": {}}, "customer_mappings"),
        ({**good_config(), "customer_mappings": {"acme": "x"}}, "customer_mappings.acme"),
    ],
)
def test_structural_problems(raw: Any, path: str) -> None:
    assert path in {p["path"] for p in config_problems(raw)}


def test_trailing_newline_does_not_sneak_past_patterns() -> None:
    raw = good_config()
    raw["aws_region"] = "us-east-1\n"
    raw["s3_config"]["bucket_name"] = "bucket\n"
    acme = raw["customer_mappings"]["acme"]
    acme["ses_role_arn"] += "\n"
    acme["sqs_queue_arn"] += "\n"
    raw["customer_mappings"]["acme\n"] = dict(raw["customer_mappings"].pop("globex"), customer_code="acme\n")
    paths = {p["path"] for p in config_problems(raw)}
    assert {
        "aws_region",
        "s3_config.bucket_name",
        "customer_mappings.acme.ses_role_arn",
        "customer_mappings.acme.sqs_queue_arn",
        "customer_mappings.acme\n",
    } <= paths


def test_config_error_message_lists_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(broken_config()))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    err = info.value
    assert err.path == path
    assert {p["path"] for p in err.problems} >= BROKEN_PATHS
    assert str(path) in str(err)
    assert f"{len(err.problems)} problem(s)" in str(err)


def test_load_config_reports_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no config file"):
        load_config(tmp_path / "missing.json")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text('{"aws_region": ')
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert info.value.problems[0]["path"] == "$"
    assert "line 1" in info.value.problems[0]["message"]


def test_write_then_load_round_trip(tmp_path: Path) -> None:
    raw = good_config()
    raw["unknown_top"] = {"kept": True}
    path = tmp_path / "nested" / "config.json"
    write_config(Config.model_validate(raw), path)
    loaded = load_config(path)
    assert loaded.to_json_dict() == Config.model_validate(raw).to_json_dict()
    assert json.loads(path.read_text())["unknown_top"] == {"kept": True}
    assert json.loads(path.read_text())["local"] == raw["local"]
    assert not list(path.parent.glob("*.tmp"))


# -- precedence: --config flag > CHANGECONSOLE_CONFIG > XDG path ---------------------------------


def test_precedence_flag_over_env_over_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    xdg = resolve_config_path()
    assert xdg.origin == "xdg"
    assert xdg.path == default_config_path()
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert resolve_config_path().path == tmp_path / "xdg" / "changeconsole" / "config.json"

    monkeypatch.setenv(ENV_CONFIG, str(tmp_path / "env.json"))
    env = resolve_config_path()
    assert (env.origin, env.path) == ("env", tmp_path / "env.json")
    assert resolve_config_path(local=True).origin == "env"

    flag = resolve_config_path(tmp_path / "flag.json", local=True)
    assert (flag.origin, flag.path) == ("flag", tmp_path / "flag.json")


def test_local_mode_uses_the_local_stack_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    local = resolve_config_path(local=True)
    assert local.origin == "local"
    assert local.path == local_config_path() == tmp_path / "data" / "changeconsole" / "local" / "config.json"


def test_flag_expands_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_config_path("~/cfg.json").path == tmp_path / "cfg.json"
