"""Contacts managed per customer in its own SES account: CSV upsert, single changes, isolation, audit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

from changeconsole.models import TOPIC_ANNOUNCE, TOPIC_APPROVAL, TOPIC_CALENDAR
from changeconsole.services.aws import AwsFactory
from changeconsole.services.contact_admin import (
    ContactBook,
    ContactError,
    ContactExists,
    ContactNotFound,
    ImportFileError,
    read_contacts_csv,
)
from changeconsole.services.contacts import contact_list_names, iter_contacts

TOPICS = [TOPIC_APPROVAL, TOPIC_ANNOUNCE, TOPIC_CALENDAR]


@pytest.fixture
def stack(make_stack: Any) -> Any:
    return make_stack(customers=2, contacts=0)


@pytest.fixture
def book(stack: Any, aws_factory: AwsFactory) -> ContactBook:
    return ContactBook(aws_factory, stack.config, "acme", operator="ops.tester", rate=None)


def emails_in(aws: AwsFactory, stack: Any, code: str) -> set[str]:
    ses = aws.customer_client(stack.config.customer(code), "sesv2")
    return {c.email for c in iter_contacts(ses, stack.config.contact_list_for(code))}


def audit_lines(aws: AwsFactory, stack: Any) -> list[dict[str, Any]]:
    s3 = aws.client("s3")
    bucket = stack.config.s3_config.bucket_name
    out = []
    for obj in s3.list_objects_v2(Bucket=bucket, Prefix="audit/").get("Contents", []):
        body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read().decode()
        out.extend(json.loads(line) for line in body.splitlines())
    return out


# -- the CSV reader (no AWS) ------------------------------------------------------------------------


def test_csv_rows_are_checked_with_line_numbers() -> None:
    text = (
        "email,aws-approval,unsubscribe_all\n"
        "a@x.example,OPT_IN,false\n"
        "not-an-address,,\n"
        "\n"
        "A@X.example,out,\n"
        "b@x.example,maybe,\n"
        "c@x.example,,yes\n"
        "d@x.example\n"
    )
    rows = read_contacts_csv(text, TOPICS)
    got = [(r.line, r.email, r.problem) for r in rows]
    assert got[0] == (2, "a@x.example", None)
    assert got[1][0] == 3 and "not a valid email address" in str(got[1][2])
    assert got[2] == (5, "A@x.example", "duplicate of line 2")
    assert got[3][0] == 6 and "aws-approval" in str(got[3][2])
    assert got[4] == (7, "c@x.example", None)
    assert rows[4].unsubscribe_all is True and rows[4].preferences == {TOPIC_APPROVAL: None}
    assert got[5][0] == 8 and "1 cells" in str(got[5][2])


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("", "empty"),
        ("address,aws-approval\n", "no 'email' column"),
        ("email,aws-aproval\n", "unknown column(s) 'aws-aproval'"),
        ("email,email\n", "twice"),
    ],
)
def test_unusable_headers_refuse_the_whole_file(header: str, message: str) -> None:
    with pytest.raises(ImportFileError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_contacts_csv(header, TOPICS)


# -- import against the local stack ----------------------------------------------------------------------


def test_import_upserts_reports_per_row_and_is_idempotent(
    book: ContactBook, aws_factory: AwsFactory, stack: Any
) -> None:
    book.add("kept@acme.example.com", {TOPIC_APPROVAL: "OPT_IN", TOPIC_CALENDAR: "OPT_IN"})
    text = (
        "email,aws-approval,aws-announce\n"
        "new.one@acme.example.com,OPT_IN,\n"
        "kept@acme.example.com,,OPT_OUT\n"
        "bad@@acme,,\n"
        "new.one@acme.example.com,,\n"
    )
    dry = book.import_csv(text, dry_run=True)
    assert [(r.line, r.result) for r in dry.rows] == [
        (2, "created"),
        (3, "updated"),
        (4, "invalid"),
        (5, "invalid"),
    ]
    assert dry.applied == 0
    assert emails_in(aws_factory, stack, "acme") == {"kept@acme.example.com"}  # the dry run wrote nothing

    report = book.import_csv(text)
    assert report.counts()["created"] == 1 and report.counts()["updated"] == 1 and report.applied == 2
    assert report.rows[1].detail == "aws-announce: default → OPT_OUT; aws-approval: OPT_IN → default"
    assert report.rows[3].detail == "duplicate of line 2"
    kept = book.find("kept@acme.example.com")
    assert kept is not None
    # Only the file's columns changed: the calendar preference it does not name stays.
    assert kept.preferences == {TOPIC_ANNOUNCE: "OPT_OUT", TOPIC_CALENDAR: "OPT_IN"}

    again = book.import_csv(text)
    assert [r.result for r in again.rows] == ["unchanged", "unchanged", "invalid", "invalid"]
    assert again.applied == 0
    lines = audit_lines(aws_factory, stack)
    imports = [e for e in lines if e.get("action") == "contacts.import"]
    # Both imports are audited (the dry run is not); only the first one changed contacts, a line each.
    assert sorted((e["result"], e["counts"]["created"] + e["counts"]["updated"]) for e in imports) == [
        ("ok", 0),
        ("ok", 2),
    ]
    assert [e["type"] for e in lines].count("contacts.import.item") == 2
    assert {e["customers"][0] for e in lines} == {"acme"}


def test_export_round_trips_through_import(book: ContactBook) -> None:
    book.add("a@acme.example.com", {TOPIC_APPROVAL: "OPT_IN"})
    book.add("b@acme.example.com", unsubscribe_all=True)
    text, count = book.export_csv()
    assert count == 2
    assert text.splitlines()[0] == "email,unsubscribe_all,aws-approval,aws-announce,aws-calendar"
    assert "a@acme.example.com,false,OPT_IN,," in text
    assert [r.result for r in book.import_csv(text).rows] == ["unchanged", "unchanged"]


def test_a_failure_mid_import_says_exactly_what_was_applied(
    book: ContactBook, aws_factory: AwsFactory, stack: Any
) -> None:
    calls = {"n": 0}

    def fail_third(**kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] >= 3:  # the third row and any retry of it
            raise EndpointConnectionError(endpoint_url="https://email.us-east-1.amazonaws.com")

    book.ses.meta.events.register("before-send.sesv2.CreateContact", fail_third)
    rows = "".join(f"p{i}@acme.example.com,OPT_IN\n" for i in range(5))
    report = book.import_csv("email,aws-approval\n" + rows)
    assert [r.result for r in report.rows] == [
        "created",
        "created",
        "failed",
        "not_attempted",
        "not_attempted",
    ]
    assert (
        report.applied == 2
        and report.error is not None
        and report.error.startswith("line 4 (p2@acme.example.com)")
    )
    assert emails_in(aws_factory, stack, "acme") == {"p0@acme.example.com", "p1@acme.example.com"}
    book.ses.meta.events.unregister("before-send.sesv2.CreateContact", fail_third)
    rerun = book.import_csv("email,aws-approval\n" + rows)
    assert [r.result for r in rerun.rows] == ["unchanged", "unchanged", "created", "created", "created"]


def test_contacts_stay_in_their_own_customers_account(stack: Any, aws_factory: AwsFactory) -> None:
    acme = ContactBook(aws_factory, stack.config, "acme", operator="ops.tester", rate=None)
    acme.add("only.acme@acme.example.com", {TOPIC_APPROVAL: "OPT_IN"})
    acme.import_csv("email\nimported@acme.example.com\n")
    assert emails_in(aws_factory, stack, "acme") == {
        "only.acme@acme.example.com",
        "imported@acme.example.com",
    }
    assert emails_in(aws_factory, stack, "globex") == set()
    globex = ContactBook(aws_factory, stack.config, "globex", operator="ops.tester", rate=None)
    with pytest.raises(ContactNotFound):
        globex.remove("only.acme@acme.example.com")
    # Each account was reached through its own role.
    accounts = {stack.config.customer(c).account_id for c in ("acme", "globex")}
    assert len(accounts) == 2


def test_single_changes_toggle_default_and_remove(
    book: ContactBook, aws_factory: AwsFactory, stack: Any
) -> None:
    book.add("x@acme.example.com")
    with pytest.raises(ContactExists):
        book.add("X@acme.example.com".lower())
    with pytest.raises(ContactError, match="unknown topic"):
        book.add("y@acme.example.com", {"aws-nope": "OPT_IN"})
    # No preference: announce follows its default (OPT_IN); toggling makes it an explicit OPT_OUT.
    _, after, changes = book.toggle("x@acme.example.com", TOPIC_ANNOUNCE)
    assert after.preferences == {TOPIC_ANNOUNCE: "OPT_OUT"} and changes == ["aws-announce: default → OPT_OUT"]
    _, after, _ = book.toggle("x@acme.example.com", TOPIC_ANNOUNCE)
    assert after.preferences == {TOPIC_ANNOUNCE: "OPT_IN"}
    _, after, changes = book.update("x@acme.example.com", {TOPIC_ANNOUNCE: None})
    assert after.preferences == {} and changes == ["aws-announce: OPT_IN → default"]
    assert book.update("x@acme.example.com", {TOPIC_ANNOUNCE: None})[2] == []
    topics, views = book.views()
    assert [t.name for t in topics] == TOPICS
    (view,) = views
    assert view.subscribed == {TOPIC_APPROVAL: False, TOPIC_ANNOUNCE: True, TOPIC_CALENDAR: False}
    book.remove("x@acme.example.com")
    assert book.find("x@acme.example.com") is None
    lines = audit_lines(aws_factory, stack)
    kinds = [(e["action"], e["operator"], e["customers"], e["result"]) for e in lines]
    assert ("contact.add", "ops.tester", ["acme"], "ok") in kinds
    assert ("contact.remove", "ops.tester", ["acme"], "ok") in kinds
    assert ("contact.add", "ops.tester", ["acme"], "rejected") in kinds  # the duplicate and the bad topic
    updates = [e for e in lines if e["action"] == "contact.update"]
    assert len(updates) == 4 and [e.get("detail") for e in updates].count("nothing changed") == 1


def test_the_accounts_only_list_is_used_when_none_is_configured(stack: Any, aws_factory: AwsFactory) -> None:
    mapping = stack.config.customer("acme")
    ses = aws_factory.customer_client(mapping, "sesv2")
    ses.delete_contact_list(ContactListName="changeconsole")
    ses.create_contact_list(ContactListName="ccoe-customer-contacts", Topics=[])
    book = ContactBook(aws_factory, stack.config, "acme", operator="ops.tester", rate=None)
    assert book.list_name == "ccoe-customer-contacts"
    assert book.choice.reason == "the account's only contact list"
    ses.delete_contact_list(ContactListName="ccoe-customer-contacts")
    assert contact_list_names(ses) == []
    empty = ContactBook(aws_factory, stack.config, "acme", operator="ops.tester", rate=None)
    with pytest.raises(ContactError, match="topics apply acme"):
        empty.contacts()


def test_a_5000_contact_import(book: ContactBook, aws_factory: AwsFactory, stack: Any) -> None:
    """Paced by a limiter at a rate high enough for CI (the default is SES's 1/s)."""
    book.rate = 100_000.0
    rows = [f"person{i:04d}@acme.example.com,{'OPT_IN' if i % 3 == 0 else ''},\n" for i in range(5000)]
    text = "email,aws-approval,aws-calendar\n" + "".join(rows)
    seen: list[tuple[int, int]] = []
    report = book.import_csv(text, progress=lambda done, total: seen.append((done, total)))
    assert report.counts()["created"] == 5000 and report.ok
    assert seen[-1] == (5000, 5000)
    contacts = book.contacts()
    assert len(contacts) == 5000
    assert sum(1 for c in contacts if c.preferences.get(TOPIC_APPROVAL) == "OPT_IN") == 1667
    again = book.import_csv(text)
    assert again.counts()["unchanged"] == 5000 and again.applied == 0


def test_the_running_systems_subscription_config_imports_as_opt_ins(book: ContactBook) -> None:
    book.add("kim.nakamura@acme.example.com", {TOPIC_ANNOUNCE: "OPT_OUT"})
    text = (Path(__file__).parent / "fixtures" / "running_system" / "SubscriptionConfig.json").read_text()
    report = book.import_csv(text)
    assert [(r.line, r.email, r.result) for r in report.rows] == [
        (3, "Pat.Lee@acme.example.com", "created"),
        (7, "kim.nakamura@acme.example.com", "updated"),
    ]
    pat = book.find("pat.lee@acme.example.com")
    assert pat is not None
    assert pat.preferences == {TOPIC_CALENDAR: "OPT_IN", TOPIC_APPROVAL: "OPT_IN", TOPIC_ANNOUNCE: "OPT_IN"}
    kim = book.find("kim.nakamura@acme.example.com")
    # Its own announce opt-out stays: the file only opts in.
    assert kim is not None and kim.preferences == {TOPIC_ANNOUNCE: "OPT_OUT", TOPIC_APPROVAL: "OPT_IN"}
    assert [r.result for r in book.import_csv(text).rows] == ["unchanged", "unchanged"]
    with pytest.raises(ImportFileError, match="unknown topic"):
        book.import_csv('{"aws-nope": ["a@acme.example.com"]}')
