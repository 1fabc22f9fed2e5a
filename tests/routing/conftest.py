"""Routing fixtures: hand-made sketches and a keyword embedder, no model needed."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest
import torch

from fednet.privacy import Sketch
from fednet.routing import Candidate

VOCAB = ("prize", "win", "cash", "film", "election", "match", "flight", "bag", "delay")
DOMAINS = {
    "spam": ("prize", "win", "cash"),
    "news": ("film", "election", "match"),
    "tweets": ("flight", "bag", "delay"),
}


def keyword_embedder(base_model: str, texts: Sequence[str]) -> torch.Tensor:
    """Bag of keywords plus a constant, L2-normalised: a stand-in for the frozen encoder."""
    rows = []
    for text in texts:
        words = text.lower().split()
        rows.append([1.0 if w in words else 0.0 for w in VOCAB] + [0.1])
    return torch.nn.functional.normalize(torch.tensor(rows), dim=-1)


def sketch_for(domain: str, counts: Sequence[float] | None = None) -> Sketch:
    """One centroid per keyword of ``domain``."""
    words = DOMAINS[domain]
    centroids = keyword_embedder("x", list(words))
    return Sketch(
        centroids=centroids,
        counts=torch.tensor([float(c) for c in (counts or [10.0] * len(words))]),
        label_names=words,
        clip=1.0,
        noise_multiplier=0.0,
        epsilon=math.inf,
        delta=0.0,
    )


def make_candidate(
    domain: str, *, accuracy: float = 0.9, sketch: bool | Sketch = True, **kw: object
) -> Candidate:
    fields = dict(
        adapter=f"{domain}-adapter",
        version=1,
        base_model="stub",
        task=domain,
        label_names=DOMAINS[domain],
        owner=f"{domain}-client",
        peer_id=f"{domain}-peer",
        endpoint="http://127.0.0.1:1",
        metrics={"accuracy": accuracy},
        sketch=sketch if isinstance(sketch, Sketch) else sketch_for(domain) if sketch else None,
    )
    fields.update(kw)
    return Candidate(**fields)  # type: ignore[arg-type]


@pytest.fixture
def candidates() -> list[Candidate]:
    return [make_candidate(d) for d in DOMAINS]
