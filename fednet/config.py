"""Typed, frozen configuration for a fednet federation.

A federation is described by a TOML preset (``configs/*.toml``). :func:`load_preset`
turns a preset into a :class:`FederationConfig`; :func:`from_run_config` does the
same for a Flower run config, whose flat kebab-case keys name the preset and a few
overrides. The configs are pydantic dataclasses (:mod:`fednet.config_base`):
unknown keys and wrong types are refused, and every problem of a preset is
reported at once, one line each, naming its dotted key. :data:`PresetFile` is the
layout of a preset file; ``fednet config schema`` writes its JSON Schema.
"""

from __future__ import annotations

import codecs
import dataclasses
import os
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import field
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
from pydantic import Field, field_validator, model_validator

from fednet.config_base import (
    Bool,
    Finite,
    Float,
    Int,
    SafeName,
    Str,
    adapter,
    bound,
    config_error,
    config_model,
    expected,
    non_empty,
    problems,
    validate,
)
from fednet.errors import ConfigError
from fednet.names import is_safe_name, name_from_path
from fednet.privacy.config import PrivacyConfig

__all__ = [
    "ClientConfig",
    "ClientDefaults",
    "DATA_FILE_SUFFIXES",
    "default_task",
    "FederationConfig",
    "FederationSettings",
    "HubConfig",
    "LABEL_SPACES",
    "UNION_TASK",
    "LoraDefaults",
    "PresetFile",
    "RunConfig",
    "StrategyConfig",
    "load_preset",
    "from_run_config",
    "parse_preset",
    "preset_schema",
    "PROJECT_ROOT",
]

PROJECT_ROOT = Path(__file__).resolve().parents[1]

LoraGrouping = Literal["base-model", "task"]
RankAggregation = Literal["rank-wise", "zero-pad", "fedit", "svd", "frozen-a"]
RobustRule = Literal["none", "norm-bound", "trimmed-mean", "median", "multi-krum"]
WireDtype = Literal["float32", "float16"]
LabelSpace = Literal["task", "union"]

LORA_GROUPINGS: tuple[str, ...] = typing.get_args(LoraGrouping)
"""Values of ``strategy.lora-grouping`` (see :mod:`fednet.strategies.state`)."""

RANK_AGGREGATIONS: tuple[str, ...] = typing.get_args(RankAggregation)
"""Values of ``strategy.rank-aggregation`` (see :mod:`fednet.lora.aggregate`)."""

ROBUST_RULES: tuple[str, ...] = typing.get_args(RobustRule)
"""Values of ``strategy.robust`` (see :mod:`fednet.strategies.robust`)."""

WIRE_DTYPES: tuple[str, ...] = typing.get_args(WireDtype)
"""Values of ``federation.wire-dtype`` (see :mod:`fednet.protocol`)."""

ClientAttack = Literal["", "label-flip", "backdoor"]

CLIENT_ATTACKS: tuple[str, ...] = typing.get_args(ClientAttack)
"""``clients.attack`` values: none, or a data-poisoning attack (:mod:`fednet.data.poison`).
A benchmark and test setting only: refused in deployment and with a hub."""

LABEL_SPACES: tuple[str, ...] = typing.get_args(LabelSpace)

UNION_TASK = "union"
"""Task key shared by every client when ``federation.label-space = "union"``."""

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


def default_state_dir() -> str:
    """``$FEDNET_STATE_DIR`` if set, else ``~/.fednet/state``."""
    return os.environ.get("FEDNET_STATE_DIR") or "~/.fednet/state"


