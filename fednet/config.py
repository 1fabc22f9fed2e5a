"""Typed, frozen configuration for a fednet federation.

A federation is described by a TOML preset (``configs/*.toml``). :func:`load_preset`
turns a preset into a :class:`FederationConfig`; :func:`from_run_config` does the
same for a Flower run config, whose flat kebab-case keys name the preset and a few
overrides. Unknown keys and wrong types are rejected with the key's dotted name.

This module depends on the standard library only.
"""

from __future__ import annotations

import codecs
import dataclasses
import math
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fednet.errors import ConfigError
from fednet.names import check_name, is_safe_name, name_from_path
from fednet.privacy.config import PrivacyConfig

__all__ = [
    "ClientConfig",
    "DATA_FILE_SUFFIXES",
    "default_task",
    "FederationConfig",
    "HubConfig",
    "LABEL_SPACES",
    "UNION_TASK",
    "LoraDefaults",
    "StrategyConfig",
    "load_preset",
    "from_run_config",
    "parse_preset",
    "PROJECT_ROOT",
]

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _check(cond: bool, key: str, expected: str, value: Any) -> None:
    if not cond:
        raise ValueError(f"`{key}` must be {expected}, got {value!r}")


LORA_GROUPINGS = ("base-model", "task")
"""Values of ``strategy.lora-grouping`` (see :mod:`fednet.strategies.state`)."""

RANK_AGGREGATIONS = ("rank-wise", "zero-pad", "fedit", "svd", "frozen-a")
"""Values of ``strategy.rank-aggregation`` (see :mod:`fednet.lora.aggregate`)."""

ROBUST_RULES = ("none", "norm-bound", "trimmed-mean", "median", "multi-krum")
"""Values of ``strategy.robust`` (see :mod:`fednet.strategies.robust`)."""

WIRE_DTYPES = ("float32", "float16")

CLIENT_ATTACKS = ("", "label-flip", "backdoor")
"""``clients.attack`` values: none, or a data-poisoning attack (:mod:`fednet.data.poison`).
A benchmark and test setting only: refused in deployment and with a hub."""
"""Values of ``federation.wire-dtype`` (see :mod:`fednet.federation.protocol`)."""

DATA_FILE_SUFFIXES: tuple[str, ...] = (".csv", ".tsv", ".json", ".jsonl", ".parquet")
"""Suffixes of the local data files a client's ``dataset`` may name."""


def is_data_file(dataset: str) -> bool:
    """Whether ``dataset`` names a local file (a data-file suffix or a directory part)."""
    return (
        Path(dataset).suffix.lower() in DATA_FILE_SUFFIXES
        or "/" in dataset
        or "\\" in dataset
        or dataset.startswith("~")
    )


def default_task(dataset: str) -> str:
    """The task of a client that sets none: a catalogue name, or a file's stem.

    ``/home/me/reviews.csv`` gives ``reviews``; a name is always a safe name
    (:func:`fednet.names.check_name`), never a path.
    """
    if is_data_file(dataset) or not is_safe_name(dataset):
        return name_from_path(dataset, key="task")
    return dataset


def _name(key: str, value: str) -> None:
    try:
        check_name(key, value)
    except TypeError as e:
        raise ValueError(str(e)) from None


@dataclass(frozen=True)
class LoraDefaults:
    """LoRA settings shared by every client unless a client overrides them.

    Parameters
    ----------
    alpha_ratio : float
        ``lora_alpha = alpha_ratio * rank``. A fixed ratio keeps the LoRA scaling
        ``alpha / r`` equal across clients of different ranks, so their factors
        live on one scale and can be averaged.
    dropout : float
        LoRA dropout in [0, 1).
    target_modules : tuple[str, ...]
        Names of the linear layers that get LoRA (peft ``target_modules``).
    """

    alpha_ratio: float = 2.0
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("query", "value")

    def __post_init__(self) -> None:
        _check(self.alpha_ratio > 0, "lora.alpha-ratio", "> 0", self.alpha_ratio)
        _check(0.0 <= self.dropout < 1.0, "lora.dropout", "in [0, 1)", self.dropout)
        _check(len(self.target_modules) > 0, "lora.target-modules", "non-empty", [])


