"""A registry of named things: strategies, wrappers, routers, combiners, base
models, data sets, partitioners, accountants.

Each method package keeps one :class:`Registry` and offers ``register_x``,
``create_x`` and ``available_x`` on top of it (the shape of opacus's
``accountants/registry.py``). An unknown name raises an error that lists the
valid names.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

__all__ = ["Registry", "UnknownNameError"]

T = TypeVar("T")


class UnknownNameError(ValueError):
    """A name no entry of a registry has; the message lists the valid names."""


class Registry(Generic[T]):
    """Entries of one kind by name.

    Parameters
    ----------
    kind : str
        What an entry is, for messages: ``"router"``, ``"data set"``.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T, *, overwrite: bool = False) -> None:
        """Add ``entry`` under ``name``.

        Raises
        ------
        TypeError
            If ``name`` is not a non-empty string.
        ValueError
            If ``name`` is taken and ``overwrite`` is false.
        """
        if not isinstance(name, str) or not name.strip():
            raise TypeError(f"{self.kind} name must be a non-empty str, got {name!r}")
        if name in self._entries and not overwrite:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry

    def get(self, name: str) -> T:
        """The entry under ``name``.

        Raises
        ------
        UnknownNameError
            If there is none; the message lists the valid names.
        """
        try:
            return self._entries[name]
        except (KeyError, TypeError):  # TypeError: an unhashable name
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; valid: {', '.join(self.names()) or 'none'}"
            ) from None

    def copy(self) -> Registry[T]:
        """A registry of the same kind holding the same entries (tests restore with it)."""
        out: Registry[T] = Registry(self.kind)
        out._entries = dict(self._entries)
        return out

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