@config_model("lora")
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
        Names of the linear layers that get LoRA (peft ``target_modules``). Empty
        (the default): each base model's own attention projections, from the model
        registry, so clients on different base models can share one preset.
    """

    alpha_ratio: Annotated[Finite, *bound("> 0")] = 2.0
    dropout: Annotated[Finite, *bound("in [0, 1)")] = 0.05
    target_modules: tuple[Str, ...] = ()


@config_model("strategy")
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
    prototypes : bool
        Clients of a task share DP class prototypes in the network space and
        add FedProto's alignment term to their local loss
        (:mod:`fednet.representation.prototypes`).
    prototype_weight : float
        Weight ``lambda`` of the alignment term, >= 0.
    """

    name: SafeName = "fedlora"
    rank_aggregation: RankAggregation = "rank-wise"
    lora_grouping: LoraGrouping = "base-model"
    fraction_train: Annotated[Finite, *bound("in (0, 1]")] = 1.0
    min_clients: Annotated[Int, *bound(">= 0")] = 0
    round_timeout: Annotated[Float, *bound("> 0")] = 3600.0
    robust: RobustRule = "none"
    norm_bound_multiple: Annotated[Finite, *bound(">= 1")] = 3.0
    trim_fraction: Annotated[Finite, *bound("in [0, 0.5)")] = 0.2
    krum_byzantine: Annotated[Int, *bound(">= 0")] = 1
    krum_select: Annotated[Int, *bound(">= 0")] = 0
    prototypes: Bool = False
    prototype_weight: Annotated[Finite, *bound(">= 0")] = 1.0


@config_model("hub")
class HubConfig:
    """Where a run publishes its adapters. An empty ``location`` publishes nothing.

    Parameters
    ----------
    location : str
        A hub directory or an ``http(s)://`` URL; empty: publish nothing.
    token : str
        The hub's write token (or set ``FEDNET_HUB_TOKEN``).
    keys_dir : str
        Holds the clients' Ed25519 signing keys (default: ``keys/`` beside the
        run directory).
    max_query_chars : int
        Longest query the network accepts.
    """

    location: Str = ""
    token: Str = ""
    keys_dir: Str = ""
    max_query_chars: Annotated[Int, *bound(">= 1")] = 2000


@config_model("client-defaults")
class ClientDefaults:
    """The ``[client-defaults]`` table: every client key but ``id``, each optional.

    A client's own keys override these.

    Parameters
    ----------
    dataset : str
        A catalogue name (``bbc-news``, ``sms-spam``, ``tweets-sentiment``) or a path
        to a CSV, TSV, JSON, JSON-lines or Parquet file. A relative path that
        exists is resolved against the working directory.
    task : str
        Task key; clients with the same task share a classification head. A
        safe name (:mod:`fednet.names`); defaults to the catalogue name, or to
        the stem of a data file (:func:`default_task`).
    text_column, label_column : str
        Columns of the text and the label in a data file.
    encoding : str
        Text encoding of a CSV, TSV or JSON file (a Python codec name such as
        ``"cp1252"``); empty: UTF-8, or what the file's byte-order mark says.
    partition, num_partitions : int
        This client holds share ``partition`` of ``num_partitions`` of ``dataset``.
    partitioner : str
        How the shares are drawn: ``"iid"`` or ``"dirichlet"`` (label skew).
    dirichlet_alpha : float
        Concentration of the Dirichlet label skew; smaller is more skewed.
    lora_rank : int
        LoRA rank ``r`` of this client.
    local_steps, batch_size, learning_rate
        Local optimisation budget per round.
    class_weighting : str
        ``"none"``: plain cross-entropy. ``"balanced"``: each label's loss is
        weighted by ``n / (K * n_label)`` over this client's own training labels
        (scikit-learn's ``compute_class_weight("balanced")``; King & Zeng 2001),
        so a rare label such as spam counts as much as a common one. A label
        the client lacks gets weight 0. Refused with ``privacy.dpsgd``: the
        weights depend on every example's label, which DP-SGD's per-example
        sensitivity does not cover.
    base_model : str
        Registered base model; defaults to the federation's.
    label_names : list of str
        The label set of a data file, in id order; every row's label must be
        one of them (integer labels index it). Empty: the sorted distinct
        labels the file holds. Required with ``privacy.enabled``: the label set
        leaves the client (profile, sketch, head shape), and read from the data
        it would show that a label occurs, one record at a time.
    """

    dataset: Str = ""
    task: Str = ""
    text_column: Str = "text"
    label_column: Str = "label"
    encoding: Str = ""
    partition: Annotated[Int, *bound(">= 0")] = 0
    num_partitions: Annotated[Int, *bound(">= 1")] = 1
    partitioner: Literal["iid", "dirichlet"] = "iid"
    dirichlet_alpha: Annotated[Finite, *bound("> 0")] = 0.5
    lora_rank: Annotated[Int, *bound(">= 1")] = 8
    local_steps: Annotated[Int, *bound(">= 1")] = 20
    batch_size: Annotated[Int, *bound(">= 1")] = 16
    learning_rate: Annotated[Finite, *bound("> 0")] = 5e-4
    class_weighting: Literal["none", "balanced"] = "none"
    base_model: Str = ""
    label_names: tuple[Str, ...] = ()

    @field_validator("label_names")
    @classmethod
    def _label_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not n.strip() for n in value):
            raise expected("non-blank label names")
        if len(set(value)) != len(value):
            raise expected("unique label names")
        return tuple(value)

    @field_validator("base_model")
    @classmethod
    def _base_model(cls, value: str) -> str:
        if value and not is_safe_name(value):
            raise expected("a safe name (letters, digits, '.', '_' or '-'; no '..') or empty")
        return value

    @field_validator("encoding")
    @classmethod
    def _encoding(cls, value: str) -> str:
        if value:
            try:
                codecs.lookup(value)
            except LookupError:
                raise expected("a text encoding such as 'utf-8' or 'cp1252'") from None
        return value


