"""The package map of docs/architecture.md, enforced: who may import whom.

Imports are read from the source (``if TYPE_CHECKING:`` blocks are type hints, not imports); that the
worker and the core load no Textual at all is checked in a fresh interpreter.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import changeconsole

PACKAGE = Path(changeconsole.__file__).parent
ROOT = "changeconsole"

FRONT = ("changeconsole.screens", "changeconsole.widgets", "changeconsole.app", "changeconsole.commands")
ABOVE_CORE = (*FRONT, "changeconsole.services", "changeconsole.worker", "changeconsole.cli", "textual")

# Where a module lives → what it must never import (module-name prefixes).
RULES: dict[str, tuple[str, ...]] = {
    # The core: errors, plain data, config, state colours (each may use only the ones before it).
    "changeconsole.errors": ("changeconsole.", "textual", "boto3"),
    "changeconsole.models_legacy": ("changeconsole.", "textual", "boto3", "botocore"),
    "changeconsole.models": (
        *ABOVE_CORE,
        "changeconsole.config",
        "changeconsole.colours",
        "boto3",
        "botocore",
    ),
    "changeconsole.config": (*ABOVE_CORE, "changeconsole.colours"),
    "changeconsole.colours": ABOVE_CORE,
    # The Textual-free core every front end uses.
    "changeconsole.services": (
        *FRONT,
        "changeconsole.worker",
        "changeconsole.cli",
        "changeconsole.colours",
        "textual",
    ),
    # The headless worker.
    "changeconsole.worker": (*FRONT, "changeconsole.cli", "textual"),
    # Widgets show data; they never fetch it.
    "changeconsole.widgets": (
        "changeconsole.services",
        "changeconsole.worker",
        "changeconsole.screens",
        "changeconsole.cli",
        "boto3",
        "botocore",
    ),
    # Screens call services (in thread workers) and render; AWS only through the services.
    "changeconsole.screens": (
        "changeconsole.worker",
        "changeconsole.cli",
        "changeconsole.app",
        "boto3",
        "botocore",
    ),
    # The CLI opens the console (``app``) lazily and never reaches into its screens or widgets.
    "changeconsole.cli": ("changeconsole.screens", "changeconsole.widgets", "changeconsole.commands"),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_block(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and isinstance(test, ast.Name) and test.id == "TYPE_CHECKING"


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every import of the module, outside ``if TYPE_CHECKING:``."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        if _type_checking_block(node):
            return
        if isinstance(node, ast.Import):
            out.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            out.append((node.lineno, target))
            # ``from . import x`` / ``from .pkg import mod``: the names may be modules too.
            out.extend((node.lineno, f"{target}.{alias.name}") for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return out


def _forbidden(module: str) -> tuple[str, ...]:
    owner = max((p for p in RULES if module == p or module.startswith(p + ".")), key=len, default=None)
    return RULES[owner] if owner else ()


def _matches(target: str, prefix: str) -> bool:
    return target == prefix.rstrip(".") or target.startswith(prefix if prefix.endswith(".") else prefix + ".")


def test_every_package_imports_only_what_the_map_allows() -> None:
    breaks = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = module_name(path)
        forbidden = _forbidden(module)
        for line, target in imports(path):
            bad = [p for p in forbidden if _matches(target, p) and not _matches(target, module)]
            if bad:
                breaks.append(f"{path.relative_to(PACKAGE.parent)}:{line} {module} imports {target}")
    assert not breaks, "\n".join(breaks)


def test_the_rules_bite() -> None:
    """A screen importing boto3 and a service importing the worker are caught (the checker is live)."""
    assert _forbidden("changeconsole.screens.status") and _matches("boto3.session", "boto3")
    assert any(_matches("changeconsole.worker.runtime", p) for p in _forbidden("changeconsole.services.dlq"))
    assert not any(_matches("changeconsole.services.dlq", p) for p in _forbidden("changeconsole.screens.dlq"))


@pytest.mark.parametrize(
    "modules",
    [
        pytest.param(["changeconsole.worker.runtime", "changeconsole.cli.worker_cmd"], id="worker"),
        pytest.param(
            [f"changeconsole.services.{p.stem}" for p in sorted((PACKAGE / "services").glob("*.py"))]
            + ["changeconsole.services.dlq", "changeconsole.cli"],
            id="services-and-cli",
        ),
    ],
)
def test_the_worker_and_the_core_load_no_textual(modules: list[str]) -> None:
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "loaded = sorted(m for m in sys.modules if m == 'textual' or m.startswith('textual.'))\n"
        "print(loaded[:5]); sys.exit(1 if loaded else 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
