"""Readers of the status table survive items they did not write: skipped and logged, never a crash.

moto applies an UpdateItem in steps, so a concurrent read can see an item holding only its keys; another
writer (a newer release, a hand edit) can leave an item our models do not accept.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from changeconsole.models import DeliveryState, EmailEvent
from changeconsole.services.aws import AwsFactory
from changeconsole.services.status import DeliveryKey, StatusStore, to_item
from support.changes import make_change


def test_keys_only_and_foreign_items_are_skipped_and_logged(
    make_stack: Any, aws_factory: AwsFactory, caplog: pytest.LogCaptureFixture
) -> None:
    config = make_stack(customers=1, contacts=1).config
    code = sorted(config.customer_mappings)[0]
    store = StatusStore(aws_factory, config)
    change = make_change([code])
    cid = change.change_id
    store.index_change(change)
    real = DeliveryKey(cid, 2, EmailEvent.SUBMITTED, code)
    store.update(real, state=DeliveryState.SENT, recipients_total=1, recipients_sent=1)
    ghost = DeliveryKey(cid, 2, EmailEvent.SUBMITTED, "ghost")
    alien = DeliveryKey(cid, 2, EmailEvent.SUBMITTED, "alien")
    put = aws_factory.client("dynamodb").put_item
    table = config.status_table_name
    put(TableName=table, Item=ghost.item_key())  # what a read sees in the middle of an UpdateItem
    put(
        TableName=table,
        Item=to_item(
            {
                "pk": alien.pk,
                "sk": alien.sk,
                "state": "exploded",  # no such state
                "gsi2pk": f"CUSTOMER#{code}",
                "gsi2sk": "9999-12-31T00:00:00Z#x",
                "gsi3pk": alien.pk,
                "gsi3sk": "9999-12-31T00:00:00.000000Z#v0002#submitted#alien",
                "rev": 7,
            }
        ),
    )
    put(TableName=table, Item={"pk": {"S": "CHANGE#CHG-keys-only"}, "sk": {"S": "META"}})
    put(
        TableName=table,
        Item=to_item(
            {"pk": "CHANGE#CHG-foreign", "sk": "META", "gsi1pk": "CHANGES", "gsi1sk": "9999", "status": "?"}
        ),
    )

    with caplog.at_level(logging.WARNING, logger="changeconsole.services.status"):
        assert [r.customer for r in store.records(cid)] == [code]
        assert [s.record.customer for s in store.stamped_records(cid, version=2)] == [code]
        fresh, _newest, read = store.changed_since(cid, "")
        assert [s.record.customer for s in fresh] == [code] and read == 2
        assert [r.customer for r in store.customer_deliveries(code)] == [code]
        assert [r.customer for r in store.latest_round(cid)] == [code]
        assert [s.change_id for s in store.list_changes()] == [cid]
        assert store.get(ghost) is None and store.get(alien) is None
        assert store.get(real) is not None
        assert store.get_summary("CHG-keys-only") is None

    skipped = [r.getMessage() for r in caplog.records]
    assert any(f"{ghost.pk}/{ghost.sk}: it holds only its keys" in m for m in skipped), skipped
    assert any(f"{alien.pk}/{alien.sk}: not readable" in m for m in skipped), skipped
    assert any("CHANGE#CHG-foreign/META: not readable" in m for m in skipped), skipped
