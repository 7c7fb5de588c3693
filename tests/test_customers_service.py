"""CustomerService against the moto server: queue/DLQ depths, contacts per topic, last delivery."""

from __future__ import annotations

from typing import Any

from changeconsole.models import TOPIC_ANNOUNCE, TOPIC_APPROVAL, TOPIC_CALENDAR, DeliveryState, EmailEvent
from changeconsole.services.aws import AwsFactory, AwsSettings
from changeconsole.services.customers import CustomerService, CustomerStats
from changeconsole.services.localstack import contact_address
from changeconsole.services.status import DeliveryKey, StatusStore

CID = "CHG-2026-11-27T19-00-00-abc123"


def test_contacts_per_topic_follow_ses_semantics(make_stack: Any, aws_factory: AwsFactory) -> None:
    # Local contact profiles (services.localstack.PROFILES), topic defaults approval OPT_OUT,
    # announce OPT_IN, calendar OPT_OUT:
    #   0 all OPT_IN                    -> approval, announce, calendar
    #   1 no preferences                -> announce (default)
    #   2 approval IN, announce OUT     -> approval
    #   3 approval IN, calendar IN      -> approval, announce (default), calendar
    #   4 UnsubscribeAll (prefs OPT_IN) -> nothing
    #   5 = profile 1, 6 = profile 2
    stack = make_stack(customers=2, contacts=7)
    service = CustomerService(aws_factory, stack.config)
    counts = service.contact_counts("acme")
    assert counts.ok, counts.error
    assert counts.contacts == 7
    assert counts.unsubscribed_all == 1
    assert counts.subscribed == {TOPIC_APPROVAL: 4, TOPIC_ANNOUNCE: 4, TOPIC_CALENDAR: 2}
    assert counts.deliverable == counts.subscribed  # no whitelist
    assert counts.defaults == {TOPIC_APPROVAL: "OPT_OUT", TOPIC_ANNOUNCE: "OPT_IN", TOPIC_CALENDAR: "OPT_OUT"}

    # A whitelist keeps only listed addresses (case-insensitive) of those subscribed.
    config = stack.config.model_copy(deep=True)
    config.customer_mappings["acme"].restricted_recipients = [
        contact_address("acme", 0).upper(),  # approval, announce, calendar
        contact_address("acme", 4),  # unsubscribed from everything: still nothing
    ]
    restricted = CustomerService(aws_factory, config).contact_counts("acme")
    assert restricted.subscribed == counts.subscribed
    assert restricted.deliverable == {TOPIC_APPROVAL: 1, TOPIC_ANNOUNCE: 1, TOPIC_CALENDAR: 1}
    # Each customer's own account: globex has its own contacts.
    assert service.contact_counts("globex").contacts == 7


def test_every_page_of_contacts_is_read_and_counted_once() -> None:
    pages = {
        None: {
            "Contacts": [{"EmailAddress": "a@x.example.com", "TopicPreferences": []}],
            "NextToken": "p2",
        },
        "p2": {
            "Contacts": [
                {"EmailAddress": "b@x.example.com", "UnsubscribeAll": True},
                {"EmailAddress": "A@x.example.com"},  # same address again (server ignoring paging)
            ],
            "NextToken": "p3",
        },
        "p3": {
            "Contacts": [
                {
                    "EmailAddress": "c@x.example.com",
                    "TopicPreferences": [{"TopicName": TOPIC_APPROVAL, "SubscriptionStatus": "OPT_IN"}],
                }
            ]
        },
    }

    class FakeSes:
        def __init__(self) -> None:
            self.calls: list[dict[str, Any]] = []

        def list_contacts(self, **kwargs: Any) -> dict[str, Any]:
            self.calls.append(kwargs)
            assert "Filter" not in kwargs  # never trust a server-side filter
            return pages[kwargs.get("NextToken")]

        def list_contact_lists(self, **kwargs: Any) -> dict[str, Any]:
            return {"ContactLists": [{"ContactListName": "changeconsole"}]}

        def get_contact_list(self, **kwargs: Any) -> dict[str, Any]:
            return {
                "Topics": [
                    {"TopicName": TOPIC_APPROVAL, "DefaultSubscriptionStatus": "OPT_OUT"},
                    {"TopicName": TOPIC_ANNOUNCE, "DefaultSubscriptionStatus": "OPT_IN"},
                ]
            }

    ses = FakeSes()

    class FakeAws:
        settings = AwsSettings()

        def customer_client(self, mapping: Any, service: str) -> Any:
            assert service == "sesv2"
            return ses

        def client(self, service: str, region: str | None = None) -> Any:
            raise AssertionError("central-account call not expected")

    from changeconsole.models import Config
    from changeconsole.services.localstack import build_local_config

    config = Config.model_validate(build_local_config(1, endpoint="http://127.0.0.1:9"))
    counts = CustomerService(FakeAws(), config).contact_counts("acme")  # type: ignore[arg-type]
    assert len(ses.calls) == 3
    assert counts.contacts == 3
    assert counts.subscribed == {TOPIC_APPROVAL: 1, TOPIC_ANNOUNCE: 2, TOPIC_CALENDAR: 0}


