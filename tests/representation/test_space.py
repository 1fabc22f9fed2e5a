"""The network space: sketches are mapped only after their DP noise (post-processing)."""

from __future__ import annotations

import math

import pytest
import torch

from fednet.privacy.randomness import NoiseSource
from fednet.privacy.sketch import build_sketch, sketch_noise_multiplier
from fednet.representation import NetworkSpace, RidgeMap, create_map

from .conftest import paired


class RecordingRidge(RidgeMap):
    """A real ridge map that keeps every input it is applied to."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.seen: list[torch.Tensor] = []

    def _apply(self, x):
        self.seen.append(x.clone())
        return super()._apply(x)


@pytest.fixture
def setup():
    x, y = paired(400, 24, 16, seed=1)
    m = RecordingRidge(source_dim=24, target_dim=16).fit(x, y)
    labels = torch.arange(400) % 3
    return x, labels, m


def test_map_sees_only_the_released_noisy_centroids(setup):
    x, labels, m = setup
    z = sketch_noise_multiplier(epsilon=1.0, delta=1e-5)
    sketch = build_sketch(
        x, labels, num_labels=3, clip=1.0, noise_multiplier=z, noise=NoiseSource.seeded(5)
    )
    exact = build_sketch(x, labels, num_labels=3, clip=1.0, noise_multiplier=0.0)
    space = NetworkSpace(reference="ref", dim=16, maps={"other": m})
    mapped = space.map_sketch(sketch, "other")

    assert len(m.seen) == 1
    assert torch.equal(m.seen[0], sketch.centroids.float())  # the noisy release, as released
    assert not torch.allclose(m.seen[0], exact.centroids, atol=1e-3)  # not the raw centroids
    # post-processing: nothing else changes, nothing more is charged
    assert torch.equal(mapped.counts, sketch.counts)
    assert (mapped.epsilon, mapped.noise_multiplier, mapped.releases) == (
        sketch.epsilon,
        sketch.noise_multiplier,
        sketch.releases,
    )
    assert math.isfinite(mapped.epsilon) and mapped.centroids.shape == (3, 16)


def test_raw_embeddings_cannot_be_mapped_as_a_sketch(setup):
    x, _, m = setup
    space = NetworkSpace(reference="ref", dim=16, maps={"other": m})
    with pytest.raises(TypeError, match="only a released Sketch may be mapped"):
        space.map_sketch(x, "other")  # type: ignore[arg-type]
    assert m.seen == []


def test_space_names_missing_and_misfit_maps(setup):
    _, _, m = setup
    space = NetworkSpace(reference="ref", dim=16, maps={"other": m})
    with pytest.raises(ValueError, match=r"no map from 'third'.*\['other', 'ref'\]"):
        space.to_network("third", torch.zeros(24))
    with pytest.raises(ValueError, match="outputs 8-d; the network space is 16-d"):
        space.add("x", create_map("mean", source_dim=4, target_dim=8))
    ref = torch.randn(5, 16)
    assert torch.equal(space.to_network("ref", ref), ref)  # the reference model needs no map
