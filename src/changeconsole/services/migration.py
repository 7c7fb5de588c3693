"""Taking over a bucket the running system wrote: the change index rebuilt from it, and a dry check.

``Reindexer`` builds or repairs the change index (status table) from ``archive/`` and ``drafts/``:
every change is read as it is (older shapes converted on read, ``models_legacy``), indexed when the
index lacks it or differs, and refused with the reason when it cannot be read; index entries of
changes that no longer exist (or can no longer be read) are removed. Running it twice changes nothing
the second time.

``MigrationCheck`` writes nothing: what a reindex would do, triggers left under ``customers/``,
changes naming customers the config does not know, and per customer the contacts whose delivery
differs between the running system's subscription rule and SES's (which we apply).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from ..errors import describe, error_code, validation_problems
from ..models import ALL_TOPICS, CHANGE_ID_RE, Change, Config, OperatorAction
from ..models_legacy import convert_change
from .audit import OK
from .authz import Authorizer
from .aws import AwsFactory
from .changes import ARCHIVE, DRAFTS, ChangeStore
from .contacts import (
    OPT_IN,
    choose_contact_list,
    contact_list_names,
    is_subscribed,
    iter_contacts,
    topic_defaults,
)
from .status import ChangeSummary, StatusStore

Progress = Callable[[int, int], None]
# The list the running system creates when an account has none.
RUNNING_SYSTEM_DEFAULT_LIST = "ccoe-customer-contacts"


@dataclass
class Refused:
    key: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"key": self.key, "reason": self.reason}


@dataclass
class Read:
    """One object of ``archive/`` or ``drafts/``: the change, or why it was refused."""

    key: str
    location: str  # archive or draft
    change: Change | None = None
    converted: list[str] = field(default_factory=list)
    refused: str | None = None


def read_change_object(key: str, body: bytes, location: str) -> Read:
    """Classify one stored object (no AWS call): a change (maybe converted) or a refusal with reason."""
    out = Read(key, location)
    prefix = ARCHIVE if location == "archive" else DRAFTS
    name = key[len(prefix) :]
    if not name.endswith(".json") or "/" in name:
        out.refused = "not a change file (expected <prefix><changeId>.json)"
        return out
    try:
        raw = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        out.refused = f"not JSON: {exc}"
        return out
    if not isinstance(raw, dict):
        out.refused = "not a JSON object"
        return out
    kind = raw.get("object_type")
    if isinstance(kind, str) and kind.startswith("announcement"):
        out.refused = f"an announcement ({kind}), not a change: changeconsole sends change notices only"
        return out
    try:
        converted, notes = convert_change(raw)
        change = Change.model_validate(converted)
    except ValidationError as exc:
        problems = validation_problems(exc)
        out.refused = "; ".join(f"{p['path']}: {p['message']}" for p in problems)
        bare = str(raw.get("changeId", ""))
        if any(p["path"] == "changeId" for p in problems) and bare and not bare.startswith("CHG-"):
            out.refused += f"; fix: store it as {prefix}CHG-{bare}.json with changeId CHG-{bare}"
        return out
    expected = name[: -len(".json")]
    if change.change_id != expected:
        out.refused = f"changeId {change.change_id} does not match its key ({expected})"
        return out
    out.change, out.converted = change, notes
    return out


def _same(summary: ChangeSummary, change: Change, location: str) -> bool:
    return (
        summary.version == change.version
        and summary.status is change.status
        and summary.location == location
        and summary.title == change.title
        and summary.customers == list(change.customers)
        and summary.implementation_start == change.implementation_start
        and summary.implementation_end == change.implementation_end
        and summary.modified_by == change.modified_by
        and summary.created_by == change.created_by
        # Indexed since reports and search: an older entry lacks them and is rewritten.
        and summary.created_at == change.created_at
        and summary.submitted_at == change.submitted_at
        and summary.submitted_by == change.submitted_by
        and summary.approved_at == change.approved_at
        and summary.approved_by == change.approved_by
        and summary.snow_ticket == change.snow_ticket
        and summary.jira_ticket == change.jira_ticket
    )


@dataclass
class ReindexReport:
    dry_run: bool
    indexed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    converted: dict[str, list[str]] = field(default_factory=dict)
    refused: list[Refused] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {
            "indexed": len(self.indexed),
            "unchanged": len(self.unchanged),
            "converted": len(self.converted),
            "refused": len(self.refused),
            "removed": len(self.removed),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "counts": self.counts(),
            "indexed": self.indexed,
            "converted": self.converted,
            "refused": [r.to_json() for r in self.refused],
            "removed": self.removed,
        }


class Reindexer:
    """Builds or repairs the change index from the bucket (see the module docstring)."""

    def __init__(
        self, store: ChangeStore, status: StatusStore, *, threads: int = 16, authz: Authorizer | None = None
    ) -> None:
        self.store = store
        self.status = status
        self.threads = threads
        self.authz = authz or Authorizer(store.aws, store.config, via="api")

    def _read(self, key: str, location: str) -> Read:
        body = self.store.aws.client("s3").get_object(Bucket=self.store.bucket, Key=key)["Body"].read()
        return read_change_object(key, body, location)

    def scan(self, progress: Progress | None = None) -> list[Read]:
        """Every object of ``archive/`` and the drafts without an archived version, read in parallel."""
        archive = [k for k in self.store._keys(ARCHIVE) if not k.endswith("/")]
        archived_ids = {k[len(ARCHIVE) : -len(".json")] for k in archive}
        drafts = [
            k
            for k in self.store._keys(DRAFTS)
            if not k.endswith("/") and k[len(DRAFTS) : -len(".json")] not in archived_ids
        ]
        jobs = [(k, "archive") for k in archive] + [(k, "draft") for k in drafts]
        total = len(jobs)
        done = 0
        reads: list[Read] = []
        if progress is not None:
            progress(0, total)
        if not jobs:
            return reads
        with ThreadPoolExecutor(max_workers=min(self.threads, total)) as pool:
            for read in pool.map(lambda job: self._read(*job), jobs):
                reads.append(read)
                done += 1
                if progress is not None:
                    progress(done, total)
        return reads

    def run(self, *, dry_run: bool = False, progress: Progress | None = None) -> ReindexReport:
        """Scan and index (``change.reindex``, audited with the counts; a dry run needs ``read``)."""
        if dry_run:
            self.authz.require(OperatorAction.READ)
            return self.run_reads(self.scan(progress), dry_run=True)
        with self.authz.act(OperatorAction.CHANGE_REINDEX) as record:
            report = self.run_reads(self.scan(progress), dry_run=False)
            record.finish(OK, counts=report.counts())
            return report

    def indexed(self) -> dict[str, ChangeSummary]:
        return {s.change_id: s for s in self.status.list_changes()}

    def run_reads(
        self, reads: Iterable[Read], *, dry_run: bool = False, indexed: dict[str, ChangeSummary] | None = None
    ) -> ReindexReport:
        """Index what ``scan`` read (nothing is written with ``dry_run``) against the ``indexed`` entries."""
        report = ReindexReport(dry_run)
        indexed = self.indexed() if indexed is None else indexed
        readable: set[str] = set()
        for read in reads:
            if read.change is None:
                report.refused.append(Refused(read.key, read.refused or "unreadable"))
                continue
            change = read.change
            readable.add(change.change_id)
            if read.converted:
                report.converted[change.change_id] = read.converted
            have = indexed.get(change.change_id)
            if have is not None and _same(have, change, read.location):
                report.unchanged.append(change.change_id)
                continue
            if not dry_run:
                self.status.index_change(change, location=read.location)
            report.indexed.append(change.change_id)
        for change_id in sorted(set(indexed) - readable):
            if not dry_run:
                self.status.unindex_change(change_id)
            report.removed.append(change_id)
        report.indexed.sort()
        report.unchanged.sort()
        report.refused.sort(key=lambda r: r.key)
        return report


# -- migrate check ------------------------------------------------------------------------------------


@dataclass
class LeftoverTrigger:
    key: str
    customer: str
    change_id: str | None
    shape: str  # running-system (customers/<code>/<id>.json) or changeconsole (…/<id>/v<n>-<event>.json)
    last_modified: str
    note: str

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class ContactDifference:
    """One customer: which list each system uses, and per topic who would gain or lose its emails."""

    customer: str
    list_ours: str | None = None
    list_ours_reason: str | None = None
    list_theirs: str | None = None
    gained: dict[str, list[str]] = field(default_factory=dict)
    lost: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None

    @property
    def differs(self) -> bool:
        return bool(
            self.error
            or self.list_ours != self.list_theirs
            or any(self.gained.values())
            or any(self.lost.values())
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "customer": self.customer,
            "contact_list": {
                "changeconsole": self.list_ours,
                "reason": self.list_ours_reason,
                "running_system": self.list_theirs,
            },
            "gained": self.gained,
            "lost": self.lost,
            "error": self.error,
        }


@dataclass
class MigrationReport:
    bucket: str
    reindex: ReindexReport
    leftover_triggers: list[LeftoverTrigger] = field(default_factory=list)
    unknown_customers: dict[str, list[str]] = field(default_factory=dict)
    contacts: list[ContactDifference] = field(default_factory=list)
    # The status table does not exist yet (`provision` creates it): every change would be indexed.
    index_table_missing: bool = False

    @property
    def ready(self) -> bool:
        """Nothing refused, no leftover trigger, no unknown customer, no contact-list error."""
        return not (
            self.reindex.refused
            or self.leftover_triggers
            or self.unknown_customers
            or any(c.error for c in self.contacts)
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket,
            "ready": self.ready,
            "index_table_missing": self.index_table_missing,
            "changes": self.reindex.to_json(),
            "leftover_triggers": [t.to_json() for t in self.leftover_triggers],
            "unknown_customers": self.unknown_customers,
            "contacts": [c.to_json() for c in self.contacts],
        }


def running_system_receives(contact: Any, topic: str) -> bool:
    """The running system's rule: ``ListContacts`` filtered on the topic with ``FilteredStatus
    OPT_IN`` and no ``UseDefaultIfPreferenceUnavailable``: an explicit opt-in only."""
    return contact.preferences.get(topic) == OPT_IN


class MigrationCheck:
    """Reads a bucket laid out by the running system and the customers' contact lists; writes nothing."""

    def __init__(self, aws: AwsFactory, config: Config, *, threads: int = 16) -> None:
        self.aws = aws
        self.config = config
        self.threads = threads
        self.store = ChangeStore(aws, config, threads=threads)
        self.status = StatusStore(aws, config, threads=threads)

    def run(self, *, contacts: bool = True, progress: Progress | None = None) -> MigrationReport:
        reindexer = Reindexer(self.store, self.status, threads=self.threads)
        reads = reindexer.scan(progress)
        try:
            indexed = reindexer.indexed()
            table_missing = False
        except ClientError as exc:
            if error_code(exc) != "ResourceNotFoundException":
                raise
            indexed, table_missing = {}, True
        report = MigrationReport(
            self.config.s3_config.bucket_name, reindexer.run_reads(reads, dry_run=True, indexed=indexed)
        )
        report.index_table_missing = table_missing
        for read in reads:
            if read.change is None:
                continue
            unknown = [c for c in read.change.customers if c not in self.config.customer_mappings]
            if unknown:
                report.unknown_customers[read.change.change_id] = unknown
        report.leftover_triggers = self.leftover_triggers()
        if contacts:
            codes = sorted(self.config.customer_mappings)
            with ThreadPoolExecutor(max_workers=min(self.threads, len(codes))) as pool:
                report.contacts = list(pool.map(self.contact_difference, codes))
        return report

    def leftover_triggers(self) -> list[LeftoverTrigger]:
        out = []
        s3 = self.aws.client("s3")
        for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.store.bucket, Prefix="customers/"
        ):
            for obj in page.get("Contents", []):
                out.append(self._trigger(obj["Key"], obj["LastModified"].isoformat()))
        return out

    def _trigger(self, key: str, modified: str) -> LeftoverTrigger:
        parts = key.split("/")
        code = parts[1] if len(parts) > 1 else ""
        rest = "/".join(parts[2:])
        flat = len(parts) == 3 and rest.endswith(".json")
        change_id = rest[: -len(".json")] if flat else (parts[2] if len(parts) > 3 else None)
        if change_id is not None and not CHANGE_ID_RE.match(change_id):
            change_id = None
        known = code in self.config.customer_mappings
        if flat:
            note = (
                "left by the running system (it deletes a trigger once processed): this event may never have "
                "completed. While its queue message waits, changeconsole's worker delivers it; once that is "
                "gone nothing will (S3 events fire on create only)"
            )
            if change_id:
                note += f": then `change resend {change_id} --customers {code}`, and delete the trigger"
            shape = "running-system"
        else:
            note = "a changeconsole trigger not yet processed: a worker deletes it once delivered"
            shape = "changeconsole"
        if not known:
            note += f"; customer {code!r} is not in the config"
        return LeftoverTrigger(key, code, change_id, shape, modified, note)

    def contact_difference(self, code: str) -> ContactDifference:
        diff = ContactDifference(code)
        mapping = self.config.customer(code)
        try:
            ses = self.aws.customer_client(mapping, "sesv2")
            choice = choose_contact_list(ses, self.config, code)
            lists = contact_list_names(ses)
        except (ClientError, BotoCoreError) as exc:
            diff.error = describe(exc)
            return diff
        diff.list_ours, diff.list_ours_reason = choice.name, choice.reason
        # The running system takes the account's first list, creating its default when there is none.
        diff.list_theirs = lists[0] if lists else RUNNING_SYSTEM_DEFAULT_LIST
        if not choice.exists:
            diff.error = f"contact list {choice.name} does not exist ({choice.reason})"
            return diff
        try:
            defaults = topic_defaults(ses, choice.name)
            contacts = list({c.email.casefold(): c for c in iter_contacts(ses, choice.name)}.values())
        except (ClientError, BotoCoreError) as exc:
            diff.error = describe(exc)
            return diff
        for topic in ALL_TOPICS:
            ours = {
                c.email
                for c in contacts
                if is_subscribed(c, topic, defaults) and mapping.allows_recipient(c.email)
            }
            theirs = {
                c.email
                for c in contacts
                if running_system_receives(c, topic) and mapping.allows_recipient(c.email)
            }
            diff.gained[topic] = sorted(ours - theirs, key=str.casefold)
            diff.lost[topic] = sorted(theirs - ours, key=str.casefold)
        return diff
