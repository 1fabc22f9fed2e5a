"""The prior router: trust each owner's reported accuracy, ignore the query.

A baseline, and a fallback when no query embedding can be computed.
"""

from __future__ import annotations

from collections.abc import Sequence

from fednet.routing.base import Query, Router
from fednet.routing.candidates import Candidate
from fednet.routing.objective import Estimate

__all__ = ["PriorRouter"]


class PriorRouter(Router):
    """Estimate every candidate's accuracy by its manifest's ``accuracy`` metric."""

    name = "prior"

    def estimate(self, query: Query, candidates: Sequence[Candidate]) -> list[Estimate]:
        out = []
        for candidate in candidates:
            prior = candidate.accuracy
            value = self.config.default_accuracy if prior is None else min(1.0, max(0.0, prior))
            out.append(Estimate(accuracy=value, signals={"prior_accuracy": value}))
        return out
