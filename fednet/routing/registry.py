"""Registry of routers: ``register_router(name, cls)`` and ``create_router(name)``."""

from __future__ import annotations

import dataclasses

from fednet.registry import Registry
from fednet.routing.base import Embedder, Router
from fednet.routing.config import RouterConfig

__all__ = ["register_router", "create_router", "available_routers"]

ROUTERS: Registry[type[Router]] = Registry("router")


def register_router(name: str, cls: type[Router]) -> None:
    """Register router class ``cls`` under ``name``.

    Raises
    ------
    ValueError
        If ``name`` is taken.
    TypeError
        If ``cls`` is not a :class:`Router` subclass.
    """
    if not isinstance(cls, type) or not issubclass(cls, Router):
        raise TypeError(f"router {name!r} must be a Router subclass, got {cls!r}")
    ROUTERS.register(name, cls)


def available_routers() -> list[str]:
    """Names of the registered routers."""
    return ROUTERS.names()


def create_router(
    name: str | None = None,
    *,
    config: RouterConfig | None = None,
    embedder: Embedder | None = None,
) -> Router:
    """Build router ``name`` (default ``config.name``).

    Raises
    ------
    ValueError
        If the name is unknown; the message lists the valid names.
    """
    config = config or RouterConfig(name=name or "sketch")
    name = name or config.name
    cls = ROUTERS.get(name)
    if config.name != name:
        config = dataclasses.replace(config, name=name)
    return cls(config, embedder=embedder)
