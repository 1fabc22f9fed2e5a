"""The console sits above inference: the hub never imports it (nor routing or inference),
and nothing in the library but the command line imports the console."""

from __future__ import annotations

import ast
from pathlib import Path

import fednet

PACKAGE = Path(fednet.__file__).parent


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_the_hub_imports_nothing_above_it() -> None:
    above = ("fednet.console", "fednet.inference", "fednet.routing")
    for path in sorted((PACKAGE / "hub").rglob("*.py")):
        bad = sorted(m for m in imports(path) if m.startswith(above))
        assert not bad, f"{path.relative_to(PACKAGE)} imports {bad}"


def test_only_the_command_line_imports_the_console() -> None:
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] in ("console", "cli", "cli.py"):
            continue
        bad = sorted(m for m in imports(path) if m.startswith("fednet.console"))
        assert not bad, f"{relative} imports {bad}"
