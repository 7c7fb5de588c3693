"""The local stack keeps its data across restarts: bucket objects, both tables and the customers'
contacts saved atomically under the XDG data dir, put back into a fresh stack, cleared by `local reset`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from changeconsole.cli import main
from changeconsole.config import data_dir
from changeconsole.services.localstack import LocalStackResult, local_factory
from changeconsole.services.localstate import LocalState, keep_local_data, state_path
from support.aws import free_port


def objects(aws: Any, bucket: str) -> dict[str, bytes]:
    s3 = aws.client("s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    return {k: s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys}


def items(aws: Any, table: str) -> list[Any]:
    found = aws.client("dynamodb").scan(TableName=table)["Items"]
    return sorted(found, key=lambda i: (i["pk"]["S"], i["sk"]["S"]))


def contacts(aws: Any, stack: LocalStackResult, code: str) -> dict[str, Any]:
    ses = aws.customer_client(stack.config.customer(code), "sesv2")
    listed = ses.list_contacts(ContactListName=stack.config.contact_list_for(code))["Contacts"]
    return {c["EmailAddress"]: (c.get("TopicPreferences"), c.get("UnsubscribeAll")) for c in listed}


def test_save_then_restore_into_a_fresh_stack(make_stack: Any, tmp_path: Path) -> None:
    stack = make_stack(customers=2, contacts=3)
    aws = local_factory(stack.endpoint)
    config = stack.config
    bucket = config.s3_config.bucket_name
    s3 = aws.client("s3")
    s3.put_object(Bucket=bucket, Key="archive/CHG-1.json", Body=b'{"a": 1}', ContentType="application/json")
    s3.put_object(Bucket=bucket, Key="audit/2030/01/01/x.jsonl", Body=b"\x00\xffbinary")
    aws.client("dynamodb").put_item(
        TableName=config.ledger_table_name,
        Item={"pk": {"S": "LATEST#CHG-1#acme"}, "sk": {"S": "LATEST"}, "blob": {"B": b"\x01\x02"}},
    )
    aws.client("dynamodb").put_item(
        TableName=config.status_table_name,
        Item={"pk": {"S": "CHANGE#CHG-1"}, "sk": {"S": "META"}, "n": {"N": "3"}},
    )
    code = sorted(config.customer_mappings)[0]
    ses = aws.customer_client(config.customer(code), "sesv2")
    list_name = config.contact_list_for(code)
    ses.create_contact(
        ContactListName=list_name,
        EmailAddress="new.person@acme.example.com",
        TopicPreferences=[{"TopicName": "aws-calendar", "SubscriptionStatus": "OPT_IN"}],
    )
    gone = next(iter(contacts(aws, stack, code)))
    if gone == "new.person@acme.example.com":
        gone = sorted(contacts(aws, stack, code))[1]
    ses.delete_contact(ContactListName=list_name, EmailAddress=gone)

    before = (
        objects(aws, bucket),
        items(aws, config.ledger_table_name),
        items(aws, config.status_table_name),
        contacts(aws, stack, code),
    )
    path = tmp_path / "state.json"
    saved = LocalState(aws, config, path).save()
    assert (saved.objects, saved.items) == (2, 2) and saved.contacts == 6
    assert not list(tmp_path.glob(".state.json.*"))  # written through a temporary file, renamed

    fresh = make_stack(customers=2, contacts=3)  # moto reset: everything gone, defaults provisioned
    aws = local_factory(stack.endpoint)  # a new process: the old role sessions died with the reset
    assert objects(aws, bucket) == {} and gone in contacts(aws, fresh, code)
    restored = LocalState(aws, fresh.config, path).restore()
    assert restored is not None and restored.text() == "2 objects, 2 table items, 6 contacts"
    after = (
        objects(aws, bucket),
        items(aws, config.ledger_table_name),
        items(aws, config.status_table_name),
        contacts(aws, fresh, code),
    )
    assert after == before


def test_an_unreadable_saved_file_is_moved_aside_never_overwritten(make_stack: Any, tmp_path: Path) -> None:
    stack = make_stack(customers=1, contacts=1)
    path = tmp_path / "state.json"
    path.write_text("{not json")
    lines: list[str] = []
    saver, restored = keep_local_data(
        stack.config, stack.endpoint, path=path, interval=3600, progress=lines.append
    )
    try:
        assert restored is None
        aside = list(tmp_path.glob("state.json.unreadable-*"))
        assert len(aside) == 1 and aside[0].read_text() == "{not json"
        assert any("moved aside" in line for line in lines)
    finally:
        assert saver.stop() is not None
    assert json.loads(path.read_text())["format"] == "changeconsole.local-state/1"


def test_local_reset_deletes_the_saved_data_and_refuses_while_a_stack_runs(moto_endpoint: str) -> None:
    runner = CliRunner(env={"COLUMNS": "300"})
    path = state_path()
    assert path.is_relative_to(data_dir())  # under the XDG data dir of the test
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{}")
    running = runner.invoke(main, ["--endpoint-url", moto_endpoint, "local", "reset"])
    assert running.exit_code == 1 and "quit it first" in running.stderr
    assert path.exists()
    idle = f"http://127.0.0.1:{free_port()}"
    result = runner.invoke(main, ["--endpoint-url", idle, "local", "reset"])
    assert result.exit_code == 0, result.stderr
    assert f"deleted the saved local data at {path}" in result.stdout
    assert not path.exists()
    again = runner.invoke(main, ["--endpoint-url", idle, "local", "reset"])
    assert again.exit_code == 0 and "nothing to delete" in again.stderr
