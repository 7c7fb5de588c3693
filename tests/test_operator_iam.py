"""The app's role matrix and the operators' IAM say the same thing.

Every operator action is done once on the local stack while botocore hooks record its calls; each call
is mapped to what IAM evaluates and checked against the permission sets ``modules/operator_access``
plans for five roles (the three built-in ones, a change manager scoped to one customer, DLQ operators
scoped by a principal tag). For each role and each action: when the app allows it (``services.authz``),
IAM allows every call it makes; when the app refuses it, IAM denies at least one of them, except in the
blind spots listed below: IAM grants writes of objects and items, not lifecycle verbs, a change's
documents (drafts/, archive/, versions/, its status items) are keyed by change, not by customer, and a
customer's account is reached through one role, whatever the customer-side action.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from changeconsole.models import Change, Config, EmailEvent, OperatorAction
from changeconsole.services.audit import AuditQuery
from changeconsole.services.authz import Authorizer
from changeconsole.services.aws import LOCAL_ACCOUNT
from changeconsole.services.bundle import Services
from changeconsole.services.customer_admin import CustomerAdmin, NewCustomer
from changeconsole.services.identity import Facts, Operator
from changeconsole.services.ledger import CLAIM_SK, delivery_pk, rcpt_sk
from changeconsole.services.localstack import local_factory
from changeconsole.services.status import DeliveryKey, to_item
from changeconsole.services.topics import DEFAULT_TOPICS, apply_topics_for
from deploy.tfeval import ModuleInstance, load_module
from support.dlq import put_dead_letters
from support.iam import Call, Recorder, allowed, needs, statements_of

TF = Path(__file__).resolve().parents[1] / "deploy" / "terraform"
A = OperatorAction
CHANGE_ACTIONS = ["change.draft", "change.submit", "change.edit", "change.cancel", "change.resend"]
TAG = "cc-customer"
NEW_ROLE = "arn:aws:iam::210000000099:role/changeconsole-ses-sender"


@dataclass
class Step:
    name: str
    action: OperatorAction
    customers: list[str] | None
    run: Callable[[], Any]


def roles(first: str) -> dict[str, Any]:
    """The roles under test, in config.json's shape (``first``: the customer the scoped roles cover)."""
    return {
        "ChangeManagers": {"principals": ["user:cm"]},
        "Regional": {"principals": ["user:rcm"], "customers": [first], "actions": CHANGE_ACTIONS},
        "CustomerManagers": {"principals": ["user:cust"], "customers": [first]},
        "Auditors": {"principals": ["user:aud"]},
        "DlqOperators": {
            "principals": ["user:dlq"],
            "customer_tag": TAG,
            "actions": ["dlq.redrive", "dlq.export", "dlq.import", "dlq.purge"],
        },
    }


# (role, step): what the app refuses and IAM cannot tell apart from what the role may do.
BLIND_SPOTS = {
    ("Regional", "draft"): "a draft and its index item name no customer in their keys",
    ("Regional", "complete-own"): "completing writes what submitting and cancelling write",
    ("Regional", "reindex"): "indexing writes the status items every change action writes",
    # A customer's account is reached through one role: whoever may assume it for one customer-side
    # action (change managers: preview, test send; customer managers: contacts) may, as far as the
    # central account's IAM goes, assume it for the others; the customer role's own policy decides.
    ("ChangeManagers", "contacts"): "the customer's role, assumed to preview",
    ("ChangeManagers", "contacts-other"): "the customer's role, assumed to preview",
    ("ChangeManagers", "contact-add"): "the customer's role, assumed to preview",
    ("ChangeManagers", "contact-add-other"): "the customer's role, assumed to preview",
    ("ChangeManagers", "topics"): "the customer's role, assumed to preview",
    ("CustomerManagers", "test-send"): "the customer's role, assumed for contacts",
}

PERSON = {"ChangeManagers": "cm", "Regional": "rcm", "CustomerManagers": "cust", "Auditors": "aud"}
PERSON["DlqOperators"] = "dlq"