@dataclass(frozen=True)
class StrategyConfig:
    """Server-side aggregation settings.

    Parameters
    ----------
    name : str
        Registered strategy name (see ``fednet.strategies.available_strategies``).
    rank_aggregation : str
        How a group's LoRA factors are combined (see :mod:`fednet.lora.aggregate`).
        FedIT's separate averaging of A and B, which is inexact: ``"rank-wise"``
        (default) averages each rank slice over the clients that have it;
        ``"fedit"`` (alias ``"zero-pad"``) pads every update to the largest rank with
        zeros and averages all of them. Exact: ``"svd"`` (FlexLoRA) averages the
        products ``B A`` and factors them back by truncated SVD; ``"frozen-a"``
        (FFA-LoRA) keeps A at its seeded initialisation and trains and sends B only.
    robust : str
        Robust aggregation wrapper: ``"none"`` (default), ``"norm-bound"``,
        ``"trimmed-mean"``, ``"median"`` or ``"multi-krum"`` (see
        :mod:`fednet.strategies.robust`).
    norm_bound_multiple : float
        ``norm-bound`` scales every update longer than this multiple of the round's
        median update norm (per LoRA group) back to it; >= 1.
    trim_fraction : float
        ``trimmed-mean`` drops this fraction of the values at each end of every
        coordinate, in [0, 0.5).
    krum_byzantine : int
        ``multi-krum``: ``f``, the number of malicious clients per LoRA group to
        tolerate; >= 0.
    krum_select : int
        ``multi-krum``: how many updates of a group to average; 0 means ``n - f``.
    fraction_train : float
        Fraction of connected clients sampled each round, in (0, 1].
    min_clients : int
        A round updates the global state only if at least this many clients reply
        within ``round_timeout`` (0 means one).
    round_timeout : float
        Seconds to wait for replies in one round.
    lora_grouping : str
        Which clients average their LoRA factors together: ``"base-model"``
        (every client of a base model) or ``"task"`` (every client of a base
        model and task). Heads are always averaged per task.
    """

    name: str = "fedlora"
    rank_aggregation: str = "rank-wise"
    lora_grouping: str = "base-model"
    fraction_train: float = 1.0
    min_clients: int = 0
    round_timeout: float = 3600.0
    robust: str = "none"
    norm_bound_multiple: float = 3.0
    trim_fraction: float = 0.2
    krum_byzantine: int = 1
    krum_select: int = 0

    def __post_init__(self) -> None:
        _check(
            self.rank_aggregation in RANK_AGGREGATIONS,
            "strategy.rank-aggregation",
            "one of " + ", ".join(repr(m) for m in RANK_AGGREGATIONS),
            self.rank_aggregation,
        )
        _check(
            self.robust in ROBUST_RULES,
            "strategy.robust",
            "one of " + ", ".join(repr(m) for m in ROBUST_RULES),
            self.robust,
        )
        _check(
            math.isfinite(self.norm_bound_multiple) and self.norm_bound_multiple >= 1.0,
            "strategy.norm-bound-multiple",
            ">= 1",
            self.norm_bound_multiple,
        )
        _check(
            0.0 <= self.trim_fraction < 0.5,
            "strategy.trim-fraction",
            "in [0, 0.5)",
            self.trim_fraction,
        )
        _check(self.krum_byzantine >= 0, "strategy.krum-byzantine", ">= 0", self.krum_byzantine)
        _check(self.krum_select >= 0, "strategy.krum-select", ">= 0", self.krum_select)
        _check(
            0.0 < self.fraction_train <= 1.0,
            "strategy.fraction-train",
            "in (0, 1]",
            self.fraction_train,
        )
        _check(self.min_clients >= 0, "strategy.min-clients", ">= 0", self.min_clients)
        _check(self.round_timeout > 0, "strategy.round-timeout", "> 0", self.round_timeout)
        _check(
            self.lora_grouping in LORA_GROUPINGS,
            "strategy.lora-grouping",
            " or ".join(repr(g) for g in LORA_GROUPINGS),
            self.lora_grouping,
        )


