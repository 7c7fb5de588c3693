"""``template …``: the team's change templates (``templates/`` in the metadata bucket)."""

from __future__ import annotations

import click
from rich.markup import escape
from rich.table import Table

from ..services.templates import TemplateStore
from .common import (
    aws_options,
    handle_errors,
    json_option,
    print_json,
    refuse_readonly,
    state,
    stderr,
    stdout,
)
from .notice_cmd import load_target


def _store() -> TemplateStore:
    st = state()
    return TemplateStore(st.aws(), st.config(), authz=st.reader())


@click.group("template")
def template_group() -> None:
    """Change templates shared by the team: save, list, show, rename, delete (start one: `change new`)."""


@template_group.command("list")
@aws_options
@json_option
@handle_errors
def list_cmd(as_json: bool) -> None:
    """Every template, by name."""
    templates = _store().list()
    if as_json:
        print_json({"count": len(templates), "templates": [t.summary() for t in templates]})
        return
    table = Table("name", "title", "customers", "saved", "by")
    for t in templates:
        table.add_row(
            escape(t.name), escape(t.title), str(len(t.customers)), t.saved_at or "", escape(t.saved_by or "")
        )
    stdout.print(table)
    stderr.print(f"{len(templates)} template(s)")


@template_group.command("show")
@aws_options
@click.argument("name")
@json_option
@handle_errors
def show_cmd(name: str, as_json: bool) -> None:
    """A template's content (the fields a new change starts with)."""
    template = _store().get(name)
    if as_json:
        print_json(template.to_json())
        return
    table = Table("field", "value", box=None, show_header=False, title=template.name, title_justify="left")
    for key, value in template.content.items():
        if value in (None, "", [], {}):
            continue
        shown = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
        table.add_row(f"[bold]{escape(key)}[/]", escape(shown))
    stdout.print(table)


@template_group.command("save")
@aws_options
@click.argument("name")
@click.argument("source", metavar="ID|FILE")
@click.option("--overwrite", is_flag=True, help="Replace a template of that name.")
@json_option
@handle_errors
def save_cmd(name: str, source: str, overwrite: bool, as_json: bool) -> None:
    """Save a change (without id and window) as template NAME."""
    refuse_readonly("template save")
    template = _store().save(name, load_target(source), overwrite=overwrite)
    if as_json:
        print_json(template.to_json())
        return
    stdout.print(template.name, markup=False)
    stderr.print(f"saved template {escape(template.name)}: {escape(template.title)}")


@template_group.command("rename")
@aws_options
@click.argument("old")
@click.argument("new")
@json_option
@handle_errors
def rename_cmd(old: str, new: str, as_json: bool) -> None:
    """Rename template OLD to NEW (refused when NEW exists)."""
    refuse_readonly("template rename")
    template = _store().rename(old, new)
    if as_json:
        print_json({"renamed_from": old, **template.summary()})
        return
    stderr.print(f"renamed template {escape(old)} to {escape(template.name)}")


@template_group.command("delete")
@aws_options
@click.argument("name")
@json_option
@handle_errors
def delete_cmd(name: str, as_json: bool) -> None:
    """Delete template NAME."""
    refuse_readonly("template delete")
    _store().delete(name)
    if as_json:
        print_json({"name": name, "deleted": True})
        return
    stderr.print(f"deleted template {escape(name)}")
