"""Aggregation of LoRA factors of different ranks (``strategy.rank-aggregation``).

Clients of one LoRA group may train LoRA at different ranks. The shared adapter
is kept at the group's largest rank ``R``. A client of rank ``r <= R`` receives
the first ``r`` rank slices (truncation, as in HetLoRA, Cho et al. 2024,
https://arxiv.org/abs/2401.06432) and sends back ``r`` slices.

Separate averaging of A and B (FedIT, Zhang et al., https://arxiv.org/abs/2305.05644)
is *inexact*: the product of the mean factors is not the mean of the clients'
products ``Bᵢ Aᵢ``, so the shared adapter is not the average of what the
clients learned. Three FedIT variants differ only in how ranks are matched:

``fedit``
    FedIT's plain separate averaging: every update is padded to ``R`` with zeros
    and A and B are each the example-weighted mean over all clients.
``zero-pad``
    The same rule under its earlier name (HetLoRA's zero padding); kept so that
    existing presets run unchanged.
``rank-wise`` (default)
    Slice ``i`` (row ``i`` of A, column ``i`` of B) is the example-weighted mean
    over the clients whose rank exceeds ``i``. Slices no client trained keep the
    previous global value. No slice is diluted by clients that never held it.

Two methods are exact:

``svd``
    FlexLoRA (Bai et al., NeurIPS 2024): the weighted mean of the products,
    factored back to ``R`` by a truncated SVD; exact when ``R >= rank(ΔW)``.
    See :mod:`fednet.lora.svd`.
``frozen-a``
    FFA-LoRA (Sun et al., "Improving LoRA in Privacy-preserving Federated
    Learning", ICLR 2024, https://arxiv.org/abs/2403.12313): A stays at the
    group's shared seeded initialisation and only B trains and travels, so
    ``Σ wᵢ Bᵢ A[:rᵢ] = (Σ wᵢ pad(Bᵢ)) A``: the zero-padded mean of B is exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from fednet.lora.state import lora_rank_of, pad_rank

__all__ = [
    "EXACT_METHODS",
    "RANK_AGGREGATIONS",
    "LoraUpdate",
    "aggregate_lora",
    "frozen_a_aggregate",
    "weighted_mean",
]

RANK_AGGREGATIONS = ("rank-wise", "zero-pad", "fedit", "svd", "frozen-a")
"""Values of ``strategy.rank-aggregation``."""

EXACT_METHODS = ("svd", "frozen-a")
"""Methods whose aggregate product is the weighted mean of the clients' products."""


@dataclass(frozen=True)
class LoraUpdate:
    """One client's LoRA factors and its aggregation weight (examples)."""

    state: dict[str, torch.Tensor]
    weight: float


def weighted_mean(tensors: Sequence[torch.Tensor], weights: Sequence[float]) -> torch.Tensor:
    """Example-weighted mean of equally shaped tensors."""
    if not tensors:
        raise ValueError("weighted_mean needs at least one tensor")
    total = float(sum(weights))
    if total <= 0:
        raise ValueError(f"weights must sum to > 0, got {list(weights)}")
    acc = torch.zeros_like(tensors[0], dtype=torch.float64)
    for t, w in zip(tensors, weights, strict=True):
        acc += t.to(torch.float64) * (w / total)
    return acc.to(tensors[0].dtype)


def aggregate_lora(
    updates: Sequence[LoraUpdate],
    *,
    rank: int,
    previous: dict[str, torch.Tensor] | None = None,
    method: str = "rank-wise",
) -> dict[str, torch.Tensor]:
    """Combine client LoRA states of any ranks into one state of rank ``rank``.

    Parameters
    ----------
    updates : Sequence[LoraUpdate]
        Client states (each of rank <= ``rank``) with their weights.
    rank : int
        Rank of the result.
    previous : dict[str, Tensor], optional
        Previous global state of rank ``rank``; ``rank-wise`` keeps its slices that
        no client trained. Zeros when not given.
    method : str
        One of :data:`RANK_AGGREGATIONS` (see the module docstring). ``frozen-a``
        takes B-only updates and needs ``previous`` (its A is kept); ``svd``
        returns only the factors (see :func:`fednet.lora.svd.svd_aggregate` for
        the captured energy).
    """
    if method not in RANK_AGGREGATIONS:
        valid = ", ".join(map(repr, RANK_AGGREGATIONS))
        raise ValueError(f"method must be one of {valid}, got {method!r}")
    if not updates:
        raise ValueError("aggregate_lora needs at least one update")
    keys = set(updates[0].state)
    for u in updates[1:]:
        if set(u.state) != keys:
            raise ValueError("LoRA updates of one group must share the same keys")
    weights = [float(u.weight) for u in updates]
    if method == "svd":
        from fednet.lora.svd import svd_aggregate

        return svd_aggregate([u.state for u in updates], weights, rank=rank).state
    if method == "frozen-a":
        if previous is None:
            raise ValueError("frozen-a needs the previous state: it keeps its A")
        return frozen_a_aggregate(updates, rank=rank, previous=previous)
    padded = [pad_rank(u.state, rank) for u in updates]
    if method in ("zero-pad", "fedit"):
        return {k: weighted_mean([p[k] for p in padded], weights) for k in sorted(keys)}

    ranks = [lora_rank_of(u.state) for u in updates]
    out: dict[str, torch.Tensor] = {}
    for k in sorted(keys):
        is_a = k.endswith(".lora_A.weight")
        base = previous[k].clone() if previous is not None else torch.zeros_like(padded[0][k])
        for i in range(rank):
            holders = [j for j, r in enumerate(ranks) if r > i]
            if not holders:
                continue
            slices = [padded[j][k][i] if is_a else padded[j][k][:, i] for j in holders]
            mean = weighted_mean(slices, [weights[j] for j in holders])
            if is_a:
                base[i] = mean
            else:
                base[:, i] = mean
        out[k] = base
    return out


def frozen_a_aggregate(
    updates: Sequence[LoraUpdate], *, rank: int, previous: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """FFA-LoRA: keep ``previous``'s A factors, average the B-only updates exactly.

    Parameters
    ----------
    updates : Sequence[LoraUpdate]
        B factors only (``[out, rᵢ]``), with their weights.
    rank : int
        ``R``, the rank of ``previous``.
    previous : dict[str, Tensor]
        The group's state at rank ``R``; its A factors are returned unchanged.

    Returns
    -------
    dict[str, Tensor]
        ``previous``'s A and the zero-padded weighted mean of B, so that
        ``B_new @ A = Σ wᵢ Bᵢ A[:rᵢ] / Σ wᵢ`` exactly.
    """
    extra = sorted(k for u in updates for k in u.state if not k.endswith(".lora_B.weight"))
    if extra:
        raise ValueError(f"frozen-a updates carry only B factors, got {extra[:3]}")
    weights = [float(u.weight) for u in updates]
    out = {k: v.clone() for k, v in previous.items() if k.endswith(".lora_A.weight")}
    for k in sorted(updates[0].state):
        out[k] = weighted_mean([pad_rank({k: u.state[k]}, rank)[k] for u in updates], weights)
    return out
