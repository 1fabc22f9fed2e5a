"""Weighted averaging of LoRA factors of different ranks.

Clients of one base model may train LoRA at different ranks. The shared adapter
is kept at the largest rank ``R``. A client of rank ``r <= R`` receives the first
``r`` rank slices (truncation, as in HetLoRA, Cho et al. 2024,
https://arxiv.org/abs/2401.06432) and sends back ``r`` slices. Two ways to
combine them are offered:

``zero-pad``
    Pad every update to ``R`` with zeros and take the example-weighted mean over
    all clients. Slices that few clients train are shrunk towards zero.
``rank-wise`` (default)
    Slice ``i`` (row ``i`` of A, column ``i`` of B) is the example-weighted mean
    over the clients whose rank exceeds ``i``. Slices no client trained keep the
    previous global value. No slice is diluted by clients that never held it.

A and B are averaged separately (FedIT, Zhang et al. 2024), which is the usual
choice for LoRA federations and keeps every update in factor form.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from fednet.lora.state import lora_rank_of, pad_rank

__all__ = ["LoraUpdate", "aggregate_lora", "weighted_mean"]


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
        ``"rank-wise"`` or ``"zero-pad"``.
    """
    if method not in ("rank-wise", "zero-pad"):
        raise ValueError(f"method must be 'rank-wise' or 'zero-pad', got {method!r}")
    if not updates:
        raise ValueError("aggregate_lora needs at least one update")
    keys = set(updates[0].state)
    for u in updates[1:]:
        if set(u.state) != keys:
            raise ValueError("LoRA updates of one group must share the same keys")
    padded = [pad_rank(u.state, rank) for u in updates]
    weights = [float(u.weight) for u in updates]
    if method == "zero-pad":
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
