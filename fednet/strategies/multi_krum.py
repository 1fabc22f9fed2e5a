"""Multi-Krum: average only the updates closest to their neighbours, per LoRA group."""

from __future__ import annotations

import logging
import math
from collections import defaultdict

from fednet.config import StrategyConfig
from fednet.strategies.fedlora import FedLoRA
from fednet.strategies.robust import RobustWrapper
from fednet.strategies.robust_utils import (
    Accepted,
    flat_updates,
    head_delta,
    krum_scores,
    lora_delta,
    pad_nan,
)
from fednet.strategies.state import GlobalState

__all__ = ["MultiKrum"]

logger = logging.getLogger(__name__)


class MultiKrum(RobustWrapper):
    """Keep, per LoRA group, the ``m`` updates of lowest Krum score; drop the rest.

    Implementation based on Multi-Krum (Blanchard et al., "Machine Learning with
    Adversaries: Byzantine Tolerant Gradient Descent", NeurIPS 2017,
    https://arxiv.org/abs/1703.02757). An update's score is the sum of squared
    distances to its ``n - f - 2`` nearest updates of the group. Updates are
    the clients' LoRA changes and their head changes (keyed by head group). Two
    clients are compared on what both hold: the LoRA slices up to the lower of
    their ranks, and a head only when they share it (clients of different tasks
    in one ``base-model`` group), so neither a higher rank nor a bigger task is
    counted as distance. The selected updates are then aggregated by the
    inner strategy's rule, weighted as usual. Blanchard et al.'s guarantee
    needs ``n >= 2f + 3``; a smaller group is still scored (with at least one
    neighbour) and the shortfall is logged. A group of two is kept whole: its
    two scores are equal by symmetry, so Krum has no choice to make.

    Parameters
    ----------
    strategy : FedLoRA
        The strategy to protect.
    byzantine : int
        ``f``, malicious clients tolerated per group (``strategy.krum-byzantine``).
    select : int
        ``m``, updates kept per group; 0 means ``n - f`` (``strategy.krum-select``).
    """

    name = "multi-krum"

    def __init__(self, strategy: FedLoRA, *, byzantine: int = 1, select: int = 0) -> None:
        super().__init__(strategy)
        if byzantine < 0:
            raise ValueError(f"`strategy.krum-byzantine` must be >= 0, got {byzantine}")
        if select < 0:
            raise ValueError(f"`strategy.krum-select` must be >= 0, got {select}")
        self.byzantine = int(byzantine)
        self.select = int(select)

    @classmethod
    def from_config(cls, strategy: FedLoRA, cfg: StrategyConfig) -> RobustWrapper:
        return cls(strategy, byzantine=cfg.krum_byzantine, select=cfg.krum_select)

    def filter(
        self, server_round: int, state: GlobalState, accepted: list[Accepted]
    ) -> list[Accepted]:
        groups: dict[str, list[int]] = defaultdict(list)
        for i, (p, *_) in enumerate(accepted):
            groups[self.group_of(p)].append(i)
        keep: set[int] = set()
        for key, idx in sorted(groups.items()):
            n, f = len(idx), self.byzantine
            m = min(n, self.select or max(1, n - f))
            if n < 2 * f + 3:
                logger.warning(
                    "round %s: group %s has %d updates; Multi-Krum's guarantee for f=%d needs %d",
                    server_round,
                    key,
                    n,
                    f,
                    2 * f + 3,
                )
            if m >= n:
                keep.update(idx)
                continue
            if n == 2:
                # Each of two updates is its only neighbour's neighbour: their Krum scores
                # are equal, and dropping one would be a coin toss that costs an honest
                # update half the time. Both are kept.
                logger.warning(
                    "round %s: group %s has 2 updates, which Krum cannot tell apart; both kept",
                    server_round,
                    key,
                )
                keep.update(idx)
                continue
            rows = []
            for i in idx:
                p, lora, head, _ = accepted[i]
                d = pad_nan(lora_delta(p, lora, state, key), state.rank_of(key))
                hkey = self.head_of(p)
                d.update({f"{hkey}/{k}": v for k, v in head_delta(p, head, state, hkey).items()})
                rows.append(d)
            scores = krum_scores(flat_updates(rows, missing=math.nan), byzantine=f)
            order = sorted(range(n), key=lambda j: (float(scores[j]), j))
            chosen = order[:m]
            cutoff = float(scores[order[m - 1]])
            keep.update(idx[j] for j in chosen)
            for j in order[m:]:
                p = accepted[idx[j]][0]
                reason = (
                    f"Krum score {float(scores[j]):.4g} is not among the {m} lowest of {n} "
                    f"in group {key} (cut-off {cutoff:.4g})"
                )
                logger.warning("round %s: %s excluded: %s", server_round, p.client_id, reason)
                self.log_event(
                    server_round,
                    p.client_id,
                    "rejected",
                    self.name,
                    group=key,
                    reasons=["krum-outlier"],
                    detail=reason,
                    score=float(scores[j]),
                )
        return [a for i, a in enumerate(accepted) if i in keep]
