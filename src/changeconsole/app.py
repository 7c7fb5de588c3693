"""The operator console: ``ChangeConsoleApp`` and ``run_console`` (the TUI entry of ``changeconsole``).

Startup (in a thread worker, behind a loading screen): with ``--local`` reuse the local stack that
listens on the local endpoint, or start one in-process, provision it and run an in-process worker;
otherwise load the config (flag > env > XDG) and build AWS clients. Whatever fails is shown as an
error screen naming the cause, never as a traceback.

Navigation (the home screen is the change list; esc goes back):

    changes ──enter──▶ detail ──e──▶ compose ──submit──▶ progress ──▶ live status
       │n                 │l                                              ▲
       └──▶ compose       └────────────────────────────────────────────────┘
    anywhere: ctrl+p palette · : command line · ?/F1 help · ctrl+l AWS call log · ctrl+q quit

Who operates is resolved in a thread at startup (``services.authz``: identity, roles, scope); until
then, and for actions the roles do not allow, the screens show those keys disabled and say why. The
header shows the identity, its roles (or "no roles configured") and a LOCAL badge on the local stack.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

from rich.markup import escape
from textual.actions import SkipAction
from textual.app import App
from textual.binding import Binding
from textual.reactive import reactive
from textual.screen import ModalScreen
from textual.widgets import Input, TextArea

from .commands import ConsoleCommands
from .config import ConfigError, load_config, local_config_path
from .errors import describe
from .models import CHANGE_ID_RE, Change, OperatorAction, new_change_id
from .screens.audit import AuditScreen
from .screens.base import ConsoleScreen
from .screens.changes import ChangesScreen
from .screens.compose import ComposeScreen
from .screens.contacts import ContactsScreen
from .screens.customers import CustomersScreen
from .screens.dashboard import DashboardScreen
from .screens.detail import DetailScreen
from .screens.dlq import DlqScreen
from .screens.help import HelpScreen
from .screens.modals import CommandLine, StartupErrorScreen, StartupScreen
from .screens.preview import PreviewScreen
from .screens.progress import SubmitProgressScreen
from .screens.status import LiveStatusScreen
from .services.authz import Decision
from .services.aws import LOCAL_ENDPOINT, AwsFactory, AwsSettings
from .services.bundle import Services
from .services.fanout import FanoutResult
from .services.lifecycle import EVENT_OF_STATUS
from .widgets.calllog import AwsCallLog
from .widgets.console import ThreadResults
from .widgets.inputs import accept_suggestion

if TYPE_CHECKING:
    from .cli.common import CliState
    from .services.autosave import AutosaveStore
    from .services.identity import Operator
    from .services.status import ChangeSummary

Progress = Callable[[str], None]
Clock = Callable[[], datetime]

# -- AWS clients that time their calls ---------------------------------------------------------------


class ConsoleAwsFactory(AwsFactory):
    """An ``AwsFactory`` whose clients report every call (service, operation, status, duration)."""

    def __init__(self, settings: AwsSettings, call_log: AwsCallLog) -> None:
        super().__init__(settings)
        self.call_log = call_log
        self.add_call_listener(call_log.after_call)

    def _make_client(self, session: Any, service: str, region: str | None = None) -> Any:
        client = super()._make_client(session, service, region)
        client.meta.events.register("before-call", self.call_log.before_call)
        client.meta.events.register("after-call-error", self.call_log.after_call_error)
        return client


# -- startup -------------------------------------------------------------------------------------------


class StartupFailed(Exception):
    """The console cannot start: ``title`` names the cause, ``problems`` are lines to show under it."""

    def __init__(self, title: str, problems: list[str], hint: str = "") -> None:
        super().__init__(title)
        self.title, self.problems, self.hint = title, problems, hint


@dataclass
class Startup:
    services: Services
    cleanup: list[Callable[[], object]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    local_data: Path | None = None  # the saved data of the local stack this console started


def _config_failure(exc: ConfigError, origin: str) -> StartupFailed:
    problems = [f"{p['path']}: {p['message']}" for p in exc.problems]
    missing = any(p["message"].startswith("no config file") for p in exc.problems)
    where = {"flag": "--config", "env": "CHANGECONSOLE_CONFIG", "xdg": "the default location"}.get(
        origin, origin
    )
    if missing:
        hint = (
            "Create the file, point --config or CHANGECONSOLE_CONFIG at it, "
            "or try the embedded stack: changeconsole --local"
        )
        return StartupFailed(f"No config file ({where}): {exc.path}", problems, hint)
    return StartupFailed(
        f"Invalid config ({where}): {exc.path}",
        problems,
        "Fix each problem above (check with: changeconsole config validate), then press r to retry.",
    )


def _local_endpoint(state: CliState) -> str:
    if state.endpoint_url:
        return state.endpoint_url.rstrip("/")
    if os.environ.get("AWS_ENDPOINT_URL"):
        return os.environ["AWS_ENDPOINT_URL"].rstrip("/")
    source = state.config_source
    if source.origin in ("flag", "env") or source.path.exists():
        try:
            local = getattr(load_config(source.path), "local", None)
        except ConfigError:
            local = None
        if isinstance(local, dict) and isinstance(local.get("endpoint_url"), str):
            return str(local["endpoint_url"]).rstrip("/")
    return LOCAL_ENDPOINT


def bootstrap_local(state: CliState, call_log: AwsCallLog, progress: Progress) -> Startup:
    from .services.localstack import LocalServer, is_listening, provision_local
    from .services.localstate import keep_local_data

    endpoint = _local_endpoint(state)
    parts = urlsplit(endpoint)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    source = state.config_source
    config_path = source.path if source.origin in ("flag", "env") else local_config_path()
    cleanup: list[Callable[[], object]] = []
    notes: list[str] = []
    local_data: Path | None = None  # where this process keeps the stack's data (a stack it started)
    customers = int(os.environ.get("CHANGECONSOLE_LOCAL_CUSTOMERS", "6") or 6)
    if is_listening(host, port):
        progress(f"using the local stack at {endpoint}")
        try:
            config = load_config(config_path)
        except ConfigError as exc:
            if source.origin in ("flag", "env"):
                raise _config_failure(exc, source.origin) from None
            progress("no local config yet: provisioning the running stack")
            config = provision_local(
                endpoint, customers=customers, config_path=config_path, progress=progress
            ).config
        notes.append(
            f"Using the local stack already running at {endpoint} (SES events come from the process "
            "running the stack: `local up`)."
        )
    else:
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise StartupFailed(
                f"No local stack answers at {endpoint}",
                [f"{endpoint} is not a local address, so no stack can be started there"],
                "Drop --endpoint-url, or start the stack on that host first.",
            )
        progress(f"starting a local AWS stack on {endpoint}")
        try:
            server = LocalServer(port=port, host=host).start()
        except RuntimeError as exc:
            raise StartupFailed(
                "Cannot start the local AWS stack",
                [str(exc)],
                "Stop whatever uses the port, or pass --endpoint-url http://127.0.0.1:<free port>.",
            ) from None
        cleanup.append(server.stop)
        if config_path.exists() and config_path != local_config_path():
            # Never overwrite the operator's own file with the generated local config.
            notes.append(f"A new local stack uses its own config ({local_config_path()}), not {config_path}.")
            config_path = local_config_path()
        try:
            progress(f"provisioning {customers} customers (bucket, queues, tables, SES accounts)")
            result = provision_local(
                endpoint, customers=customers, config_path=config_path, progress=progress
            )
            progress(result.summary())
            saver, _ = keep_local_data(result.config, endpoint, progress=progress)
        except Exception:
            server.stop()
            raise
        config = result.config
        cleanup.insert(0, saver.stop)  # the last save, before the stack stops
        local_data = saver.state.path
        from .services.event_relay import LocalEventRelay
        from .services.localstack import local_factory

        relay = LocalEventRelay(local_factory(endpoint), config).start()
        cleanup.insert(0, relay.stop)
        notes.append(
            f"Local stack at {endpoint} with the local SES event relay; it stops when you quit. Its data "
            f"is kept in {local_data} (`changeconsole local reset` clears it)."
        )
    # Run a worker here so one command shows the whole flow; a second worker on the same stack
    # (e.g. `local up --with-worker`) is harmless because the ledger decides every send. A read-only
    # console runs none: it must not consume queues or send email.
    if state.readonly:
        notes.append("Read-only: no worker runs in this console, so nothing is delivered from here.")
    else:
        from .services.localstack import local_factory
        from .worker import start_background
        from .worker.options import WorkerOptions

        # Short long polls: stopping waits for a poll in progress, so quitting takes about a second.
        handle = start_background(local_factory(endpoint), config, options=WorkerOptions(poll_wait=1))
        progress("in-process worker started")
        cleanup.insert(0, lambda: handle.stop(timeout=5))
    settings = AwsSettings(
        region=config.aws_region,
        endpoint_url=endpoint,
        local=True,
        max_attempts=3,
        connect_timeout=3,
        acting_as=state.acting_as,
    )
    services = Services(ConsoleAwsFactory(settings, call_log), config, readonly=state.readonly)
    return Startup(services, cleanup, notes, local_data)


def bootstrap(state: CliState, call_log: AwsCallLog, progress: Progress) -> Startup:
    """Build the console's services from the CLI state (runs in a thread worker)."""
    if state.local:
        return bootstrap_local(state, call_log, progress)
    source = state.config_source
    progress(f"loading config {source.path}")
    try:
        config = load_config(source.path)
    except ConfigError as exc:
        raise _config_failure(exc, source.origin) from None
    settings = AwsSettings.resolve(
        region=config.aws_region,
        endpoint_url=state.endpoint_url,
        profile=state.profile,
        max_attempts=3,
        connect_timeout=3,
        acting_as=state.acting_as,
    )
    return Startup(Services(ConsoleAwsFactory(settings, call_log), config, readonly=state.readonly))


