"""Topics from the running system's SESConfig.json, and contacts from Identity Center groups."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from changeconsole.models import TOPIC_ANNOUNCE, TOPIC_APPROVAL, TOPIC_CALENDAR
from changeconsole.services.aws import AwsFactory
from changeconsole.services.contact_admin import ContactBook
from changeconsole.services.contacts import topic_defaults
from changeconsole.services.identity_center import (
    IdentityCenterError,
    IdentityCenterSync,
    group_role,
    topics_for,
)
from changeconsole.services.topics import (
    TopicsFileError,
    apply_topics,
    apply_topics_for,
    load_topics_file,
    parse_topics,
)

SES_CONFIG = Path(__file__).parent / "fixtures" / "running_system" / "SESConfig.json"


@pytest.fixture
def stack(make_stack: Any) -> Any:
    return make_stack(customers=2, contacts=0)


def test_grouped_topics_expand_as_the_running_system_names_them() -> None:
    topics = load_topics_file(SES_CONFIG)
    names = [t.name for t in topics]
    assert names == [
        "aws-calendar",
        "aws-announce",
        "aws-approval",
        "finops-announce",
        "general-updates",
        "subscription-preferences",
    ]
    calendar = topics[0]
    assert calendar.display_name == "AWS Change Calendar Invites"
    assert calendar.description == "Receives AWS calendar invites for scheduled changes"
    assert calendar.opt_in_roles == ("cloudeng", "devops", "security")
    assert {t.name: t.default for t in topics}["aws-announce"] == "OPT_IN"


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ([], "$"),
        ({"topics": [{"TopicName": "a b"}]}, "topics[0].TopicName"),
        (
            {"topics": [{"TopicName": "a", "DefaultSubscriptionStatus": "YES"}]},
            "topics[0].DefaultSubscriptionStatus",
        ),
        ({"topics": [{"TopicName": "a"}, {"TopicName": "a"}]}, "a"),
        ({"topics": [{"TopicName": "a", "OptInRoles": "security"}]}, "topics[0].OptInRoles"),
        ({"topics": [{"TopicName": f"t{i}"} for i in range(21)]}, "$"),
        ({}, "$"),
    ],
)
def test_bad_topic_files_name_the_field(raw: Any, path: str) -> None:
    with pytest.raises(TopicsFileError) as info:
        parse_topics(raw)
    assert path in {p["path"] for p in info.value.problems}


def test_apply_reports_drift_creates_updates_and_keeps(stack: Any, aws_factory: AwsFactory) -> None:
    config = stack.config
    ses = aws_factory.customer_client(config.customer("acme"), "sesv2")
    topics = load_topics_file(SES_CONFIG)
    ses.update_contact_list(
        ContactListName="changeconsole",
        Topics=[
            *(t.to_api() for t in topics if t.name != "finops-announce"),
            {"TopicName": "legacy-news", "DisplayName": "Legacy", "DefaultSubscriptionStatus": "OPT_OUT"},
        ],
    )
    ses.update_contact_list(
        ContactListName="changeconsole",
        Topics=[
            {**t, "DefaultSubscriptionStatus": "OPT_IN"} if t["TopicName"] == "aws-approval" else t
            for t in ses.get_contact_list(ContactListName="changeconsole")["Topics"]
        ],
    )
    dry = apply_topics(ses, config, "acme", topics, dry_run=True)
    results = {t.topic: (t.result, t.changes) for t in dry.topics}
    assert results["aws-approval"] == ("updated", ["default OPT_IN → OPT_OUT"])
    assert results["finops-announce"] == ("created", [])
    assert results["aws-announce"] == ("unchanged", [])
    assert results["legacy-news"][0] == "kept"
    assert topic_defaults(ses, "changeconsole")["aws-approval"] == "OPT_IN"  # dry run: untouched
    applied = apply_topics(ses, config, "acme", topics)
    assert applied.changed and not applied.missing_event_topics
    defaults = topic_defaults(ses, "changeconsole")
    assert (
        defaults["aws-approval"] == "OPT_OUT" and "finops-announce" in defaults and "legacy-news" in defaults
    )
    again = apply_topics(ses, config, "acme", topics)
    assert not again.changed and {t.result for t in again.topics} == {"unchanged", "kept"}


def test_apply_creates_the_list_and_warns_of_missing_event_topics(
    stack: Any, aws_factory: AwsFactory
) -> None:
    config = stack.config
    ses = aws_factory.customer_client(config.customer("globex"), "sesv2")
    ses.delete_contact_list(ContactListName="changeconsole")
    only_finops = parse_topics(
        {"topics": [{"TopicName": "finops-announce", "DefaultSubscriptionStatus": "OPT_IN"}]}
    )
    run = apply_topics_for(aws_factory, config, ["globex"], only_finops, operator="ops.tester")
    (report,) = run.reports
    assert report.list_created and report.list_name == "changeconsole"
    assert report.missing_event_topics == [TOPIC_APPROVAL, TOPIC_ANNOUNCE, TOPIC_CALENDAR]
    assert len(run.audit_keys) == 1
    # The other customer's list was not touched.
    acme = aws_factory.customer_client(config.customer("acme"), "sesv2")
    assert "finops-announce" not in topic_defaults(acme, "changeconsole")


# -- Identity Center -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("group", "role"),
    [
        ("ccoe-cloud-acme-prod-123456789012-admin-idp-aws-security", "security"),
        ("ccoe-cloud-acme-123456789012-idp-portal-devops", "devops"),
        ("Finance", "finance"),
    ],
)
def test_group_roles(group: str, role: str) -> None:
    assert group_role(group) == role


def test_topics_follow_defaults_and_role_opt_ins() -> None:
    topics = load_topics_file(SES_CONFIG)
    assert topics_for({"security"}, True, topics) == [
        "aws-calendar",
        "aws-announce",
        "aws-approval",
        "subscription-preferences",
    ]
    assert topics_for({"finance"}, False, topics) == ["finops-announce"]


def _identity_center(aws: AwsFactory, mapping: Any) -> tuple[str, dict[str, str]]:
    """An Identity Center instance in the customer's account with two groups and four users."""
    store = aws.customer_client(mapping, "sso-admin").list_instances()["Instances"][0]["IdentityStoreId"]
    ids = aws.customer_client(mapping, "identitystore")
    groups = {
        name: ids.create_group(IdentityStoreId=store, DisplayName=name)["GroupId"]
        for name in ("ccoe-cloud-acme-210000000001-idp-aws-security", "finance-team", "unrelated")
    }
    users = {}
    for user, email in (
        ("rita", "rita.sec@acme.example.com"),
        ("omar", "omar.fin@acme.example.com"),
        ("noemail", None),
        ("existing", "already@acme.example.com"),
    ):
        kwargs: dict[str, Any] = {"IdentityStoreId": store, "UserName": user, "DisplayName": user.title()}
        kwargs["Name"] = {"GivenName": user.title(), "FamilyName": "Example"}
        if email:
            kwargs["Emails"] = [{"Value": email, "Primary": True}]
        users[user] = ids.create_user(**kwargs)["UserId"]
    for user, group in (
        ("rita", "ccoe-cloud-acme-210000000001-idp-aws-security"),
        ("omar", "finance-team"),
        ("noemail", "finance-team"),
        ("existing", "finance-team"),
        ("rita", "finance-team"),
    ):
        ids.create_group_membership(
            IdentityStoreId=store, GroupId=groups[group], MemberId={"UserId": users[user]}
        )
    return store, groups


