"""Registry of fednet strategies."""

from __future__ import annotations

from typing import Any

from fednet.strategies.base import FednetStrategy

__all__ = ["register_strategy", "create_strategy", "available_strategies"]

_REGISTRY: dict[str, type[FednetStrategy]] = {}


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