# -- the app -----------------------------------------------------------------------------------------

# (command, help) of the ``:`` command line.
COMMANDS_HELP: list[tuple[str, str]] = [
    ("changes", "the change list (home)"),
    ("new", "compose a new change"),
    ("open CHG-…", "change detail"),
    ("status [CHG-…]", "live delivery status (default: the change on screen)"),
    ("dlq [customer]", "dead-letter queues"),
    ("customers", "customers and their last deliveries"),
    ("audit", "the audit trail: who did what (needs audit.read)"),
    ("dashboard", "changes and deliveries in plots (the report)"),
    ("log", "toggle the AWS call log"),
    ("help", "keys of this screen"),
    ("theme", "pick a theme"),
    ("q", "quit"),
]


class ChangeConsoleApp(ThreadResults, App[int]):
    """The operator console. Give it ``services`` (tests) or a ``bootstrap`` (run_console)."""

    TITLE = "changeconsole"
    # Stylesheets beside the app and its screens (each screen of its own adds its own CSS_PATH).
    CSS_PATH: ClassVar[list[str | PurePath]] = [
        "app.tcss",
        "screens/changes.tcss",
        "screens/compose.tcss",
        "screens/detail.tcss",
        "screens/modals.tcss",
    ]
    COMMANDS = App.COMMANDS | {ConsoleCommands}
    BINDINGS = [
        Binding("f1", "help", "Help"),
        Binding("question_mark", "help", "Help", show=False),
        # Priority, so the command line opens before the keys typed after ``:`` are routed.
        Binding("colon", "command_line", "Command", key_display=":", priority=True),
        Binding("ctrl+l", "toggle_log", "AWS log"),
        Binding("escape", "go_back", "Back", show=False),
        Binding("ctrl+q", "quit", "Quit", priority=True),
        # Priority, so focus moves before keys typed after Tab are routed (typing ahead under load).
        Binding("tab", "next_field", "Next field / complete", show=False, priority=True),
        Binding("shift+tab", "previous_field", "Previous field", show=False, priority=True),
    ]

    header_text: reactive[str] = reactive("[b]changeconsole[/]")
    show_log: reactive[bool] = reactive(False)

    def __init__(
        self,
        services: Services | None = None,
        *,
        bootstrap: Callable[[Progress], Startup] | None = None,
        readonly: bool = False,
        clock: Clock | None = None,
        change_id_factory: Callable[[], str] | None = None,
        live: bool = True,
        default_timezone: str | None = None,
        autosave: AutosaveStore | None = None,
        call_log: AwsCallLog | None = None,
        startup_title: str = "Connecting…",
        refresh_interval: float = 5.0,
        autosave_interval: float = 3.0,
    ) -> None:
        super().__init__()
        self._services = services
        self._bootstrap = bootstrap
        self._readonly_flag = readonly
        self._clock = clock
        self._change_id_factory = change_id_factory
        self.live = live
        self.cursor_blink = live
        self.default_timezone = default_timezone or local_timezone_name()
        self._autosave = autosave
        self.call_log = call_log or AwsCallLog()
        self.startup_title = startup_title
        self.refresh_interval = refresh_interval
        self.autosave_interval = autosave_interval
        self.known_changes: list[ChangeSummary] = []
        self.test_address: str | None = None  # the last address a test was sent to (preview)
        self.identity: str | None = None
        self.identity_error: str | None = None
        self.operator: Operator | None = None
        self.roles_known = False  # the operator's roles are resolved (decide() may be asked)
        self.roles_summary = ""
        self._cleanup: list[Callable[[], object]] = []
        self.startup_notes: list[str] = []
        self.local_data: Path | None = None

    def action_next_field(self) -> None:
        focused = self.focused
        if isinstance(focused, Input) and accept_suggestion(focused):
            return
        self.screen.focus_next()

    def action_previous_field(self) -> None:
        self.screen.focus_previous()

    # -- services and helpers --------------------------------------------------------------
    @property
    def services(self) -> Services:
        if self._services is None:
            raise RuntimeError("the console is still starting")
        return self._services

    @property
    def has_services(self) -> bool:
        return self._services is not None

    @property
    def readonly(self) -> bool:
        return self._readonly_flag or bool(self._services is not None and self._services.readonly)

    def now(self) -> datetime:
        return self._clock() if self._clock is not None else datetime.now(UTC)

    def make_change_id(self) -> str:
        return self._change_id_factory() if self._change_id_factory else new_change_id(self.now())

    @property
    def autosave(self) -> AutosaveStore:
        if self._autosave is None:
            from .services.autosave import AutosaveStore

            self._autosave = AutosaveStore()
        return self._autosave

    # -- startup ------------------------------------------------------------------------------
    def on_mount(self) -> None:
        if self._services is not None:
            self._services_ready()
        elif self._bootstrap is not None:
            self._start_bootstrap()
        else:
            self.push_screen(StartupErrorScreen("Nothing to connect to", ["no services"], can_retry=False))

    def _start_bootstrap(self) -> None:
        screen = StartupScreen(self.startup_title)
        self.push_screen(screen)
        bootstrap = self._bootstrap
        assert bootstrap is not None

        def progress(line: str) -> None:
            self.post_from_thread(screen.add_line, line)

        def run() -> None:
            try:
                startup = bootstrap(progress)
            except StartupFailed as exc:
                failure = exc
                self.post_from_thread(self._startup_failed, failure.title, failure.problems, failure.hint)
            except Exception as exc:
                self.post_from_thread(
                    self._startup_failed, "The console could not start", [describe(exc)], ""
                )
            else:
                self.post_from_thread(self._startup_done, startup)

        self.run_worker(run, thread=True, exit_on_error=False, group="startup", description="startup")

    def _startup_done(self, startup: Startup) -> None:
        self._services = startup.services
        self._cleanup.extend(startup.cleanup)
        self.startup_notes = startup.notes
        self.local_data = startup.local_data
        self.switch_screen(ChangesScreen())
        self._services_ready(pushed=True)
        for note in startup.notes:
            self.notify(escape(note), title="changeconsole", timeout=8)

    def _startup_failed(self, title: str, problems: list[str], hint: str) -> None:
        self.switch_screen(StartupErrorScreen(title, problems, hint))

    def retry_startup(self) -> None:
        if self._bootstrap is None:
            return
        self.pop_screen()
        self._start_bootstrap()

    def action_quit_with_error(self) -> None:
        self.exit(1, return_code=1)

    def _services_ready(self, *, pushed: bool = False) -> None:
        services = self.services
        aws = services.aws
        if not isinstance(aws, ConsoleAwsFactory):  # clients built elsewhere: their calls still count
            aws.add_call_listener(self.call_log.after_call)
        self._update_header()
        self._fetch_identity()
        if not pushed:
            self.push_screen(ChangesScreen())

    def _fetch_identity(self) -> None:
        authz = self.services.authz

        def run() -> None:
            try:
                operator = authz.operator
                summary = authz.summary()  # resolves the roles (directory lookups included)
                warnings = authz.warnings
            except Exception as exc:
                self.post_from_thread(self._identity_failed, describe(exc))
            else:
                self.post_from_thread(self._identity_known, operator, summary, warnings)

        self.run_worker(run, thread=True, exit_on_error=False, group="identity", description="identity")

    def _identity_known(self, operator: Operator, summary: str, warnings: list[str]) -> None:
        self.operator, self.identity, self.identity_error = operator, operator.name, None
        self.roles_summary, self.roles_known = summary, True
        self._update_header()
        for screen in self.screen_stack:
            if isinstance(screen, ConsoleScreen):
                screen.roles_changed()
        authz = self.services.authz
        if authz.enforced and not authz.grants():
            reason = authz.decide(OperatorAction.READ).reason
            self.push_screen(
                StartupErrorScreen(
                    f"No changeconsole role for {operator.name}",
                    [reason, f"identity: {operator.arn or operator.label()}"],
                    "Ask an administrator to add you to operator_roles "
                    "(docs/runbooks/operators.md); see `changeconsole whoami`.",
                    can_retry=False,
                )
            )
            return
        for warning in warnings if authz.enforced else []:
            self.notify(escape(warning), title="Authorization", severity="warning", timeout=10)

    def _identity_failed(self, error: str) -> None:
        self.identity, self.identity_error = None, error
        self._update_header()
        self.notify(escape(error), title="AWS unreachable", severity="error", timeout=12)

    def decide(self, action: OperatorAction, customers: Iterable[str] | None = None) -> Decision:
        """May the operator do ``action`` (on ``customers``)? Never blocks: until the roles are known
        (a thread resolves them at startup) an enforced action is not allowed yet."""
        authz = self.services.authz
        if not authz.enforced:
            return Decision(True, action)
        if not self.roles_known:
            reason = self.identity_error or "checking your roles…"
            return Decision(False, action, f"{action.value}: {reason}")
        return authz.decide(action, customers)

    def not_allowed(
        self, decision: Decision, customers: Iterable[str] | None = None, change_id: str | None = None
    ) -> None:
        """Say why an action cannot be opened, and record the refusal (in a thread) once roles are known."""
        self.notify(escape(decision.reason), title="Not allowed", severity="warning", timeout=8)
        if not self.roles_known:
            return
        authz = self.services.authz

        def run() -> None:
            authz.record_refusal(decision, customers, change_id=change_id)

        self.run_worker(run, thread=True, exit_on_error=False, group="refusal", description="refusal")

    def approval_refusal(self, change: Change) -> str | None:
        """Why separation of duties forbids this operator to approve ``change`` (once roles are known)."""
        return self.services.authz.approval_refusal(change) if self.roles_known else None

    def _update_header(self) -> None:
        """Who first (a narrow terminal cuts the end): operator and roles, then where."""
        if self._services is None:
            return
        settings = self._services.aws.settings
        if self.identity_error:
            who = "[red]operator unknown (AWS unreachable)[/]"
        else:
            name = self.operator.label() if self.operator and not self.operator.is_local else self.identity
            who = f"operator [b]{escape(name or '…')}[/]"
            if not self._services.authz.enforced:
                who += " · [yellow]no roles configured[/]"
            elif self.roles_known:
                who += f" · {escape(self.roles_summary)}"
        parts = [who, f"[b]{escape(self._services.environment_label)}[/]"]
        if not settings.local:
            parts.append(f"profile {escape(settings.profile or 'default')}")
        parts.append(escape(settings.region))
        badges = "[reverse] LOCAL [/] " if settings.local else ""
        badges += "[reverse] READ-ONLY [/] " if self.readonly else ""
        self.header_text = "[b]changeconsole[/]  " + badges + " " + "  │  ".join(parts)

    def run_cleanup(self, *, notice: Callable[[str], None] | None = None, after: float = 1.0) -> None:
        """Stop what startup started (worker, local stack: ``run_console`` calls it once the UI has
        closed). Taking longer than ``after`` seconds, ``notice`` is told what it waits for."""
        cleanup, self._cleanup = self._cleanup, []
        if not cleanup:
            return
        done = threading.Event()
        if notice is not None:
            what = "the in-process worker and the local stack"
            if self.local_data is not None:
                what += f" (saving its data to {self.local_data})"
            message = f"changeconsole: stopping {what}…"
            tell = notice

            def slow() -> None:
                if not done.wait(after):
                    tell(message)

            threading.Thread(target=slow, name="cleanup-notice", daemon=True).start()
        try:
            for step in cleanup:
                try:
                    step()
                except Exception as exc:  # never a traceback on the way out
                    if notice is not None:
                        notice(f"changeconsole: while stopping: {describe(exc)}")
        finally:
            done.set()

    # -- navigation -------------------------------------------------------------------------------
    def _have_services(self) -> bool:
        if self._services is None:
            self.notify("The console is still starting.", severity="warning")
            return False
        return True

    def go_home(self) -> None:
        """Back to the change list, its cursor on the change that was on screen (if listed)."""
        if not self._have_services():
            return
        change_id = self.current_change_id()
        while len(self.screen_stack) > 1 and not isinstance(self.screen, ChangesScreen):
            self.pop_screen()
        if not isinstance(self.screen, ChangesScreen):
            self.push_screen(ChangesScreen())
        elif change_id:
            self.screen.show_change(change_id)

    def leave_compose(self, compose: ComposeScreen) -> None:
        """Close compose (and whatever it opened: fan-out progress, live status): back to the screen it
        was opened from, unless a key there starts a customer-visible action on what it shows (a
        change's detail, a DLQ): then to the change list, the cursor on the change just composed."""
        stack = self.screen_stack
        if compose not in stack:
            return
        index = stack.index(compose)
        target = stack[index - 1] if index > 0 else None
        if not isinstance(target, ConsoleScreen) or target.ARMED:
            target = next((s for s in stack[:index] if isinstance(s, ChangesScreen)), None)
        if target is None:  # compose over no change list (not reachable from the console's own keys)
            while self.screen is not compose:
                self.pop_screen()
            self.switch_screen(ChangesScreen())
            return
        while self.screen is not target:
            self.pop_screen()
        if isinstance(target, ChangesScreen):
            target.show_change(compose.change_id)

    def open_change(self, change_id: str) -> None:
        if not self._have_services():
            return
        if not CHANGE_ID_RE.match(change_id):
            self.notify(f"{escape(change_id)} is not a change id (CHG-…)", severity="error")
            return
        self.push_screen(DetailScreen(change_id))

    def open_compose(self, change: Change | None = None, *, mode: str | None = None) -> None:
        if not self._have_services():
            return
        if self.readonly:
            self.notify("Read-only console: composing changes is disabled.", severity="warning")
            return
        if change is None or change.status.value == "draft":
            need, customers = OperatorAction.CHANGE_DRAFT, (change.customers if change else None)
        else:
            need, customers = OperatorAction.CHANGE_EDIT, change.customers
        decision = self.decide(need, customers)
        if not decision.allowed:
            self.not_allowed(decision, customers, change.change_id if change else None)
            return
        self.push_screen(ComposeScreen(change, mode=mode))

    def open_status(self, change_id: str | None = None) -> None:
        if not self._have_services():
            return
        change_id = change_id or self.current_change_id()
        if not change_id:
            self.notify("Which change? Use :status CHG-…", severity="warning")
            return
        self.push_screen(LiveStatusScreen(change_id))

    def open_preview(self, change: Change, customer: str | None = None) -> None:
        if not self._have_services():
            return
        if not change.customers:
            self.notify("Pick at least one customer to preview.", severity="warning")
            return
        self.push_screen(PreviewScreen(change, customer=customer))

    def open_dashboard(self) -> None:
        if not self._have_services():
            return
        self.push_screen(DashboardScreen())

    def open_dlq(self, customer: str | None = None) -> None:
        if not self._have_services():
            return
        self.push_screen(DlqScreen(customer))

    def open_customers(self) -> None:
        if not self._have_services():
            return
        self.push_screen(CustomersScreen())

    def open_contacts(self, customer: str) -> None:
        if not self._have_services():
            return
        decision = self.decide(OperatorAction.CONTACTS_READ, [customer])
        if not decision.allowed:
            self.not_allowed(decision, [customer])
            return
        self.push_screen(ContactsScreen(customer))

    def open_audit(self, change_id: str | None = None) -> None:
        if not self._have_services():
            return
        decision = self.decide(OperatorAction.AUDIT_READ)
        if not decision.allowed:
            self.not_allowed(decision)
            return
        self.push_screen(AuditScreen(change_id=change_id))

    # -- fan-outs (submit / resubmit / approve / complete / cancel) ------------------------------------
    def fanout_call(
        self,
        operation: str,
        change: Change | str,
        customers: list[str] | None = None,
        reason: str | None = None,
    ) -> Callable[[Callable[[Any], None] | None], Any]:
        """The blocking service call of ``operation``; takes the progress callback, returns a FanoutResult."""
        changes = self.services.changes
        change_id = change if isinstance(change, str) else change.change_id
        expected = None if isinstance(change, str) else change.version

        def run(progress: Callable[[Any], None] | None) -> Any:
            if operation == "submit":
                return changes.submit(change, customers=customers, progress=progress)
            if operation == "resubmit":
                assert isinstance(change, Change)
                result = changes.edit(change, progress=progress)
                if isinstance(result, Change):
                    return FanoutResult(result, EVENT_OF_STATUS[result.status], {})
                return result
            if operation == "cancel":
                return changes.cancel(change_id, progress=progress, expected_version=expected, reason=reason)
            if operation in ("approve", "complete"):
                method = getattr(changes, operation)
                return method(change_id, progress=progress, expected_version=expected)
            raise ValueError(f"unknown operation {operation}")

        return run

    def start_fanout(
        self,
        operation: str,
        change: Change | str,
        *,
        customers: list[str] | None = None,
        on_archived: Callable[[Change], None] | None = None,
        reason: str | None = None,
    ) -> None:
        """Run a change event's fan-out with per-destination progress, then show its live status."""
        if self.readonly:
            self.notify("Read-only console: nothing was sent.", severity="warning")
            return
        run = self.fanout_call(operation, change, customers, reason)
        self.push_screen(
            SubmitProgressScreen(operation, change, run, on_archived=on_archived, customers=customers)
        )

    def current_change_id(self) -> str | None:
        for screen in reversed(self.screen_stack):
            change_id = screen.change_shown() if isinstance(screen, ConsoleScreen) else None
            if change_id and CHANGE_ID_RE.match(change_id):
                return change_id
        return None

    def refresh_current(self) -> None:
        if isinstance(self.screen, ConsoleScreen):
            self.screen.action_refresh()

    # -- app actions ----------------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Nothing to command before the console is connected.
        return not (action in ("command_line", "toggle_log", "command_palette") and self._services is None)

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            self.screen.dismiss(None)
            return
        screen = self.screen
        title = (isinstance(screen, ConsoleScreen) and screen.help_title) or type(screen).__name__
        refusals = screen.refusals() if isinstance(screen, ConsoleScreen) else []
        who = ""
        if self.identity and self._services is not None and self._services.authz.enforced:
            who = f"{self.identity} ({self.roles_summary or '…'})"
        self.push_screen(
            HelpScreen(title, screen.active_bindings, COMMANDS_HELP, operator=who, refusals=refusals)
        )

    def action_toggle_log(self) -> None:
        self.toggle_log()

    def toggle_log(self) -> None:
        self.show_log = not self.show_log

    def action_go_back(self) -> None:
        if isinstance(self.screen, ChangesScreen | StartupScreen | StartupErrorScreen):
            return
        if len(self.screen_stack) > 2:
            self.pop_screen()

    def action_command_line(self) -> None:
        if isinstance(self.screen, ModalScreen) or isinstance(self.focused, Input | TextArea):
            raise SkipAction()  # a dialog is open, or ``:`` is text being typed
        self.push_screen(CommandLine(self.command_words), self.run_command)

    def command_words(self) -> Iterable[str]:
        words = [
            "changes",
            "new",
            "open ",
            "status ",
            "dlq",
            "customers",
            "audit",
            "dashboard",
            "log",
            "help",
            "theme",
            "q",
        ]
        ids = [s.change_id for s in self.known_changes]
        current = self.current_change_id()
        if current:
            words.append(f"status {current}")
        words += [f"status {i}" for i in ids] + [f"open {i}" for i in ids]
        return words

    def run_command(self, text: str | None) -> None:
        """Run one ``:`` command; unknown ones are named in an error notification."""
        if not text:
            return
        name, _, arg = text.strip().lstrip(":").partition(" ")
        name, arg = name.casefold(), arg.strip()
        if name in ("q", "quit", "q!", "qa"):
            self.exit(0, return_code=0)
        elif name in ("changes", "home", "list", "ls"):
            self.go_home()
        elif name in ("new", "compose"):
            self.open_compose()
        elif name in ("open", "show", "change", "detail") and arg:
            self.open_change(arg)
        elif name == "status":
            self.open_status(arg or None)
        elif name == "dlq":
            self.open_dlq(arg or None)
        elif name == "customers":
            self.open_customers()
        elif name == "audit":
            self.open_audit(arg or None)
        elif name in ("dashboard", "report"):
            self.open_dashboard()
        elif name == "log":
            self.toggle_log()
        elif name == "help":
            self.action_help()
        elif name == "theme":
            self.action_change_theme()
        elif CHANGE_ID_RE.match(name.upper()):
            self.open_change(text.strip())
        else:
            known = ", ".join(c.split(" ")[0] for c, _ in COMMANDS_HELP)
            self.notify(f"Unknown command :{escape(text)} (try {known})", severity="error")


