"""Shared maths of the robust aggregation wrappers: updates, norms, coordinate rules, Krum.

An *update* is what a client changed: its LoRA factors minus the group's
factors truncated to its rank, and its head minus its task's head. Tensors are
float32 in, float64 inside the statistics.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from fednet.lora import pad_rank, truncate_rank
from fednet.strategies.profile import ClientProfile
from fednet.strategies.state import GlobalState

__all__ = [
    "Accepted",
    "lora_delta",
    "head_delta",
    "update_norm",
    "lower_median",
    "pad_nan",
    "trimmed_mean",
    "coordinate_median",
    "krum_scores",
    "flat_updates",
]

Accepted = tuple[ClientProfile, dict[str, torch.Tensor], dict[str, torch.Tensor], dict]
"""One accepted update: (profile, lora, head, metrics), as ``FedLoRA.accept`` returns it."""


def lora_delta(
    p: ClientProfile, lora: dict[str, torch.Tensor], state: GlobalState, group: str
) -> dict[str, torch.Tensor]:
    """The client's LoRA change at its own rank (only the keys it sent)."""
    ref = truncate_rank(state.lora[group], p.rank)
    return {k: v - ref[k] for k, v in lora.items()}


def head_delta(
    p: ClientProfile, head: dict[str, torch.Tensor], state: GlobalState, key: str
) -> dict[str, torch.Tensor]:
    """The client's change of head ``key`` (its head group)."""
    return {k: v - state.heads[key][k] for k, v in head.items()}


def update_norm(*parts: dict[str, torch.Tensor]) -> float:
    """L2 norm of all tensors of ``parts`` as one vector."""
    return math.sqrt(sum(float((v.double() ** 2).sum()) for d in parts for v in d.values()))


def lower_median(values: Sequence[float]) -> float:
    """The median, the lower middle value for an even count (robust with two clients)."""
    if not values:
        raise ValueError("median of no values")
    s = sorted(values)
    return s[(len(s) - 1) // 2]


def pad_nan(delta: dict[str, torch.Tensor], rank: int) -> dict[str, torch.Tensor]:
    """Pad a LoRA delta to ``rank`` with NaN: slices the client does not hold."""
    out = {}
    for k, v in pad_rank(delta, rank).items():
        r = delta[k].shape[0] if k.endswith(".lora_A.weight") else delta[k].shape[1]
        v = v.to(torch.float64).clone()
        if k.endswith(".lora_A.weight"):
            v[r:] = math.nan
        else:
            v[:, r:] = math.nan
        out[k] = v
    return out


def _middle_mean(x: torch.Tensor, k_of: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Mean over dim 0 of the sorted non-NaN values at positions ``[k, count - k)``.

    Coordinates no client holds (all NaN) come out NaN.
    """
    x = x.to(torch.float64)
    valid = ~torch.isnan(x)
    count = valid.sum(0)
    k = k_of(count)
    ordered, _ = torch.sort(torch.where(valid, x, torch.full_like(x, math.inf)), dim=0)
    pos = torch.arange(x.shape[0]).view(-1, *([1] * (x.dim() - 1)))
    keep = (pos >= k) & (pos < count - k)
    total = torch.where(keep, ordered, torch.zeros_like(ordered)).sum(0)
    kept = keep.sum(0)
    return torch.where(kept > 0, total / kept.clamp(min=1), torch.full_like(total, math.nan))


def trimmed_mean(x: torch.Tensor, *, trim_fraction: float) -> torch.Tensor:
    """Coordinate-wise trimmed mean over dim 0, ignoring NaN (Yin et al., ICML 2018,
    https://arxiv.org/abs/1803.01498).

    At each coordinate held by ``c`` clients, ``floor(trim_fraction * c)`` values are
    dropped at each end and the rest averaged.
    """
    if not 0.0 <= trim_fraction < 0.5:
        raise ValueError(f"`trim-fraction` must be in [0, 0.5), got {trim_fraction}")
    return _middle_mean(x, lambda c: torch.floor(c.double() * trim_fraction).long())


def coordinate_median(x: torch.Tensor) -> torch.Tensor:
    """Coordinate-wise median over dim 0, ignoring NaN (mean of the two middle values
    for an even count; Yin et al., ICML 2018)."""
    return _middle_mean(x, lambda c: torch.div(c - 1, 2, rounding_mode="floor").clamp(min=0))


def krum_scores(vectors: torch.Tensor, *, byzantine: int) -> torch.Tensor:
    """Krum score of each row: the sum of squared distances to its ``n - f - 2``
    nearest other rows (at least one), after Blanchard et al., "Machine Learning with
    Adversaries: Byzantine Tolerant Gradient Descent", NeurIPS 2017,
    https://arxiv.org/abs/1703.02757.

    A NaN marks a coordinate a client does not hold (a LoRA slice above its rank,
    another task's head). Two rows are compared on the coordinates both hold,
    scaled to the full length (:func:`sklearn.metrics.pairwise.nan_euclidean_distances`),
    so that holding more coordinates, a higher rank, is not itself a distance. Two
    rows with no coordinate in common are infinitely far apart.

    Parameters
    ----------
    vectors : Tensor
        ``[n, d]`` updates, NaN where not held.
    byzantine : int
        ``f``, the number of malicious rows tolerated.
    """
    from sklearn.metrics.pairwise import nan_euclidean_distances

    n = vectors.shape[0]
    if n < 2:
        return torch.zeros(n, dtype=torch.float64)
    v = vectors.to(torch.float64).numpy()
    d2 = torch.from_numpy(nan_euclidean_distances(v, v) ** 2)
    d2 = torch.nan_to_num(d2, nan=math.inf)
    d2.fill_diagonal_(math.inf)
    k = max(1, min(n - 1, n - byzantine - 2))
    return torch.sort(d2, dim=1).values[:, :k].sum(1)


def flat_updates(parts: Sequence[dict[str, torch.Tensor]], *, missing: float = 0.0) -> torch.Tensor:
    """Stack dicts of tensors into ``[n, d]`` float64 rows over the union of their keys.

    A key a client lacks is filled with ``missing``: 0.0 where an absent tensor
    means "no change", NaN where it means "not held" (for :func:`krum_scores`).
    """
    shapes: dict[str, torch.Size] = {}
    for d in parts:
        for k, v in d.items():
            shapes.setdefault(k, v.shape)
    keys = sorted(shapes)
    rows = [
        torch.cat(
            [
                d[k].to(torch.float64).flatten()
                if k in d
                else torch.full((shapes[k].numel(),), missing, dtype=torch.float64)
                for k in keys
            ]
        )
        if keys
        else torch.zeros(0, dtype=torch.float64)
        for d in parts
    ]
    return torch.stack(rows)
