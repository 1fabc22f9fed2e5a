"""One generic registry behind every ``register_x`` / ``create_x`` pair."""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

import pytest

from fednet.data import catalog, partition
from fednet.inference import combine
from fednet.models import registry as models
from fednet.privacy import accountant
from fednet.registry import Registry, UnknownNameError
from fednet.routing import registry as routing
from fednet.strategies import registry as strategies


def test_unknown_name_lists_the_valid_ones() -> None:
    reg: Registry[int] = Registry("widget")
    reg.register("b", 2)
    reg.register("a", 1)
    assert reg.get("a") == 1 and reg.names() == ["a", "b"] and list(reg) == ["a", "b"]
    with pytest.raises(UnknownNameError, match=r"^unknown widget 'c'; valid: a, b$"):
        reg.get("c")
    with pytest.raises(ValueError, match="unknown widget \\['a'\\]"):
        reg.get(["a"])  # type: ignore[arg-type]
    with pytest.raises(UnknownNameError, match="valid: none"):
        Registry[int]("gadget").get("x")


def test_a_name_is_taken_once_unless_overwritten() -> None:
    reg: Registry[int] = Registry("widget")
    reg.register("a", 1)
    with pytest.raises(ValueError, match="^widget 'a' is already registered$"):
        reg.register("a", 2)
    assert reg.get("a") == 1
    reg.register("a", 3, overwrite=True)
    assert reg.get("a") == 3 and len(reg) == 1
    for bad in ("", "  ", None, 3):
        with pytest.raises(TypeError, match="widget name must be a non-empty str"):
            reg.register(bad, 1)  # type: ignore[arg-type]
    copy = reg.copy()
    copy.register("b", 4)
    assert "b" in copy and "b" not in reg


# (the registry, the public lookup that raises on an unknown name, a name it holds)
PORTED: dict[str, tuple[Registry, Callable[[str], object], str]] = {
    "strategy": (strategies.STRATEGIES, strategies.create_strategy, "fedlora"),
    "robust wrapper": (strategies.WRAPPERS, lambda n: strategies.create_wrapper(n, 0, 0), ""),
    "router": (routing.ROUTERS, routing.create_router, "sketch"),
    "combiner": (combine.COMBINERS, combine.create_combiner, "cascade"),
    "base model": (models.BASE_MODELS, models.get_base_model_spec, "tiny-bert"),
    "data set": (catalog.DATASETS, catalog.get_dataset_loader, "bbc-news"),
    "partition method": (partition.PARTITIONERS, partition._get_method, "iid"),
    "accountant": (accountant.ACCOUNTANTS, accountant.create_accountant, "rdp"),
}


@pytest.mark.parametrize("kind", sorted(PORTED))
def test_every_registry_is_the_generic_one(kind: str) -> None:
    import fednet.strategies  # noqa: F401 - registers the strategies and wrappers

    reg, lookup, known = PORTED[kind]
    assert isinstance(reg, Registry) and reg.kind == kind
    assert known in reg or kind == "robust wrapper"
    with pytest.raises(UnknownNameError) as e:
        lookup("no-such-name")
    valid = ", ".join(["none", *reg.names()] if kind == "robust wrapper" else reg.names())
    assert str(e.value) == f"unknown {kind} 'no-such-name'; valid: {valid}"


# Not registries: fixed tables nothing registers into.
NOT_REGISTRIES = {
    "_ERROR_TYPES",  # hub.client: the hub's error codes -> the exceptions they raise
}


def test_no_hand_written_registry_is_left() -> None:
    """No module keeps a name -> class or factory dict of its own."""
    found = []
    for path in sorted((Path(__file__).parents[1] / "fednet").rglob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            target = node.target if isinstance(node, ast.AnnAssign) else None
            ann = ast.unparse(node.annotation) if isinstance(node, ast.AnnAssign) else ""
            if (
                target is not None
                and ast.unparse(target) not in NOT_REGISTRIES
                and (
                    ann.startswith(("dict[str, type[", "dict[str, Callable"))
                    or ast.unparse(target).endswith(("_REGISTRY", "_WRAPPERS", "_ACCOUNTANTS"))
                )
            ):
                found.append(f"{path.name}:{node.lineno} {ast.unparse(target)}: {ann}")
    assert found == []
