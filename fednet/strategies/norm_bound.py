"""Norm bounding: clip each update to a multiple of the round's median update norm."""

from __future__ import annotations

import logging
from collections import defaultdict

from fednet.config import StrategyConfig
from fednet.strategies.fedlora import FedLoRA
from fednet.strategies.robust import RobustWrapper
from fednet.strategies.robust_utils import (
    Accepted,
    head_delta,
    lora_delta,
    lower_median,
    update_norm,
)
from fednet.strategies.state import GlobalState

__all__ = ["NormBound"]

logger = logging.getLogger(__name__)


class NormBound(RobustWrapper):
    """Scale every update longer than ``multiple`` times the median norm back to it.

    Implementation based on norm bounding (Sun et al., "Can You Really Backdoor
    Federated Learning?", https://arxiv.org/abs/1911.07963), with the bound set
    per round and per LoRA group from the median update norm, so no absolute
    norm has to be tuned. An update is the client's LoRA change (at its rank)
    and head change, as one vector; a clipped update keeps its direction. For
    an even number of clients the lower middle norm is used, so with two
    clients the shorter sets the bound.

    Parameters
    ----------
    strategy : FedLoRA
        The strategy to protect.
    multiple : float
        The bound as a multiple of the median norm, >= 1 (``strategy.norm-bound-multiple``).
    """

    name = "norm-bound"

    def __init__(self, strategy: FedLoRA, *, multiple: float = 3.0) -> None:
        super().__init__(strategy)
        if not multiple >= 1.0:
            raise ValueError(f"`strategy.norm-bound-multiple` must be >= 1, got {multiple}")
        self.multiple = float(multiple)

    @classmethod
    def from_config(cls, strategy: FedLoRA, cfg: StrategyConfig) -> RobustWrapper:
        return cls(strategy, multiple=cfg.norm_bound_multiple)

    def filter(
        self, server_round: int, state: GlobalState, accepted: list[Accepted]
    ) -> list[Accepted]:
        groups: dict[str, list[int]] = defaultdict(list)
        norms = []
        for i, (p, lora, head, _) in enumerate(accepted):
            groups[self.group_of(p)].append(i)
            norms.append(
                update_norm(
                    lora_delta(p, lora, state, self.group_of(p)),
                    head_delta(p, head, state, self.head_of(p)),
                )
            )
        out = list(accepted)
        for key, idx in groups.items():
            median = lower_median([norms[i] for i in idx])
            bound = self.multiple * median
            for i in idx:
                if norms[i] <= bound or norms[i] == 0.0:
                    continue
                p, lora, head, metrics = accepted[i]
                scale = bound / norms[i]
                ref_l = lora_delta(p, lora, state, key)
                ref_h = head_delta(p, head, state, self.head_of(p))
                lora = {k: lora[k] - ref_l[k] * (1.0 - scale) for k in lora}
                head = {k: head[k] - ref_h[k] * (1.0 - scale) for k in head}
                out[i] = (p, lora, head, metrics)
                reason = (
                    f"update norm {norms[i]:.4g} > {self.multiple:g} x median {median:.4g} "
                    f"of group {key}; scaled by {scale:.4g}"
                )
                self.flag(
                    server_round,
                    p.client_id,
                    "clipped",
                    "norm-above-bound",
                    reason,
                    group=key,
                    norm=norms[i],
                    bound=bound,
                    scale=scale,
                )
        return out
