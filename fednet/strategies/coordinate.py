"""Coordinate-wise robust rules (trimmed mean, median) in place of the weighted mean."""

from __future__ import annotations

import logging
import math
from collections import defaultdict

import torch

from fednet.lora.svd import factor_product, layer_prefixes, lora_product
from fednet.strategies.robust import RobustWrapper
from fednet.strategies.robust_utils import (
    Accepted,
    head_delta,
    lora_delta,
    lower_median,
    pad_nan,
    update_norm,
)
from fednet.strategies.state import GlobalState

__all__ = ["CoordinateWise"]

logger = logging.getLogger(__name__)

OUTLIER_FACTOR = 3.0
"""A client is logged as down-weighted when its distance to the robust aggregate
exceeds this multiple of the group's median distance ..."""

NORM_FACTOR = 1.5
"""... and this multiple of the group's median update norm (a sign-flipped honest
update lies at twice its norm; an honest one at about its norm or less)."""


class CoordinateWise(RobustWrapper):
    """Base of the coordinate-wise rules; subclasses define :meth:`rule`.

    Each coordinate of the group's update is combined by :meth:`rule` over the
    clients that hold it (a client of rank ``r`` holds the first ``r`` slices),
    unweighted as in Yin et al. (ICML 2018, https://arxiv.org/abs/1803.01498).
    With ``rank-aggregation = "svd"`` the rule runs on the clients' products
    ``Bᵢ Aᵢ`` and the result is factored back by truncated SVD; with
    ``frozen-a`` on B only. Heads are combined the same way per task. Every
    client whose update lies more than :data:`OUTLIER_FACTOR` times the median
    distance and :data:`NORM_FACTOR` times the median update norm away from the
    result is logged as down-weighted: most of its coordinates were discarded.
    """

    def rule(self, x: torch.Tensor) -> torch.Tensor:
        """Combine ``x`` ``[n, ...]`` (NaN: not held) over dim 0."""
        raise NotImplementedError

    def _combine(
        self, xs: list[torch.Tensor], who: list[str], dist: dict[str, float]
    ) -> torch.Tensor:
        x = torch.stack([t.to(torch.float64) for t in xs])
        agg = self.rule(x)
        diff = (x - agg.unsqueeze(0)) ** 2
        per = torch.nan_to_num(diff, nan=0.0).flatten(1).sum(1)
        for cid, d in zip(who, per.tolist(), strict=True):
            dist[cid] += d
        return torch.nan_to_num(agg, nan=0.0)

    def aggregate(self, state: GlobalState, accepted: list[Accepted]) -> GlobalState:
        new = GlobalState(lora=dict(state.lora), heads=dict(state.heads))
        dist: dict[str, float] = defaultdict(float)
        svd = getattr(self.strategy, "rank_aggregation", "") == "svd"
        for key in sorted({self.group_of(p) for p, *_ in accepted}):
            members = [(p, lora) for p, lora, _, _ in accepted if self.group_of(p) == key]
            who = [p.client_id for p, _ in members]
            rank = state.rank_of(key)
            out = {k: v.clone() for k, v in state.lora[key].items()}
            if svd:
                energies = []
                for prefix in layer_prefixes(members[0][1]):
                    prods = [lora_product(lora, prefix) for _, lora in members]
                    agg = self._combine(prods, who, dist)
                    a, b, energy, _ = factor_product(agg, rank=rank)
                    energies.append(energy)
                    dtype = out[prefix + ".lora_A.weight"].dtype
                    out[prefix + ".lora_A.weight"] = a.to(dtype)
                    out[prefix + ".lora_B.weight"] = b.to(dtype)
                self.diagnostics[f"svd-energy/{key}"] = min(energies) if energies else 1.0
            else:
                deltas = [pad_nan(lora_delta(p, lora, state, key), rank) for p, lora in members]
                for k in sorted(deltas[0]):
                    agg = self._combine([d[k] for d in deltas], who, dist)
                    out[k] = state.lora[key][k] + agg.to(out[k].dtype)
            new.lora[key] = out
        for hkey in sorted({self.head_of(p) for p, *_ in accepted}):
            members_h = [(p, head) for p, _, head, _ in accepted if self.head_of(p) == hkey]
            deltas_h = [head_delta(p, h, state, hkey) for p, h in members_h]
            who = [p.client_id for p, _ in members_h]
            new.heads[hkey] = {
                k: state.heads[hkey][k]
                + self._combine([d[k] for d in deltas_h], who, dist).to(state.heads[hkey][k].dtype)
                for k in sorted(deltas_h[0])
            }
        norms = {
            p.client_id: update_norm(
                lora_delta(p, lora, state, self.group_of(p)),
                head_delta(p, head, state, self.head_of(p)),
            )
            for p, lora, head, _ in accepted
        }
        self._log_outliers(accepted, {c: math.sqrt(v) for c, v in dist.items()}, norms)
        return new

    def _log_outliers(
        self, accepted: list[Accepted], dist: dict[str, float], norms: dict[str, float]
    ) -> None:
        rnd = getattr(self, "_round", 0)
        for cid, d in dist.items():
            self.diagnostics[f"{self.name}-distance/{cid}"] = d
        groups: dict[str, list[str]] = defaultdict(list)
        for p, *_ in accepted:
            groups[self.group_of(p)].append(p.client_id)
        for key, cids in sorted(groups.items()):
            med = lower_median([dist[c] for c in cids])
            med_norm = lower_median([norms[c] for c in cids])
            for c in cids:
                if dist[c] > OUTLIER_FACTOR * med and dist[c] > NORM_FACTOR * med_norm:
                    reason = (
                        f"distance {dist[c]:.4g} to the coordinate-wise {self.name} is "
                        f"{dist[c] / max(med, 1e-300):.3g} x the median distance {med:.4g} "
                        f"and {dist[c] / max(med_norm, 1e-300):.3g} x the median update norm "
                        f"{med_norm:.4g} of group {key}; its outlying coordinates were discarded"
                    )
                    self.flag(
                        rnd,
                        c,
                        "down-weighted",
                        "coordinate-outlier",
                        reason,
                        group=key,
                        distance=dist[c],
                    )
