"""Finding, loading and validating ``config.json``.

Precedence: ``--config PATH`` > ``CHANGECONSOLE_CONFIG`` > the XDG config path
(``$XDG_CONFIG_HOME/changeconsole/config.json``). In local mode with neither flag nor
variable set, the config written by the embedded local stack is used.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import platformdirs
from pydantic import ValidationError

from .errors import InputError, validation_problems
from .models import CUSTOMER_CODE_RE, Config

APP_NAME = "changeconsole"
ENV_CONFIG = "CHANGECONSOLE_CONFIG"


def config_dir() -> Path:
    return Path(platformdirs.user_config_dir(APP_NAME))


def data_dir() -> Path:
    return Path(platformdirs.user_data_dir(APP_NAME))


def default_config_path() -> Path:
    return config_dir() / "config.json"


def local_config_path() -> Path:
    return data_dir() / "local" / "config.json"


@dataclass(frozen=True)
class ConfigSource:
    path: Path
    origin: str  # "flag", "env", "xdg" or "local"


def resolve_config_path(flag: str | os.PathLike[str] | None = None, *, local: bool = False) -> ConfigSource:
    if flag:
        return ConfigSource(Path(flag).expanduser(), "flag")
    env = os.environ.get(ENV_CONFIG)
    if env:
        return ConfigSource(Path(env).expanduser(), "env")
    if local:
        return ConfigSource(local_config_path(), "local")
    return ConfigSource(default_config_path(), "xdg")


class ConfigError(InputError):
    """A config that cannot be used; ``problems`` lists each with its JSON path."""

    title = "Invalid config"

    def __init__(self, path: Path | None, problems: list[dict[str, str]]) -> None:
        self.path = path
        where = f"{path}: " if path else ""
        lines = "; ".join(f"{p['path']}: {p['message']}" for p in problems)
        super().__init__(
            f"{where}{len(problems)} problem(s): {lines}", problems=problems, summary=f"invalid config {path}"
        )


def _extra_problems(raw: dict[str, Any]) -> list[dict[str, str]]:
    """Checks pydantic cannot report per entry when another entry is already invalid."""
    problems: list[dict[str, str]] = []
    mappings = raw.get("customer_mappings")
    if isinstance(mappings, dict):
        for key, mapping in mappings.items():
            if not CUSTOMER_CODE_RE.match(str(key)):
                problems.append(
                    {"path": f"customer_mappings.{key}", "message": "key must match ^[a-z0-9-]{2,50}$"}
                )
            if isinstance(mapping, dict) and "customer_code" in mapping and mapping["customer_code"] != key:
                problems.append(
                    {
                        "path": f"customer_mappings.{key}.customer_code",
                        "message": f"is {mapping['customer_code']!r}, must equal its key {key!r}",
                    }
                )
    return problems


# Keys an older config.json of the running system lacks, with the fix.
_MISSING_FIXES = {
    "email_config": (
        "missing: an older config.json of the running system has none (its sender came from "
        '--sender-email); add "email_config": {"sender_address": "<the From address of every notice>"}'
    ),
}


def config_problems(raw: Any) -> list[dict[str, str]]:
    """Every problem of a parsed config document, each with its JSON path."""
    if not isinstance(raw, dict):
        return [{"path": "$", "message": "config must be a JSON object"}]
    problems = _extra_problems(raw)
    try:
        Config.model_validate(raw)
    except ValidationError as exc:
        for problem in validation_problems(exc):
            if problem["path"] in _MISSING_FIXES and problem["path"] not in raw:
                problem = {"path": problem["path"], "message": _MISSING_FIXES[problem["path"]]}
            if problem not in problems and not re.search(r"must equal its key", problem["message"]):
                problems.append(problem)
    return problems


def parse_config_text(text: str, path: Path | None = None) -> Config:
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            path, [{"path": "$", "message": f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"}]
        ) from None
    problems = config_problems(raw)
    if problems:
        raise ConfigError(path, problems)
    return Config.model_validate(raw)


def read_config_document(path: Path) -> dict[str, Any]:
    """config.json as parsed JSON (every key, known or not), for editing and writing back."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(path, [{"path": "$", "message": f"no config file at {path}"}]) from None
    except OSError as exc:
        raise ConfigError(path, [{"path": "$", "message": f"cannot read: {exc.strerror}"}]) from None
    except json.JSONDecodeError as exc:
        raise ConfigError(
            path, [{"path": "$", "message": f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"}]
        ) from None
    if not isinstance(raw, dict):
        raise ConfigError(path, [{"path": "$", "message": "config must be a JSON object"}])
    return raw


def load_config(path: Path) -> Config:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, [{"path": "$", "message": f"no config file at {path}"}]) from None
    except OSError as exc:
        raise ConfigError(path, [{"path": "$", "message": f"cannot read: {exc.strerror}"}]) from None
    return parse_config_text(text, path)


def write_config(config: Config | dict[str, Any], path: Path, *, backup: bool = False) -> Path | None:
    """Write atomically (a temporary file in the same directory, flushed, then renamed over).

    With ``backup``, an existing file is first copied to ``config.json.<UTC time>.bak``; its path is
    returned.
    """
    data = config.to_json_dict() if isinstance(config, Config) else config
    path.parent.mkdir(parents=True, exist_ok=True)
    saved: Path | None = None
    if backup and path.exists():
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        saved = path.with_name(f"{path.name}.{stamp}.bak")
        shutil.copy2(path, saved)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        if path.exists():
            shutil.copymode(path, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return saved
