"""The bare API floors: plain boto3 and no logic of ours, on the same moto process as our run.

* **same-calls floor**: the same AWS calls our code made (``CallProfile`` of our run);
* **minimal floor** (``CallProfile.minimal``): only what a delivery cannot do without: put the trigger,
  receive it, get it, assume the customer's role, list its contacts, send each email, delete the
  message and the trigger (7 calls + one per recipient).


A floor run replays a *call profile* taken from one of our runs (how many calls of each operation, in
which stage, how big the bodies were) with the same concurrency: an upload pool (like the fan-out)
puts each customer's trigger under ``customers/{code}/`` (so the S3 event reaches the customer's
queue, exactly as in our run) and hands the customer to a worker pool, which receives the message,
then issues the customer's share of every other call, sends the emails with the customer's assumed
role, and deletes the trigger and the message. Idle (empty) long polls are not replayed: the floor
receives exactly one message per customer.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from changeconsole.models import Config
from changeconsole.services.localstack import contact_address

Op = tuple[str, str]

# Operations whose place in a customer's chain is fixed by the floor itself.
_FIXED = {("sqs", "ReceiveMessage"), ("sqs", "DeleteMessage"), ("sqs", "DeleteMessageBatch")}
_SEND = ("sesv2", "SendEmail")


@dataclass
class CallProfile:
    """What one of our runs did, as totals per stage (customer-independent)."""

    customers: int
    upload: Counter[Op] = field(default_factory=Counter)  # calls of the submit side
    send: Counter[Op] = field(default_factory=Counter)  # worker calls up to the last email
    status: Counter[Op] = field(default_factory=Counter)  # worker calls after the last email
    trigger_size: int = 2048
    object_size: int = 2048
    email_size: int = 8192

    @classmethod
    def minimal(cls, customers: int, recipients: int, email_size: int) -> CallProfile:
        """The minimal floor's calls (the trigger's put, the receive and the message's delete are
        the floor's own)."""
        send: Counter[Op] = Counter(
            {
                ("s3", "GetObject"): customers,
                ("sts", "AssumeRole"): customers,
                ("sesv2", "ListContacts"): customers,
                _SEND: customers * recipients,
            }
        )
        return cls(
            customers, send=send, status=Counter({("s3", "DeleteObject"): customers}), email_size=email_size
        )

    def totals(self) -> Counter[Op]:
        return self.upload + self.send + self.status

    def to_json(self) -> dict[str, Any]:
        def flat(c: Counter[Op]) -> dict[str, int]:
            return {f"{s}.{o}": n for (s, o), n in sorted(c.items())}

        return {
            "customers": self.customers,
            "upload": flat(self.upload),
            "send": flat(self.send),
            "status": flat(self.status),
            "trigger_size": self.trigger_size,
            "object_size": self.object_size,
            "email_size": self.email_size,
        }


def share(total: int, customers: int, index: int) -> int:
    """Customer ``index``'s share of ``total`` calls spread evenly over ``customers``."""
    base, extra = divmod(total, customers)
    return base + (1 if index < extra else 0)


@dataclass
class FloorTimes:
    """Per-customer timestamps (perf_counter) of one floor run."""

    t0: float
    uploaded: dict[str, float] = field(default_factory=dict)
    received: dict[str, float] = field(default_factory=dict)
    last_send: dict[str, float] = field(default_factory=dict)
    done: dict[str, float] = field(default_factory=dict)
    calls: Counter[Op] = field(default_factory=Counter)
    skipped_ops: Counter[Op] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)


