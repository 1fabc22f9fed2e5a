"""Central user-level DP around a fednet strategy (the server is trusted).

Implementation based on DP-FedAvg (McMahan et al., "Learning Differentially
Private Recurrent Language Models", https://arxiv.org/abs/1710.06963) and in
the style of Flower's ``DifferentialPrivacyServerSideFixedClipping``, adapted to
LoRA factors of mixed ranks.

Sampling and accounting (the rule fednet applies, :data:`ACCOUNTING_RULE`):

- every round the server samples each profiled client independently with
  probability ``q = fraction_train`` (secret Poisson sampling, from OS entropy
  through :class:`~fednet.privacy.randomness.NoiseSource`). The server is
  trusted in this mode: its own log and round history name the clients that
  trained. Nothing it publishes does: the per-client contribution records,
  statistics of raw updates that would also name the sample, are not kept
  (:meth:`CentralDP.contributions`), so no manifest carries a contribution score;
- each sampled client's update (its change to the state it received: LoRA
  factors at its rank and its task head, as one vector) is clipped to L2 norm
  ``C`` and zero-padded to the group's rank. Per LoRA group the server sums
  the clipped updates, adds Gaussian noise of std ``z * C`` to every
  coordinate of the sum, and divides by the *expected* cohort size
  ``W = q * N`` (``N`` the group's profiled clients), a fixed denominator:
  one client changes the sum by at most ``C`` whether or not it was sampled
  and whatever the others sent. Heads of a task are treated the same way over
  the task's clients. The concatenation of all sums has sensitivity ``C``
  (a client belongs to one group and one task), so a round is one sampled
  Gaussian mechanism ``(z, q)`` per client. A round with nobody sampled still
  releases noise;
- hence every client is charged ``(z, q, 1)`` every round, sampled or not.
  Clients charge the whole run, ``(z, q, rounds)``, once, before they join it
  (:meth:`fednet.federation.private.PrivateRound.join_central_run`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Result, Strategy

from fednet.lora import pad_rank, truncate_rank
from fednet.privacy.randomness import NoiseSource, secure_source
from fednet.strategies.base import FednetStrategy
from fednet.strategies.fedlora import FedLoRA
from fednet.strategies.profile import ClientProfile
from fednet.strategies.state import GlobalState

__all__ = ["ACCOUNTING_RULE", "CentralDP"]

logger = logging.getLogger(__name__)

ACCOUNTING_RULE = "poisson-every-round"
"""Secret Poisson sampling with rate ``q``; every client charged ``(z, q, 1)`` every round."""


class CentralDP(Strategy):
    """Wraps a :class:`~fednet.strategies.FedLoRA` with server-side clipping and noise.

    Parameters
    ----------
    strategy : FedLoRA
        The strategy whose messages and evaluation are kept; its
        ``fraction_train`` is the sampling rate ``q``.
    noise_multiplier : float
        ``z`` >= 0.
    clipping_norm : float
        ``C`` > 0, the bound on one client's whole update.
    noise : NoiseSource, optional
        Source of the noise and of the sampling; OS entropy by default. A
        seeded source is for tests only (``privacy.reproducible-noise``).
    """

    def __init__(
        self,
        strategy: FedLoRA,
        *,
        noise_multiplier: float,
        clipping_norm: float,
        noise: NoiseSource | None = None,
    ) -> None:
        if noise_multiplier < 0:
            raise ValueError(
                f"`privacy.update-noise-multiplier` must be >= 0, got {noise_multiplier}"
            )
        if clipping_norm <= 0:
            raise ValueError(f"`privacy.update-clip` must be > 0, got {clipping_norm}")
        if not isinstance(strategy, FedLoRA):
            raise TypeError(f"CentralDP wraps a FedLoRA strategy, got {type(strategy).__name__}")
        if not getattr(strategy, "composes_with_central_dp", True):
            raise TypeError(
                f"CentralDP cannot wrap {type(strategy).__name__}: it decides from every "
                "client's raw update (medians, distances), so removing one client changes "
                "what the others contribute and the sum no longer has sensitivity "
                "`privacy.update-clip`; robust aggregation composes with local update DP or "
                "DP-SGD, whose updates are noised before they leave the clients"
            )
        self.strategy = strategy
        self.noise_multiplier = noise_multiplier
        self.clipping_norm = clipping_norm
        self.sample_rate = strategy.fraction_train
        self.noise = secure_source() if noise is None else noise

    def __getattr__(self, name: str) -> Any:
        # profiles, sketches, refusals, bytes counters, payload, discover ... are the inner's
        return getattr(self.strategy, name)

    def contributions(self, server_round: int, arrays: ArrayRecord) -> list[dict[str, Any]]:
        """None: a per-client record would name the secret sample, and its norm,
        cosine and contribution are statistics of raw, unnoised updates that the
        central guarantee does not cover."""
        return []

    def summary(self) -> None:
        logger.info("CentralDP(z=%s, C=%s) around:", self.noise_multiplier, self.clipping_norm)
        self.strategy.summary()

    def start(self, *args: Any, **kwargs: Any) -> Result:
        """The fednet round loop, with this wrapper's aggregation."""
        return FednetStrategy.start(self, *args, **kwargs)  # type: ignore[arg-type]

    def sample(self, grid: Grid) -> list[ClientProfile]:
        """Secret Poisson sample: each live profiled client with probability ``q``."""
        live = set(grid.get_node_ids())
        pool = sorted(
            (p for n, p in self.strategy.profiles.items() if n in live), key=lambda p: p.client_id
        )
        taken = self.noise.bernoulli(len(pool), self.sample_rate)
        return [p for p, t in zip(pool, taken, strict=True) if t]

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        inner = self.strategy
        inner._state_for_round = GlobalState.from_arrayrecord(arrays)
        sampled = self.sample(grid)  # secret: neither logged nor kept
        logger.info("round %s: training a Poisson sample of the clients", server_round)
        return inner._messages(server_round, arrays, config, sampled, MessageType.TRAIN)

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
        # every round releases, even with few or no replies: the denominator is fixed
        return self.noisy_aggregate(state, accepted).to_arrayrecord(), inner._train_metrics(
            accepted
        )

    def expected_cohorts(self) -> tuple[dict[str, float], dict[str, float]]:
        """Fixed denominators ``W = q * N`` per LoRA group and per head group."""
        groups: dict[str, float] = {}
        tasks: dict[str, float] = {}
        for p in self.strategy.profiles.values():
            g = self.strategy.group_of(p)
            groups[g] = groups.get(g, 0.0) + self.sample_rate
            h = self.strategy.head_of(p)
            tasks[h] = tasks.get(h, 0.0) + self.sample_rate
        return groups, tasks

    def clip(self, delta: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], float]:
        """Clip one client's update (all its tensors as one vector) to ``C``."""
        from fednet.privacy import clip_tree, tree_norm

        norm = float(tree_norm(delta))
        clipped, _ = clip_tree(delta, max_norm=self.clipping_norm)
        return clipped, norm

    def noisy_aggregate(self, state: GlobalState, accepted: list) -> GlobalState:
        """Per group and task: ``(sum of clipped updates + N(0, (zC)^2)) / (q N)``."""
        new = GlobalState(lora=dict(state.lora), heads=dict(state.heads))
        deltas: list[tuple[Any, dict[str, torch.Tensor], dict[str, torch.Tensor]]] = []
        for p, lora, head, _ in accepted:
            ref_lora = truncate_rank(state.lora[self.strategy.group_of(p)], p.rank)
            d = {
                **{f"l:{k}": lora[k] - ref_lora[k] for k in lora},
                **{f"h:{k}": head[k] - state.heads[self.strategy.head_of(p)][k] for k in head},
            }
            clipped, _ = self.clip(d)
            deltas.append(
                (
                    p,
                    {k[2:]: v for k, v in clipped.items() if k[0] == "l"},
                    {k[2:]: v for k, v in clipped.items() if k[0] == "h"},
                )
            )
        group_of = self.strategy.group_of
        groups, tasks = self.expected_cohorts()
        for key, cohort in groups.items():
            rank = state.rank_of(key)
            group = [pad_rank(dl, rank) for p, dl, _ in deltas if group_of(p) == key]
            mean = self._noisy_mean(group, like=state.lora[key], cohort=cohort)
            new.lora[key] = {k: state.lora[key][k] + mean[k] for k in mean}
        head_of = self.strategy.head_of
        for hkey, cohort in tasks.items():
            heads = [dh for p, _, dh in deltas if head_of(p) == hkey]
            mean = self._noisy_mean(heads, like=state.heads[hkey], cohort=cohort)
            new.heads[hkey] = {k: state.heads[hkey][k] + mean[k] for k in mean}
        return new

    def _noisy_mean(
        self,
        updates: list[dict[str, torch.Tensor]],
        *,
        like: dict[str, torch.Tensor],
        cohort: float,
    ) -> dict[str, torch.Tensor]:
        std = self.noise_multiplier * self.clipping_norm  # on the sum; sensitivity C
        out = {}
        for k, ref in like.items():
            total = torch.zeros_like(ref, dtype=torch.float32)
            for u in updates:
                total = total + u[k]
            noise = self.noise.normal(total.shape, std=std, dtype=total.dtype)
            out[k] = (total + noise) / cohort
        return out