@dataclass(frozen=True)
class HubConfig:
    """Where a run publishes its adapters. An empty ``location`` publishes nothing.

    ``location`` is a hub directory or an ``http(s)://`` URL; ``token`` is the
    hub's write token (or set ``FEDNET_HUB_TOKEN``); ``keys-dir`` holds the
    clients' Ed25519 signing keys (default: ``keys/`` beside the run directory).
    """

    location: str = ""
    token: str = ""
    keys_dir: str = ""
    max_query_chars: int = 2000

    def __post_init__(self) -> None:
        _check(self.max_query_chars >= 1, "hub.max-query-chars", ">= 1", self.max_query_chars)


@dataclass(frozen=True)
class ClientConfig:
    """One silo of the federation: its private data, model size and budget.

    Parameters
    ----------
    id : str
        Client id, unique in the federation; a safe name (:mod:`fednet.names`).
    dataset : str
        A catalogue name (``bbc-news``, ``sms-spam``, ``tweets-sentiment``) or a path
        to a CSV, TSV, JSON, JSON-lines or Parquet file. A relative path that
        exists is resolved against the working directory.
    task : str
        Task key; clients with the same task share a classification head. A
        safe name (:mod:`fednet.names`); defaults to the catalogue name, or to
        the stem of a data file (:func:`default_task`).
    encoding : str
        Text encoding of a CSV, TSV or JSON file (a Python codec name such as
        ``"cp1252"``); empty: UTF-8, or what the file's byte-order mark says.
    partition, num_partitions, partitioner, dirichlet_alpha
        Which share of ``dataset`` this client holds.
    lora_rank : int
        LoRA rank ``r`` of this client.
    local_steps, batch_size, learning_rate
        Local optimisation budget per round.
    base_model : str
        Registered base model; defaults to the federation's.
    attack : str
        Benchmark and test setting only: ``"label-flip"`` or ``"backdoor"`` makes
        this a malicious client that trains on poisoned data
        (:mod:`fednet.data.poison`). It is logged as a warning, listed in
        ``summary.json`` (``attacks``), refused in deployment
        (:func:`from_run_config`) and refused with ``hub.location``.
    """

    id: str
    dataset: str
    task: str = ""
    text_column: str = "text"
    label_column: str = "label"
    encoding: str = ""
    partition: int = 0
    num_partitions: int = 1
    partitioner: str = "iid"
    dirichlet_alpha: float = 0.5
    lora_rank: int = 8
    local_steps: int = 20
    batch_size: int = 16
    learning_rate: float = 5e-4
    base_model: str = ""
    attack: str = ""

    def __post_init__(self) -> None:
        _name("id", self.id)
        _check(
            self.attack in CLIENT_ATTACKS,
            "attack",
            " or ".join(repr(a) for a in CLIENT_ATTACKS[1:]) + " (benchmarks only), or unset",
            self.attack,
        )
        _check(bool(self.dataset), "dataset", "a non-empty string", self.dataset)
        if self.base_model:
            _name("base-model", self.base_model)
        if self.encoding:
            try:
                codecs.lookup(self.encoding)
            except LookupError:
                raise ValueError(
                    f"`encoding` must be a text encoding such as 'utf-8' or 'cp1252', "
                    f"got {self.encoding!r}"
                ) from None
        _check(self.lora_rank >= 1, "lora-rank", ">= 1", self.lora_rank)
        _check(self.local_steps >= 1, "local-steps", ">= 1", self.local_steps)
        _check(self.batch_size >= 1, "batch-size", ">= 1", self.batch_size)
        _check(
            math.isfinite(self.learning_rate) and self.learning_rate > 0,
            "learning-rate",
            "> 0",
            self.learning_rate,
        )
        _check(self.num_partitions >= 1, "num-partitions", ">= 1", self.num_partitions)
        _check(
            0 <= self.partition < self.num_partitions,
            "partition",
            f"in [0, {self.num_partitions})",
            self.partition,
        )
        _check(
            self.partitioner in ("iid", "dirichlet"),
            "partitioner",
            "'iid' or 'dirichlet'",
            self.partitioner,
        )
        _check(self.dirichlet_alpha > 0, "dirichlet-alpha", "> 0", self.dirichlet_alpha)
        if is_data_file(self.dataset):
            path = Path(self.dataset).expanduser()
            if not path.is_absolute() and path.exists():
                # Simulation workers and later processes may run elsewhere.
                object.__setattr__(self, "dataset", str(path.resolve()))
        if not self.task:
            object.__setattr__(self, "task", default_task(self.dataset))
        _name("task", self.task)


