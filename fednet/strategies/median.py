"""Coordinate-wise median of the clients' updates."""

from __future__ import annotations

import torch

from fednet.strategies.coordinate import CoordinateWise
from fednet.strategies.robust_utils import coordinate_median

__all__ = ["CoordinateMedian"]


class CoordinateMedian(CoordinateWise):
    """Every coordinate of the update is the median over the clients that hold it.

    Implementation based on the coordinate-wise median (Yin et al.,
    "Byzantine-Robust Distributed Learning: Towards Optimal Statistical Rates",
    ICML 2018, https://arxiv.org/abs/1803.01498); see
    :class:`~fednet.strategies.coordinate.CoordinateWise`. For an even count the
    two middle values are averaged.

    Parameters
    ----------
    strategy : FedLoRA
        The strategy to protect.
    """

    name = "median"

    def rule(self, x: torch.Tensor) -> torch.Tensor:
        return coordinate_median(x)
