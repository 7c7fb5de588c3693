"""Team templates under templates/ in the bucket: save, list, show, rename, delete, a new change from one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from changeconsole.models import Change
from changeconsole.services.authz import Authorizer
from changeconsole.services.aws import AwsFactory
from changeconsole.services.templates import TemplateExists, TemplateNotFound, TemplateStore
from support.aws import audit_events, bucket_keys
from support.changes import change_data
from support.cli import Cli


def test_round_trip_keeps_the_content_without_id_and_window(make_stack: Any, aws_factory: AwsFactory) -> None:
    stack = make_stack(customers=3, contacts=0)
    codes = sorted(stack.config.customer_mappings)
    store = TemplateStore(
        aws_factory, stack.config, authz=Authorizer(aws_factory, stack.config, operator="alice")
    )
    source = Change.model_validate(
        {**change_data(codes[:2]), "changeId": "CHG-2026-03-01T10-00-00-abc123", "x-team": "core"}
    )
    saved = store.save("monthly-patching", source)
    assert saved.saved_by == "alice"
    assert bucket_keys(aws_factory, stack.config, "templates/") == ["templates/monthly-patching.json"]
    with pytest.raises(TemplateExists):
        store.save("monthly-patching", source)
    got = store.get("monthly-patching")
    assert "implementationStart" not in got.content and "changeId" not in got.content
    assert got.content["x-team"] == "core", "unknown keys survive"
    assert got.customers == codes[:2] and got.title == source.title

    new = store.new_change("monthly-patching")
    assert new.change_id != source.change_id and new.version == 1 and new.status.value == "draft"
    assert new.implementation_start is None and new.implementation_end is None
    assert (new.title, new.reason, new.snow_ticket, new.customers) == (
        source.title,
        source.reason,
        source.snow_ticket,
        source.customers,
    )
    assert (new.model_extra or {}).get("x-team") == "core"

    store.rename("monthly-patching", "patching")
    assert [t.name for t in store.list()] == ["patching"]
    with pytest.raises(TemplateNotFound):
        store.get("monthly-patching")
    store.delete("patching")
    assert store.list() == []
    with pytest.raises(TemplateNotFound):
        store.delete("patching")
    # Each change passed the authorization point, which audited it (the refused save too).
    done = [
        (e["action"], e["result"], e.get("template"))
        for e in audit_events(aws_factory, stack.config)
        if e.get("type") == "operator.action" and e["operator"] == "alice"
    ]
    assert sorted(done) == [
        ("template.delete", "ok", "patching"),
        ("template.delete", "rejected", "patching"),
        ("template.rename", "ok", "patching"),
        ("template.save", "ok", "monthly-patching"),
        ("template.save", "rejected", "monthly-patching"),
    ]


def test_cli_templates_and_change_new(make_stack: Any, tmp_path: Path) -> None:
    stack = make_stack(customers=3, contacts=0)
    codes = sorted(stack.config.customer_mappings)
    cli = Cli(stack, tmp_path)
    path = cli.file(change_data(codes[:2], changeTitle="Kernel patching"))
    assert cli.json("template", "save", "kernel", path)["title"] == "Kernel patching"
    assert cli("template", "save", "kernel", path).exit_code == 2, "exists"
    assert cli.json("template", "save", "kernel", path, "--overwrite")["name"] == "kernel"
    assert cli("template", "save", "bad name!", path).exit_code == 2
    listed = cli.json("template", "list")
    assert [t["name"] for t in listed["templates"]] == ["kernel"]
    assert cli.json("template", "show", "kernel")["content"]["changeTitle"] == "Kernel patching"
    made = cli.json("change", "new", "--template", "kernel")
    assert made["draft"] is True
    shown = cli.json("change", "show", made["change_id"])
    assert shown["changeTitle"] == "Kernel patching" and shown["status"] == "draft"
    assert shown["implementationStart"] is None
    out = tmp_path / "new.json"
    written = cli.json("change", "new", "--template", "kernel", "--file", str(out))
    assert json.loads(out.read_text())["changeId"] == written["change_id"] != made["change_id"]
    assert cli.json("template", "rename", "kernel", "kernel-v2")["name"] == "kernel-v2"
    assert cli("change", "new", "--template", "kernel").exit_code == 2
    assert cli.json("template", "delete", "kernel-v2")["deleted"] is True
    assert cli.json("template", "list")["count"] == 0
