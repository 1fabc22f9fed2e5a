"""The network space: one shared embedding space that every base model maps into.

The network space is the pooled, L2-normalised embedding space of one
reference base model (by default ``minilm-l6``, 384-d, the model every fednet
client ran before federations mixed models). A client on the reference model
needs no map (:class:`~fednet.representation.maps.IdentityMap`); a client on any
other model maps its embeddings with a map fitted on public text
(:mod:`fednet.representation.corpus`).

What crosses between models through this space:

- routing: a query embedded once by the asker's own encoder and mapped here is
  scored against every client's sketch mapped here too (:meth:`NetworkSpace.map_sketch`);
- knowledge transfer: DP class prototypes (:mod:`fednet.representation.prototypes`).

A map is applied only to what a client has already released: a sketch's noisy
centroids, a prototype's noisy sums. Any function of a DP release is DP with the
same ε (post-processing; Dwork & Roth 2014, prop. 2.1), so mapping costs no
privacy and nothing is charged again.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping

import torch

from fednet.privacy.sketch import Sketch
from fednet.representation.maps import EmbeddingMap, IdentityMap

__all__ = ["DEFAULT_NETWORK_SPACE", "NetworkSpace"]

logger = logging.getLogger(__name__)

DEFAULT_NETWORK_SPACE = "minilm-l6"
"""Base model whose pooled space is the network space."""


class NetworkSpace:
    """Maps from each base model into the network space.

    Parameters
    ----------
    reference : str
        Base model whose space is the network space.
    dim : int
        Its dimension.
    maps : mapping of str to EmbeddingMap
        Fitted map per other base model; the reference gets an identity map.
    """

    def __init__(
        self, *, reference: str, dim: int, maps: Mapping[str, EmbeddingMap] | None = None
    ) -> None:
        self.reference = reference
        self.dim = dim
        self.maps: dict[str, EmbeddingMap] = {
            reference: IdentityMap(source_dim=dim, target_dim=dim)
        }
        for base_model, m in (maps or {}).items():
            self.add(base_model, m)

    def add(self, base_model: str, m: EmbeddingMap) -> None:
        """Use map ``m`` for ``base_model``; its output must be the network dimension."""
        if not isinstance(m, EmbeddingMap):
            raise TypeError(f"map for {base_model!r} must be an EmbeddingMap, got {m!r}")
        if m.target_dim != self.dim:
            raise ValueError(
                f"map for {base_model!r} outputs {m.target_dim}-d; "
                f"the network space is {self.dim}-d"
            )
        self.maps[base_model] = m

    def map_for(self, base_model: str) -> EmbeddingMap:
        """The map of ``base_model``; a missing one names the models that have one."""
        try:
            return self.maps[base_model]
        except KeyError:
            raise ValueError(
                f"no map from {base_model!r} into the network space ({self.reference}); "
                f"maps exist for {sorted(self.maps)}"
            ) from None

    def to_network(self, base_model: str, embeddings: torch.Tensor) -> torch.Tensor:
        """Map ``[n, d]`` (or ``[d]``) embeddings of ``base_model`` into the network space."""
        return self.map_for(base_model)(embeddings)

    def map_sketch(self, sketch: Sketch, base_model: str) -> Sketch:
        """The released ``sketch`` of a ``base_model`` client, its centroids mapped here.

        Only a released :class:`~fednet.privacy.sketch.Sketch` is accepted: its
        centroids already carry the DP noise, so the map is post-processing.
        Counts, ε, δ and the noise settings are kept as released.

        Raises
        ------
        TypeError
            If ``sketch`` is not a released Sketch (e.g. raw embeddings).
        """
        if not isinstance(sketch, Sketch):
            raise TypeError(
                f"only a released Sketch may be mapped, got {type(sketch).__name__}; "
                "map after the DP noise, never raw embeddings"
            )
        centroids = self.to_network(base_model, sketch.centroids.float())
        return dataclasses.replace(sketch, centroids=centroids)
