"""Registry of fednet strategies."""

from __future__ import annotations

from typing import Any

from fednet.strategies.base import FednetStrategy

__all__ = [
    "register_strategy",
    "create_strategy",
    "available_strategies",
    "register_wrapper",
    "create_wrapper",
    "available_wrappers",
]

_REGISTRY: dict[str, type[FednetStrategy]] = {}
_WRAPPERS: dict[str, Any] = {}


def register_strategy(name: str, cls: type[FednetStrategy]) -> None:
    """Register strategy class ``cls`` under ``name``."""
    if name in _REGISTRY:
        raise ValueError(f"strategy {name!r} is already registered")
    _REGISTRY[name] = cls


def available_strategies() -> list[str]:
    return sorted(_REGISTRY)


def create_strategy(name: str, **kwargs: Any) -> FednetStrategy:
    """Build strategy ``name``; an unknown name lists the valid ones."""
    try:
        cls = _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown strategy {name!r}; valid: {', '.join(available_strategies())}"
        ) from None
    return cls(**kwargs)


def register_wrapper(name: str, cls: Any) -> None:
    """Register robust wrapper class ``cls`` (a ``RobustWrapper``) under ``name``."""
    if name in _WRAPPERS or name == "none":
        raise ValueError(f"robust wrapper {name!r} is already registered")
    _WRAPPERS[name] = cls


def available_wrappers() -> list[str]:
    """Values of ``strategy.robust``: ``none`` and every registered wrapper."""
    return ["none", *sorted(_WRAPPERS)]


def create_wrapper(name: str, strategy: Any, cfg: Any) -> Any:
    """Wrap ``strategy`` in robust wrapper ``name`` configured from ``cfg``
    (a ``StrategyConfig``); ``none`` returns ``strategy``. An unknown name lists
    the valid ones."""
    if name == "none":
        return strategy
    try:
        cls = _WRAPPERS[name]
    except KeyError:
        raise ValueError(
            f"unknown robust wrapper {name!r}; valid: {', '.join(available_wrappers())}"
        ) from None
    return cls.from_config(strategy, cfg)
