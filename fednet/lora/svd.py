"""Exact aggregation of LoRA products by truncated SVD (FlexLoRA).

Averaging the factors A and B separately (FedIT) is biased: the product of the
means is not the mean of the products. FlexLoRA (Bai et al., "Federated
Fine-tuning of Large Language Models under Heterogeneous Tasks and Client
Resources", NeurIPS 2024, https://arxiv.org/abs/2402.11505) instead forms, per
adapted layer, the weighted mean of the clients' products

    ΔW = Σᵢ wᵢ Bᵢ Aᵢ / Σᵢ wᵢ          (Bᵢ: [out, rᵢ], Aᵢ: [rᵢ, in])

and factors it back to the shared rank ``R`` with a truncated SVD,
``ΔW ≈ U_R S_R V_Rᵀ``, split evenly: ``B = U_R S_R^½``, ``A = S_R^½ V_Rᵀ``.
Rank slices come out sorted by singular value, so a client of rank ``r``
receives the first ``r`` slices (HetLoRA truncation), which is the best
rank-``r`` approximation of ΔW (Eckart–Young). The result is exact whenever
``R >= rank(ΔW)``; otherwise the captured energy ``Σ_{k<R} s_k² / Σ s_k²``
says how much of ΔW survives.

Products are only comparable if every client scales its LoRA by the same
``alpha / r``; fednet guarantees it with ``lora.alpha-ratio``.

Rank collapse: when ΔW has fewer than ``R`` non-negligible singular values,
the trailing slices would get ``A`` row and ``B`` column both zero. Such a
slice never trains again (each factor's gradient is proportional to the
other), so the adapter silently loses rank. The guard revives every slice
whose singular value is below ``tol * s_0``: ``B``'s column is set to zero (the
product, hence exactness, is unchanged) and ``A``'s row to the slice's right
singular vector, scaled like the live rows, so local training can grow it.

Cost, per layer of shape ``[out, in]``: forming ΔW takes ``O(n · out · in · r)``
for ``n`` clients and the SVD ``O(out · in · min(out, in))``, in float64 on
CPU. For MiniLM-L6 (12 adapted 384×384 layers) that is about 7·10⁸ flops per
round, well under a second on one core; memory is one dense ``[out, in]``
float64 matrix per layer at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

__all__ = ["SvdAggregate", "factor_product", "layer_prefixes", "lora_product", "svd_aggregate"]

_A = ".lora_A.weight"
_B = ".lora_B.weight"


def layer_prefixes(state: dict[str, torch.Tensor]) -> list[str]:
    """Sorted module prefixes of the LoRA layers in ``state``; each needs A and B.

    Raises
    ------
    ValueError
        If a layer has only one of its two factors.
    """
    a = {k[: -len(_A)] for k in state if k.endswith(_A)}
    b = {k[: -len(_B)] for k in state if k.endswith(_B)}
    if a != b:
        raise ValueError(f"LoRA layers lack a factor: {sorted(a ^ b)[:3]}")
    return sorted(a)


def lora_product(state: dict[str, torch.Tensor], prefix: str) -> torch.Tensor:
    """``B @ A`` of layer ``prefix`` in float64: the layer's ``[out, in]`` weight change
    (before the ``alpha / r`` scaling)."""
    return state[prefix + _B].to(torch.float64) @ state[prefix + _A].to(torch.float64)


def factor_product(
    delta: torch.Tensor, *, rank: int, tol: float = 1e-6
) -> tuple[torch.Tensor, torch.Tensor, float, int]:
    """Factor ``delta`` ``[out, in]`` into ``A`` ``[rank, in]`` and ``B`` ``[out, rank]``.

    Returns ``(A, B, energy, revived)`` in float64: the balanced truncated SVD,
    the fraction of ``‖delta‖²_F`` it keeps, and how many slices the
    rank-collapse guard revived (see the module docstring).
    """
    delta = delta.to(torch.float64)
    u, s, vh = torch.linalg.svd(delta, full_matrices=False)
    k = min(rank, s.numel())
    energy_all = float((s**2).sum())
    energy = float((s[:k] ** 2).sum()) / energy_all if energy_all > 0 else 1.0
    root = s[:k].sqrt()
    b = u[:, :k] * root
    a = root[:, None] * vh[:k]
    live = s[:k] > tol * float(s[0]) if float(s[0]) > 0 else torch.zeros(k, dtype=torch.bool)
    dead = (~live).nonzero().flatten()
    if len(dead):
        norms = a[live].norm(dim=1)
        scale = float(norms.mean()) if len(norms) else 1.0 / delta.shape[1] ** 0.5
        a[dead] = vh[dead] * scale
        b[:, dead] = 0.0
    revived = int(len(dead))
    if k < rank:  # fewer singular values than R (a thin layer): pad with revived slices
        extra = rank - k
        gen = torch.Generator().manual_seed(k)
        fill = torch.randn(extra, delta.shape[1], generator=gen, dtype=torch.float64)
        a = torch.cat([a, fill / delta.shape[1] ** 0.5])
        b = torch.cat([b, torch.zeros(delta.shape[0], extra, dtype=torch.float64)], dim=1)
        revived += extra
    return a, b, energy, revived


@dataclass
class SvdAggregate:
    """What :func:`svd_aggregate` returns.

    Attributes
    ----------
    state : dict[str, Tensor]
        The aggregated factors at rank ``R``: A ``[R, in]``, B ``[out, R]``.
    energy : dict[str, float]
        Per layer, the fraction of ΔW's squared Frobenius norm that rank ``R``
        keeps (1.0 when exact).
    revived : dict[str, int]
        Per layer, how many slices the rank-collapse guard revived.
    """

    state: dict[str, torch.Tensor]
    energy: dict[str, float] = field(default_factory=dict)
    revived: dict[str, int] = field(default_factory=dict)

    @property
    def min_energy(self) -> float:
        """The smallest captured energy over the layers."""
        return min(self.energy.values()) if self.energy else 1.0


def svd_aggregate(
    states: Sequence[dict[str, torch.Tensor]],
    weights: Sequence[float],
    *,
    rank: int,
    tol: float = 1e-6,
) -> SvdAggregate:
    """FlexLoRA: weighted mean of the clients' ``B @ A``, factored back to ``rank``.

    Parameters
    ----------
    states : Sequence[dict[str, Tensor]]
        Client LoRA states, any ranks, the same layers.
    weights : Sequence[float]
        Aggregation weights (examples), > 0 in sum.
    rank : int
        ``R``, the rank of the result.
    tol : float
        Singular values ``<= tol * s_0`` count as zero; their slices are revived
        (see the module docstring).

    Returns
    -------
    SvdAggregate
        Factors in the first state's dtype, captured energy and revived slices.
    """
    if not states:
        raise ValueError("svd_aggregate needs at least one state")
    if rank < 1:
        raise ValueError(f"rank must be >= 1, got {rank}")
    total = float(sum(weights))
    if len(weights) != len(states) or total <= 0:
        raise ValueError(f"need one weight per state summing to > 0, got {list(weights)}")
    prefixes = layer_prefixes(states[0])
    for s in states[1:]:
        if layer_prefixes(s) != prefixes:
            raise ValueError("LoRA states of one group must share the same layers")
    dtype = states[0][prefixes[0] + _A].dtype if prefixes else torch.float32
    out = SvdAggregate(state={})
    for prefix in prefixes:
        delta = torch.stack(
            [lora_product(s, prefix) * (w / total) for s, w in zip(states, weights, strict=True)]
        ).sum(0)
        a, b, out.energy[prefix], out.revived[prefix] = factor_product(delta, rank=rank, tol=tol)
        out.state[prefix + _A] = a.to(dtype).contiguous()
        out.state[prefix + _B] = b.to(dtype).contiguous()
    return out
