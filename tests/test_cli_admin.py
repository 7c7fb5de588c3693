"""`contacts`, `topics`, `customer`, `change reindex` and `migrate check` from the command line:
JSON shapes, exit codes (0 ok, 1 failed, 2 bad input), --readonly refusals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from changeconsole.cli import main
from changeconsole.services.localstack import LocalStackResult

FIXTURES = Path(__file__).parent / "fixtures" / "running_system"
NEW_ROLE = "arn:aws:iam::210000000077:role/changeconsole-ses-sender"


@pytest.fixture
def stack(make_stack: Any, monkeypatch: pytest.MonkeyPatch) -> LocalStackResult:
    monkeypatch.setenv("CHANGECONSOLE_OPERATOR", "ops-cli")
    result: LocalStackResult = make_stack(customers=2, contacts=2)
    return result


def cli(stack: LocalStackResult, *args: str, readonly: bool = False, stdin: str | None = None) -> Result:
    pre = ["--readonly"] if readonly else []
    return CliRunner().invoke(main, [*pre, "--config", str(stack.config_path), "--local", *args], input=stdin)


def test_contacts_import_list_update_export_remove(stack: LocalStackResult, tmp_path: Path) -> None:
    csv = tmp_path / "contacts.csv"
    csv.write_text("email,aws-approval\nnew@acme.example.com,OPT_IN\nbroken-address,\n")
    dry = cli(stack, "contacts", "import", "acme", str(csv), "--dry-run", "--json")
    assert dry.exit_code == 2, dry.stderr  # a row is invalid
    data = json.loads(dry.stdout)
    assert data["dry_run"] is True and data["applied"] == 0
    assert [(r["line"], r["result"]) for r in data["rows"]] == [(2, "created"), (3, "invalid")]
    assert set(data) == {
        "customer",
        "contact_list",
        "dry_run",
        "ok",
        "counts",
        "applied",
        "error",
        "audit_key",
        "rows",
    }
    csv.write_text("email,aws-approval\nnew@acme.example.com,OPT_IN\n")
    done = cli(stack, "contacts", "import", "acme", str(csv), "--rate", "1000", "--json")
    assert done.exit_code == 0, done.stderr
    assert json.loads(done.stdout)["counts"]["created"] == 1 and json.loads(done.stdout)["audit_key"]

    listed = cli(stack, "contacts", "list", "acme", "--topic", "aws-approval", "--json")
    assert listed.exit_code == 0, listed.stderr
    body = json.loads(listed.stdout)
    assert body["contact_list"]["name"] == "changeconsole"
    assert [t["name"] for t in body["topics"]] == ["aws-approval", "aws-announce", "aws-calendar"]
    emails = [c["email"] for c in body["contacts"]]
    assert "new@acme.example.com" in emails
    human = cli(stack, "contacts", "list", "acme", "--filter", "new@")
    assert human.exit_code == 0 and "new@acme.example.com" in human.stdout and "1 contact(s)" in human.stderr

    upd = cli(
        stack, "contacts", "update", "acme", "new@acme.example.com", "--opt-out", "aws-announce", "--json"
    )
    assert upd.exit_code == 0, upd.stderr
    assert json.loads(upd.stdout)["changes"] == ["aws-announce: default → OPT_OUT"]
    assert cli(stack, "contacts", "update", "acme", "new@acme.example.com").exit_code == 2
    assert (
        cli(
            stack, "contacts", "update", "acme", "nobody@acme.example.com", "--opt-in", "aws-approval"
        ).exit_code
        == 2
    )
    assert cli(stack, "contacts", "add", "acme", "x@acme.example.com", "--opt-in", "aws-nope").exit_code == 2

    out = tmp_path / "out.csv"
    exported = cli(stack, "contacts", "export", "acme", str(out), "--json")
    assert exported.exit_code == 0 and json.loads(exported.stdout)["contacts"] == 3
    assert "new@acme.example.com,false,OPT_IN,OPT_OUT," in out.read_text()

    assert (
        cli(stack, "contacts", "remove", "acme", "new@acme.example.com").exit_code == 2
    )  # no terminal, no --yes
    removed = cli(stack, "contacts", "remove", "acme", "new@acme.example.com", "--yes", "--json")
    assert removed.exit_code == 0 and json.loads(removed.stdout)["result"] == "removed"
    assert cli(stack, "contacts", "list", "acme", "--filter", "new@", "--json").stdout.count("new@") == 0


def test_mutations_are_refused_readonly(stack: LocalStackResult, tmp_path: Path) -> None:
    csv = tmp_path / "c.csv"
    csv.write_text("email\na@acme.example.com\n")
    for args in (
        ["contacts", "import", "acme", str(csv)],
        ["contacts", "add", "acme", "a@acme.example.com"],
        ["topics", "apply", "acme", str(FIXTURES / "SESConfig.json")],
        ["customer", "remove", "acme", "--yes"],
        ["change", "reindex"],
    ):
        result = cli(stack, *args, readonly=True)
        assert result.exit_code == 2 and "read-only" in result.stderr, args
    assert cli(stack, "contacts", "import", "acme", str(csv), "--dry-run", readonly=True).exit_code == 0


def test_topics_apply_reports_drift_as_json(stack: LocalStackResult) -> None:
    file = str(FIXTURES / "SESConfig.json")
    dry = cli(stack, "topics", "apply", "--all", file, "--dry-run", "--json")
    assert dry.exit_code == 0, dry.stderr
    data = json.loads(dry.stdout)
    assert [c["customer"] for c in data["customers"]] == ["acme", "globex"]
    results = {t["topic"]: t["result"] for t in data["customers"][0]["topics"]}
    assert results["finops-announce"] == "created" and results["aws-announce"] == "updated"
    applied = cli(stack, "topics", "apply", "acme", file, "--json")
    assert applied.exit_code == 0 and len(json.loads(applied.stdout)["audit_keys"]) == 1
    again = json.loads(cli(stack, "topics", "apply", "acme", file, "--json").stdout)
    assert {t["result"] for t in again["customers"][0]["topics"]} == {"unchanged"}
    assert cli(stack, "topics", "apply", file).exit_code == 2  # neither CODE nor --all
    bad = FIXTURES.parent / "missing.json"
    assert cli(stack, "topics", "apply", "acme", str(bad)).exit_code == 2


def test_customer_add_verify_remove(stack: LocalStackResult) -> None:
    added = cli(stack, "customer", "add", "initrode", "--name", "Initrode", "--role-arn", NEW_ROLE, "--json")
    assert added.exit_code == 0, added.stderr
    data = json.loads(added.stdout)
    assert data["config"]["result"] == "written" and data["verify"]["status"] in ("ok", "warn")
    assert data["topics"]["contact_list_created"] is True
    verified = cli(stack, "customer", "verify", "--all", "--json")
    assert verified.exit_code == 0, verified.stderr
    body = json.loads(verified.stdout)
    assert [c["customer"] for c in body["customers"]] == ["acme", "globex", "initrode"]
    assert body["customers"][0]["contact_list"]["reason"] == "the account's only contact list"
    human = cli(stack, "customer", "verify", "acme")
    assert human.exit_code == 0 and "contact_list" in human.stdout
    assert cli(stack, "customer", "verify", "nosuch").exit_code == 2
    removed = cli(stack, "customer", "remove", "initrode", "--yes", "--json")
    assert removed.exit_code == 0, removed.stderr
    assert sorted(json.loads(removed.stdout)["deleted_queues"]) == [
        "changeconsole-initrode",
        "changeconsole-initrode-dlq",
    ]
    assert "initrode" not in json.loads(stack.config_path.read_text())["customer_mappings"]


def test_verify_exits_1_on_a_failing_check(stack: LocalStackResult) -> None:
    from changeconsole.services.localstack import local_factory

    aws = local_factory(stack.endpoint, max_attempts=1)
    aws.customer_client(stack.config.customer("globex"), "sesv2").delete_contact_list(
        ContactListName="changeconsole"
    )
    result = cli(stack, "customer", "verify", "globex", "--json")
    assert result.exit_code == 1
    checks = {c["name"]: c["status"] for c in json.loads(result.stdout)["customers"][0]["checks"]}
    assert checks["contact_list"] == "fail"


def test_reindex_and_migrate_check_json(stack: LocalStackResult) -> None:
    from changeconsole.services.localstack import local_factory

    aws = local_factory(stack.endpoint, max_attempts=1)
    doc = json.loads((FIXTURES / "change_portal_uuid.json").read_text())
    doc["customers"] = ["acme"]
    cid = doc["changeId"]
    aws.client("s3").put_object(
        Bucket=stack.config.s3_config.bucket_name, Key=f"archive/{cid}.json", Body=json.dumps(doc).encode()
    )
    check = cli(stack, "migrate", "check", "--json")
    assert check.exit_code == 0, check.stderr  # nothing refused, no leftovers: ready
    data = json.loads(check.stdout)
    assert data["ready"] is True and data["changes"]["counts"]["indexed"] == 1
    assert set(data) == {
        "bucket",
        "ready",
        "index_table_missing",
        "changes",
        "leftover_triggers",
        "unknown_customers",
        "contacts",
    }
    dry = json.loads(cli(stack, "change", "reindex", "--dry-run", "--json").stdout)
    assert dry["dry_run"] is True and dry["indexed"] == [cid]
    done = cli(stack, "change", "reindex", "--json")
    assert done.exit_code == 0 and json.loads(done.stdout)["counts"]["indexed"] == 1
    assert json.loads(cli(stack, "change", "reindex", "--json").stdout)["counts"]["unchanged"] == 1
    listed = json.loads(cli(stack, "change", "list", "--json").stdout)
    assert cid in json.dumps(listed)
    aws.client("s3").put_object(
        Bucket=stack.config.s3_config.bucket_name, Key=f"customers/acme/{cid}.json", Body=b"{}"
    )
    assert cli(stack, "migrate", "check", "--no-contacts").exit_code == 1  # a leftover trigger


def test_older_config_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text((FIXTURES / "config_older.json").read_text())
    result = CliRunner().invoke(main, ["--config", str(path), "config", "validate", "--json"])
    assert result.exit_code == 2
    (problem,) = json.loads(result.stdout)["problems"]
    assert problem["path"] == "email_config" and "sender_address" in problem["message"]


def test_sync_identity_center_dry_run_and_export_to_stdout(stack: LocalStackResult) -> None:
    from changeconsole.services.localstack import local_factory

    aws = local_factory(stack.endpoint, max_attempts=1)
    mapping = stack.config.customer("acme")
    store = aws.customer_client(mapping, "sso-admin").list_instances()["Instances"][0]["IdentityStoreId"]
    ids = aws.customer_client(mapping, "identitystore")
    group = ids.create_group(IdentityStoreId=store, DisplayName="security")["GroupId"]
    user = ids.create_user(
        IdentityStoreId=store,
        UserName="rita",
        DisplayName="Rita",
        Name={"GivenName": "Rita", "FamilyName": "Example"},
        Emails=[{"Value": "rita@acme.example.com", "Primary": True}],
    )["UserId"]
    ids.create_group_membership(IdentityStoreId=store, GroupId=group, MemberId={"UserId": user})
    raw = json.loads(stack.config_path.read_text())
    unset = cli(stack, "contacts", "sync-identity-center", "acme", "--dry-run")
    assert unset.exit_code == 2 and "identity_center_groups is not set" in unset.stderr
    raw["customer_mappings"]["acme"]["identity_center_groups"] = ["security"]
    stack.config_path.write_text(json.dumps(raw))
    topics = str(FIXTURES / "SESConfig.json")
    dry = cli(stack, "contacts", "sync-identity-center", "acme", "--topics", topics, "--dry-run", "--json")
    assert dry.exit_code == 0, dry.stderr
    data = json.loads(dry.stdout)
    (rita,) = data["users"]
    assert rita["result"] == "created" and rita["roles"] == ["security"] and "aws-approval" in rita["topics"]
    assert data["topics_not_on_list"] == ["finops-announce", "general-updates", "subscription-preferences"]
    exported = cli(stack, "contacts", "export", "acme", "-")
    assert exported.exit_code == 0 and "rita@" not in exported.stdout  # the dry run added nobody
    assert exported.stdout.startswith("email,unsubscribe_all,aws-approval,aws-announce,aws-calendar\n")
