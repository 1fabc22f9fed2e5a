"""Registry of fednet strategies."""

from __future__ import annotations

from typing import Any

from fednet.registry import Registry, UnknownNameError
from fednet.strategies.base import FednetStrategy

__all__ = [
    "register_strategy",
    "create_strategy",
    "available_strategies",
    "register_wrapper",
    "create_wrapper",
    "available_wrappers",
]

STRATEGIES: Registry[type[FednetStrategy]] = Registry("strategy")
WRAPPERS: Registry[Any] = Registry("robust wrapper")


def register_strategy(name: str, cls: type[FednetStrategy]) -> None:
    """Register strategy class ``cls`` under ``name``."""
    STRATEGIES.register(name, cls)


def available_strategies() -> list[str]:
    """Values of ``strategy.name``."""
    return STRATEGIES.names()


def create_strategy(name: str, **kwargs: Any) -> FednetStrategy:
    """Build strategy ``name``; an unknown name lists the valid ones."""
    return STRATEGIES.get(name)(**kwargs)


def register_wrapper(name: str, cls: Any) -> None:
    """Register robust wrapper class ``cls`` (a ``RobustWrapper``) under ``name``."""
    if name == "none":
        raise ValueError("robust wrapper 'none' is already registered")
    WRAPPERS.register(name, cls)


def available_wrappers() -> list[str]:
    """Values of ``strategy.robust``: ``none`` and every registered wrapper."""
    return ["none", *WRAPPERS.names()]


def create_wrapper(name: str, strategy: Any, cfg: Any) -> Any:
    """Wrap ``strategy`` in robust wrapper ``name`` configured from ``cfg``
    (a ``StrategyConfig``); ``none`` returns ``strategy``. An unknown name lists
    the valid ones."""
    if name == "none":
        return strategy
    if name not in WRAPPERS:
        raise UnknownNameError(
            f"unknown robust wrapper {name!r}; valid: {', '.join(available_wrappers())}"
        )
    return WRAPPERS.get(name).from_config(strategy, cfg)
