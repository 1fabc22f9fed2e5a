"""Central user-level DP around a fednet strategy (the server is trusted).

Implementation based on DP-FedAvg (McMahan et al., "Learning Differentially
Private Recurrent Language Models", https://arxiv.org/abs/1710.06963) and in
the style of Flower's ``DifferentialPrivacyServerSideFixedClipping``, adapted to
LoRA factors of mixed ranks.

Each client's update is its change to the state it received: the LoRA factors
(at its rank) and its task head, as one vector. The wrapper clips that vector
to L2 norm ``C`` on the server, zero-pads it to the group's rank, averages the
clipped updates of the ``m`` clients of a group *uniformly*, and adds Gaussian
noise of std ``z * C / m`` to every coordinate of the mean. A client therefore
changes the mean by at most ``C / m``, which the noise covers with multiplier
``z``. Heads of a task are treated the same way, over the clients of that task.
Each client's ledger charges one ``(z, fraction_train, 1)`` release per round.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Result, Strategy

from fednet.lora import pad_rank, truncate_rank
from fednet.strategies.base import FednetStrategy
from fednet.strategies.fedlora import FedLoRA
from fednet.strategies.state import GlobalState

__all__ = ["CentralDP"]

logger = logging.getLogger(__name__)


class CentralDP(Strategy):
    """Wraps a :class:`~fednet.strategies.FedLoRA` with server-side clipping and noise.

    Parameters
    ----------
    strategy : FedLoRA
        The strategy whose selection, messages and evaluation are kept.
    noise_multiplier : float
        ``z`` >= 0.
    clipping_norm : float
        ``C`` > 0, the bound on one client's whole update.
    seed : int
        Seed of the noise generator.
    """

    def __init__(
        self, strategy: FedLoRA, *, noise_multiplier: float, clipping_norm: float, seed: int = 0
    ) -> None:
        if noise_multiplier < 0:
            raise ValueError(
                f"`privacy.update-noise-multiplier` must be >= 0, got {noise_multiplier}"
            )
        if clipping_norm <= 0:
            raise ValueError(f"`privacy.update-clip` must be > 0, got {clipping_norm}")
        if not isinstance(strategy, FedLoRA):
            raise TypeError(f"CentralDP wraps a FedLoRA strategy, got {type(strategy).__name__}")
        self.strategy = strategy
        self.noise_multiplier = noise_multiplier
        self.clipping_norm = clipping_norm
        self.generator = torch.Generator().manual_seed(seed)

    def __getattr__(self, name: str) -> Any:
        # profiles, sketches, refusals, bytes counters, payload, discover ... are the inner's
        return getattr(self.strategy, name)

    def summary(self) -> None:
        logger.info("CentralDP(z=%s, C=%s) around:", self.noise_multiplier, self.clipping_norm)
        self.strategy.summary()

    def start(self, *args: Any, **kwargs: Any) -> Result:
        """The fednet round loop, with this wrapper's aggregation."""
        return FednetStrategy.start(self, *args, **kwargs)  # type: ignore[arg-type]

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        return self.strategy.configure_train(server_round, arrays, config, grid)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        return self.strategy.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        return self.strategy.aggregate_evaluate(server_round, replies)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        inner = self.strategy
        state: GlobalState = inner._state_for_round
        accepted = inner.accept(server_round, replies)
        if not inner.enough(len(accepted)):
            return None, inner._train_metrics(accepted)
        return self.noisy_aggregate(state, accepted).to_arrayrecord(), inner._train_metrics(
            accepted
        )

    def clip(self, delta: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], float]:
        """Clip one client's update (all its tensors as one vector) to ``C``."""
        from fednet.privacy import clip_tree, tree_norm

        norm = float(tree_norm(delta))
        clipped, _ = clip_tree(delta, max_norm=self.clipping_norm)
        return clipped, norm

    def noisy_aggregate(self, state: GlobalState, accepted: list) -> GlobalState:
        """Uniform mean of clipped updates per group, plus ``N(0, (zC/m)^2)``."""
        new = GlobalState(lora=dict(state.lora), heads=dict(state.heads))
        deltas: dict[str, tuple[Any, dict[str, torch.Tensor], dict[str, torch.Tensor]]] = {}
        for p, lora, head, _ in accepted:
            ref_lora = truncate_rank(state.lora[self.strategy.group_of(p)], p.rank)
            d = {
                **{f"l:{k}": lora[k] - ref_lora[k] for k in lora},
                **{f"h:{k}": head[k] - state.heads[p.task][k] for k in head},
            }
            clipped, norm = self.clip(d)
            logger.debug(
                "client %s update norm %.4f (clip %.4f)", p.client_id, norm, self.clipping_norm
            )
            deltas[p.client_id] = (
                p,
                {k[2:]: v for k, v in clipped.items() if k[0] == "l"},
                {k[2:]: v for k, v in clipped.items() if k[0] == "h"},
            )
        group_of = self.strategy.group_of
        for key in {group_of(p) for p, _, _ in deltas.values()}:
            group = [(p, dl) for p, dl, _ in deltas.values() if group_of(p) == key]
            rank = state.rank_of(key)
            mean = self._noisy_mean([pad_rank(dl, rank) for _, dl in group])
            new.lora[key] = {k: state.lora[key][k] + mean[k] for k in mean}
        for task in {p.task for p, _, _ in deltas.values()}:
            heads = [dh for p, _, dh in deltas.values() if p.task == task]
            mean = self._noisy_mean(heads)
            new.heads[task] = {k: state.heads[task][k] + mean[k] for k in mean}
        return new

    def _noisy_mean(self, updates: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        from fednet.privacy import central_noise_std

        m = len(updates)
        std = central_noise_std(
            noise_multiplier=self.noise_multiplier, clip=self.clipping_norm, num_clients=m
        )
        out = {}
        for k in updates[0]:
            mean = torch.stack([u[k] for u in updates]).mean(0)
            noise = torch.randn(mean.shape, generator=self.generator) * std if std > 0 else 0.0
            out[k] = mean + noise
        return out
