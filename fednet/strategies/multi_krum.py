"""Multi-Krum: average only the updates closest to their neighbours, per LoRA group."""

from __future__ import annotations

import logging
import math
from collections import defaultdict

import torch

from fednet.config import StrategyConfig
from fednet.strategies.fedlora import FedLoRA
from fednet.strategies.robust import RobustWrapper
from fednet.strategies.robust_utils import (
    Accepted,
    flat_updates,
    head_delta,
    krum_scores,
    lora_delta,
    lower_median,
    pad_nan,
    update_norm,
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

    Comparing on shared coordinates leaves what few clients hold out of most
    comparisons: a head held by one task's clients inside a mixed group, the
    LoRA slices only the higher ranks hold. So each kept update is also bounded
    *per block*, a block being one head group or one LoRA slice ``s`` (row ``s``
    of every A and column ``s`` of every B): a client's change to a block longer
    than ``block_multiple`` times the lower median of that block's holders is
    scaled back to it (logged as ``clipped``, reason ``block-norm-above-bound``).
    A block held by one client alone has nothing to be compared with and is not
    bounded; under ``rank-wise`` aggregation that client sets those slices.

    Parameters
    ----------
    strategy : FedLoRA
        The strategy to protect.
    byzantine : int
        ``f``, malicious clients tolerated per group (``strategy.krum-byzantine``).
    select : int
        ``m``, updates kept per group; 0 means ``n - f`` (``strategy.krum-select``).
    block_multiple : float
        The per-block bound as a multiple of the lower median, >= 1
        (``strategy.norm-bound-multiple``).
    """

    name = "multi-krum"

    def __init__(
        self,
        strategy: FedLoRA,
        *,
        byzantine: int = 1,
        select: int = 0,
        block_multiple: float = 3.0,
    ) -> None:
        super().__init__(strategy)
        if not block_multiple >= 1.0:
            raise ValueError(f"`strategy.norm-bound-multiple` must be >= 1, got {block_multiple}")
        self.block_multiple = float(block_multiple)
        if byzantine < 0:
            raise ValueError(f"`strategy.krum-byzantine` must be >= 0, got {byzantine}")
        if select < 0:
            raise ValueError(f"`strategy.krum-select` must be >= 0, got {select}")
        self.byzantine = int(byzantine)
        self.select = int(select)

    @classmethod
    def from_config(cls, strategy: FedLoRA, cfg: StrategyConfig) -> RobustWrapper:
        return cls(
            strategy,
            byzantine=cfg.krum_byzantine,
            select=cfg.krum_select,
            block_multiple=cfg.norm_bound_multiple,
        )

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
                self.flag(
                    server_round,
                    p.client_id,
                    "rejected",
                    "krum-outlier",
                    reason,
                    group=key,
                    score=float(scores[j]),
                )
        kept = [a for i, a in enumerate(accepted) if i in keep]
        return self._bound_blocks(server_round, state, kept)

    def _blocks(self, state: GlobalState, a: Accepted) -> dict[str, float]:
        """Block name -> the norm of the client's change to it (see the class notes)."""
        p, lora, head, _ = a
        key = self.group_of(p)
        sq = torch.zeros(p.rank, dtype=torch.float64)
        for k, v in lora_delta(p, lora, state, key).items():
            v = v.to(torch.float64) ** 2
            sq += v.sum(1)[: p.rank] if k.endswith(".lora_A.weight") else v.sum(0)[: p.rank]
        out = {f"{key} LoRA slice {s}": math.sqrt(float(sq[s])) for s in range(p.rank)}
        hkey = self.head_of(p)
        out[f"head {hkey}"] = update_norm(head_delta(p, head, state, hkey))
        return out

    def _bound_blocks(
        self, server_round: int, state: GlobalState, kept: list[Accepted]
    ) -> list[Accepted]:
        norms = [self._blocks(state, a) for a in kept]
        holders: dict[str, list[float]] = defaultdict(list)
        for blocks in norms:
            for name, norm in blocks.items():
                holders[name].append(norm)
        out = list(kept)
        for i, blocks in enumerate(norms):
            scale: dict[str, float] = {}
            for name, norm in blocks.items():
                if len(holders[name]) < 2 or norm == 0.0:
                    continue
                bound = self.block_multiple * lower_median(holders[name])
                if norm > bound:
                    scale[name] = bound / norm
            if not scale:
                continue
            p, lora, head, metrics = kept[i]
            key, hkey = self.group_of(p), self.head_of(p)
            ref_l = lora_delta(p, lora, state, key)
            factor = torch.ones(p.rank, dtype=torch.float64)
            for s in range(p.rank):
                factor[s] = scale.get(f"{key} LoRA slice {s}", 1.0)
            lora = dict(lora)
            for k, d in ref_l.items():
                f = factor.to(d.dtype)
                shrink = (1.0 - f)[:, None] if k.endswith(".lora_A.weight") else (1.0 - f)[None, :]
                lora[k] = lora[k] - d * shrink
            h = scale.get(f"head {hkey}", 1.0)
            if h != 1.0:
                ref_h = head_delta(p, head, state, hkey)
                head = {k: head[k] - ref_h[k] * (1.0 - h) for k in head}
            out[i] = (p, lora, head, metrics)
            worst = min(scale, key=scale.__getitem__)
            reason = (
                f"{len(scale)} block(s) longer than {self.block_multiple:g} x the lower median "
                f"of their holders; {worst} scaled by {scale[worst]:.4g}"
            )
            self.flag(
                server_round,
                p.client_id,
                "clipped",
                "block-norm-above-bound",
                reason,
                group=key,
                blocks=sorted(scale),
                scale=scale[worst],
            )
        return out
