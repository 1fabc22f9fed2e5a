"""Coordinate-wise trimmed mean of the clients' updates."""

from __future__ import annotations

import logging
import math

import torch

from fednet.config import StrategyConfig
from fednet.strategies.coordinate import CoordinateWise
from fednet.strategies.fedlora import FedLoRA
from fednet.strategies.robust import RobustWrapper
from fednet.strategies.robust_utils import Accepted, trimmed_mean
from fednet.strategies.state import GlobalState

__all__ = ["TrimmedMean"]

logger = logging.getLogger(__name__)


class TrimmedMean(CoordinateWise):
    """Drop the ``trim_fraction`` largest and smallest values of every coordinate.

    Implementation based on the coordinate-wise trimmed mean (Yin et al.,
    "Byzantine-Robust Distributed Learning: Towards Optimal Statistical Rates",
    ICML 2018, https://arxiv.org/abs/1803.01498); see
    :class:`~fednet.strategies.coordinate.CoordinateWise`. At a coordinate held
    by ``c`` clients, ``floor(trim_fraction * c)`` values go at each end, so
    ``trim_fraction`` must reach ``1 / c`` to drop anything.

    Parameters
    ----------
    strategy : FedLoRA
        The strategy to protect.
    trim_fraction : float
        In [0, 0.5) (``strategy.trim-fraction``).
    """

    name = "trimmed-mean"

    def __init__(self, strategy: FedLoRA, *, trim_fraction: float = 0.2) -> None:
        super().__init__(strategy)
        if not 0.0 <= trim_fraction < 0.5:
            raise ValueError(f"`strategy.trim-fraction` must be in [0, 0.5), got {trim_fraction}")
        self.trim_fraction = float(trim_fraction)

    @classmethod
    def from_config(cls, strategy: FedLoRA, cfg: StrategyConfig) -> RobustWrapper:
        return cls(strategy, trim_fraction=cfg.trim_fraction)

    def aggregate(self, state: GlobalState, accepted: list[Accepted]) -> GlobalState:
        sizes: dict[str, int] = {}
        for p, *_ in accepted:  # LoRA groups, and the heads of each task and base model
            for key in (f"LoRA group {self.group_of(p)}", f"head {self.head_of(p)}"):
                sizes[key] = sizes.get(key, 0) + 1
        for key, n in sorted(sizes.items()):
            if math.floor(self.trim_fraction * n) == 0:
                logger.warning(
                    "%s: trim-fraction %g of %d updates trims nothing; this is a plain mean",
                    key,
                    self.trim_fraction,
                    n,
                )
        return super().aggregate(state, accepted)

    def rule(self, x: torch.Tensor) -> torch.Tensor:
        return trimmed_mean(x, trim_fraction=self.trim_fraction)
