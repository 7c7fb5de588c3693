"""The CLI as an operator runs it, in this process (click's CliRunner), against a local stack."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from changeconsole.cli import main
from changeconsole.services.localstack import LocalStackResult


class Cli:
    """``changeconsole`` through click's CliRunner against a local stack (stdout and stderr apart)."""

    def __init__(self, stack: LocalStackResult, tmp_path: Path) -> None:
        self.stack, self.tmp_path = stack, tmp_path
        self.runner = CliRunner()

    def __call__(self, *args: str, operator: str = "alice") -> Result:
        base = ["--config", str(self.stack.config_path), "--endpoint-url", self.stack.endpoint]
        env = {"CHANGECONSOLE_OPERATOR": operator, "COLUMNS": "200"}
        return self.runner.invoke(main, [*base, *args], env=env, catch_exceptions=False)

    def json(self, *args: str, operator: str = "alice", code: int = 0) -> Any:
        result = self(*args, "--json", operator=operator)
        assert result.exit_code == code, (result.stdout, result.stderr)
        return json.loads(result.stdout)

    def file(self, data: dict[str, Any], name: str = "change.json") -> str:
        path = self.tmp_path / name
        path.write_text(json.dumps(data), encoding="utf-8")
        return str(path)