def local_timezone_name() -> str:
    """The operator's IANA timezone (TZ, then /etc/localtime), else UTC."""
    name = os.environ.get("TZ", "").lstrip(":")
    if not name or "/" not in name:
        target = os.path.realpath("/etc/localtime")
        name = target.split("zoneinfo/", 1)[1] if "zoneinfo/" in target else "UTC"
    return "UTC" if name in ("Etc/UTC", "Etc/UCT", "Etc/Universal", "Etc/Zulu", "UCT", "Zulu") else name


def run_console(state: CliState) -> int:
    """Open the console for the CLI state; returns the exit code."""
    call_log = AwsCallLog()
    title = "Starting the local AWS stack…" if state.local else "Connecting…"
    app = ChangeConsoleApp(
        bootstrap=lambda progress: bootstrap(state, call_log, progress),
        readonly=state.readonly,
        call_log=call_log,
        startup_title=title,
    )
    # The UI closes first (quit is immediate); the stack and worker stop behind it, on the terminal.
    try:
        code = app.run()
    finally:
        started_here = bool(app._cleanup)  # a local stack or worker of this process
        app.run_cleanup(notice=lambda line: print(line, file=sys.stderr, flush=True))
    exit_code = int(code or app.return_code or 0)
    if started_here:
        # An in-process stack leaves a heap (moto's backends) whose teardown at interpreter exit takes
        # seconds; everything is stopped, saved and flushed by now, so the process ends at once.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(exit_code)
    return exit_code
