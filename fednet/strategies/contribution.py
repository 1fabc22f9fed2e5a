"""Per-client contribution estimates for the contribution ledger.

Each round every client that sent an update gets a row: whether its update was
accepted, its cosine to the aggregate, and a contribution estimate. Updates
are compared where LoRA acts, in weight space: a client's LoRA change is
``Bᵢ Aᵢ - B₀[:, :rᵢ] A₀[:rᵢ]`` per layer (``B₀, A₀`` the group's factors it
received), so the comparison means the same under every ``rank-aggregation``
(for ``svd`` the factors change basis every round; the products do not). The
head change is appended.

Method ``gradient-projection``: the client's share of the aggregate update
along the aggregate's own direction,

    cᵢ = wᵢ ⟨Δᵢ, Δ⟩ / ‖Δ‖²,   wᵢ = nᵢ / Σⱼ nⱼ over the group's aggregated clients,

a first-order, gradient-similarity estimate in the spirit of Xu et al.,
"Gradient-Driven Rewards to Guarantee Fairness in Collaborative Machine
Learning" (NeurIPS 2021, https://arxiv.org/abs/2111.06059). When the aggregate
is exactly the weighted mean of the updates (``svd`` or ``frozen-a`` with
``R`` covering the rank, one task per group, no robust wrapper), the shares of
a group sum to 1. A client left out of the aggregate (a robust wrapper dropped
it) has share 0; its cosine is still reported. Leave-one-out estimates, which
need an evaluation per client, are not computed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from fednet.lora.state import truncate_rank
from fednet.lora.svd import layer_prefixes, lora_product
from fednet.strategies.profile import ClientProfile
from fednet.strategies.state import GlobalState

__all__ = ["METHOD", "contribution_rows", "weight_space_delta"]

METHOD = "gradient-projection"


def weight_space_delta(
    before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Per LoRA layer, ``B_after A_after - B_before A_before`` (float64)."""
    return {p: lora_product(after, p) - lora_product(before, p) for p in layer_prefixes(after)}


def _dot(x: dict[str, torch.Tensor], y: dict[str, torch.Tensor]) -> float:
    return sum(float((x[k] * y[k]).sum()) for k in x if k in y)


def contribution_rows(
    server_round: int,
    before: GlobalState,
    after: GlobalState,
    updates: Sequence[tuple[ClientProfile, dict[str, torch.Tensor], dict[str, torch.Tensor]]],
    *,
    group_of: Callable[[ClientProfile], str],
    head_of: Callable[[ClientProfile], str] = lambda p: p.head_group,
    excluded: set[str],
    complete: Callable[[ClientProfile, dict[str, torch.Tensor]], dict[str, torch.Tensor]],
) -> list[dict]:
    """One ledger row per update.

    Parameters
    ----------
    server_round : int
        The round.
    before, after : GlobalState
        The global state the clients received, and the aggregate.
    updates : sequence of (profile, lora, head)
        The clients' validated updates.
    group_of : callable
        A profile's LoRA group key.
    head_of : callable
        A profile's head key (default: its head group, task on base model).
    excluded : set[str]
        Client ids the aggregate left out (their share is 0).
    complete : callable
        Completes a client's LoRA (e.g. the fixed A under ``frozen-a``).
    """
    deltas: dict[str, dict[str, torch.Tensor]] = {}
    agg: dict[str, dict[str, torch.Tensor]] = {}
    for p, lora, head in updates:
        key = group_of(p)
        received = truncate_rank(before.lora[key], p.rank)
        d = {f"lora/{k}": v for k, v in weight_space_delta(received, complete(p, lora)).items()}
        hkey = head_of(p)
        d.update({f"head/{k}": head[k].double() - before.heads[hkey][k].double() for k in head})
        deltas[p.client_id] = d
        if p.client_id not in agg:
            g = {
                f"lora/{k}": v
                for k, v in weight_space_delta(before.lora[key], after.lora[key]).items()
            }
            g.update(
                {
                    f"head/{k}": after.heads[hkey][k].double() - before.heads[hkey][k].double()
                    for k in head
                }
            )
            agg[p.client_id] = g
    weights: dict[str, float] = {}
    for key in {group_of(p) for p, *_ in updates}:
        members = [p for p, *_ in updates if group_of(p) == key and p.client_id not in excluded]
        total = sum(p.weight for p in members)
        for p in members:
            weights[p.client_id] = p.weight / total if total else 0.0
    rows = []
    for p, _, _ in updates:
        d, g = deltas[p.client_id], agg[p.client_id]
        dg, dd, gg = _dot(d, g), _dot(d, d), _dot(g, g)
        cosine = dg / math.sqrt(dd * gg) if dd > 0 and gg > 0 else None
        w = weights.get(p.client_id, 0.0)
        rows.append(
            {
                "round": server_round,
                "client": p.client_id,
                "group": group_of(p),
                "weight": w,
                "update_norm": math.sqrt(dd),
                "cosine": cosine,
                "contribution": w * dg / gg if gg > 0 else None,
                "method": METHOD,
            }
        )
    return rows
