"""Shared CLI plumbing: global options, lazy config/AWS, output and exit codes.

stdout is data (``--json`` everywhere), stderr narrates; exit 0 ok, 1 operation failed, 2 bad input,
3 not authorized (the operator's roles do not allow it; ``services.authz``).
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import click
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from ..config import ConfigSource, load_config, resolve_config_path
from ..errors import InputError, NotAuthorized, OperationError, describe, validation_problems
from ..models import Config, OperatorAction, PermanentMessageError
from ..services.authz import Authorizer
from ..services.aws import AwsFactory, AwsSettings

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_NOT_AUTHORIZED = 3

stderr = Console(stderr=True, highlight=False)
stdout = Console(highlight=False, soft_wrap=True)


class OperationFailed(click.ClickException):
    exit_code = EXIT_FAILED

    def show(self, file: Any = None) -> None:
        stderr.print(f"[red]error:[/] {escape(self.format_message())}")


class BadInput(click.ClickException):
    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, problems: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []

    def show(self, file: Any = None) -> None:
        stderr.print(f"[red]error:[/] {escape(self.format_message())}")
        for p in self.problems:
            stderr.print(f"  [yellow]{escape(p['path'])}[/]: {escape(p['message'])}")


class Refused(click.ClickException):
    """The operator's roles do not allow it (exit 3); the refusal is in the audit trail."""

    exit_code = EXIT_NOT_AUTHORIZED

    def show(self, file: Any = None) -> None:
        stderr.print(f"[red]not authorized:[/] {escape(self.format_message())}")


@dataclass
class CliState:
    config_flag: str | None = None
    local: bool = False
    endpoint_url: str | None = None
    profile: str | None = None
    acting_as: str | None = None
    readonly: bool = False
    _config: Config | None = field(default=None, repr=False)
    _aws: AwsFactory | None = field(default=None, repr=False)
    _authz: Authorizer | None = field(default=None, repr=False)
    _warned: bool = field(default=False, repr=False)

    @property
    def config_source(self) -> ConfigSource:
        return resolve_config_path(self.config_flag, local=self.local)

    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.config_source.path)
        return self._config

    def endpoint(self) -> str | None:
        if self.endpoint_url:
            return self.endpoint_url
        if self.local:
            cfg = self.config()
            local = getattr(cfg, "local", None)
            if isinstance(local, dict) and local.get("endpoint_url"):
                return str(local["endpoint_url"])
        return None

    def aws(self) -> AwsFactory:
        if self._aws is None:
            cfg = self.config()
            settings = AwsSettings.resolve(
                region=cfg.aws_region,
                endpoint_url=self.endpoint(),
                local=self.local,
                profile=self.profile,
                acting_as=self.acting_as,
            )
            self._aws = AwsFactory(settings)
        return self._aws

    def authz(self) -> Authorizer:
        """The authorization point of this command (who acts, their roles); warnings go to stderr."""
        if self._authz is None:
            self._authz = Authorizer(self.aws(), self.config(), via="cli")
        return self._authz

    def reader(self) -> Authorizer:
        """``authz()`` after checking the operator may read at all (any role; exit 3 otherwise)."""
        authz = self.authz()
        authz.require(OperatorAction.READ)
        return authz


def state() -> CliState:
    ctx = click.get_current_context()
    obj = ctx.find_object(CliState)
    if obj is None:
        obj = ctx.ensure_object(CliState)
    return obj


def _set(attr: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    def callback(ctx: click.Context, _param: click.Parameter, value: Any) -> None:
        if value in (None, False):
            return
        setattr(ctx.ensure_object(CliState), attr, value)

    return callback


def aws_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--config/--local/--endpoint-url/--profile/--as, accepted before or after the subcommand."""
    options = [
        click.option(
            "--config",
            "config_flag",
            metavar="PATH",
            expose_value=False,
            callback=_set("config_flag"),
            help="config.json (overrides CHANGECONSOLE_CONFIG and the XDG path)",
        ),
        click.option(
            "--local",
            is_flag=True,
            expose_value=False,
            callback=_set("local"),
            help="Use the embedded local AWS stack and its config.",
        ),
        click.option(
            "--endpoint-url",
            metavar="URL",
            expose_value=False,
            callback=_set("endpoint_url"),
            help="AWS endpoint (overrides AWS_ENDPOINT_URL).",
        ),
        click.option(
            "--profile",
            metavar="NAME",
            expose_value=False,
            callback=_set("profile"),
            help="AWS profile (overrides AWS_PROFILE).",
        ),
        click.option(
            "--as",
            "acting_as",
            metavar="NAME",
            expose_value=False,
            callback=_set("acting_as"),
            help="Local stack only: act as operator NAME [default: the OS user]; on AWS, STS says.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout.")

F = TypeVar("F", bound=Callable[..., Any])


def handle_errors(func: F) -> F:
    """Our errors into exit code 3 (``NotAuthorized``), 2 (``InputError``: bad input) or 1
    (``OperationError``, AWS), with the message of ``errors.describe``; never a traceback. The
    authorization warnings of the command (e.g. no roles configured) go to stderr first."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except NotAuthorized as exc:
            raise Refused(describe(exc)) from None
        except ValidationError as exc:
            raise BadInput("invalid input", validation_problems(exc)) from None
        except (InputError, PermanentMessageError) as exc:
            raise BadInput(exc.summary, exc.problems) from None
        except (OperationError, ClientError, BotoCoreError) as exc:
            raise OperationFailed(describe(exc)) from None
        finally:
            _authz_warnings()

    return wrapper  # type: ignore[return-value]


def _authz_warnings() -> None:
    ctx = click.get_current_context(silent=True)
    st = ctx.find_object(CliState) if ctx else None
    if st is None or st._authz is None or st._warned:
        return
    st._warned = True
    try:
        warnings = st._authz.warnings
    except Exception:  # the identity was never resolved (AWS unreachable): the error says so already
        return
    for warning in warnings:
        stderr.print(f"[yellow]warning:[/] {escape(warning)}")


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def refuse_readonly(what: str) -> None:
    """Exit 2 when the session is ``--readonly``."""
    if state().readonly:
        raise BadInput(f"read-only: {what} is disabled (--readonly)")


@contextlib.contextmanager
def progress_bar(description: str, *, enabled: bool = True) -> Iterator[Callable[[int, int], None]]:
    """A ``progress(done, total)`` callback drawing a bar on stderr (a terminal only; else a no-op)."""
    if not enabled or not stderr.is_terminal:
        yield lambda _done, _total: None
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total}"),
        TimeRemainingColumn(),
        console=stderr,
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)
