"""What each call of one customer's delivery costs the local stand-in: moto's CPU per call, by operation.

The calls are made the way our code makes them (``StatusStore``, ``Ledger``, ``ChangeStore`` keys, the
customer's role session), 40 of each against a provisioned stack, one after another, so the moto
process's CPU time divided by the count is that operation's cost on the single-core stand-in. Also
measured: the same ledger writes as one ``TransactWriteItems`` (what batching them would cost here).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from changeconsole.models import DeliveryState, EmailEvent, RecipientState, trigger_key
from changeconsole.services.contacts import iter_contacts, topic_defaults
from changeconsole.services.ledger import BEGIN_SEND, Ledger, delivery_pk, rcpt_sk
from changeconsole.services.localstack import local_factory
from changeconsole.services.status import DeliveryKey, StatusStore, to_item

from .common import BenchResult, MotoProcess, log
from .fanout import make_change, provision

CALLS = 40


def run(*, recipients: int = 5, **_: Any) -> BenchResult:
    result = BenchResult("opcost", columns=["call", "server_ms", "wall_ms"])
    with tempfile.TemporaryDirectory() as tmp, MotoProcess() as moto:
        config = provision(moto.endpoint, 2, recipients, Path(tmp))
        aws = local_factory(moto.endpoint, max_attempts=1)
        status, ledger = StatusStore(aws, config), Ledger(aws, config)
        code = sorted(config.customer_mappings)[0]
        mapping = config.customer(code)
        ses = aws.customer_client(mapping, "sesv2")
        s3, ddb, sts = aws.client("s3"), aws.client("dynamodb"), aws.client("sts")
        bucket, table = config.s3_config.bucket_name, config.ledger_table_name
        change = make_change([code])
        body = json.dumps(change.to_json_dict()).encode()
        archive = f"archive/{change.change_id}.json"
        s3.put_object(Bucket=bucket, Key=archive, Body=body)
        email = b"x" * 9500

        def key(i: int) -> DeliveryKey:
            return DeliveryKey(change.change_id, i, EmailEvent.SUBMITTED, code)

        def mark(i: int, n: int) -> dict[str, Any]:
            item = {
                "pk": delivery_pk(key(i)),
                "sk": rcpt_sk(f"r{n}@example.com"),
                "state": RecipientState.SENDING.value,
                "owner": "bench",
                "lease_until": time.time() + 60,
            }
            return {
                "Put": {
                    "TableName": table,
                    "Item": to_item(item),
                    "ConditionExpression": BEGIN_SEND.condition,
                    "ExpressionAttributeNames": BEGIN_SEND.names,
                    "ExpressionAttributeValues": BEGIN_SEND.values(RecipientState.SENDING),
                }
            }

        def measure(name: str, fn: Callable[[int], Any]) -> None:
            fn(0)
            cpu, wall = moto.cpu_seconds(), time.perf_counter()
            for i in range(1, CALLS + 1):
                fn(i)
            row = {
                "call": name,
                "server_ms": 1000 * (moto.cpu_seconds() - cpu) / CALLS,
                "wall_ms": 1000 * (time.perf_counter() - wall) / CALLS,
            }
            result.rows.append(row)
            log(f"opcost: {name} {row['server_ms']:.1f} ms")

        processing = {"state": DeliveryState.PROCESSING, "worker_id": "bench", "started_at": "2030-01-01"}
        measure(
            "s3 PutObject trigger",
            lambda i: s3.put_object(
                Bucket=bucket,
                Key=trigger_key(code, change.change_id, 100 + i, EmailEvent.SUBMITTED),
                Body=body,
            ),
        )
        measure("s3 GetObject archive", lambda i: s3.get_object(Bucket=bucket, Key=archive)["Body"].read())
        measure(
            "s3 DeleteObject trigger",
            lambda i: s3.delete_object(
                Bucket=bucket, Key=trigger_key(code, change.change_id, 100 + i, EmailEvent.SUBMITTED)
            ),
        )
        measure(
            "sts AssumeRole", lambda i: sts.assume_role(RoleArn=mapping.ses_role_arn, RoleSessionName="bench")
        )
        measure("sesv2 GetContactList", lambda i: topic_defaults(ses, config.contact_list_name))
        measure("sesv2 ListContacts", lambda i: list(iter_contacts(ses, config.contact_list_name)))
        measure(
            "sesv2 SendEmail 9.5 KB",
            lambda i: ses.send_email(
                FromEmailAddress=config.sender_for(code),
                Destination={"ToAddresses": ["a@example.com"]},
                Content={"Raw": {"Data": email}},
            ),
        )
        measure("status PutItem queued", lambda i: status.put_queued(key(1000 + i)))
        measure(
            "status UpdateItem processing",
            lambda i: status.update(
                key(1000 + i), unless_state=(DeliveryState.SENT,), add_attempt=True, **processing
            ),
        )
        measure(
            "ledger UpdateItem lane lock",
            lambda i: ledger.acquire_lane(f"{change.change_id}-{i}", code, "bench"),
        )
        measure("ledger PutItem claim", lambda i: ledger.claim(key(2000 + i), "bench"))
        measure(
            "ledger UpdateItem claim done",
            lambda i: ledger.finish_claim(key(2000 + i), "bench", done=True, result="sent"),
        )
        measure(
            "ledger PutItem recipient sending",
            lambda i: ledger.begin_send(key(3000 + i), "a@example.com", "bench"),
        )
        measure(
            "ledger PutItem recipient sent",
            lambda i: ledger.record_sent(key(3000 + i), "a@example.com", "bench", "m"),
        )
        measure(
            "TransactWriteItems 1 recipient",
            lambda i: ddb.transact_write_items(TransactItems=[mark(4000 + i, 0)]),
        )
        measure(
            "TransactWriteItems 4 recipients",
            lambda i: ddb.transact_write_items(TransactItems=[mark(5000 + i, n) for n in range(4)]),
        )
    result.notes.append(
        f"moto CPU per call, {CALLS} calls each; a TransactWriteItems costs moto a deep copy of the table "
        "per action (moto/dynamodb/models transact_write_items), so it grows with the table"
    )
    return result