@config_model("")
class ClientConfig(ClientDefaults):
    """One silo of the federation: its private data, model size and budget.

    Every key of :class:`ClientDefaults`, plus ``id``; ``dataset`` is required.

    Parameters
    ----------
    id : str
        Client id, unique in the federation; a safe name (:mod:`fednet.names`).
    dataset : str
        A catalogue name or a path to a data file (see :class:`ClientDefaults`).
    attack : str
        Benchmark and test setting only: ``"label-flip"`` or ``"backdoor"`` makes
        this a malicious client that trains on poisoned data
        (:mod:`fednet.data.poison`). It is logged as a warning, listed in
        ``summary.json`` (``attacks``), refused in deployment
        (:func:`from_run_config`) and refused with ``hub.location``.
    """

    id: SafeName
    dataset: Annotated[Str, Field(min_length=1)] = field()
    attack: ClientAttack = ""

    @model_validator(mode="after")
    def _client(self) -> ClientConfig:
        found: list[tuple[tuple[str, ...], str]] = []
        if self.partition >= self.num_partitions:
            found.append(
                (("partition",), f"must be in [0, {self.num_partitions}), got {self.partition!r}")
            )
        if is_data_file(self.dataset):
            path = Path(self.dataset).expanduser()
            if not path.is_absolute() and path.exists():
                # Simulation workers and later processes may run elsewhere.
                object.__setattr__(self, "dataset", str(path.resolve()))
        if not self.task:
            try:
                object.__setattr__(self, "task", default_task(self.dataset))
            except ValueError as e:
                found.append(((), str(e)))
        elif not is_safe_name(self.task):
            found.append((("task",), f"must be a safe name, got {self.task!r}"))
        error = problems(found)
        if error is not None:
            raise error
        return self