UNION_TASK = "union"
"""Task key shared by every client when ``federation.label-space = "union"``."""

LABEL_SPACES = ("task", "union")


def default_state_dir() -> str:
    """``$FEDNET_STATE_DIR`` if set, else ``~/.fednet/state``."""
    import os

    return os.environ.get("FEDNET_STATE_DIR") or "~/.fednet/state"


@dataclass(frozen=True)
class FederationConfig:
    """The whole federation: global settings plus one entry per client.

    ``label_space`` (``federation.label-space``) chooses the clients' heads:
    ``"task"`` (default) gives each task its own head over its data set's labels;
    ``"union"`` maps every data set's labels into one union label space
    (``<data set>:<label>``), and every client trains the one shared head of
    task :data:`UNION_TASK`: a single generalist model for the whole federation.

    ``wire_dtype`` (``federation.wire-dtype``) is the dtype of the LoRA factors
    and heads in every message, both ways: ``"float32"`` (default) or
    ``"float16"``, which halves the bytes. Training and aggregation stay float32.

    ``state_dir`` (``federation.state-dir``) is where each simulated client keeps
    what outlives a run: its privacy ledger (``<state-dir>/<client-id>/``). It
    is never inside the run directory, so a new run on the same data continues
    the same privacy budget. A deployed client uses its node's ``state-dir``.
    The default is ``$FEDNET_STATE_DIR``, else ``~/.fednet/state``.
    """

    clients: tuple[ClientConfig, ...]
    name: str = "fednet"
    base_model: str = "minilm-l6"
    rounds: int = 3
    seed: int = 42
    max_length: int = 64
    test_fraction: float = 0.2
    eval_examples: int = 256
    personalize_steps: int = 0
    label_space: str = "task"
    wire_dtype: str = "float32"
    state_dir: str = field(default_factory=lambda: default_state_dir())
    lora: LoraDefaults = field(default_factory=LoraDefaults)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    hub: HubConfig = field(default_factory=HubConfig)
    source: str = ""

    def __post_init__(self) -> None:
        _check(len(self.clients) >= 1, "clients", "at least one client", len(self.clients))
        _name("federation.base-model", self.base_model)
        _check(self.rounds >= 1, "federation.rounds", ">= 1", self.rounds)
        _check(self.max_length >= 8, "federation.max-length", ">= 8", self.max_length)
        _check(
            0.0 < self.test_fraction < 1.0,
            "federation.test-fraction",
            "in (0, 1)",
            self.test_fraction,
        )
        _check(self.eval_examples >= 1, "federation.eval-examples", ">= 1", self.eval_examples)
        _check(
            self.personalize_steps >= 0,
            "federation.personalize-steps",
            ">= 0",
            self.personalize_steps,
        )
        _check(
            self.label_space in LABEL_SPACES,
            "federation.label-space",
            "'task' or 'union'",
            self.label_space,
        )
        _check(
            self.wire_dtype in WIRE_DTYPES,
            "federation.wire-dtype",
            " or ".join(repr(d) for d in WIRE_DTYPES),
            self.wire_dtype,
        )
        _check(
            isinstance(self.state_dir, str) and bool(self.state_dir.strip()),
            "federation.state-dir",
            "a non-empty path",
            self.state_dir,
        )
        attackers = [c.id for c in self.clients if c.attack]
        if attackers and self.hub.location:
            raise ConfigError(
                f"`clients[{attackers[0]}].attack` is a benchmark setting: a federation "
                "with an attack client must not publish, so `hub.location` must be unset"
            )
        ids = [c.id for c in self.clients]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        _check(not dupes, "clients.id", "unique", dupes)
        resolved = tuple(
            c if c.base_model else dataclasses.replace(c, base_model=self.base_model)
            for c in self.clients
        )
        if self.label_space == "union":
            custom = [c for c in resolved if c.task not in (default_task(c.dataset), UNION_TASK)]
            if custom:
                raise ValueError(
                    f"`clients[{custom[0].id}].task` must be unset with "
                    f"`federation.label-space` 'union', got {custom[0].task!r}"
                )
            resolved = tuple(dataclasses.replace(c, task=UNION_TASK) for c in resolved)
        object.__setattr__(self, "clients", resolved)

    def client(self, client_id: str) -> ClientConfig:
        """Return the client named ``client_id``; the error lists the valid ids."""
        for c in self.clients:
            if c.id == client_id:
                return c
        valid = ", ".join(c.id for c in self.clients)
        raise ConfigError(f"unknown client id {client_id!r}; the preset has: {valid}")

    def lora_alpha(self, rank: int) -> float:
        """``lora_alpha`` for a client of LoRA rank ``rank``."""
        return self.lora.alpha_ratio * rank

    @property
    def max_rank(self) -> int:
        """Largest client rank; the shared adapter is kept at this rank."""
        return max(c.lora_rank for c in self.clients)

    def with_overrides(self, **changes: Any) -> FederationConfig:
        """A copy with top-level fields replaced (e.g. ``rounds``)."""
        return dataclasses.replace(self, **changes)


