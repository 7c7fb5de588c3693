"""The change file format: docs/change-format.md is generated from the model's JSON Schema (stale:
this fails), `change schema` prints that schema, `change template` a valid file to start from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
from click.testing import CliRunner

from changeconsole import changeformat
from changeconsole.cli import main
from changeconsole.models import Change
from support.changes import change_data
from support.cli import Cli

DOC = Path(__file__).resolve().parents[1] / "docs" / "change-format.md"


def test_the_document_is_generated_from_the_schema() -> None:
    assert DOC.read_text(encoding="utf-8") == changeformat.markdown(), (
        "docs/change-format.md is stale: changeconsole change schema --markdown > docs/change-format.md"
    )
    for name in Change.model_json_schema(by_alias=True)["properties"]:
        assert f"| `{name}` |" in DOC.read_text(encoding="utf-8"), name  # every field documented


def test_schema_command_prints_the_schema_a_real_change_satisfies(make_stack: Any, tmp_path: Path) -> None:
    runner = CliRunner()
    printed = runner.invoke(main, ["change", "schema"])
    assert printed.exit_code == 0
    schema = json.loads(printed.stdout)
    assert schema == changeformat.json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    cli = Cli(make_stack(customers=2, contacts=0), tmp_path)
    codes = sorted(cli.stack.config.customer_mappings)
    cid = cli.json("change", "submit", cli.file(change_data(codes)))["change_id"]
    jsonschema.validate(cli.json("change", "show", cid), schema)  # what show --json prints
    bad = change_data(codes) | {"changeTitle": "", "version": 0}
    errors = {e.path[0] for e in jsonschema.Draft202012Validator(schema).iter_errors(bad)}
    assert errors == {"changeTitle", "version"}


def test_template_is_a_valid_file_to_draft(make_stack: Any, tmp_path: Path) -> None:
    cli = Cli(make_stack(customers=2, contacts=0), tmp_path)
    result = cli("change", "template")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)  # stdout is the file; the advice is on stderr
    assert doc["customers"] == sorted(cli.stack.config.customer_mappings)[:1]
    assert "changeconsole change draft" in result.stderr
    jsonschema.validate(doc, changeformat.json_schema())
    path = tmp_path / "change.json"
    path.write_text(result.stdout)
    drafted = cli.json("change", "draft", str(path))
    assert cli.json("change", "show", drafted["change_id"])["changeTitle"] == doc["changeTitle"]
    chosen = json.loads(cli("change", "template", "--customer", "globex", "--customer", "acme").stdout)
    assert chosen["customers"] == ["globex", "acme"]
