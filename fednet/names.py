"""Safe names: the one check for every name that becomes part of a path or a record key.

A task, a client id, an adapter name, a base-model id and every name a client
sends in its profile end up as directory names (``rounds/<r>/<base>/<task>/``,
``personalized/<client>/``, ``<state-dir>/<client>/``) or as keys of records
that are split on ``/``. A safe name is 1-128 letters, digits, ``.``, ``_`` or
``-``, starts with a letter or digit and holds no ``..``; it can never name a
parent, an absolute path or a nested directory.

This module depends on the standard library only.
"""

from __future__ import annotations

import os
import re
from pathlib import PurePath

__all__ = ["NAME_PATTERN", "MAX_NAME_LENGTH", "check_name", "is_safe_name", "name_from_path"]

MAX_NAME_LENGTH = 128
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
"""A safe name: a letter or digit, then up to 127 letters, digits, ``.``, ``_`` or ``-``."""


def is_safe_name(value: object) -> bool:
    """Whether ``value`` is a str that :func:`check_name` accepts."""
    return isinstance(value, str) and bool(NAME_PATTERN.fullmatch(value)) and ".." not in value


def check_name(key: str, value: object) -> str:
    """Return ``value`` if it is a safe name.

    Parameters
    ----------
    key : str
        What the name is (``"clients[a].task"``, ``"peer_id"``), for the error.
    value : object
        The candidate name.

    Returns
    -------
    str
        ``value`` unchanged.

    Raises
    ------
    TypeError
        If ``value`` is not a string.
    ValueError
        If it is empty, longer than 128 characters, holds a character other
        than a letter, digit, ``.``, ``_`` or ``-``, does not start with a
        letter or digit, or holds ``..``.
    """
    if not isinstance(value, str):
        raise TypeError(f"`{key}` must be a str, got {type(value).__name__} {value!r}")
    if not is_safe_name(value):
        raise ValueError(
            f"`{key}` must be 1-128 characters of letters, digits, '.', '_' or '-' "
            f"starting with a letter or digit and without '..', got {value!r}"
        )
    return value


def name_from_path(path: str | os.PathLike[str], *, key: str = "name") -> str:
    """A safe name derived from a file path: its stem, with unsafe characters as ``-``.

    ``/data/My Reviews (2024).csv`` gives ``My-Reviews-2024``.

    Raises
    ------
    ValueError
        If nothing safe is left (e.g. a stem of only punctuation).
    """
    stem = PurePath(os.fspath(path)).stem
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", stem)
    cleaned = re.sub(r"\.{2,}", ".", cleaned).strip("-._")[:MAX_NAME_LENGTH].rstrip("-._")
    if not cleaned:
        raise ValueError(
            f"cannot derive a safe `{key}` from {os.fspath(path)!r}; set one explicitly"
        )
    return check_name(key, cleaned)
