"""Routing across base models: the query is embedded once and meets mapped sketches."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import pytest
import torch

from fednet.privacy import Sketch
from fednet.representation import NetworkSpace, create_map
from fednet.routing import Candidate, NetworkSketchRouter, Query, RouterConfig, create_router

from .conftest import DOMAINS, VOCAB, keyword_embedder

GEN = torch.Generator().manual_seed(0)
ROTATION = torch.linalg.qr(torch.randn(12, 12, generator=GEN))[0][: len(VOCAB) + 1]  # 10 -> 12


class CountingEmbedder:
    """``ref``: the keyword embedder; ``rot``: the same rotated into 12 dimensions."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, base_model: str, texts: Sequence[str]) -> torch.Tensor:
        self.calls.append(base_model)
        x = keyword_embedder(base_model, texts)
        return x if base_model == "ref" else x @ ROTATION


def _space() -> NetworkSpace:
    public = [" ".join(c) for c in itertools.combinations(VOCAB, 3)]  # no client holds these
    embed = CountingEmbedder()
    m = create_map("procrustes", source_dim=12, target_dim=len(VOCAB) + 1)
    m.fit(embed("rot", public), embed("ref", public))
    return NetworkSpace(reference="ref", dim=len(VOCAB) + 1, maps={"rot": m})


def _candidate(domain: str, base_model: str) -> Candidate:
    centroids = CountingEmbedder()(base_model, list(DOMAINS[domain]))
    sketch = Sketch(
        centroids=centroids,
        counts=torch.full((3,), 10.0),
        label_names=DOMAINS[domain],
        clip=1.0,
        noise_multiplier=0.0,
        epsilon=math.inf,
        delta=0.0,
    )
    return Candidate(
        adapter=f"{domain}-{base_model}",
        version=1,
        base_model=base_model,
        task=domain,
        label_names=DOMAINS[domain],
        owner=f"{domain}-{base_model}",
        metrics={"accuracy": 0.9},
        sketch=sketch,
    )


@pytest.mark.parametrize("asker", ["ref", "rot"])
def test_queries_reach_the_right_client_on_another_model(asker: str) -> None:
    embed = CountingEmbedder()
    router = NetworkSketchRouter(
        RouterConfig(name="network-sketch", top_k=1),
        embedder=embed,
        space=_space(),
        asker_model=asker,
    )
    candidates = [_candidate("spam", "rot"), _candidate("news", "ref"), _candidate("tweets", "rot")]
    for text, domain in [
        ("win cash prize", "spam"),
        ("election film", "news"),
        ("bag delay", "tweets"),
    ]:
        decision = router.route(text, candidates)
        assert decision.chosen[0].candidate.task == domain
    assert set(embed.calls) == {asker}  # embedded only by the asker's own encoder


def test_a_model_without_a_map_is_not_matched_and_a_space_is_required() -> None:
    router = NetworkSketchRouter(embedder=CountingEmbedder(), space=_space(), asker_model="ref")
    stray = _candidate("spam", "ref")
    unmapped = Candidate(**{**stray.__dict__, "adapter": "x", "base_model": "third"})
    scores = router.matcher.match(Query("win cash", CountingEmbedder()), [stray, unmapped])
    assert scores[1].similarity == -1.0 and scores[0].similarity > 0.5
    with pytest.raises(TypeError, match="needs a `space`"):
        create_router("network-sketch", embedder=CountingEmbedder())
    with pytest.raises(ValueError, match="no map from 'third'"):
        NetworkSketchRouter(embedder=CountingEmbedder(), space=_space(), asker_model="third")
