"""The models the benchmark compares, trained on one preset.

- ``fednet``: the preset as it is (FedLoRA, per-task heads, personalisation);
- ``local``: the same clients, steps and data under the ``local`` strategy:
  every client trains alone;
- ``generalist``: the same clients under FedAvg with one head over the union
  label space (``federation.label-space = "union"``): one federated model for
  every query;
- ``centralized``: one model trained in this process on the pooled training
  data of all clients, with the union head and as many optimisation steps as
  the federation's training rounds took together. It is the non-private upper
  bound: all raw data in one place.

The three federated variants are real Flower simulations.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fednet.bench.config import BenchConfig
from fednet.config import UNION_TASK, FederationConfig, load_preset

__all__ = [
    "bench_federation",
    "variant",
    "simulate_variant",
    "centralized_steps",
    "train_centralized",
    "VARIANTS",
]

logger = logging.getLogger(__name__)

VARIANTS = ("fednet", "local", "generalist")
"""The federated runs of the benchmark, in the order they are trained."""


def bench_federation(bench: BenchConfig) -> FederationConfig:
    """The preset with the benchmark's overrides applied."""
    cfg = load_preset(bench.preset)
    changes: dict[str, Any] = {}
    for key in ("rounds", "personalize_steps", "eval_examples"):
        value = getattr(bench, key)
        if value is not None:
            changes[key] = value
    if bench.local_steps is not None:
        changes["clients"] = tuple(
            dataclasses.replace(c, local_steps=bench.local_steps) for c in cfg.clients
        )
    return cfg.with_overrides(**changes) if changes else cfg


def variant(
    cfg: FederationConfig,
    name: str,
    *,
    eval_examples: int | None = None,
    sketch_examples: int | None = None,
) -> FederationConfig:
    """The federation of one of :data:`VARIANTS`.

    For the two baselines ``eval_examples`` and ``sketch_examples`` (when
    given) cap the per-round evaluation and the texts behind each client's DP
    sketch. Neither touches training: the baselines never route, and a
    sketch's size and ε do not depend on how many texts it averages.

    Raises
    ------
    ValueError
        If ``name`` is not a variant.
    """
    if name == "fednet":
        return cfg
    if name not in VARIANTS:
        raise ValueError(f"unknown benchmark variant {name!r}; valid: {', '.join(VARIANTS)}")
    changes: dict[str, Any] = {}
    if eval_examples is not None:
        changes["eval_examples"] = min(cfg.eval_examples, eval_examples)
    if sketch_examples is not None:
        changes["privacy"] = dataclasses.replace(
            cfg.privacy, sketch_examples=min(cfg.privacy.sketch_examples, sketch_examples)
        )
    if name == "local":
        return cfg.with_overrides(
            strategy=dataclasses.replace(cfg.strategy, name="local"), **changes
        )
    # The generalist answers with the shared model: no personalised copies.
    return cfg.with_overrides(
        label_space="union",
        personalize_steps=0,
        strategy=dataclasses.replace(cfg.strategy, name="fedlora"),
        **changes,
    )


def simulate_variant(
    cfg: FederationConfig, run_dir: Path, *, clients_at_once: int
) -> dict[str, Any]:
    """Run one federation in Flower's Simulation Engine; return its summary.

    ``clients_at_once`` clients run concurrently, each with an equal share of
    the machine's cores. Each variant is a fresh federation on the same data,
    so its clients keep their privacy ledgers beside the run
    (``<run-dir>-state``), not in the user's state directory where budgets
    carry over from run to run.
    """
    from fednet.federation.preflight import check_federation
    from fednet.federation.simulation import simulate

    cfg = cfg.with_overrides(state_dir=str(run_dir.parent / f"{run_dir.name}-state"))
    check_federation(cfg)
    cpus = float(os.cpu_count() or 1)
    started = time.perf_counter()
    summary = simulate(cfg, run_dir, num_cpus_per_client=max(1.0, cpus / clients_at_once))
    logger.info(
        "%s: %d rounds in %.0fs",
        run_dir.name,
        summary["rounds_completed"],
        time.perf_counter() - started,
    )
    return summary