def raw_email(sender: str, to: str, size: int) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = "floor"
    msg.set_content("x" * max(0, size // 2 - 200))
    msg.add_alternative("<p>" + "y" * max(0, size // 2 - 200) + "</p>", subtype="html")
    return msg.as_bytes()


class _Customer:
    def __init__(self, floor: Floor, code: str, index: int) -> None:
        self.floor = floor
        self.code = code
        self.index = index
        mapping = floor.config.customer(code)
        self.mapping = mapping
        self.queue_url = f"{floor.endpoint}/{mapping.queue_account}/{mapping.queue_name}"
        self.trigger_key = f"customers/{code}/FLOOR-{floor.run_id}/v{index + 1:04d}-submitted.json"
        self.receipt: str | None = None
        self.ses: Any = None
        self.contacts = [contact_address(code, i) for i in range(floor.recipients)]
        self.sender = floor.config.sender_for(code)
        self.list_name = floor.config.contact_list_for(code)
        self._email: bytes | None = None

    def email(self, to: str) -> bytes:
        if self._email is None:
            self._email = raw_email(self.sender, to, self.floor.profile.email_size)
        return self._email

    def assume(self) -> None:
        creds = self.floor.sts.assume_role(
            RoleArn=self.mapping.ses_role_arn, RoleSessionName=f"floor-{self.code}"[:64]
        )["Credentials"]
        if self.ses is None:
            self.ses = self.floor.ses_clients.get(self.code)
        if self.ses is None:
            # Plain boto3's cheapest way to act with other credentials: a client of the shared session
            # (no new session, so no service model is parsed again). Sessions are not thread-safe.
            with self.floor._lock:
                self.ses = self.floor.session.client(
                    "sesv2",
                    endpoint_url=self.floor.endpoint,
                    region_name=self.mapping.region or self.floor.config.aws_region,
                    config=self.floor.boto_config,
                    aws_access_key_id=creds["AccessKeyId"],
                    aws_secret_access_key=creds["SecretAccessKey"],
                    aws_session_token=creds["SessionToken"],
                )
                self.floor.ses_clients[self.code] = self.ses

    def ses_client(self) -> Any:
        if self.ses is None:
            self.assume()
        return self.ses


class Floor:
    """Replays a CallProfile against the local stack with plain boto3."""

    def __init__(
        self,
        endpoint: str,
        config: Config,
        profile: CallProfile,
        *,
        recipients: int,
        upload_threads: int,
        worker_threads: int,
        send_parallelism: int = 1,
        max_pool_connections: int = 128,
    ) -> None:
        self.endpoint = endpoint
        self.config = config
        self.profile = profile
        self.recipients = recipients
        self.upload_threads = upload_threads
        self.worker_threads = worker_threads
        self.send_parallelism = send_parallelism
        self.send_pool: ThreadPoolExecutor | None = None
        self.batch_delete = profile.totals().get(("sqs", "DeleteMessageBatch"), 0) > 0
        self.codes: list[str] = []
        self.ses_clients: dict[str, Any] = {}  # one client per customer, like ours' session cache
        self.run_id = uuid.uuid4().hex[:8]
        self.boto_config = BotoConfig(
            region_name=config.aws_region,
            retries={"mode": "standard", "max_attempts": 3},
            max_pool_connections=max_pool_connections,
            tcp_keepalive=True,
        )
        session = boto3.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=config.aws_region
        )
        self.session = session
        self.s3 = session.client("s3", endpoint_url=endpoint, config=self.boto_config)
        self.sqs = session.client("sqs", endpoint_url=endpoint, config=self.boto_config)
        self.ddb = session.client("dynamodb", endpoint_url=endpoint, config=self.boto_config)
        self.sts = session.client("sts", endpoint_url=endpoint, config=self.boto_config)
        self.cloudwatch = session.client("cloudwatch", endpoint_url=endpoint, config=self.boto_config)
        self.bucket = config.s3_config.bucket_name
        self.table = config.status_table_name
        self._lock = threading.Lock()
        self._side_queue: str | None = None
        self.body = json.dumps({"floor": "x" * max(0, profile.trigger_size - 20)}).encode()
        self.other_body = b"o" * profile.object_size

    # -- one call of any profiled operation --------------------------------------------------------
    def _side_queue_url(self) -> str:
        with self._lock:
            if self._side_queue is None:
                self._side_queue = self.sqs.create_queue(QueueName="changeconsole-floor-side")["QueueUrl"]
            return self._side_queue

    def call(self, c: _Customer, op: Op, times: FloorTimes, n: int = 0) -> None:
        _service, _name = op
        fn = self._ops().get(op)
        if fn is None:
            with self._lock:
                times.skipped_ops[op] += 1
            return
        # ours made error calls too (e.g. "is it archived yet?" → 404): same cost
        with contextlib.suppress(ClientError):
            fn(c, n)
        with self._lock:
            times.calls[op] += 1

    def _ops(self) -> dict[Op, Callable[[_Customer, int], Any]]:
        s3, sqs, ddb, b, t = self.s3, self.sqs, self.ddb, self.bucket, self.table

        def floor_key(c: _Customer, n: int) -> dict[str, Any]:
            return {"pk": {"S": f"FLOOR#{self.run_id}#{c.code}"}, "sk": {"S": f"ITEM#{n}"}}

        return {
            ("s3", "PutObject"): lambda c, n: s3.put_object(
                Bucket=b,
                Key=f"floor/{self.run_id}/{c.code}/{n}-{uuid.uuid4().hex}.json",
                Body=self.other_body,
            ),
            ("s3", "GetObject"): lambda c, n: s3.get_object(Bucket=b, Key=c.trigger_key)["Body"].read(),
            ("s3", "HeadObject"): lambda c, n: s3.head_object(Bucket=b, Key=c.trigger_key),
            ("s3", "DeleteObject"): lambda c, n: s3.delete_object(Bucket=b, Key=c.trigger_key),
            ("s3", "CopyObject"): lambda c, n: s3.copy_object(
                Bucket=b,
                Key=f"floor/{self.run_id}/{c.code}/copy-{n}.json",
                CopySource={"Bucket": b, "Key": c.trigger_key},
            ),
            ("s3", "ListObjectsV2"): lambda c, n: s3.list_objects_v2(Bucket=b, Prefix=f"customers/{c.code}/"),
            ("sqs", "ChangeMessageVisibility"): lambda c, n: sqs.change_message_visibility(
                QueueUrl=c.queue_url, ReceiptHandle=c.receipt, VisibilityTimeout=120
            ),
            ("sqs", "ChangeMessageVisibilityBatch"): lambda c, n: sqs.change_message_visibility_batch(
                QueueUrl=c.queue_url,
                Entries=[{"Id": "0", "ReceiptHandle": c.receipt, "VisibilityTimeout": 120}],
            ),
            ("sqs", "SendMessage"): lambda c, n: sqs.send_message(
                QueueUrl=self._side_queue_url(), MessageBody=self.body.decode()
            ),
            ("sqs", "GetQueueUrl"): lambda c, n: sqs.get_queue_url(QueueName=c.mapping.queue_name),
            ("sqs", "GetQueueAttributes"): lambda c, n: sqs.get_queue_attributes(
                QueueUrl=c.queue_url, AttributeNames=["ApproximateNumberOfMessages"]
            ),
            ("sts", "AssumeRole"): lambda c, n: c.assume(),
            ("sts", "GetCallerIdentity"): lambda c, n: self.sts.get_caller_identity(),
            ("sesv2", "SendEmail"): lambda c, n: c.ses_client().send_email(
                FromEmailAddress=c.sender,
                Destination={"ToAddresses": [c.contacts[n % len(c.contacts)]]},
                Content={"Raw": {"Data": c.email(c.contacts[n % len(c.contacts)])}},
            ),
            ("sesv2", "ListContacts"): lambda c, n: c.ses_client().list_contacts(ContactListName=c.list_name),
            ("sesv2", "GetContactList"): lambda c, n: c.ses_client().get_contact_list(
                ContactListName=c.list_name
            ),
            ("sesv2", "GetContact"): lambda c, n: c.ses_client().get_contact(
                ContactListName=c.list_name, EmailAddress=c.contacts[n % len(c.contacts)]
            ),
            ("sesv2", "ListContactLists"): lambda c, n: c.ses_client().list_contact_lists(),
            ("sesv2", "GetAccount"): lambda c, n: c.ses_client().get_account(),
            ("dynamodb", "PutItem"): lambda c, n: ddb.put_item(
                TableName=t, Item={**floor_key(c, n), "state": {"S": "queued"}, "n": {"N": str(n)}}
            ),
            ("dynamodb", "UpdateItem"): lambda c, n: ddb.update_item(
                TableName=t,
                Key=floor_key(c, 0),
                UpdateExpression="SET #s = :s ADD attempts :one",
                ExpressionAttributeNames={"#s": "state"},
                ExpressionAttributeValues={":s": {"S": "sent"}, ":one": {"N": "1"}},
                ReturnValues="ALL_NEW",
            ),
            ("dynamodb", "GetItem"): lambda c, n: ddb.get_item(
                TableName=t, Key=floor_key(c, 0), ConsistentRead=True
            ),
            ("dynamodb", "Query"): lambda c, n: ddb.query(
                TableName=t,
                KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues={":pk": {"S": f"FLOOR#{self.run_id}#{c.code}"}},
            ),
            ("dynamodb", "DeleteItem"): lambda c, n: ddb.delete_item(TableName=t, Key=floor_key(c, n + 1000)),
            ("dynamodb", "TransactWriteItems"): lambda c, n: ddb.transact_write_items(
                TransactItems=[{"Put": {"TableName": t, "Item": floor_key(c, n + 2000)}}]
            ),
            ("dynamodb", "BatchWriteItem"): lambda c, n: ddb.batch_write_item(
                RequestItems={t: [{"PutRequest": {"Item": floor_key(c, n + 3000)}}]}
            ),
            ("cloudwatch", "PutMetricData"): lambda c, n: self.cloudwatch.put_metric_data(
                Namespace="ChangeConsoleFloor", MetricData=[{"MetricName": "floor", "Value": 1.0}]
            ),
        }

    # -- the run ------------------------------------------------------------------------------------
    def _ordered(self, counts: Counter[Op], index: int, customers: int) -> list[tuple[Op, int]]:
        """This customer's share of each op: the role before the calls made with it, SendEmail last."""
        out: list[tuple[Op, int]] = []
        for op in sorted(counts, key=lambda o: (o == _SEND, o[0] == "sesv2", o)):
            if op in _FIXED or op[1].startswith("ReceiveMessage"):
                continue
            out.append((op, share(counts[op], customers, index)))
        return out

    def _upload(self, c: _Customer, times: FloorTimes) -> None:
        n_customers = len(self.codes)
        for op, n in self._ordered(self.profile.upload, c.index, n_customers):
            if op == ("s3", "PutObject"):
                # the trigger itself is put below; the others are archive/version/audit objects
                n = max(0, n - 1)
            for k in range(n):
                self.call(c, op, times, k)
        started = time.perf_counter()
        self.s3.put_object(Bucket=self.bucket, Key=c.trigger_key, Body=self.body)
        with self._lock:
            times.calls[("s3", "PutObject")] += 1
            times.uploaded[c.code] = started

    def _work(self, c: _Customer, times: FloorTimes) -> None:
        n_customers = len(self.codes)
        deadline = time.monotonic() + 120
        while c.receipt is None:
            resp = self.sqs.receive_message(QueueUrl=c.queue_url, MaxNumberOfMessages=1, WaitTimeSeconds=1)
            with self._lock:
                times.calls[("sqs", "ReceiveMessage")] += 1
            for msg in resp.get("Messages", []):
                c.receipt = msg["ReceiptHandle"]
            if time.monotonic() > deadline:
                raise RuntimeError(f"floor: no message for {c.code}")
        times.received[c.code] = time.perf_counter()
        for op, n in self._ordered(self.profile.send, c.index, n_customers):
            if op == _SEND and self.send_pool is not None and n > 1:
                # like ours: a customer's emails go out send_parallelism at a time
                futures = [self.send_pool.submit(self.call, c, op, times, k) for k in range(n)]
                for fut in futures:
                    fut.result()
                continue
            for k in range(n):
                self.call(c, op, times, k)
        times.last_send[c.code] = time.perf_counter()
        for op, n in self._ordered(self.profile.status, c.index, n_customers):
            for k in range(n):
                self.call(c, op, times, k)
        if self.batch_delete:
            self.sqs.delete_message_batch(
                QueueUrl=c.queue_url, Entries=[{"Id": "0", "ReceiptHandle": c.receipt}]
            )
            op_name = "DeleteMessageBatch"
        else:
            self.sqs.delete_message(QueueUrl=c.queue_url, ReceiptHandle=c.receipt)
            op_name = "DeleteMessage"
        with self._lock:
            times.calls[("sqs", op_name)] += 1
        times.done[c.code] = time.perf_counter()

    def run(self, codes: list[str]) -> FloorTimes:
        self.codes = codes
        customers = [_Customer(self, code, i) for i, code in enumerate(codes)]
        times = FloorTimes(t0=time.perf_counter())
        futures: list[Future[None]] = []
        flock = threading.Lock()
        sends = max(1, self.worker_threads * self.send_parallelism) if self.send_parallelism > 1 else 0
        with (
            ThreadPoolExecutor(self.worker_threads, thread_name_prefix="floor-work") as work,
            ThreadPoolExecutor(self.upload_threads, thread_name_prefix="floor-up") as up,
            ThreadPoolExecutor(max(1, sends), thread_name_prefix="floor-send") as send_pool,
        ):
            self.send_pool = send_pool if sends else None

            def upload_then_work(c: _Customer) -> None:
                self._upload(c, times)
                fut = work.submit(self._work, c, times)
                with flock:
                    futures.append(fut)

            for fut in [up.submit(upload_then_work, c) for c in customers]:
                fut.result()
            for fut in list(futures):
                try:
                    fut.result()
                except Exception as exc:  # reported, not fatal: the row shows it
                    times.errors.append(f"{type(exc).__name__}: {exc}")
        return times

    def run_drain(self, chains: list[str], moto: Any) -> tuple[FloorTimes, dict[str, float]]:
        """Throughput form: every trigger uploaded first (not timed), then the chains drain them."""
        from .common import CpuSample

        self.codes = chains
        customers = [_Customer(self, code, i) for i, code in enumerate(chains)]
        times = FloorTimes(t0=0.0)
        with ThreadPoolExecutor(self.upload_threads) as up:
            list(up.map(lambda c: self._upload(c, times), customers))
        sends = self.worker_threads * self.send_parallelism if self.send_parallelism > 1 else 0
        start = CpuSample.now(moto)
        times.t0 = start.wall
        with (
            ThreadPoolExecutor(self.worker_threads, thread_name_prefix="floor-work") as work,
            ThreadPoolExecutor(max(1, sends), thread_name_prefix="floor-send") as send_pool,
        ):
            self.send_pool = send_pool if sends else None
            for fut in [work.submit(self._work, c, times) for c in customers]:
                try:
                    fut.result()
                except Exception as exc:  # reported, not fatal
                    times.errors.append(f"{type(exc).__name__}: {exc}")
        return times, CpuSample.now(moto).since(start)