@config_model("federation")
class FederationSettings:
    """The ``[federation]`` table: settings of the whole federation.

    Parameters
    ----------
    name : str
        Name of the federation, kept in run records and checkpoints.
    base_model : str
        Registered base model of every client that names none.
    rounds : int
        Federated rounds.
    seed : int
        Seed of splits, sampling and initialisation.
    max_length : int
        Tokens per text fed to the encoder.
    test_fraction : float
        Share of each client's data held out for evaluation, in (0, 1).
    eval_examples : int
        Held-out examples each client evaluates on per round.
    personalize_steps : int
        Local steps after the last round (0: none).
    label_space : str
        ``"task"`` (a head per task) or ``"union"`` (one head over every data set).
    wire_dtype : str
        ``"float32"`` or ``"float16"`` LoRA factors and heads in messages.
    state_dir : str
        Where simulated clients keep their privacy ledgers across runs.

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

    name: Str = "fednet"
    base_model: SafeName = "minilm-l6"
    rounds: Annotated[Int, *bound(">= 1")] = 3
    seed: Int = 42
    max_length: Annotated[Int, *bound(">= 8")] = 64
    test_fraction: Annotated[Finite, *bound("in (0, 1)")] = 0.2
    eval_examples: Annotated[Int, *bound(">= 1")] = 256
    personalize_steps: Annotated[Int, *bound(">= 0")] = 0
    label_space: LabelSpace = "task"
    wire_dtype: WireDtype = "float32"
    state_dir: Str = field(default_factory=default_state_dir)

    @field_validator("state_dir")
    @classmethod
    def _state_dir(cls, value: str) -> str:
        if not value.strip():
            raise expected("a non-empty path")
        return value


@config_model("federation")
class FederationConfig(FederationSettings):
    """The whole federation: the ``[federation]`` settings plus one entry per client.

    See :class:`FederationSettings` for the federation-wide fields. A client
    without a ``base_model`` gets the federation's; under ``label_space
    "union"`` every client's task is :data:`UNION_TASK`.
    """

    clients: Annotated[tuple[ClientConfig, ...], *non_empty("at least one [[clients]] table")]
    lora: LoraDefaults = field(default_factory=LoraDefaults)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    hub: HubConfig = field(default_factory=HubConfig)
    source: Str = ""

    @model_validator(mode="after")
    def _federation(self) -> FederationConfig:
        found: list[tuple[tuple[str | int, ...], str]] = []
        seen: set[str] = set()
        for i, c in enumerate(self.clients):
            if c.id in seen:
                found.append((("clients", i, "id"), f"must be unique, got {c.id!r} twice"))
            seen.add(c.id)
        attackers = [i for i, c in enumerate(self.clients) if c.attack]
        if attackers and self.hub.location:
            found.append(
                (
                    ("clients", attackers[0], "attack"),
                    "is a benchmark setting: a federation with an attack client must not "
                    "publish, so `hub.location` must be unset",
                )
            )
        if self.privacy.enabled:
            for i, c in enumerate(self.clients):
                if is_data_file(c.dataset) and not c.label_names:
                    found.append(
                        (
                            ("clients", i, "label-names"),
                            "must list the data file's labels with `privacy.enabled`: the "
                            "label set leaves the client, and read from the file it would "
                            "show which labels occur in it",
                        )
                    )
        if self.privacy.enabled and self.privacy.dpsgd:
            for i, c in enumerate(self.clients):
                if c.class_weighting != "none":
                    found.append(
                        (
                            ("clients", i, "class-weighting"),
                            f"must be 'none' with `privacy.dpsgd` on, got {c.class_weighting!r}: "
                            "balanced weights depend on every example's label, which "
                            "DP-SGD's per-example clipping does not bound",
                        )
                    )
        resolved = tuple(
            c if c.base_model else dataclasses.replace(c, base_model=self.base_model)
            for c in self.clients
        )
        if self.label_space == "union":
            for i, c in enumerate(resolved):
                if c.task not in (default_task(c.dataset), UNION_TASK):
                    found.append(
                        (
                            ("clients", i, "task"),
                            f"must be unset with `federation.label-space` 'union', got {c.task!r}",
                        )
                    )
            resolved = tuple(dataclasses.replace(c, task=UNION_TASK) for c in resolved)
        error = problems(found)
        if error is not None:
            raise error
        object.__setattr__(self, "clients", resolved)
        return self

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
        """A copy with top-level fields replaced (e.g. ``rounds``), validated again."""
        return dataclasses.replace(self, **changes)


# --------------------------------------------------------------------------- TOML


@config_model("")
class PresetFile:
    """The layout of a preset file (``configs/*.toml``): one field per table."""

    clients: Annotated[tuple[ClientConfig, ...], *non_empty("at least one [[clients]] table")]
    federation: FederationSettings = field(default_factory=FederationSettings)
    lora: LoraDefaults = field(default_factory=LoraDefaults)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    hub: HubConfig = field(default_factory=HubConfig)
    client_defaults: ClientDefaults = field(default_factory=ClientDefaults)


def _merge_defaults(data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` with the valid ``[client-defaults]`` keys copied into every client.

    A bad default is reported once, under ``client-defaults``, not once per client.
    """
    out = dict(data)
    defaults, clients = data.get("client-defaults", {}), data.get("clients")
    if not isinstance(defaults, Mapping) or not isinstance(clients, list):
        return out
    try:
        adapter(ClientDefaults).validate_python(defaults)
        good = dict(defaults)
    except pydantic.ValidationError as e:
        bad = {err["loc"][0] for err in e.errors() if err["loc"]}
        good = {k: v for k, v in defaults.items() if k not in bad}
    out["clients"] = [{**good, **c} if isinstance(c, Mapping) else c for c in clients]
    return out


def parse_preset(data: Mapping[str, Any], *, source: str = "<preset>") -> FederationConfig:
    """Turn a parsed TOML mapping into a :class:`FederationConfig`.

    Raises
    ------
    ConfigError
        Listing every problem of the preset, one line each.
    """
    named = "" if source == "<preset>" else source  # the file, in errors
    if not isinstance(data, Mapping):
        raise ConfigError(f"a preset must be a table, got {type(data).__name__}", source=named)
    merged = _merge_defaults(data)
    try:
        preset = adapter(PresetFile).validate_python(merged)
    except pydantic.ValidationError as e:
        raise config_error(e, merged, PresetFile, source=named) from None
    settings = {
        f.name: getattr(preset.federation, f.name) for f in dataclasses.fields(FederationSettings)
    }
    parts = {
        "clients": preset.clients,
        "lora": preset.lora,
        "strategy": preset.strategy,
        "privacy": preset.privacy,
        "hub": preset.hub,
        "source": source,
    }
    try:
        return adapter(FederationConfig).validate_python({**settings, **parts})
    except pydantic.ValidationError as e:
        raise config_error(e, parts, FederationConfig, source=named) from None


def preset_schema() -> dict[str, Any]:
    """The JSON Schema of a preset file (:class:`PresetFile`), keys in kebab case."""
    schema = adapter(PresetFile).json_schema(by_alias=True)
    schema["title"] = "fednet preset"
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def resolve_path(path: str | Path) -> Path:
    """Resolve a preset path against the working directory, then the project root."""
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists():
        return p.resolve()
    candidate = PROJECT_ROOT / p
    return candidate if candidate.exists() else p


def load_preset(path: str | Path) -> FederationConfig:
    """Load and validate a TOML preset; a :class:`ConfigError` lists every problem."""
    p = resolve_path(path)
    if not p.is_file():
        raise ConfigError(f"preset file not found: {str(path)!r}")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from e
    return parse_preset(data, source=str(p))


@config_model("run-config")
class RunConfig:
    """The Flower run config (``[tool.flwr.app.config]`` in ``pyproject.toml``).

    Parameters
    ----------
    preset : str
        Path of a TOML preset.
    num_server_rounds : int
        Overrides ``federation.rounds`` when > 0.
    run_dir : str
        Where the ServerApp writes the run (empty: ``runs/<time>``).
    resume : bool
        Continue the run in ``run_dir`` from its last checkpoint.
    """

    preset: Annotated[Str, Field(min_length=1)] = "configs/default.toml"
    num_server_rounds: Annotated[Int, *bound(">= 0")] = 0
    run_dir: Str = ""
    resume: Bool = False


def from_run_config(run_config: Mapping[str, Any]) -> FederationConfig:
    """Build the federation from a Flower run config (see :class:`RunConfig`)."""
    run = validate(RunConfig, dict(run_config), source="run config")
    cfg = load_preset(run.preset)
    attackers = [c.id for c in cfg.clients if c.attack]
    if attackers:
        raise ConfigError(
            f"`clients[{attackers[0]}].attack` is a benchmark setting for simulation; "
            f"it is refused in deployment ({run.preset})"
        )
    return cfg.with_overrides(rounds=run.num_server_rounds) if run.num_server_rounds else cfg
