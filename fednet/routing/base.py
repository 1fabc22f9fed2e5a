"""What every router shares: queries, outcomes, latency tracking and ``route``.

A router estimates, for one query, the probability that each candidate answers
correctly (:meth:`Router.estimate`). :meth:`Router.route` hands the estimates to
the :class:`~fednet.routing.objective.Objective`, which weighs them against
latency and cost and keeps the top-k. :meth:`Router.update` feeds back what
happened (correct or not, confidence, latency).
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from fednet.routing.candidates import Candidate
from fednet.routing.config import RouterConfig
from fednet.routing.objective import Decision, Estimate, Objective

__all__ = ["Embedder", "Query", "Outcome", "Router"]

logger = logging.getLogger(__name__)

Embedder = Callable[[str, Sequence[str]], torch.Tensor]
"""``embed(base_model, texts) -> [n, d]`` L2-normalised frozen-encoder embeddings."""


class Query:
    """A query text and its embeddings, computed at most once per base model.

    Parameters
    ----------
    text : str
        The query.
    embedder : Embedder, optional
        Computes embeddings on demand; without it :meth:`embedding` returns
        ``None``.
    """

    def __init__(self, text: str, embedder: Embedder | None = None) -> None:
        if not isinstance(text, str):
            raise TypeError(f"query text must be a str, got {type(text).__name__}")
        self.text = text
        self._embedder = embedder
        self._embeddings: dict[str, torch.Tensor] = {}

    def embedding(self, base_model: str) -> torch.Tensor | None:
        """The ``[d]`` frozen-encoder embedding of the query under ``base_model``."""
        if self._embedder is None:
            return None
        if base_model not in self._embeddings:
            self._embeddings[base_model] = self._embedder(base_model, [self.text])[0]
        return self._embeddings[base_model]


@dataclass(frozen=True)
class Outcome:
    """What happened when a candidate answered a query.

    Parameters
    ----------
    query : str
        The query text.
    candidate : Candidate
        Who answered.
    correct : bool or None
        Whether the answer was right, when someone knows.
    confidence : float or None
        The answer's confidence (probability of its label); used as a soft
        label when ``correct`` is unknown.
    latency_s : float or None
        Observed latency of the call.
    failed : bool
        The call failed (timeout, malformed answer); counts as incorrect.
    """

    query: str
    candidate: Candidate
    correct: bool | None = None
    confidence: float | None = None
    latency_s: float | None = None
    failed: bool = False

    def target(self, *, use_confidence: bool = False) -> float | None:
        """The label the learned router trains on, in [0, 1], or ``None``.

        A failure is 0, a known correctness is 0 or 1; otherwise, with
        ``use_confidence``, the answer's confidence is a soft label.
        """
        if self.failed:
            return 0.0
        if self.correct is not None:
            return 1.0 if self.correct else 0.0
        if use_confidence and self.confidence is not None:
            return min(1.0, max(0.0, float(self.confidence)))
        return None


class Router(ABC):
    """Base class of routers.

    Parameters
    ----------
    config : RouterConfig
        Router and objective settings.
    embedder : Embedder, optional
        Frozen-encoder embeddings of query texts; routers that need them say so.
    """

    name: ClassVar[str] = "router"

    def __init__(self, config: RouterConfig | None = None, *, embedder: Embedder | None = None):
        self.config = config or RouterConfig(name=self.name)
        if not isinstance(self.config, RouterConfig):
            raise TypeError(f"`config` must be a RouterConfig, got {type(config).__name__}")
        self.embedder = embedder
        self.objective = Objective(self.config)
        self.latencies: dict[str, float] = {}

    @abstractmethod
    def estimate(self, query: Query, candidates: Sequence[Candidate]) -> list[Estimate]:
        """One :class:`Estimate` per candidate, in order."""

    def route(
        self, text: str, candidates: Sequence[Candidate], *, k: int | None = None
    ) -> Decision:
        """Choose the best ``k`` (default ``config.top_k``) candidates for ``text``.

        Raises
        ------
        ValueError
            If ``candidates`` is empty.
        """
        if not candidates:
            raise ValueError("no candidates to route to: is any peer up and serving an adapter?")
        start = time.perf_counter()
        estimates = self.estimate(Query(text, self.embedder), candidates)
        scored = self.objective.score(candidates, estimates, latencies=self.latencies)
        overhead = time.perf_counter() - start
        return self.objective.select(
            scored, k=k or self.config.top_k, router=self.name, overhead_s=overhead
        )

    def update(self, outcome: Outcome) -> None:
        """Learn from ``outcome``; the base class tracks the candidate's latency."""
        if outcome.latency_s is None or outcome.failed:
            return
        key = outcome.candidate.key
        decay = self.config.latency_decay
        old = self.latencies.get(key)
        new = float(outcome.latency_s)
        self.latencies[key] = new if old is None else (1 - decay) * old + decay * new

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume this router (tensors and plain values)."""
        return {"latencies": dict(self.latencies)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output.

        Raises
        ------
        ValueError
            If a latency is not a non-negative number.
        """
        latencies = state.get("latencies", {})
        if not isinstance(latencies, Mapping):
            raise TypeError(f"state `latencies` must be a mapping, got {latencies!r}")
        checked = {}
        for key, value in latencies.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"state `latencies[{key!r}]` must be >= 0, got {value!r}")
            checked[str(key)] = float(value)
        self.latencies = checked

    def __repr__(self) -> str:
        return f"{type(self).__name__}(config={self.config!r})"