def planned_policies(config: Config, role_config: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    region = config.aws_region
    table = f"arn:aws:dynamodb:{region}:{LOCAL_ACCOUNT}:table"
    inputs = {
        "name": "changeconsole-local",
        "instance_arn": "arn:aws:sso:::instance/ssoins-0000000000000000",
        "identity_store_id": "d-0000000000",
        "account_id": LOCAL_ACCOUNT,
        "region": region,
        "bucket_arn": f"arn:aws:s3:::{config.s3_config.bucket_name}",
        "status_table_arn": f"{table}/{config.status_table_name}",
        "ledger_table_arn": f"{table}/{config.ledger_table_name}",
        "queue_name_prefix": "changeconsole-",
        "customer_roles": {code: m.ses_role_arn for code, m in config.customer_mappings.items()}
        | {"newco": NEW_ROLE},
        "roles": {
            name: {
                "permission_set": f"cc-local-{name}",
                "actions": r.get("actions", []),
                "customers": r.get("customers"),
                "customer_tag": r.get("customer_tag"),
            }
            for name, r in role_config.items()
        },
    }
    plan = ModuleInstance(load_module(TF / "modules" / "operator_access"), inputs, "", TF).plan()
    facts = {"account_id": LOCAL_ACCOUNT, "region": region, "partition": "aws"}
    return {d.key: statements_of(plan, d, facts) for d in plan.instances("aws_iam_policy_document")}


class TagDirectory:
    def __init__(self, tags: dict[str, str]) -> None:
        self.tags = tags

    def facts(self, operator: Operator) -> Facts:
        return Facts([], dict(self.tags), [])


def unknown_recipient(aws: Any, config: Config, change: Change, code: str) -> None:
    """The ledger as a worker that lost one send's outcome leaves it: settled, one ``unknown``."""
    key = DeliveryKey(change.change_id, change.version, EmailEvent.SUBMITTED, code)
    ddb, table = aws.client("dynamodb"), config.ledger_table_name
    ddb.put_item(TableName=table, Item=to_item({"pk": delivery_pk(key), "sk": CLAIM_SK, "state": "done"}))
    email = "lost@example.com"
    item = {"pk": delivery_pk(key), "sk": rcpt_sk(email), "state": "unknown", "email": email}
    ddb.put_item(TableName=table, Item=to_item(item))


@pytest.mark.timeout(240)
def test_each_role_can_do_in_iam_exactly_what_the_app_lets_it(
    make_stack: Any, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stack = make_stack(customers=3, contacts=2)
    config = stack.config  # no operator_roles: the walk itself is not refused
    a, b, _c = sorted(config.customer_mappings)
    doing: dict[str, str | None] = {"step": None}
    recorder = Recorder(lambda: doing["step"])
    recorder.install(monkeypatch)
    aws = local_factory(moto_endpoint, max_attempts=1, acting_as="walker")
    services = Services(aws, config)
    changes, dlq, templates = services.changes, services.dlq, services.templates
    admin = CustomerAdmin(aws, stack.config_path, authz=services.authz)

    def change(customers: list[str]) -> Change:
        window = {"implementationStart": "2030-03-01T22:00:00Z", "implementationEnd": "2030-03-02T02:00:00Z"}
        return Change.model_validate({"changeTitle": "IAM walk", "customers": customers, **window})

    state: dict[str, Any] = {}
    put_dead_letters(aws, config, a, 2)
    put_dead_letters(aws, config, b, 1)
    export = tmp_path / "a.jsonl"
    since = datetime.now(UTC) - timedelta(days=1)

    def read() -> None:
        changes.list()
        services.customers.all_stats()
        dlq.summaries()
        if "wide" in state:
            changes.history(state["wide"])
            services.status.latest_round(state["wide"])

    def draft(customers: list[str], key: str) -> Callable[[], None]:
        def run() -> None:
            state[key] = changes.save_draft(change(customers)).change_id

        return run

    def resend_unknown() -> None:
        current = changes.load(state["wide"])
        unknown_recipient(aws, config, current, a)
        assert services.resend.resend(state["wide"], customers=[a]).resent == 1

    steps = [
        Step("draft", A.CHANGE_DRAFT, [a, b], draft([a, b], "wide")),
        Step("submit", A.CHANGE_SUBMIT, [a, b], lambda: changes.submit(state["wide"])),
        Step("read", A.READ, None, read),
        Step("resend-unknown", A.CHANGE_RESEND, [a], resend_unknown),
        Step("approve", A.CHANGE_APPROVE, [a, b], lambda: changes.approve(state["wide"])),
        Step(
            "edit",
            A.CHANGE_EDIT,
            [a, b],
            lambda: changes.edit(changes.load(state["wide"]).model_copy(update={"title": "Edited"})),
        ),
        Step("resend", A.CHANGE_RESEND, [a, b], lambda: changes.resend(state["wide"])),
        Step("cancel", A.CHANGE_CANCEL, [a, b], lambda: changes.cancel(state["wide"])),
        Step("delete", A.CHANGE_DELETE, [a, b], lambda: changes.delete(state["wide"])),
        Step("draft-own", A.CHANGE_DRAFT, [a], draft([a], "own")),
        Step("submit-own", A.CHANGE_SUBMIT, [a], lambda: changes.submit(state["own"])),
        Step(
            "complete-own",
            A.CHANGE_COMPLETE,
            [a],
            lambda: changes.complete(changes.approve(state["own"]).change.change_id),
        ),
        Step("reindex", A.CHANGE_REINDEX, None, changes.reindex),
        Step("report", A.READ, None, lambda: services.reports.build()),
        Step(
            "template-save", A.TEMPLATE_EDIT, None, lambda: templates.save("walk", changes.load(state["own"]))
        ),
        Step("template-rename", A.TEMPLATE_EDIT, None, lambda: templates.rename("walk", "walked")),
        Step("template-read", A.READ, None, lambda: templates.new_change("walked")),
        Step("template-delete", A.TEMPLATE_EDIT, None, lambda: templates.delete("walked")),
        Step(
            "preview", A.CHANGE_PREVIEW, [a], lambda: services.preview.preview(changes.load(state["own"]), a)
        ),
        Step(
            "preview-other",
            A.CHANGE_PREVIEW,
            [b],
            lambda: services.preview.preview(changes.load(state["own"]), b, EmailEvent.REMOVED),
        ),
        Step(
            "test-send",
            A.CHANGE_TEST_SEND,
            [a],
            lambda: services.preview.test_send(changes.load(state["own"]), a, "walker@ops.example.com"),
        ),
        Step(
            "test-send-other",
            A.CHANGE_TEST_SEND,
            [b],
            lambda: services.preview.test_send(
                changes.load(state["own"]), b, "walker@ops.example.com", EmailEvent.REMOVED
            ),
        ),
        Step("peek", A.READ, [a], lambda: dlq.peek(a)),
        Step("export", A.DLQ_EXPORT, [a], lambda: dlq.export_jsonl(a, export)),
        Step("purge", A.DLQ_PURGE, [a], lambda: dlq.purge(a)),
        Step("import", A.DLQ_IMPORT, [a], lambda: dlq.import_jsonl(a, export)),
        Step("redrive", A.DLQ_REDRIVE, [a], lambda: dlq.redrive(a, all_messages=True)),
        Step("redrive-other", A.DLQ_REDRIVE, [b], lambda: dlq.redrive(b, all_messages=True)),
        Step("contacts", A.CONTACTS_READ, [a], lambda: services.contact_book(a).views()),
        Step("contacts-other", A.CONTACTS_READ, [b], lambda: services.contact_book(b).views()),
        Step(
            "contact-add", A.CONTACTS_EDIT, [a], lambda: services.contact_book(a).add("new@ops.example.com")
        ),
        Step(
            "contact-add-other",
            A.CONTACTS_EDIT,
            [b],
            lambda: services.contact_book(b).add("x@ops.example.com"),
        ),
        Step(
            "topics",
            A.TOPICS_APPLY,
            [a],
            lambda: apply_topics_for(aws, config, [a], list(DEFAULT_TOPICS), authz=services.authz),
        ),
        Step("verify", A.CUSTOMER_VERIFY, [a], lambda: services.verifier.verify(a)),
        Step(
            "customer-add",
            A.CUSTOMER_ADD,
            ["newco"],
            lambda: admin.add(NewCustomer(code="newco", name="New Co", role_arn=NEW_ROLE)),
        ),
        Step("customer-remove", A.CUSTOMER_REMOVE, ["newco"], lambda: admin.remove("newco")),
        Step(
            "audit",
            A.AUDIT_READ,
            None,
            lambda: services.audit.search(AuditQuery(since=since, until=datetime.now(UTC))),
        ),
    ]
    customer_side = {"contacts", "contacts-other", "contact-add", "contact-add-other", "topics", "verify"}
    customer_side |= {"preview", "preview-other", "test-send", "test-send-other"}
    for step in steps:
        if step.name in customer_side:
            for code in config.customer_mappings:
                aws.forget_customer(code)  # the step assumes the customer's role itself
        if step.name == "reindex":
            services.status.unindex_change(state["own"])  # something to index again
        doing["step"] = step.name
        try:
            step.run()
        finally:
            doing["step"] = None

    by_step: dict[str, list[Call]] = {}
    for call in recorder.calls:
        if call.customer is None:  # calls in a customer's account are its own role's business
            by_step.setdefault(call.label, []).append(call)
    assert set(by_step) == {s.name for s in steps}, "every step made central calls"

    role_config = roles(a)
    policies = planned_policies(config, role_config)
    app_config = Config.model_validate({**config.to_json_dict(), "operator_roles": role_config})
    problems: list[str] = []
    blind: set[tuple[str, str]] = set()
    for role, policy in policies.items():
        tags = {f"aws:PrincipalTag/{TAG}": a} if role_config[role].get("customer_tag") else {}
        authz = Authorizer(
            aws,
            app_config,
            operator=PERSON[role],
            directory=TagDirectory({TAG: a} if tags else {}),  # type: ignore[arg-type]
        )
        for step in steps:
            app = authz.decide(step.action, step.customers).allowed
            evaluated = [
                (need, allowed(policy, need, tags)) for c in by_step[step.name] for need in needs(c, config)
            ]
            denied = [str(need) for need, ok in evaluated if not ok]
            if app and denied:
                problems.append(f"{role} may {step.name} in the app, IAM denies: {sorted(set(denied))}")
            if not app and not denied:
                blind.add((role, step.name))
    assert not problems, "\n".join(problems)
    assert blind == set(BLIND_SPOTS), f"IAM allows what the app refuses beyond the known blind spots: {blind}"