def test_queue_and_dlq_depths_in_parallel(make_stack: Any, aws_factory: AwsFactory) -> None:
    stack = make_stack(customers=4, contacts=1)
    config = stack.config
    sqs = aws_factory.client("sqs")
    acme = config.customer("acme")
    queue = sqs.get_queue_url(QueueName=acme.queue_name)["QueueUrl"]
    dlq = sqs.get_queue_url(QueueName=acme.dlq_name)["QueueUrl"]
    # Provisioning leaves an s3:TestEvent in each queue: start from empty queues.
    for code in ("acme", "globex"):
        sqs.purge_queue(QueueUrl=sqs.get_queue_url(QueueName=config.customer(code).queue_name)["QueueUrl"])
    for body in ("1", "2", "3"):
        sqs.send_message(QueueUrl=queue, MessageBody=body)
    sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=1, VisibilityTimeout=300)
    sqs.send_message(QueueUrl=dlq, MessageBody="dead")

    service = CustomerService(aws_factory, config, threads=3)
    seen: list[CustomerStats] = []
    stats = service.all_stats(on_result=seen.append)
    assert sorted(stats) == sorted(config.customer_mappings)
    assert len(seen) == len(config.customer_mappings)
    a = stats["acme"].depths
    assert (a.queue.visible, a.queue.in_flight, a.queue.total) == (2, 1, 3)
    assert a.dlq.total == 1 and a.dlq.ok
    assert stats["globex"].depths.queue.total == 0
    assert stats["globex"].depths.dlq.total == 0
    assert service.dlq_depth("acme").total == 1


def test_last_delivery_is_the_newest_of_the_customer(make_stack: Any, aws_factory: AwsFactory) -> None:
    stack = make_stack(customers=2, contacts=1)
    store = StatusStore(aws_factory, stack.config)
    store.update(
        DeliveryKey(CID, 1, EmailEvent.SUBMITTED, "acme"),
        state=DeliveryState.SENT,
        updated_at="2026-11-27T19:00:00Z",
    )
    store.update(
        DeliveryKey(CID, 2, EmailEvent.APPROVED, "acme"),
        state=DeliveryState.FAILED,
        updated_at="2026-11-27T19:30:00Z",
    )
    service = CustomerService(aws_factory, stack.config)
    last = service.last_delivery("acme")
    assert last is not None and (last.version, last.state) == (2, DeliveryState.FAILED)
    assert service.last_delivery("globex") is None
    assert [r.version for r in service.recent_deliveries("acme")] == [2, 1]
    assert service.stats("acme").last_delivery == last


def test_info_comes_from_config_without_aws(make_stack: Any, aws_factory: AwsFactory) -> None:
    stack = make_stack(customers=3, contacts=1)
    service = CustomerService(aws_factory, stack.config)
    infos = service.customers()
    assert [i.code for i in infos] == sorted(stack.config.customer_mappings)
    acme = service.info("acme")
    assert acme.account_id == stack.config.customer("acme").ses_role_arn.split(":")[4]
    assert acme.queue_name == "changeconsole-acme" and acme.dlq_name == "changeconsole-acme-dlq"


def test_unreachable_aws_and_missing_queue_are_reported_not_raised(
    make_stack: Any, aws_factory: AwsFactory
) -> None:
    stack = make_stack(customers=1, contacts=1)
    dead = AwsFactory(
        AwsSettings(endpoint_url="http://127.0.0.1:9", local=True, max_attempts=1, connect_timeout=0.5)
    )
    service = CustomerService(dead, stack.config)
    depth = service.queue_depth("acme")
    assert depth.error is not None and depth.error.startswith("AWS unreachable")
    stats = service.stats("acme")
    assert stats.last_delivery_error is not None and "unreachable" in stats.last_delivery_error
    counts = service.contact_counts("acme")
    assert counts.error is not None and "unreachable" in counts.error

    config = stack.config.model_copy(deep=True)
    config.customer_mappings["acme"].dlq_arn = "arn:aws:sqs:us-east-1:123456789012:no-such-dlq"
    missing = CustomerService(aws_factory, config).dlq_depth("acme")
    assert missing.error == "queue no-such-dlq does not exist"
