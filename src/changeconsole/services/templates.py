"""Change templates, shared by the team: ``templates/{name}.json`` in the metadata bucket.

A template is a change's content without its identity, window or lifecycle (``user_fields`` less
``implementationStart``/``implementationEnd``), plus who saved it and when. A new change from a
template is a draft with a new id, version 1, and the template's content (``new_change``). Reading
them is a read; saving, renaming and deleting are ``template.edit`` through the authorization point
(``services/authz``), which audits each.
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from ..errors import InputError, OperationError, is_missing_object
from ..models import Change, ChangeStatus, Config, OperatorAction, iso_utc, new_change_id, utcnow
from .authz import Authorizer
from .aws import AwsFactory
from .changes import is_conflict
from .lifecycle import user_fields

PREFIX = "templates/"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# Not part of a template: the window is the next change's own.
WINDOW_FIELDS = frozenset({"implementationStart", "implementationEnd"})


class TemplateNotFound(InputError):
    title = "No such template"


class TemplateExists(InputError):
    title = "Template exists"


class TemplateError(OperationError):
    title = "Template not saved"


def check_name(name: str) -> str:
    name = name.strip()
    if not NAME_RE.match(name):
        raise InputError(
            f"template name {name!r}: 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
            problems=[{"path": "name", "message": "letters, digits, . _ - (at most 64)"}],
        )
    return name


@dataclass(frozen=True)
class Template:
    name: str
    content: dict[str, Any]  # the change's fields (camelCase), without id, window and lifecycle
    saved_at: str | None
    saved_by: str | None

    @property
    def title(self) -> str:
        return str(self.content.get("changeTitle") or "")

    @property
    def customers(self) -> list[str]:
        return [str(c) for c in self.content.get("customers") or []]

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "customers": self.customers,
            "saved_at": self.saved_at,
            "saved_by": self.saved_by,
        }

    def to_json(self) -> dict[str, Any]:
        return {**self.summary(), "content": self.content}


def template_content(change: Change) -> dict[str, Any]:
    """What a template keeps of a change: its content without id, window and lifecycle."""
    return {k: v for k, v in user_fields(change).items() if k not in WINDOW_FIELDS}


class TemplateStore:
    def __init__(self, aws: AwsFactory, config: Config, *, authz: Authorizer | None = None) -> None:
        self.aws = aws
        self.config = config
        self.bucket = config.s3_config.bucket_name
        self.authz = authz or Authorizer(aws, config, via="api")

    @property
    def _s3(self) -> Any:
        return self.aws.client("s3")

    @staticmethod
    def key(name: str) -> str:
        return f"{PREFIX}{name}.json"

    # -- reading ---------------------------------------------------------------------------------
    def names(self) -> list[str]:
        names: list[str] = []
        for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=PREFIX):
            for obj in page.get("Contents", []):
                key = str(obj["Key"])
                if key.endswith(".json") and "/" not in key[len(PREFIX) :]:
                    names.append(key[len(PREFIX) : -len(".json")])
        return sorted(names, key=str.casefold)

    def get(self, name: str) -> Template:
        name = check_name(name)
        try:
            body = self._s3.get_object(Bucket=self.bucket, Key=self.key(name))["Body"].read()
        except ClientError as exc:
            if is_missing_object(exc):
                raise TemplateNotFound(f"no template {name!r}") from None
            raise
        try:
            doc = json.loads(body)
        except ValueError:
            raise TemplateError(f"template {name!r} is not JSON") from None
        content = doc.get("change") if isinstance(doc, dict) else None
        if not isinstance(content, dict):
            raise TemplateError(f"template {name!r} holds no change")
        return Template(name, content, doc.get("savedAt"), doc.get("savedBy"))

    def list(self) -> list[Template]:
        """Every template (read in parallel), by name."""
        names = self.names()
        if not names:
            return []
        with ThreadPoolExecutor(max_workers=min(8, len(names))) as pool:
            found = list(pool.map(self._find, names))
        return [t for t in found if t is not None]

    def _find(self, name: str) -> Template | None:
        try:
            return self.get(name)
        except (TemplateNotFound, TemplateError):  # deleted meanwhile, or not ours
            return None

    # -- writing ---------------------------------------------------------------------------------
    def _put(self, name: str, doc: dict[str, Any], *, overwrite: bool) -> None:
        extra = {} if overwrite else {"IfNoneMatch": "*"}
        try:
            self._s3.put_object(
                Bucket=self.bucket,
                Key=self.key(name),
                Body=json.dumps(doc, ensure_ascii=False, indent=2).encode("utf-8"),
                ContentType="application/json",
                **extra,
            )
        except ClientError as exc:
            if is_conflict(exc):
                raise TemplateExists(
                    f"a template {name!r} exists already (overwrite it, or pick another name)"
                ) from None
            raise

    def save(self, name: str, change: Change, *, overwrite: bool = False) -> Template:
        """Save ``change``'s content as template ``name`` (refused when it exists, unless ``overwrite``)."""
        name = check_name(name)
        content = template_content(change)
        with self.authz.act(
            OperatorAction.TEMPLATE_EDIT,
            change.customers,
            name="template.save",
            change_id=change.change_id,
            template=name,
            overwrite=overwrite or None,
        ):
            who, now = self.authz.operator.name, iso_utc(utcnow())
            self._put(
                name, {"name": name, "savedAt": now, "savedBy": who, "change": content}, overwrite=overwrite
            )
        return Template(name, content, now, who)

    def rename(self, old: str, new: str) -> Template:
        """Copy to ``new`` (refused when it exists), then delete ``old``."""
        old, new = check_name(old), check_name(new)
        if old == new:
            raise InputError(f"template {old!r} is already called that")
        with self.authz.act(
            OperatorAction.TEMPLATE_EDIT, name="template.rename", template=new, renamed_from=old
        ) as record:
            current = self.get(old)
            record.update(customers=current.customers)
            self._put(
                new,
                {
                    "name": new,
                    "savedAt": current.saved_at,
                    "savedBy": current.saved_by,
                    "change": current.content,
                },
                overwrite=False,
            )
            self._s3.delete_object(Bucket=self.bucket, Key=self.key(old))
        return Template(new, current.content, current.saved_at, current.saved_by)

    def delete(self, name: str) -> None:
        name = check_name(name)
        with self.authz.act(OperatorAction.TEMPLATE_EDIT, name="template.delete", template=name) as record:
            record.update(customers=self.get(name).customers)  # missing: an error, not a silent no-op
            self._s3.delete_object(Bucket=self.bucket, Key=self.key(name))

    # -- using -----------------------------------------------------------------------------------
    def new_change(self, name: str, *, change_id: str | None = None) -> Change:
        """A new draft (not saved) with the template's content: new id, version 1, no window."""
        template = self.get(name)
        data = dict(template.content)
        data.update(changeId=change_id or new_change_id(), status=ChangeStatus.DRAFT.value, version=1)
        return Change.model_validate(data)
