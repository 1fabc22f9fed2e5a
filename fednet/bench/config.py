"""Typed, frozen configuration of the network benchmark (``fednet bench``)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from fednet.checks import check_int

__all__ = ["BenchConfig", "QUICK"]

QUICK = {
    "preset": "configs/tiny.toml",
    "rounds": 2,
    "local_steps": 5,
    "personalize_steps": 2,
    "eval_examples": 32,
    "queries_per_dataset": 8,
    "warmup_per_dataset": 4,
    "routing_queries_per_dataset": 4,
    "routing_warmup_per_dataset": 4,
    "privacy_section": False,
}
"""What ``--quick`` changes: tiny-bert, two short rounds, a handful of queries, and no
privacy section (its four simulations alone take longer than the rest; it has its
own quick mode, ``python -m fednet.bench.privacy --quick``)."""


def _unit(key: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"`bench.{key}` must be a number, got {type(value).__name__} {value!r}")
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"`bench.{key}` must be in [0, 1], got {value!r}")


@dataclass(frozen=True, kw_only=True)
class BenchConfig:
    """What the benchmark trains, asks and writes.

    Parameters
    ----------
    preset : str
        Federation preset every row is trained on.
    out_dir : str
        Where ``<timestamp>.json``, ``<timestamp>.md`` and the plots go; the
        runs, hubs and adapters go to ``<timestamp>-work/`` beside them.
    quick : bool
        Tiny-bert, short rounds and few queries (see :data:`QUICK`): a smoke
        run of every stage in about two minutes.
    rounds, local_steps, personalize_steps, eval_examples : int or None
        Overrides of the preset (``None`` keeps the preset's value).
    queries_per_dataset : int
        Evaluated queries drawn from each data set's held-out catalogue test split.
    warmup_per_dataset : int
        Further, disjoint queries per data set on which the learned router
        learns (with the true label as feedback) before the measured stream.
    top_k : int
        Candidates the routed cascade may ask.
    confidence_threshold : float
        The cascade stops at the first answer at least this confident.
    baseline_eval_examples : int
        Held-out texts per client on which the local-only and generalist runs
        evaluate every round (the fednet run keeps the preset's ``eval-examples``).
    baseline_sketch_examples : int
        Texts behind each baseline client's DP sketch, which no baseline uses.
    clients_at_once : int or None
        Clients a simulation runs concurrently, each on an equal share of the
        cores (``None``: one per core, as ``fednet simulate`` does). One torch
        thread per core spends the least CPU time per step.
    routing_section, privacy_section : bool
        Also run :func:`fednet.bench.routing.run_routing_bench` and
        :func:`fednet.bench.privacy.run_privacy_bench` when they are installed.
    routing_queries_per_dataset, routing_warmup_per_dataset : int
        Query counts handed to the routing section.
    seed : int
        Seed of the query streams (added to the preset's seed).
    reuse : str or None
        A previous ``<timestamp>-work`` directory: its finished runs,
        centralized model and sections are used instead of running them again
        (the same preset and overrides must be given).
    """

    preset: str = "configs/default.toml"
    out_dir: str = "bench/results"
    quick: bool = False
    rounds: int | None = None
    local_steps: int | None = None
    personalize_steps: int | None = None
    eval_examples: int | None = None
    queries_per_dataset: int = 100
    warmup_per_dataset: int = 50
    top_k: int = 2
    confidence_threshold: float = 0.8
    baseline_eval_examples: int = 64
    baseline_sketch_examples: int = 32
    clients_at_once: int | None = None
    routing_section: bool = True
    privacy_section: bool = True
    routing_queries_per_dataset: int = 100
    routing_warmup_per_dataset: int = 50
    seed: int = 0
    reuse: str | None = None

    def __post_init__(self) -> None:
        for key in ("preset", "out_dir"):
            value = getattr(self, key)
            if not isinstance(value, str) or not value:
                raise ValueError(f"`bench.{key}` must be a non-empty string, got {value!r}")
        for key in ("rounds", "local_steps", "eval_examples"):
            if getattr(self, key) is not None:
                check_int(f"bench.{key}", getattr(self, key), minimum=1)
        if self.personalize_steps is not None:
            check_int("bench.personalize_steps", self.personalize_steps, minimum=0)
        check_int("bench.queries_per_dataset", self.queries_per_dataset, minimum=1)
        check_int("bench.warmup_per_dataset", self.warmup_per_dataset, minimum=0)
        check_int("bench.top_k", self.top_k, minimum=1)
        _unit("confidence_threshold", self.confidence_threshold)
        check_int("bench.baseline_eval_examples", self.baseline_eval_examples, minimum=1)
        check_int("bench.baseline_sketch_examples", self.baseline_sketch_examples, minimum=1)
        if self.clients_at_once is not None:
            check_int("bench.clients_at_once", self.clients_at_once, minimum=1)
        check_int("bench.routing_queries_per_dataset", self.routing_queries_per_dataset, minimum=1)
        check_int("bench.routing_warmup_per_dataset", self.routing_warmup_per_dataset, minimum=0)
        check_int("bench.seed", self.seed, minimum=0)
        if self.reuse is not None and (not isinstance(self.reuse, str) or not self.reuse):
            raise ValueError(f"`bench.reuse` must be a directory path, got {self.reuse!r}")
        for key in ("quick", "routing_section", "privacy_section"):
            if not isinstance(getattr(self, key), bool):
                raise TypeError(f"`bench.{key}` must be a bool, got {getattr(self, key)!r}")

    @classmethod
    def quick_mode(cls, **overrides: object) -> BenchConfig:
        """The ``--quick`` configuration, with ``overrides`` on top."""
        return cls(quick=True, **{**QUICK, **overrides})  # type: ignore[arg-type]
