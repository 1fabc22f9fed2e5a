"""Typed, frozen configuration of the network benchmark (``fednet bench``)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from fednet.config_base import Bool, Finite, Int, Str, bound, config_model

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


NonEmpty = Annotated[Str, Field(min_length=1)]


@config_model("bench")
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

    preset: NonEmpty = "configs/default.toml"
    out_dir: NonEmpty = "bench/results"
    quick: Bool = False
    rounds: Annotated[Int, *bound(">= 1")] | None = None
    local_steps: Annotated[Int, *bound(">= 1")] | None = None
    personalize_steps: Annotated[Int, *bound(">= 0")] | None = None
    eval_examples: Annotated[Int, *bound(">= 1")] | None = None
    queries_per_dataset: Annotated[Int, *bound(">= 1")] = 100
    warmup_per_dataset: Annotated[Int, *bound(">= 0")] = 50
    top_k: Annotated[Int, *bound(">= 1")] = 2
    confidence_threshold: Annotated[Finite, *bound("in [0, 1]")] = 0.8
    baseline_eval_examples: Annotated[Int, *bound(">= 1")] = 64
    baseline_sketch_examples: Annotated[Int, *bound(">= 1")] = 32
    clients_at_once: Annotated[Int, *bound(">= 1")] | None = None
    routing_section: Bool = True
    privacy_section: Bool = True
    routing_queries_per_dataset: Annotated[Int, *bound(">= 1")] = 100
    routing_warmup_per_dataset: Annotated[Int, *bound(">= 0")] = 50
    seed: Annotated[Int, *bound(">= 0")] = 0
    reuse: NonEmpty | None = None

    @classmethod
    def quick_mode(cls, **overrides: object) -> BenchConfig:
        """The ``--quick`` configuration, with ``overrides`` on top."""
        return cls(quick=True, **{**QUICK, **overrides})  # type: ignore[arg-type]
