"""The sketch router: match a query against each candidate's DP capability sketch.

The query is embedded with the frozen base encoder (mean-pooled, L2-normalised:
the space the sketches are released in, see :mod:`fednet.privacy.sketch`). Its
cosine ``cos_l`` to each usable label centroid is combined as the log-likelihood
of a mixture whose weights are the noisy counts::

    s = (1 / kappa) * log(sum_l pi_l * exp(kappa * cos_l)),   pi_l = n_l / sum(n)

so a label the owner has seen often counts more than a rare one. Relevance is
``exp(kappa * (s - max_j s_j))``: 1 for the best-matching candidates, near 0 for
candidates of another domain. The estimated accuracy is relevance times the
owner's reported accuracy. A candidate without a sketch is matched against the
embeddings of its label names, a weak but data-free stand-in.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from fednet.privacy.sketch import Sketch
from fednet.routing.base import Embedder, Query, Router
from fednet.routing.candidates import Candidate
from fednet.routing.config import RouterConfig
from fednet.routing.objective import Estimate

__all__ = ["SketchRouter", "SketchMatch", "SketchMatcher", "mixture_score"]

logger = logging.getLogger(__name__)


def mixture_score(
    similarities: torch.Tensor, counts: torch.Tensor, *, sharpness: float, min_count: float = 0.0
) -> float:
    """Count-weighted soft maximum of cosine similarities (see the module notes).

    Parameters
    ----------
    similarities : torch.Tensor
        ``[K]`` cosines of the query to each centroid.
    counts : torch.Tensor
        ``[K]`` noisy counts; rows with count ``<= min_count`` are ignored.
    sharpness : float
        ``kappa``.
    min_count : float
        Threshold on usable rows.

    Returns
    -------
    float
        ``s`` in about [-1, 1]; -1 when no row is usable.
    """
    usable = counts > min_count
    if not bool(usable.any()):
        return -1.0
    sims = similarities[usable].double()
    weights = counts[usable].double()
    log_pi = torch.log(weights / weights.sum())
    return float(torch.logsumexp(log_pi + sharpness * sims, dim=0) / sharpness)


@dataclass(frozen=True)
class SketchMatch:
    """How well one candidate's sketch matches a query."""

    similarity: float
    relevance: float
    fallback: bool


class SketchMatcher:
    """Scores sketches against queries; caches label-name stand-in sketches.

    Parameters
    ----------
    embedder : Embedder
        Frozen-encoder embeddings.
    config : RouterConfig
        ``sharpness`` and ``min_count``.
    """

    def __init__(self, embedder: Embedder, config: RouterConfig) -> None:
        self.embedder = embedder
        self.config = config
        self._label_sketches: dict[tuple[str, tuple[str, ...]], Sketch] = {}

    def sketch_of(self, candidate: Candidate) -> tuple[Sketch, bool]:
        """The candidate's sketch, or a stand-in built from its label names."""
        if candidate.sketch is not None:
            return candidate.sketch, False
        key = (candidate.base_model, candidate.label_names)
        if key not in self._label_sketches:
            vectors = self.embedder(candidate.base_model, list(candidate.label_names))
            self._label_sketches[key] = Sketch(
                centroids=vectors.float(),
                counts=torch.ones(len(candidate.label_names)),
                label_names=candidate.label_names,
                clip=1.0,
                noise_multiplier=0.0,
                epsilon=math.inf,
                delta=0.0,
            )
            logger.info(
                "no sketch for %s; matching queries against its label names", candidate.adapter
            )
        return self._label_sketches[key], True

    def match(self, query: Query, candidates: Sequence[Candidate]) -> list[SketchMatch]:
        """One :class:`SketchMatch` per candidate."""
        raw: list[tuple[float, bool]] = []
        for candidate in candidates:
            sketch, fallback = self.sketch_of(candidate)
            embedding = query.embedding(candidate.base_model)
            if embedding is None or embedding.shape[-1] != sketch.centroids.shape[1]:
                logger.warning(
                    "sketch of %s does not match the query embedding; ignoring it",
                    candidate.adapter,
                )
                raw.append((-1.0, True))
                continue
            raw.append((self._score(sketch, embedding.reshape(1, -1)), fallback))
        return self._relevance(raw)

    def _score(self, sketch: Sketch, query: torch.Tensor) -> float:
        """The mixture score of one query row ``[1, dim]`` against ``sketch``'s centroids."""
        return mixture_score(
            sketch.similarities(query)[0],
            sketch.counts,
            sharpness=self.config.sharpness,
            min_count=self.config.min_count,
        )

    def _relevance(self, raw: list[tuple[float, bool]]) -> list[SketchMatch]:
        """Matches from ``(score, fallback)`` pairs: relevance relative to the best score."""
        if not raw:
            return []
        best = max(score for score, _ in raw)
        kappa = self.config.sharpness
        return [
            SketchMatch(similarity=s, relevance=math.exp(kappa * (s - best)), fallback=f)
            for s, f in raw
        ]


class SketchRouter(Router):
    """Route by DP capability sketches (see the module notes).

    Parameters
    ----------
    config : RouterConfig, optional
        ``sharpness``, ``min_count``, ``default_accuracy`` and the objective.
    embedder : Embedder
        Frozen-encoder embeddings of queries and label names; required.
    """

    name = "sketch"

    def __init__(self, config: RouterConfig | None = None, *, embedder: Embedder | None = None):
        if embedder is None:
            raise TypeError("the sketch router needs an `embedder` (the frozen base encoder)")
        super().__init__(config, embedder=embedder)
        self.matcher = SketchMatcher(embedder, self.config)

    def estimate(self, query: Query, candidates: Sequence[Candidate]) -> list[Estimate]:
        matches = self.matcher.match(query, candidates)
        out = []
        for candidate, m in zip(candidates, matches, strict=True):
            prior = candidate.accuracy
            prior = self.config.default_accuracy if prior is None else min(1.0, max(0.0, prior))
            out.append(
                Estimate(
                    accuracy=m.relevance * prior,
                    signals={
                        "similarity": m.similarity,
                        "relevance": m.relevance,
                        "prior_accuracy": prior,
                        "label_fallback": float(m.fallback),
                    },
                )
            )
        return out
