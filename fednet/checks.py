"""Checks of typed configuration values; each error names the key and the value."""

from __future__ import annotations

__all__ = ["check_int"]


def check_int(key: str, value: object, *, minimum: int) -> int:
    """Return ``value`` if it is an int (not a bool) ``>= minimum``.

    Raises ``TypeError`` or ``ValueError`` naming `` `key` `` and the value.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"`{key}` must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"`{key}` must be >= {minimum}, got {value!r}")
    return value
