"""``change preview``, ``change test-send`` and ``change new --template``: see a notice as a customer's
recipients will, send a test of it to yourself, and start a change from a team template."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from ..models import CHANGE_ID_RE, Change, EmailEvent
from ..services.preview import Preview, PreviewService
from ..services.templates import TemplateStore
from .change_cmd import _service, read_change_file
from .common import (
    BadInput,
    aws_options,
    handle_errors,
    json_option,
    print_json,
    refuse_readonly,
    state,
    stderr,
    stdout,
)

event_option = click.option(
    "--event",
    type=click.Choice([e.value for e in EmailEvent]),
    help="The notice to show [default: the one the change's state sends; a draft: its approval request].",
)


def load_target(target: str) -> Change:
    """A change file (validated against the config) or the id of a stored change."""
    path = Path(target)
    if path.is_file():
        return read_change_file(path)[0]
    if CHANGE_ID_RE.match(target):
        return _service().load(target)
    raise BadInput(f"{target!r} is neither a file nor a change id (CHG-…)")


def _preview_service() -> PreviewService:
    st = state()
    return PreviewService(st.aws(), st.config(), authz=st.reader())


def _print_preview(p: Preview) -> None:
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    state_note = " (as it will be archived when this notice goes out)" if p.projected else ""
    head.add_row("change", escape(f"{p.change_id} v{p.version} {p.status}{state_note}"))
    head.add_row("notice", p.event + (f" with a calendar {p.calendar_method}" if p.calendar_method else ""))
    head.add_row("customer", escape(f"{p.customer_name} ({p.customer})"))
    head.add_row("from", escape(p.sender))
    head.add_row("contact list", escape(f"{p.contact_list}: {p.total_contacts} contact(s)"))
    head.add_row("per topic", ", ".join(f"{t} {n}" for t, n in p.per_topic.items()))
    whitelist = f"; {p.excluded_by_whitelist} left out by restricted_recipients" if p.restricted else ""
    head.add_row("recipients", f"{len(p.recipients)}{whitelist}")
    stdout.print(head)
    if p.recipients:
        table = Table("recipient", "topics", "calendar", box=None, padding=(0, 2, 0, 0))
        for r in p.recipients:
            table.add_row(escape(r.address), ", ".join(r.topics), "yes" if r.calendar else "")
        stdout.print(table)
    else:
        stdout.print("[yellow]nobody would receive it[/] (no subscribed contact)")
    stdout.print(f"\n[bold]Subject:[/] {escape(p.subject)}   [dim](the copy of {escape(p.sample_to)})[/]\n")
    stdout.print(p.text, markup=False, highlight=False)
    if p.calendar:
        stdout.print(f"[bold]Calendar part:[/] {p.calendar_method} ({', '.join(p.attachments)})")


@click.command("preview")
@aws_options
@click.argument("target", metavar="ID|FILE")
@click.option("--customer", required=True, metavar="CODE", help="The customer whose recipients to show.")
@event_option
@click.option(
    "--html", "html_path", type=click.Path(dir_okay=False, path_type=Path), help="Write the HTML part here."
)
@click.option(
    "--eml",
    "eml_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the whole MIME message here.",
)
@json_option
@handle_errors
def preview_cmd(
    target: str,
    customer: str,
    event: str | None,
    html_path: Path | None,
    eml_path: Path | None,
    as_json: bool,
) -> None:
    """The email CUSTOMER's recipients would get (rendered as the worker renders it) and who they are."""
    change = load_target(target)
    p = _preview_service().preview(change, customer, EmailEvent(event) if event else None)
    for path, data in ((html_path, p.html.encode("utf-8")), (eml_path, p.raw)):
        if path is not None:
            try:
                path.write_bytes(data)
            except OSError as exc:
                raise BadInput(f"cannot write {path}: {exc.strerror or exc}") from None
            stderr.print(f"wrote {escape(str(path))}")
    if as_json:
        print_json(p.to_json())
    else:
        _print_preview(p)


@click.command("test-send")
@aws_options
@click.argument("target", metavar="ID|FILE")
@click.option("--customer", required=True, metavar="CODE", help="Send through this customer's SES account.")
@click.option("--to", "to", required=True, metavar="ADDRESS", help="The one address to send the test to.")
@event_option
@json_option
@handle_errors
def test_send_cmd(target: str, customer: str, to: str, event: str | None, as_json: bool) -> None:
    """Send the previewed email to ADDRESS only, marked as a test; never recorded as a delivery."""
    refuse_readonly("test-send")
    change = load_target(target)
    sent = _preview_service().test_send(change, customer, to, EmailEvent(event) if event else None)
    if as_json:
        print_json(sent.to_json())
        return
    stdout.print(sent.message_id, markup=False)
    stderr.print(
        f"test of {escape(sent.change_id)} v{sent.version} {sent.event} sent to {escape(sent.to)} "
        f"through {escape(sent.customer)}'s SES account: {escape(sent.subject)}"
    )
    if sent.outside_whitelist:
        stderr.print(
            f"[yellow]note: {escape(sent.to)} is not in {escape(sent.customer)}'s restricted_recipients[/]"
        )


@click.command("new")
@aws_options
@click.option("--template", "template", required=True, metavar="NAME", help="Start from this team template.")
@click.option(
    "--file",
    "path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the new change to FILE to edit (nothing stored) instead of saving a draft.",
)
@json_option
@handle_errors
def new_cmd(template: str, path: Path | None, as_json: bool) -> None:
    """A new change from a template (its content, a new id, no window): a draft, or a file to edit."""
    st = state()
    change = TemplateStore(st.aws(), st.config(), authz=st.reader()).new_change(template)
    if path is not None:
        try:
            path.write_text(change.to_json() + "\n", encoding="utf-8")
        except OSError as exc:
            raise BadInput(f"cannot write {path}: {exc.strerror or exc}") from None
        if as_json:
            print_json(
                {"change_id": change.change_id, "template": template, "file": str(path), "draft": False}
            )
        else:
            stdout.print(change.change_id, markup=False)
            stderr.print(
                f"wrote {escape(str(path))} from template {escape(template)}: set the window, then submit it"
            )
        return
    refuse_readonly("change new")
    draft = _service().save_draft(change)
    if as_json:
        print_json(
            {
                "change_id": draft.change_id,
                "template": template,
                "draft": True,
                "change": draft.to_json_dict(),
            }
        )
        return
    stdout.print(draft.change_id, markup=False)
    stderr.print(f"new draft {escape(draft.change_id)} from template {escape(template)}")