# --------------------------------------------------------------------------- TOML


def _kebab(name: str) -> str:
    return name.replace("_", "-")


def _type_ok(value: Any, hint: Any) -> tuple[bool, Any]:
    """Check ``value`` against a field's type hint; return (ok, coerced value)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for arm in typing.get_args(hint):
            if arm is type(None):
                if value is None:
                    return True, None
                continue
            ok, coerced = _type_ok(value, arm)
            if ok:
                return True, coerced
        return False, value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            return False, value
        inner = typing.get_args(hint)[0]
        out = []
        for v in value:
            ok, c = _type_ok(v, inner)
            if not ok:
                return False, value
            out.append(c)
        return True, tuple(out)
    if hint is bool:
        return isinstance(value, bool), value
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if hint is float:
        if isinstance(value, bool):
            return False, value
        if isinstance(value, int | float):
            return True, float(value)
        if isinstance(value, str) and value.lower() in ("inf", "+inf", "infinity"):
            return True, math.inf
        return False, value
    if hint is str:
        return isinstance(value, str), value
    return True, value


def _type_name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(hint))
    if origin is tuple:
        return f"list of {_type_name(typing.get_args(hint)[0])}"
    return getattr(hint, "__name__", str(hint))


def _build(
    cls: type,
    table: Mapping[str, Any],
    where: str,
    skip: tuple[str, ...] = (),
    extra: Mapping[str, Any] | None = None,
) -> Any:
    """Build dataclass ``cls`` from a kebab-case TOML table, naming bad keys."""
    if not isinstance(table, Mapping):
        raise ConfigError(f"`{where}` must be a table, got {type(table).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {_kebab(f.name): f for f in dataclasses.fields(cls) if f.name not in skip}
    kwargs: dict[str, Any] = dict(extra or {})
    for key, value in table.items():
        dotted = f"{where}.{key}" if where else key
        if key not in fields:
            valid = ", ".join(sorted(fields))
            raise ConfigError(f"unknown key `{dotted}`; valid keys: {valid}")
        f = fields[key]
        ok, coerced = _type_ok(value, hints[f.name])
        if not ok:
            raise ConfigError(
                f"`{dotted}` must be {_type_name(hints[f.name])}, "
                f"got {type(value).__name__} {value!r}"
            )
        kwargs[f.name] = coerced
    try:
        return cls(**kwargs)
    except TypeError as e:  # a required field is missing
        missing = [
            _kebab(f.name)
            for f in dataclasses.fields(cls)
            if f.name not in kwargs
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
            and f.name not in skip
        ]
        raise ConfigError(f"`{where}` is missing required key(s): {', '.join(missing)}") from e
    except ValueError as e:
        msg = str(e)
        if where and not msg.startswith(f"`{where.split('.')[0]}"):
            msg = f"{where}: {msg}"
        raise ConfigError(msg) from e


_SECTIONS = ("federation", "lora", "strategy", "privacy", "hub", "client-defaults", "clients")


def parse_preset(data: Mapping[str, Any], *, source: str = "<preset>") -> FederationConfig:
    """Turn a parsed TOML mapping into a :class:`FederationConfig`."""
    for key in data:
        if key not in _SECTIONS:
            raise ConfigError(
                f"unknown section `{key}` in {source}; valid sections: {', '.join(_SECTIONS)}"
            )
    clients_raw = data.get("clients", [])
    if not isinstance(clients_raw, list) or not clients_raw:
        raise ConfigError(f"`clients` in {source} must be a non-empty array of tables")
    defaults = data.get("client-defaults", {})
    _build(ClientConfig, {"id": "x", "dataset": "x", **defaults}, "client-defaults")
    clients = []
    for i, raw in enumerate(clients_raw):
        label = raw.get("id", i) if isinstance(raw, Mapping) else i
        clients.append(_build(ClientConfig, {**defaults, **raw}, f"clients[{label}]"))
    extra = {
        "clients": tuple(clients),
        "lora": _build(LoraDefaults, data.get("lora", {}), "lora"),
        "strategy": _build(StrategyConfig, data.get("strategy", {}), "strategy"),
        "privacy": _build(PrivacyConfig, data.get("privacy", {}), "privacy"),
        "hub": _build(HubConfig, data.get("hub", {}), "hub"),
        "source": source,
    }
    return _build(
        FederationConfig, data.get("federation", {}), "federation", skip=tuple(extra), extra=extra
    )


def resolve_path(path: str | Path) -> Path:
    """Resolve a preset path against the working directory, then the project root."""
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists():
        return p.resolve()
    candidate = PROJECT_ROOT / p
    return candidate if candidate.exists() else p


def load_preset(path: str | Path) -> FederationConfig:
    """Load and validate a TOML preset."""
    p = resolve_path(path)
    if not p.is_file():
        raise ConfigError(f"preset file not found: {str(path)!r}")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from e
    return parse_preset(data, source=str(p))


def from_run_config(run_config: Mapping[str, Any]) -> FederationConfig:
    """Build the federation from a Flower run config.

    Recognised keys: ``preset`` (path of a TOML preset) and ``num-server-rounds``
    (overrides ``federation.rounds`` when > 0). ``run-dir`` is read by the ServerApp.
    """
    known = {"preset", "num-server-rounds", "run-dir"}
    unknown = sorted(set(run_config) - known)
    if unknown:
        raise ConfigError(
            f"unknown run-config key(s): {', '.join(unknown)}; valid: {sorted(known)}"
        )
    preset = run_config.get("preset", "configs/default.toml")
    if not isinstance(preset, str):
        raise ConfigError(f"run-config `preset` must be a string path, got {preset!r}")
    cfg = load_preset(preset)
    attackers = [c.id for c in cfg.clients if c.attack]
    if attackers:
        raise ConfigError(
            f"`clients[{attackers[0]}].attack` is a benchmark setting for simulation; "
            f"it is refused in deployment ({preset})"
        )
    rounds = run_config.get("num-server-rounds", 0)
    if not isinstance(rounds, int) or isinstance(rounds, bool) or rounds < 0:
        raise ConfigError(f"run-config `num-server-rounds` must be an int >= 0, got {rounds!r}")
    return cfg.with_overrides(rounds=rounds) if rounds else cfg