def test_sync_identity_center_creates_contacts_with_role_opt_ins(stack: Any, aws_factory: AwsFactory) -> None:
    config = stack.config
    mapping = config.customer("acme")
    topics = load_topics_file(SES_CONFIG)
    apply_topics(aws_factory.customer_client(mapping, "sesv2"), config, "acme", topics)
    store, _ = _identity_center(aws_factory, mapping)
    book = ContactBook(aws_factory, config, "acme", operator="ops.tester", rate=None)
    book.add("already@acme.example.com", {"aws-announce": "OPT_OUT"})
    with pytest.raises(IdentityCenterError, match="identity_center_groups is not set"):
        IdentityCenterSync(aws_factory, config, "acme", operator="ops.tester", rate=None).run(topics)
    mapping.__pydantic_extra__["identity_center_groups"] = {
        "ccoe-cloud-acme-210000000001-idp-aws-security": "security",
        "finance-team": "finance",
        "missing-group": "dba",
    }
    sync = IdentityCenterSync(aws_factory, config, "acme", operator="ops.tester", rate=None)
    dry = sync.run(topics, dry_run=True)
    assert dry.identity_store_id == store and dry.missing_groups == ["missing-group"]
    assert book.find("rita.sec@acme.example.com") is None
    report = sync.run(topics)
    by_user = {u.user: u for u in report.users}
    assert by_user["rita"].result == "created"
    assert by_user["rita"].roles == ["finance", "security"]
    assert set(by_user["rita"].topics) == {
        "aws-calendar",
        "aws-announce",
        "aws-approval",
        "finops-announce",
        "subscription-preferences",
    }
    assert by_user["omar"].topics == ["aws-announce", "finops-announce", "subscription-preferences"]
    assert (by_user["noemail"].result, by_user["noemail"].detail) == (
        "skipped",
        "no email address in Identity Center",
    )
    assert by_user["existing"].result == "exists"
    assert report.counts() == {"created": 2, "exists": 1, "skipped": 1, "failed": 0}
    rita = book.find("rita.sec@acme.example.com")
    assert rita is not None and rita.preferences["aws-approval"] == "OPT_IN"
    existing = book.find("already@acme.example.com")
    assert existing is not None and existing.preferences == {"aws-announce": "OPT_OUT"}
    again = sync.run(topics)
    assert again.counts()["created"] == 0 and again.counts()["exists"] == 3
    # Nothing reached the other customer's account.
    globex = ContactBook(aws_factory, config, "globex", operator="ops.tester", rate=None)
    assert globex.contacts() == []
    s3 = aws_factory.client("s3")
    bucket = config.s3_config.bucket_name
    bodies = [
        s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read().decode()
        for o in s3.list_objects_v2(Bucket=bucket, Prefix="audit/").get("Contents", [])
    ]
    lines = [json.loads(line) for body in bodies for line in body.splitlines()]
    syncs = [e for e in lines if e.get("action") == "contacts.sync-identity-center"]
    # The refused run (no groups configured) and both runs are audited (not the dry run); one created.
    assert sorted(e["result"] for e in syncs) == ["ok", "ok", "rejected"]
    assert sorted(e["counts"]["created"] for e in syncs if e["result"] == "ok") == [0, 2]
