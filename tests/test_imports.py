"""fednet's own imports point one way, down the layers of the architecture.

The graph is read from the source with ``ast``: every ``import`` and ``from
... import`` of a ``fednet`` module, at module level, inside functions and
under ``TYPE_CHECKING`` alike.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "fednet"

# Modules every layer may import: they import no other room.
FOUNDATION = {"fednet", "errors", "names", "atomic", "checks", "text_input", "registry", "training",
              "config_base"}  # fmt: skip

# The Rooms table of the architecture: room -> the rooms it may import.
ROOMS: dict[str, set[str]] = {
    "config": set(),
    "data": {"config"},
    "models": {"config"},
    "lora": set(),
    "privacy": {"lora", "models"},
    "strategies": {"lora", "privacy"},
    "hub": {"lora"},
    "representation": {"models", "privacy"},
    "routing": {"hub", "privacy", "representation"},
    "inference": {"models", "hub", "routing"},
}
# Rooms the table does not list yet, with what they may import.
ROOMS |= {
    # the wire: message record keys, the reply allowlist, wire dtypes
    "protocol": {"config", "lora"},
    # client runtime, server flow and the Flower apps: everything it runs
    "federation": {"config", "data", "models", "lora", "privacy", "protocol", "strategies", "hub"},
    # the benchmarks drive whole runs, the network and the privacy accountant
    "bench": {
        "config",
        "data",
        "models",
        "lora",
        "privacy",
        "protocol",
        "strategies",
        "hub",
        "federation",
        "routing",
        "inference",
        "representation",
        "logs",
    },  # fmt: skip
    # flower-server and flower-client: processes around federation runs
    "deploy": {"config", "federation", "logs"},
    # the programs' logging set-up
    "logs": set(),
    # the IR layer also publishes its maps to the hub (signed artifacts) and checks
    # that its public corpus is disjoint from every client data set
    "representation": {"config", "data", "models", "privacy", "hub"},
    # the hub's web console: reads the hub, verifies with the trust store, asks the network
    "console": {"config", "privacy", "hub", "routing", "inference"},
}
ROOMS["cli"] = set(ROOMS) - {"cli"}

# Bottom-up: a room imports only rooms before it (the table's order, with the
# additions placed where their imports put them).
ORDER = [
    "logs", "config", "data", "lora", "models", "privacy", "protocol", "strategies", "hub",
    "representation", "federation", "routing", "inference", "console", "bench", "logs",
    "deploy", "cli",
]  # fmt: skip

# Imports the table does not allow, kept on purpose: (room, imported module or room).
EXCEPTIONS: dict[tuple[str, str], str] = {
    ("config", "fednet.privacy.config"): (
        "fednet/config.py composes each component's own typed config; "
        "fednet.privacy.config imports foundation modules only (checked below), so "
        "this edge cannot close a cycle"
    ),
    ("models", "lora"): (
        "the classifier names LoRA keys with fednet.lora.state; lora imports torch only, "
        "so it sits below models (ORDER)"
    ),
    ("hub", "fednet.models.adapters"): (
        "hub.bundle checks that an adapter's files fit its base model before signing them"
    ),
    ("strategies", "config"): "strategies and their wrappers read their typed configs",
    ("strategies", "protocol"): "strategies read and write the wire's record keys",
}

# Room config modules that fednet/config.py may import: all they reach is their
# own room and foundation modules.
CONFIG_LEAVES = ("fednet.privacy.config",)

# Programs that may set up logging (fednet.logs); anything else is library.
PROGRAMS = ("fednet.cli", "fednet.deploy.server_cmd", "fednet.deploy.client_cmd")


@cache
def modules() -> dict[str, tuple[Path, bool]]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts = parts[:-1]
        out[".".join(parts)] = (path, is_pkg)
    return out


def _imports(name: str) -> list[tuple[str, ast.AST, list[str]]]:
    """(imported fednet module, node, enclosing function names) for every import."""
    path, is_pkg = modules()[name]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    pkg = name if is_pkg else name.rpartition(".")[0]
    out: list[tuple[str, ast.AST, list[str]]] = []

    def visit(node: ast.AST, funcs: list[str]) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            funcs = [*funcs, node.name]
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [
                f"{mod}.{a.name}" if f"{mod}.{a.name}" in modules() else mod for a in node.names
            ]
        for t in targets:
            while t and t not in modules():  # `import fednet.a.b` names a module or its package
                t = t.rpartition(".")[0]
            if t.startswith("fednet") and t != name:
                out.append((t, node, funcs))
        for child in ast.iter_child_nodes(node):
            visit(child, funcs)

    visit(tree, [])
    return out


@cache
def graph() -> dict[str, set[str]]:
    return {name: {t for t, _, _ in _imports(name)} for name in modules()}


def room(module: str) -> str:
    parts = module.split(".")
    return "fednet" if len(parts) == 1 else parts[1]


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            strong(v)
    return out


def test_the_graph_sees_function_level_and_relative_imports() -> None:
    g = graph()
    # function-level: the server app factory imports the server flow inside main()
    assert "fednet.federation.server" in g["fednet.federation.apps"]
    assert "fednet.protocol" in g["fednet.strategies.base"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_import_cycle() -> None:
    assert _cycles(graph()) == []


def test_no_room_import_cycle() -> None:
    rooms: dict[str, set[str]] = defaultdict(set)
    for a, targets in graph().items():
        rooms[room(a)] |= {room(t) for t in targets if room(t) != room(a)}
    assert _cycles(dict(rooms)) == []


def test_every_room_is_placed() -> None:
    found = {room(m) for m in modules()} - FOUNDATION
    assert found <= set(ROOMS), f"rooms missing from the layer table: {found - set(ROOMS)}"
    assert set(ORDER) == set(ROOMS)
    for name, allowed in ROOMS.items():
        below = set(ORDER[: ORDER.index(name)])
        assert allowed <= below, f"{name} may import rooms above it: {allowed - below}"


def test_rooms_import_only_what_the_layers_allow() -> None:
    bad = []
    for a, targets in sorted(graph().items()):
        ra = room(a)
        for t in sorted(targets):
            rt = room(t)
            if rt in FOUNDATION or rt == ra:
                continue
            allowed = rt in ROOMS.get(ra, set())
            excepted = (ra, rt) in EXCEPTIONS or (ra, t) in EXCEPTIONS
            in_order = ra in ORDER and rt in ORDER and ORDER.index(rt) < ORDER.index(ra)
            if not ((allowed and in_order) or excepted):
                bad.append(f"{a} -> {t}")
    assert bad == []


def test_the_exceptions_are_still_needed() -> None:
    used = set()
    for a, targets in graph().items():
        for t in targets:
            used |= {(room(a), room(t)), (room(a), t)}
    assert set(EXCEPTIONS) <= used


def test_room_configs_that_config_composes_are_leaves() -> None:
    for name in CONFIG_LEAVES:
        reached, todo = set(), [name]
        while todo:
            for t in graph()[todo.pop()] - reached:
                reached.add(t)
                todo.append(t)
        other = {t for t in reached if room(t) not in FOUNDATION | {room(name)}}
        assert other == set(), f"{name} reaches {sorted(other)}"


def test_only_programs_set_up_logging() -> None:
    """The library logs through ``logging.getLogger(__name__)``; handlers, levels
    and warning filters are set by the programs, through fednet.logs."""
    offenders = []
    for name in modules():
        program = name.startswith(PROGRAMS) or name in {"fednet.logs", "fednet.deploy.demo"}
        for target, node, funcs in _imports(name):
            if target == "fednet.logs" and not program and "main" not in funcs:
                offenders.append(f"{name}:{getattr(node, 'lineno', '?')} imports fednet.logs")
        if program or name == "fednet.logs":
            continue
        path = modules()[name][0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                call = node.func.attr
                if call in {"basicConfig", "setLevel", "filterwarnings", "dictConfig"} or (
                    call == "addHandler" and "NullHandler" not in ast.unparse(node)
                ):
                    offenders.append(f"{name}:{node.lineno} calls {call}")
    assert offenders == []
