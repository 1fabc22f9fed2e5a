"""Capability sketches: clipping, noise calibration, usefulness, serialisation."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from flwr.app import ArrayRecord
from safetensors.torch import load_file, save_file

from fednet.privacy import (
    SKETCH_KEYS,
    PrivacyLedger,
    Sketch,
    build_sketch,
    clip_by_norm,
    compute_epsilon,
    sketch_noise_multiplier,
)
from fednet.privacy.randomness import NoiseSource

DELTA = 1e-5


def _clusters(
    n: int, d: int, seed: int, spread: float = 0.3, draw: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two well-separated clusters around +u and -u; returns (x, labels, u).

    ``seed`` fixes the direction ``u``; ``draw`` fixes which points are sampled.
    """
    u = torch.nn.functional.normalize(
        torch.randn(d, generator=torch.Generator().manual_seed(seed)), dim=0
    )
    g = torch.Generator().manual_seed(1000 * seed + draw)
    x = torch.cat(
        [u + spread * torch.randn(n, d, generator=g), -u + spread * torch.randn(n, d, generator=g)]
    )
    labels = torch.cat([torch.zeros(n, dtype=torch.long), torch.ones(n, dtype=torch.long)])
    return x, labels, u


def test_sums_are_sums_of_clipped_vectors_without_noise() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(30, 4, generator=g) * torch.linspace(0.05, 5.0, 30).unsqueeze(1)
    labels = torch.arange(30) % 3
    clip = 0.7
    clipped = clip_by_norm(x, max_norm=clip)
    assert torch.all(torch.linalg.vector_norm(clipped, dim=1) <= clip * (1 + 1e-6))
    assert torch.any(torch.linalg.vector_norm(x, dim=1) > clip)  # some rows really clipped

    sketch = build_sketch(x, labels, num_labels=4, clip=clip, noise_multiplier=0.0, normalize=False)
    torch.testing.assert_close(sketch.counts, torch.tensor([10.0, 10.0, 10.0, 0.0]))
    for label in range(3):
        expected = clipped[labels == label].sum(dim=0)
        torch.testing.assert_close(sketch.centroids[label] * 10, expected)
    torch.testing.assert_close(sketch.centroids[3], torch.zeros(4))
    assert sketch.epsilon == math.inf  # no noise, no privacy


def test_normalised_embeddings_are_unit_before_clipping() -> None:
    x = torch.tensor([[10.0, 0.0], [0.0, 0.1]])
    sketch = build_sketch(x, torch.tensor([0, 0]), num_labels=1, clip=1.0, noise_multiplier=0.0)
    torch.testing.assert_close(sketch.centroids[0], torch.tensor([0.5, 0.5]))


def test_noise_std_matches_calibration() -> None:
    # Many labels and dimensions: every coordinate is one independent noise draw.
    num_labels, d, clip, z = 2000, 10, 0.5, 0.7
    x = torch.zeros(0, d)
    labels = torch.zeros(0, dtype=torch.long)
    sketch = build_sketch(
        x,
        labels,
        num_labels=num_labels,
        clip=clip,
        noise_multiplier=z,
        noise=NoiseSource.seeded(0),
    )
    sums = sketch.centroids * sketch.counts.clamp_min(1.0).unsqueeze(1)  # true sums are 0
    count_noise = sketch.counts  # true counts are 0
    assert sums.numel() == 20_000
    assert sums.std().item() == pytest.approx(math.sqrt(2) * z * clip, rel=0.1)
    assert count_noise.std().item() == pytest.approx(math.sqrt(2) * z, rel=0.1)
    assert abs(sums.mean().item()) < 0.05


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_calibrated_sketch_at_epsilon_8_stays_useful(seed: int) -> None:
    x, labels, u = _clusters(n=40, d=32, seed=seed)
    z = sketch_noise_multiplier(epsilon=8.0, delta=DELTA)
    sketch = build_sketch(
        x,
        labels,
        num_labels=2,
        clip=1.0,
        noise_multiplier=z,
        noise=NoiseSource.seeded(100 + seed),
    )
    sims = sketch.similarities(torch.stack([u, -u]))
    assert sims[0, 0] > sims[0, 1] and sims[1, 1] > sims[1, 0]
    assert sims[0, 0] > 0.8 and sims[1, 1] > 0.8
    # held-out queries from each cluster are nearest their own label
    queries, truth, _ = _clusters(n=20, d=32, seed=seed, draw=1)
    assert (sketch.similarities(queries).argmax(dim=1) == truth).float().mean() > 0.95


def test_sketch_charge_matches_its_epsilon() -> None:
    z = sketch_noise_multiplier(epsilon=1.0, delta=DELTA)
    x, labels, _ = _clusters(n=10, d=8, seed=0)
    sketch = build_sketch(x, labels, num_labels=2, clip=1.0, noise_multiplier=z, delta=DELTA)
    assert sketch.ledger_charge() == {"noise_multiplier": z, "sample_rate": 1.0, "steps": 1}
    ledger = PrivacyLedger("c", delta=DELTA, budget=8.0)
    spent = ledger.charge(**sketch.ledger_charge(), kind="sketch")  # type: ignore[arg-type]
    assert spent == pytest.approx(sketch.epsilon, rel=1e-12)
    assert 0.99 <= sketch.epsilon <= 1.0


