"""Routing across base models: queries and sketches meet in the network space.

The asker embeds a query once, with its own encoder, and maps it into the
network space (:class:`~fednet.representation.space.NetworkSpace`). Every
candidate's released sketch is mapped there too, with the map of the
candidate's base model, and matched as by the :class:`SketchRouter`. The map
sees only released sketches (post-processing of their DP noise, no extra
charge). A candidate on a model the space has no map for is not matched
(relevance from a similarity of -1) and logged.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from fednet.privacy.sketch import Sketch
from fednet.representation.space import NetworkSpace
from fednet.routing.base import Embedder, Query
from fednet.routing.candidates import Candidate
from fednet.routing.config import RouterConfig
from fednet.routing.sketch_router import SketchMatch, SketchMatcher, SketchRouter

__all__ = ["NetworkSketchMatcher", "NetworkSketchRouter"]

logger = logging.getLogger(__name__)


class NetworkSketchMatcher(SketchMatcher):
    """Scores candidates on any base model against one query in the network space.

    Parameters
    ----------
    embedder : Embedder
        Frozen-encoder embeddings (used for the asker's model only).
    config : RouterConfig
        ``sharpness`` and ``min_count``.
    space : NetworkSpace
        Maps of every base model into the network space.
    asker_model : str
        The base model whose encoder embeds queries.
    """

    def __init__(
        self, embedder: Embedder, config: RouterConfig, *, space: NetworkSpace, asker_model: str
    ) -> None:
        super().__init__(embedder, config)
        space.map_for(asker_model)  # a missing map is named now, not per query
        self.space = space
        self.asker_model = asker_model
        self._mapped: dict[int, Sketch] = {}

    def network_sketch(self, candidate: Candidate) -> tuple[Sketch, bool] | None:
        """The candidate's released sketch mapped into the network space (cached)."""
        sketch, fallback = self.sketch_of(candidate)
        if candidate.base_model not in self.space.maps:
            return None
        key = id(sketch)
        if key not in self._mapped:
            self._mapped[key] = self.space.map_sketch(sketch, candidate.base_model)
        return self._mapped[key], fallback

    def match(self, query: Query, candidates: Sequence[Candidate]) -> list[SketchMatch]:
        embedding = query.embedding(self.asker_model)
        if embedding is None:
            raise ValueError("the network router needs a query with an embedder")
        q = self.space.to_network(self.asker_model, embedding.float()).reshape(1, -1)
        raw: list[tuple[float, bool]] = []
        for candidate in candidates:
            mapped = self.network_sketch(candidate)
            if mapped is None:
                logger.warning(
                    "no map from %s into the network space; %s is not matched",
                    candidate.base_model,
                    candidate.adapter,
                )
                raw.append((-1.0, True))
                continue
            sketch, fallback = mapped
            raw.append((self._score(sketch, q), fallback))
        return self._relevance(raw)


class NetworkSketchRouter(SketchRouter):
    """The sketch router over candidates on every base model (see the module notes).

    Parameters
    ----------
    config : RouterConfig, optional
        As for :class:`SketchRouter`.
    embedder : Embedder
        Frozen-encoder embeddings; required.
    space : NetworkSpace
        The network space and its maps; required.
    asker_model : str
        Base model of the asker's encoder; default the space's reference model.
    """

    name = "network-sketch"

    def __init__(
        self,
        config: RouterConfig | None = None,
        *,
        embedder: Embedder | None = None,
        space: NetworkSpace | None = None,
        asker_model: str | None = None,
    ) -> None:
        if space is None:
            raise TypeError("the network-sketch router needs a `space` (fednet.representation)")
        super().__init__(config, embedder=embedder)
        self.space = space
        self.matcher = NetworkSketchMatcher(
            self.embedder,  # type: ignore[arg-type]
            self.config,
            space=space,
            asker_model=asker_model or space.reference,
        )