def centralized_steps(cfg: FederationConfig) -> int:
    """Optimisation steps of all clients over all training rounds together."""
    return cfg.rounds * sum(c.local_steps for c in cfg.clients)


def train_centralized(
    cfg: FederationConfig,
    out_dir: Path,
    *,
    on_step: Callable[[int, float], None] | None = None,
) -> dict[str, Any]:
    """Train one union-head model on every client's training data pooled.

    Parameters
    ----------
    cfg : FederationConfig
        The federation (any label space); its clients' training splits are pooled.
        The loss weights labels as the clients do: balanced over the pooled labels
        when any client has ``class-weighting = "balanced"``.
    out_dir : Path
        Where the PEFT adapter and head are written.
    on_step : callable, optional
        Called with ``(step, loss)`` after each step.

    Returns
    -------
    dict
        Steps, batch size, learning rate, rank, examples, wall and CPU
        seconds, and the UTF-8 bytes of raw text each client had to hand over.
    """
    from fednet.federation.client_data import load_client_data
    from fednet.models import build_classifier, load_tokenizer, lora_targets, save_adapter
    from fednet.training import balanced_class_weights, batches, train_steps

    union = variant(cfg, "generalist")
    texts: list[str] = []
    labels: list[int] = []
    raw_bytes: dict[str, int] = {}
    names: tuple[str, ...] = ()
    for client in union.clients:
        data = load_client_data(union, client)
        names = data.label_names
        texts += data.train_texts
        labels += data.train_labels
        raw_bytes[client.id] = sum(len(t.encode("utf-8")) for t in data.train_texts)
    first = union.clients[0]
    rank = union.max_rank
    batch_size = max(c.batch_size for c in union.clients)
    lr = sum(c.learning_rate for c in union.clients) / len(union.clients)
    steps = centralized_steps(cfg)
    model = build_classifier(
        first.base_model,
        rank=rank,
        lora_alpha=union.lora_alpha(rank),
        lora_dropout=union.lora.dropout,
        target_modules=lora_targets(first.base_model, union.lora.target_modules),
        num_labels=len(names),
        seed=union.seed,
    )
    tokenizer = load_tokenizer(first.base_model)
    stream = batches(
        texts,
        labels,
        tokenizer,
        batch_size=batch_size,
        max_length=union.max_length,
        seed=union.seed,
    )
    # the baseline trains as the clients do: balanced when any client is
    weights = (
        balanced_class_weights(labels, len(names))
        if any(c.class_weighting == "balanced" for c in union.clients)
        else None
    )
    cpu, wall = time.process_time(), time.perf_counter()
    loss = train_steps(
        model, stream, steps=steps, learning_rate=lr, on_step=on_step, class_weights=weights
    )
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    save_adapter(
        out_dir,
        lora_state=model.lora_state(),
        base_model=first.base_model,
        rank=rank,
        lora_alpha=union.lora_alpha(rank),
        lora_dropout=union.lora.dropout,
        target_modules=lora_targets(first.base_model, union.lora.target_modules),
        head_state=model.head_state(),
        label_names=names,
        task=UNION_TASK,
    )
    logger.info(
        "centralized: %d steps on %d pooled examples in %.0fs, loss %.4f",
        steps,
        len(texts),
        wall,
        loss,
    )
    return {
        "adapter_dir": str(out_dir),
        "base_model": first.base_model,
        "rank": rank,
        "label_names": list(names),
        "steps": steps,
        "batch_size": batch_size,
        "learning_rate": lr,
        "class_weights": None if weights is None else weights.tolist(),
        "num_examples": len(texts),
        "train_loss": loss,
        "wall_s": wall,
        "cpu_s": cpu,
        "raw_bytes_by_client": raw_bytes,
    }