def test_score_ignores_rows_with_non_positive_counts() -> None:
    sketch = Sketch(
        centroids=torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, -1.0]]),
        counts=torch.tensor([5.0, -0.5, 0.0]),
        label_names=("a", "b", "c"),
        clip=1.0,
        noise_multiplier=1.0,
        epsilon=1.0,
        delta=DELTA,
    )
    query = torch.tensor([0.0, 2.0])
    assert sketch.similarities(query)[0, 1].item() == pytest.approx(1.0)
    assert sketch.score(query).item() == pytest.approx(0.0)  # only row "a" counts
    both = sketch.score(torch.tensor([[1.0, 1.0], [-1.0, 0.0]]))
    torch.testing.assert_close(both, torch.tensor([math.sqrt(0.5), -1.0]))
    assert sketch.score(query, min_count=10.0).item() == -1.0  # nothing usable


def test_kmeans_centroids_find_clusters() -> None:
    x, labels, u = _clusters(n=100, d=8, seed=4, spread=0.2)
    z = sketch_noise_multiplier(epsilon=8.0, delta=DELTA, releases=4)
    sketch = build_sketch(
        x,
        labels,
        num_labels=2,
        clip=1.0,
        noise_multiplier=z,
        noise=NoiseSource.seeded(7),
        kmeans=2,
        kmeans_iters=3,
    )
    assert sketch.label_names == ("0", "1", "cluster-0", "cluster-1")
    assert sketch.releases == 4
    assert sketch.epsilon == pytest.approx(compute_epsilon([(z, 1.0, 4)], delta=DELTA))
    assert sketch.epsilon <= 8.0
    cluster_sims = sketch.similarities(torch.stack([u, -u]))[:, 2:]
    assert cluster_sims.max(dim=1).values.min() > 0.9  # each cluster has a centroid on it


def test_round_trip_through_safetensors_and_array_record(tmp_path: Path) -> None:
    x, labels, _ = _clusters(n=10, d=8, seed=1)
    sketch = build_sketch(
        x,
        labels,
        num_labels=3,
        clip=0.5,
        noise_multiplier=2.0,
        noise=NoiseSource.seeded(0),
        label_names=["spam", "ham", "ünïcode"],
    )
    tensors = sketch.to_tensors()
    assert set(tensors) == set(SKETCH_KEYS)
    path = tmp_path / "sketch.safetensors"
    save_file(tensors, str(path))
    from_disk = Sketch.from_tensors(load_file(str(path)))
    from_wire = Sketch.from_tensors(ArrayRecord(tensors).to_torch_state_dict())
    for restored in (from_disk, from_wire):
        torch.testing.assert_close(restored.centroids, sketch.centroids)
        torch.testing.assert_close(restored.counts, sketch.counts)
        assert restored.label_names == ("spam", "ham", "ünïcode")
        assert (restored.clip, restored.noise_multiplier, restored.epsilon) == (
            sketch.clip,
            sketch.noise_multiplier,
            sketch.epsilon,
        )
        assert (restored.delta, restored.releases) == (sketch.delta, 1)


def test_from_tensors_rejects_missing_and_unknown_keys() -> None:
    tensors = build_sketch(
        torch.ones(2, 3), torch.tensor([0, 1]), num_labels=2, clip=1.0, noise_multiplier=0.0
    ).to_tensors()
    with pytest.raises(ValueError, match="missing \\['sketch.counts'\\]"):
        Sketch.from_tensors({k: v for k, v in tensors.items() if k != "sketch.counts"})
    with pytest.raises(ValueError, match="unknown \\['sketch.extra'\\]"):
        Sketch.from_tensors({**tensors, "sketch.extra": torch.zeros(1)})


@pytest.mark.parametrize(
    ("labels", "kwargs", "error", "match"),
    [
        (torch.tensor([0, 2]), {}, ValueError, "labels must be in \\[0, 2\\)"),
        (torch.tensor([0.0, 1.0]), {}, TypeError, "integer"),
        (torch.tensor([0, 1, 1]), {}, ValueError, "shape"),
        (torch.tensor([0, 1]), {"clip": 0.0}, ValueError, "clip"),
        (torch.tensor([0, 1]), {"noise_multiplier": -1.0}, ValueError, "noise_multiplier"),
        (torch.tensor([0, 1]), {"num_labels": 0}, ValueError, "num_labels"),
        (torch.tensor([0, 1]), {"kmeans": -1}, ValueError, "kmeans"),
        (torch.tensor([0, 1]), {"label_names": ["a"]}, ValueError, "label_names"),
    ],
)
def test_build_sketch_validation(
    labels: torch.Tensor, kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    args: dict[str, object] = {"num_labels": 2, "clip": 1.0, "noise_multiplier": 1.0, **kwargs}
    with pytest.raises(error, match=match):
        build_sketch(torch.ones(2, 3), labels, **args)  # type: ignore[arg-type]
