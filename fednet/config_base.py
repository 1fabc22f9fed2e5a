"""The one configuration machinery behind every fednet config.

Each config (a federation preset, privacy, a router, a peer, the benchmark) is a
frozen pydantic v2 dataclass made by :func:`config_model`:

- its TOML and run-config keys are the kebab-case forms of its fields
  (``lora_rank`` is ``lora-rank``); Python code may pass either form;
- unknown keys are refused (``extra="forbid"``), types are strict (an int is
  not a bool, a string is not a number);
- every problem is collected, then raised once as one
  :class:`~fednet.errors.ConfigError` with one line per problem, each naming the
  key (a dotted path such as ``clients[spam-1].lora-rank``), what was expected
  and the value that came.

Because they are dataclasses, :func:`dataclasses.replace` revalidates a copy,
and :class:`pydantic.TypeAdapter` gives each config's JSON Schema.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Annotated, Any, TypeVar, dataclass_transform

import pydantic.dataclasses
from pydantic import AfterValidator, AllowInfNan, BeforeValidator, ConfigDict, Field, Strict
from pydantic import ValidationError as _ValidationError
from pydantic_core import ArgsKwargs, PydanticCustomError

from fednet.errors import ConfigError
from fednet.names import NAME_PATTERN, is_safe_name

__all__ = [
    "adapter",
    "Bool",
    "Finite",
    "Float",
    "Int",
    "SafeName",
    "Str",
    "bound",
    "config_error",
    "config_model",
    "expected",
    "kebab",
    "non_empty",
    "problems",
    "validate",
]

T = TypeVar("T")


def kebab(name: str) -> str:
    """The TOML key of field ``name``: ``lora_rank`` -> ``lora-rank``."""
    return name.replace("_", "-")


def _describe(schema: dict[str, Any], cls: type[Any]) -> None:
    """Schema descriptions from the numpy docstring: its first paragraph for the
    table, each ``Parameters`` entry for its key (what an editor shows)."""
    import inspect

    params: dict[str, list[str]] = {}
    for i, klass in enumerate(cls.__mro__):  # a subclass's entry wins
        doc = inspect.getdoc(klass) if "__doc__" in vars(klass) else ""
        head, _, rest = (doc or "").partition("\nParameters\n----------\n")
        if i == 0:
            schema["description"] = " ".join(head.split("\n\n")[0].split())
        names: list[str] = []
        for line in rest.splitlines():
            if line and not line.startswith(" "):
                names = [n.strip() for n in line.split(":")[0].split(",")]
                for n in names:
                    params.setdefault(n, [])
            elif names and line.strip():
                for n in names:
                    if len(params[n]) < 40:
                        params[n].append(line.strip())
    for name, text in params.items():
        prop = schema.get("properties", {}).get(kebab(name))
        if prop is not None and text:
            prop["description"] = " ".join(text)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)


CONFIG = ConfigDict(
    alias_generator=kebab,
    validate_by_name=True,  # pydantic's successor of populate_by_name
    validate_by_alias=True,
    extra="forbid",
    revalidate_instances="never",
    json_schema_extra=_describe,
)
"""Settings shared by every fednet config."""


def _inf_word(value: object) -> object:
    """``"inf"`` (as a run config or CLI may spell it) is the float infinity."""
    if isinstance(value, str) and value.strip().lower() in ("inf", "+inf", "infinity"):
        return math.inf
    return value


def _not_nan(value: float) -> float:
    if math.isnan(value):
        raise PydanticCustomError("fednet_expected", "must be {expected}", {"expected": "a number"})
    return value


Int = Annotated[int, Strict()]
"""An int; a bool or a float is refused."""
Str = Annotated[str, Strict()]
"""A string; a number is refused."""
Bool = Annotated[bool, Strict()]
"""``true`` or ``false``; ``1`` or ``"yes"`` is refused."""
Float = Annotated[float, Strict(), BeforeValidator(_inf_word), AfterValidator(_not_nan)]
"""A number (an int becomes a float); infinity allowed, NaN refused."""
Finite = Annotated[float, Strict(), AllowInfNan(False)]
"""A finite number (an int becomes a float)."""

SAFE_NAME = (
    "a safe name (1-128 letters, digits, '.', '_' or '-', starting with a letter or digit, "
    "without '..')"
)


def _safe_name(value: str) -> str:
    if not is_safe_name(value):
        raise PydanticCustomError("fednet_expected", "must be {expected}", {"expected": SAFE_NAME})
    return value


SafeName = Annotated[
    str,
    Strict(),
    AfterValidator(_safe_name),
    Field(json_schema_extra={"pattern": NAME_PATTERN.pattern}),
]
"""A name that becomes a path or a record key (:func:`fednet.names.check_name`)."""


# ----------------------------------------------------------------------------- checks

_BOUND = re.compile(
    r"^(?:(?P<op>>=|>|<=|<)\s*(?P<x>\S+)|in\s+(?P<lo>[\[(])(?P<a>[^,]+),\s*(?P<b>[^\])]+)(?P<hi>[\])]))$"
)


def bound(text: str) -> tuple[Any, Any]:
    """Annotated metadata that keeps a number within ``text`` and says so in the schema.

    ``text`` is what the error shows as expected: ``">= 1"``, ``"> 0"``,
    ``"in [0, 1)"`` or ``"in (0, 1]"``. Use as ``Annotated[Float, *bound("in [0, 1)")]``.
    """
    m = _BOUND.match(text)
    if m is None:
        raise ValueError(f"bad bound {text!r}")
    schema: dict[str, float]
    if m["op"]:
        x = float(m["x"])
        key = {">=": "minimum", ">": "exclusiveMinimum", "<=": "maximum", "<": "exclusiveMaximum"}
        schema = {key[m["op"]]: x}

        def ok(v: float) -> bool:
            return {">=": v >= x, ">": v > x, "<=": v <= x, "<": v < x}[m["op"]]
    else:
        lo, hi = float(m["a"]), float(m["b"])
        closed_lo, closed_hi = m["lo"] == "[", m["hi"] == "]"
        schema = {
            ("minimum" if closed_lo else "exclusiveMinimum"): lo,
            ("maximum" if closed_hi else "exclusiveMaximum"): hi,
        }

        def ok(v: float) -> bool:
            return (v >= lo if closed_lo else v > lo) and (v <= hi if closed_hi else v < hi)

    schema = {k: (int(v) if v.is_integer() else v) for k, v in schema.items()}

    def check(value: Any) -> Any:
        if not ok(value):
            raise expected(text)
        return value

    return AfterValidator(check), Field(json_schema_extra=schema)  # type: ignore[arg-type]


def non_empty(what: str) -> tuple[Any, Any]:
    """Annotated metadata: a list must hold at least one item (``what`` names it).

    Unlike ``Field(min_length=1)``, it is checked after the items, so a list whose
    items are all bad is not also reported as empty.
    """

    def check(value: Any) -> Any:
        if len(value) == 0:
            raise expected(what)
        return value

    return AfterValidator(check), Field(json_schema_extra={"minItems": 1})


def expected(what: str) -> PydanticCustomError:
    """The error a field validator raises: the field ``must be <what>``."""
    return PydanticCustomError("fednet_expected", "must be {expected}", {"expected": what})


def problems(found: Iterable[tuple[Sequence[str | int], str]]) -> PydanticCustomError | None:
    """The one error a model validator raises for every cross-field problem it found.

    Each problem is ``(key, text)``: ``key`` relative to the model (``("partition",)``),
    or ``()`` for a text that names its keys itself; ``text`` follows the key, e.g.
    ``"must be in [0, 2), got 5"``. Returns None when there is none.
    """
    found = [(tuple(k), t) for k, t in found]
    if not found:
        return None
    return PydanticCustomError(
        "fednet_problems", "{count} problem(s)", {"count": len(found), "problems": found}
    )


# ----------------------------------------------------------------------------- errors

_EXPECTED = {
    "int_type": "an int",
    "int_parsing": "an int",
    "int_from_float": "an int",
    "float_type": "a number",
    "float_parsing": "a number",
    "finite_number": "a finite number",
    "string_type": "a string",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "tuple_type": "a list",
    "list_type": "a list",
    "dataclass_type": "a table",
    "dataclass_args_type": "a table",
    "dict_type": "a table",
    "model_type": "a table",
    "greater_than": "> {gt}",
    "greater_than_equal": ">= {ge}",
    "less_than": "< {lt}",
    "less_than_equal": "<= {le}",
    "too_short": "at least {min_length} item(s)",
    "string_too_short": "a non-empty string",
}


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _child(node: Any, item: str | int) -> Any:
    if isinstance(node, ArgsKwargs):
        node = node.kwargs or {}
    if isinstance(item, int):
        if isinstance(node, list | tuple) and -len(node) <= item < len(node):
            return node[item]
        return None
    if isinstance(node, Mapping):
        for k in (item, kebab(item), item.replace("-", "_")):
            if k in node:
                return node[k]
        return None
    return getattr(node, item.replace("-", "_"), None)


def _dotted(loc: Sequence[str | int], data: Any, prefix: str, sections: frozenset[str]) -> str:
    """``('clients', 1, 'lora_rank')`` -> ``clients[spam-1].lora-rank`` (the id from ``data``)."""
    out = ""
    node = data
    for item in loc:
        node = _child(node, item)
        if isinstance(item, int):
            ident = _child(node, "id")
            out += f"[{ident if is_safe_name(ident) else item}]"
        else:
            out += ("." if out else "") + kebab(str(item))
    if prefix and (not loc or loc[0] not in sections):
        out = prefix + ("." + out if out else "")
    return out


def _field_types(cls: Any) -> dict[str, Any]:
    if not dataclasses.is_dataclass(cls):
        return {}
    hints = typing.get_type_hints(cls)
    return {kebab(f.name): hints[f.name] for f in dataclasses.fields(cls)}


def _unwrap(hint: Any) -> Any:
    """The config class inside ``hint`` (through Annotated, Optional and tuple)."""
    while True:
        origin = typing.get_origin(hint)
        if origin is Annotated:
            hint = typing.get_args(hint)[0]
        elif origin in (typing.Union, types.UnionType, tuple, list):
            arms = [a for a in typing.get_args(hint) if a not in (type(None), Ellipsis)]
            hint = arms[0] if arms else hint
            if len(arms) != 1:
                return hint
        else:
            return hint


def _class_at(root: Any, loc: Sequence[str | int]) -> Any:
    cls = root
    for item in loc:
        if isinstance(item, int):
            continue
        cls = _unwrap(_field_types(cls).get(kebab(item)))
    return cls


def _lines(
    error: _ValidationError, data: Any, root: Any, prefix: str, sections: frozenset[str]
) -> list[str]:
    out: list[str] = []
    for e in error.errors(include_url=False):
        loc = tuple(e["loc"])
        kind, ctx, value = e["type"], e.get("ctx") or {}, e.get("input")
        if kind == "fednet_problems":
            for rel, text in ctx["problems"]:
                if rel:
                    out.append(f"`{_dotted(loc + tuple(rel), data, prefix, sections)}` {text}")
                else:
                    out.append(text)
            continue
        key = _dotted(loc, data, prefix, sections)
        if kind in ("unexpected_keyword_argument", "extra_forbidden"):
            valid = ", ".join(sorted(_field_types(_class_at(root, loc[:-1]))))
            out.append(f"unknown key `{key}` = {_short(value)}; valid keys here: {valid}")
        elif kind in ("missing", "missing_argument", "missing_keyword_only_argument"):
            out.append(f"`{key}` is required")
        elif kind == "fednet_expected":
            out.append(f"`{key}` must be {ctx['expected']}, got {_short(value)}")
        elif kind == "literal_error":
            choices = str(ctx.get("expected", ""))
            what = f"one of {choices}" if "," in choices else choices
            out.append(f"`{key}` must be {what}, got {_short(value)}")
        elif kind in _EXPECTED:
            what = _EXPECTED[kind].format(**ctx)
            got = _short(value)
            if kind in ("dataclass_type", "dataclass_args_type", "dict_type"):
                got = f"{type(value).__name__} {got}"
            out.append(f"`{key}` must be {what}, got {got}")
        elif kind == "value_error" and "error" in ctx:
            out.append(f"`{key}`: {ctx['error']}, got {_short(value)}")
        else:
            out.append(f"`{key}`: {e['msg']}, got {_short(value)}")
    return out


def config_error(
    error: _ValidationError,
    data: Any,
    root: Any,
    *,
    prefix: str | None = None,
    source: str = "",
) -> ConfigError:
    """Turn pydantic's ``error`` into one :class:`ConfigError`, one line per problem.

    Parameters
    ----------
    error : pydantic.ValidationError
        What validating ``data`` as ``root`` raised.
    data : Any
        The input, from which client ids are read for the key names.
    root : type
        The config class validated.
    prefix : str, optional
        Section of ``root``'s own keys; default: ``root``'s (``"privacy"``).
    source : str
        The file the input came from, named in the error's header.
    """
    prefix = getattr(root, "__config_prefix__", "") if prefix is None else prefix
    sections: frozenset[str] = getattr(root, "__config_sections__", frozenset())
    lines = _lines(error, data, root, prefix, sections)
    return ConfigError(lines, source=source)


@functools.cache
def adapter(cls: Any) -> pydantic.TypeAdapter[Any]:
    """The (cached) pydantic validator and schema maker of ``cls``."""
    return pydantic.TypeAdapter(cls)


def validate(
    cls: type[T], data: Any, *, source: str = "", context: dict[str, Any] | None = None
) -> T:
    """Validate a mapping of kebab-case keys as config ``cls``; errors as :class:`ConfigError`.

    ``context`` reaches the model validators (``info.context``), e.g. the preset
    a client profile is checked against.
    """
    try:
        checker = adapter(typing.cast(Any, cls))
        return typing.cast(T, checker.validate_python(data, context=context))
    except _ValidationError as e:
        raise config_error(e, data, cls, source=source) from None


@dataclass_transform(
    kw_only_default=True,
    frozen_default=True,
    field_specifiers=(dataclasses.field, Field),
)
def config_model(
    prefix: str = "",
    *,
    sections: Iterable[str] | None = None,
    kw_only: bool = True,
) -> Callable[[type[T]], type[T]]:
    """Class decorator: a frozen pydantic dataclass with fednet's key rules.

    Parameters
    ----------
    prefix : str
        The section its keys belong to (``"privacy"`` gives ``privacy.delta``).
    sections : iterable of str, optional
        Fields that are sections of their own, named without ``prefix``
        (default: the fields whose type is another config).
    kw_only : bool
        Fields are keyword-only in Python.
    """

    def wrap(cls: type[T]) -> type[T]:
        model = pydantic.dataclasses.dataclass(frozen=True, config=CONFIG, kw_only=kw_only)(cls)
        if sections is None:
            found = {
                name
                for name, hint in _field_types(model).items()
                if hasattr(_unwrap(hint), "__config_prefix__")
            }
        else:
            found = set(sections)
        model.__config_prefix__ = prefix  # type: ignore[attr-defined]
        model.__config_sections__ = frozenset(found)  # type: ignore[attr-defined]
        init = model.__init__

        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:  # noqa: N807
            try:
                init(self, *args, **kwargs)
            except _ValidationError as e:
                raise config_error(e, kwargs, type(self)) from None

        __init__.__doc__ = init.__doc__
        model.__init__ = __init__  # type: ignore[method-assign]
        return typing.cast(type[T], model)

    return wrap
