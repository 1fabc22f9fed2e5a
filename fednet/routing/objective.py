"""The cost- and latency-aware objective that turns router estimates into a decision.

Each candidate ``i`` gets the utility::

    u_i = accuracy_weight * p_i - latency_weight * latency_i - cost_weight * cost_i

with ``p_i`` the router's estimate that the candidate answers correctly,
``latency_i`` its expected latency in seconds and ``cost_i`` its cost per query.
With ``contribution_weight = w > 0`` each candidate whose owner published a
contribution score ``c_i`` (its signed share of the federation's aggregate
update) also gains the prior ``w * (c_i - c_mean)``, ``c_mean`` being the mean
score of the candidates that have one; others gain 0. Candidates over the
optional latency budget are dropped before ranking.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fednet.routing.candidates import Candidate
from fednet.routing.config import RouterConfig

__all__ = ["Estimate", "Scored", "Decision", "Objective"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Estimate:
    """A router's belief about one candidate for one query.

    Parameters
    ----------
    accuracy : float
        Estimated probability that the candidate answers correctly, in [0, 1].
    signals : Mapping[str, float]
        The evidence behind it (sketch similarity, relevance, model logit, ...).
    """

    accuracy: float
    signals: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0.0 <= self.accuracy <= 1.0 or math.isnan(self.accuracy):
            raise ValueError(f"estimate `accuracy` must be in [0, 1], got {self.accuracy!r}")


@dataclass(frozen=True, eq=False)
class Scored:
    """One candidate with its estimate, expected latency, cost and utility."""

    candidate: Candidate
    estimate: Estimate
    latency_s: float
    cost: float
    utility: float
    within_budget: bool = True
    prior: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready explanation of this candidate's score."""
        return {
            **self.candidate.describe(),
            "accuracy": self.estimate.accuracy,
            "latency_s": self.latency_s,
            "cost": self.cost,
            "utility": self.utility,
            "within_budget": self.within_budget,
            "contribution_prior": self.prior,
            "signals": dict(self.estimate.signals),
        }


@dataclass(frozen=True, eq=False)
class Decision:
    """A routing decision: every candidate ranked, the chosen top-k first.

    Parameters
    ----------
    chosen : tuple[Scored, ...]
        The selected candidates, best first.
    ranked : tuple[Scored, ...]
        Every candidate, best first (over-budget ones last).
    router : str
        Name of the router that estimated.
    overhead_s : float
        Wall time the router spent deciding (query embedding included).
    notes : tuple[str, ...]
        Anything a reader of the provenance should know (budget relaxed, ...).
    """

    chosen: tuple[Scored, ...]
    ranked: tuple[Scored, ...]
    router: str
    overhead_s: float = 0.0
    notes: tuple[str, ...] = ()

    @property
    def best(self) -> Scored:
        """The top candidate."""
        return self.chosen[0]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready decision, with each candidate's scores (why this peer)."""
        return {
            "router": self.router,
            "overhead_s": self.overhead_s,
            "chosen": [s.candidate.key for s in self.chosen],
            "scores": [s.to_dict() for s in self.ranked],
            "notes": list(self.notes),
        }


class Objective:
    """Rank candidates by accuracy, latency and cost; keep the top ``k``.

    Parameters
    ----------
    config : RouterConfig
        Weights, latency budget and the defaults for unmeasured candidates.
    """

    def __init__(self, config: RouterConfig) -> None:
        if not isinstance(config, RouterConfig):
            raise TypeError(f"`config` must be a RouterConfig, got {type(config).__name__}")
        self.config = config

    def utility(self, *, accuracy: float, latency_s: float, cost: float) -> float:
        """``accuracy_weight * accuracy - latency_weight * latency_s - cost_weight * cost``."""
        c = self.config
        return c.accuracy_weight * accuracy - c.latency_weight * latency_s - c.cost_weight * cost

    def contribution_priors(self, candidates: Sequence[Candidate]) -> list[float]:
        """``w * (c_i - c_mean)`` per candidate (0 without a score, or with ``w = 0``).

        Each score is clipped to [-1, 1] first: the owner signs its own manifest, so a
        score is a claim, and an inflated one must not buy a candidate more than
        ``2 w`` of utility over any other (honest shares of the aggregate lie in
        that range unless the clients' updates cancel).
        """
        w = self.config.contribution_weight
        clipped = [
            None if c.contribution is None else min(1.0, max(-1.0, c.contribution))
            for c in candidates
        ]
        scores = [c for c in clipped if c is not None]
        if w == 0.0 or not scores:
            return [0.0] * len(candidates)
        mean = sum(scores) / len(scores)
        return [0.0 if c is None else w * (c - mean) for c in clipped]

    def score(
        self,
        candidates: Sequence[Candidate],
        estimates: Sequence[Estimate],
        *,
        latencies: Mapping[str, float] | None = None,
    ) -> list[Scored]:
        """Score every candidate; ``latencies`` (by key) override the candidates' own."""
        if len(candidates) != len(estimates):
            raise ValueError(f"got {len(estimates)} estimates for {len(candidates)} candidates")
        measured = latencies or {}
        budget = self.config.latency_budget_s
        priors = self.contribution_priors(candidates)
        out = []
        for candidate, estimate, prior in zip(candidates, estimates, priors, strict=True):
            latency = measured.get(candidate.key, candidate.latency_s)
            if latency is None:
                latency = self.config.default_latency_s
            utility = prior + self.utility(
                accuracy=estimate.accuracy, latency_s=latency, cost=candidate.cost
            )
            out.append(
                Scored(
                    candidate=candidate,
                    estimate=estimate,
                    latency_s=float(latency),
                    cost=float(candidate.cost),
                    utility=utility,
                    within_budget=budget is None or latency <= budget,
                    prior=prior,
                )
            )
        return out

    def select(
        self, scored: Sequence[Scored], *, k: int, router: str, overhead_s: float = 0.0
    ) -> Decision:
        """Rank ``scored`` and keep the best ``k`` within the latency budget.

        Ties in utility go to the lower latency, then to the candidate key, so a
        decision is deterministic.

        Raises
        ------
        ValueError
            If there is no candidate or ``k < 1``.
        """
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"`k` must be an int >= 1, got {k!r}")
        if not scored:
            raise ValueError("no candidates to route to")
        ranked = sorted(
            scored, key=lambda s: (not s.within_budget, -s.utility, s.latency_s, s.candidate.key)
        )
        eligible = [s for s in ranked if s.within_budget]
        notes: list[str] = []
        if not eligible:
            fastest = min(ranked, key=lambda s: (s.latency_s, -s.utility, s.candidate.key))
            notes.append(
                f"no candidate within the latency budget of {self.config.latency_budget_s}s; "
                f"kept the fastest, {fastest.candidate.key} ({fastest.latency_s:.3f}s)"
            )
            logger.info("%s", notes[-1])
            eligible = [fastest]
        return Decision(
            chosen=tuple(eligible[:k]),
            ranked=tuple(ranked),
            router=router,
            overhead_s=overhead_s,
            notes=tuple(notes),
        )
