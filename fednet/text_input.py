"""Text that arrives over HTTP: bytes that are not UTF-8, strings that are not Unicode.

JSON may spell a lone UTF-16 surrogate (``"\\ud800"``), which Python decodes
into a ``str`` that no UTF-8 encoder, tokenizer or database accepts. The peer
and the hub service refuse both with a message that names the place.
"""

from __future__ import annotations

from typing import Any

__all__ = ["lone_surrogate_problem", "lone_surrogate_problems", "utf8_body_problem"]


def lone_surrogate_problem(key: str, text: str) -> str | None:
    """Why ``text`` (found at ``key``) is not valid Unicode, or None if it is."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        return (
            f"`{key}` holds a lone surrogate (U+{ord(text[e.start]):04X} at character "
            f"{e.start}); text must be valid Unicode"
        )
    return None


def lone_surrogate_problems(value: Any, key: str = "") -> list[str]:
    """:func:`lone_surrogate_problem` of every string in a parsed JSON value.

    Keys are dotted paths (``manifest.task``, ``texts.1``); dictionary keys are
    checked too.
    """
    out: list[str] = []
    if isinstance(value, str):
        problem = lone_surrogate_problem(key or "value", value)
        if problem:
            out.append(problem)
    elif isinstance(value, dict):
        for k, v in value.items():
            here = f"{key}.{k}" if key else str(k)
            if isinstance(k, str):
                out += lone_surrogate_problems(k, f"{here} (a key)")
            out += lone_surrogate_problems(v, here)
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            out += lone_surrogate_problems(v, f"{key}.{i}" if key else str(i))
    return out


def utf8_body_problem(exc: BaseException) -> str | None:
    """The message for a request body that failed to parse because it is not UTF-8.

    FastAPI answers such a body with ``HTTPException(400)`` raised from the
    ``UnicodeDecodeError``; this names the byte and its offset, or returns None
    for any other error.
    """
    cause = exc.__cause__
    if not isinstance(cause, UnicodeDecodeError):
        return None
    bad = bytes(cause.object[cause.start : cause.start + 1]).hex()
    return (
        f"request body is not valid UTF-8: byte 0x{bad} at offset {cause.start} "
        f"({cause.reason}); send JSON encoded as UTF-8"
    )
