"""Clipping, Gaussian noise and calibration."""

from __future__ import annotations

import math

import pytest
import torch

from fednet.privacy import (
    calibrate_noise_multiplier,
    clip_by_norm,
    clip_tree,
    compute_epsilon,
    gaussian_noise_like,
    gaussian_sigma,
    tree_norm,
)
from fednet.privacy.randomness import NoiseSource

DELTA = 1e-5


def test_clip_by_norm_per_row() -> None:
    x = torch.tensor([[0.3, 0.4], [3.0, 4.0], [0.0, 0.0], [-6.0, 8.0]])
    out = clip_by_norm(x, max_norm=1.0)
    norms = torch.linalg.vector_norm(out, dim=1)
    torch.testing.assert_close(norms, torch.tensor([0.5, 1.0, 0.0, 1.0]))
    torch.testing.assert_close(out[1], torch.tensor([0.6, 0.8]))  # direction kept
    torch.testing.assert_close(out[0], x[0])  # inside the ball: untouched
    assert torch.equal(x[1], torch.tensor([3.0, 4.0]))  # input untouched


def test_clip_by_norm_vector_and_higher_rank() -> None:
    torch.testing.assert_close(
        clip_by_norm(torch.tensor([3.0, 4.0]), max_norm=2.5), torch.tensor([1.5, 2.0])
    )
    x = torch.randn(4, 5, 6, generator=torch.Generator().manual_seed(0)) * 10
    out = clip_by_norm(x, max_norm=0.5)
    assert torch.all(torch.linalg.vector_norm(out, dim=-1) <= 0.5 * (1 + 1e-6))


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan])
def test_clip_by_norm_rejects_bad_bound(bad: float) -> None:
    with pytest.raises(ValueError, match="max_norm"):
        clip_by_norm(torch.ones(2, 2), max_norm=bad)


def test_clip_by_norm_rejects_integer_tensor() -> None:
    with pytest.raises(TypeError, match="floating-point"):
        clip_by_norm(torch.ones(2, 2, dtype=torch.long), max_norm=1.0)


def test_clip_tree_flattened_norm() -> None:
    tensors = {"a": torch.tensor([[1.0, 2.0], [2.0, 0.0]]), "b": torch.tensor([4.0])}  # norm 5
    assert tree_norm(tensors) == pytest.approx(5.0)
    clipped, scale = clip_tree(tensors, max_norm=2.0)
    assert scale == pytest.approx(0.4)
    assert tree_norm(clipped) == pytest.approx(2.0)
    torch.testing.assert_close(clipped["b"], torch.tensor([1.6]))
    same, scale = clip_tree(tensors, max_norm=5.0)
    assert scale == 1.0
    torch.testing.assert_close(same["a"], tensors["a"])


def test_gaussian_noise_like() -> None:
    x = torch.zeros(400, 500, dtype=torch.float64)
    noise = gaussian_noise_like(x, std=2.0, noise=NoiseSource.seeded(3))
    assert noise.shape == x.shape and noise.dtype == torch.float64
    assert noise.std().item() == pytest.approx(2.0, rel=0.01)
    again = gaussian_noise_like(x, std=2.0, noise=NoiseSource.seeded(3))
    assert torch.equal(noise, again)
    assert torch.equal(gaussian_noise_like(x, std=0.0), x)
    with pytest.raises(ValueError, match="std"):
        gaussian_noise_like(x, std=-1.0)


@pytest.mark.parametrize(
    ("epsilon", "sample_rate", "steps"),
    [(0.5, 1.0, 1), (1.0, 1.0, 1), (8.0, 1.0, 1), (3.0, 0.01, 1000)],
)
def test_calibration_agrees_with_accountant(epsilon: float, sample_rate: float, steps: int) -> None:
    z = calibrate_noise_multiplier(
        epsilon=epsilon, delta=DELTA, sample_rate=sample_rate, steps=steps
    )
    spent = compute_epsilon([(z, sample_rate, steps)], delta=DELTA)
    assert epsilon - min(0.01, epsilon / 1000) <= spent <= epsilon


def test_gaussian_sigma_is_tighter_than_classical_bound() -> None:
    # classical Gaussian mechanism (Dwork & Roth, Thm 3.22) for epsilon < 1
    for epsilon in (0.25, 0.5, 0.9):
        classical = math.sqrt(2 * math.log(1.25 / DELTA)) / epsilon
        sigma = gaussian_sigma(epsilon=epsilon, delta=DELTA, sensitivity=1.0)
        assert 0.5 * classical < sigma < classical
    z = calibrate_noise_multiplier(epsilon=1.0, delta=DELTA)
    assert gaussian_sigma(epsilon=1.0, delta=DELTA, sensitivity=3.0) == pytest.approx(3 * z)
    assert gaussian_sigma(epsilon=math.inf, delta=DELTA, sensitivity=1.0) == 0.0


def test_more_epsilon_means_less_noise() -> None:
    zs = [calibrate_noise_multiplier(epsilon=e, delta=DELTA) for e in (0.5, 1.0, 2.0, 8.0)]
    assert zs == sorted(zs, reverse=True)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"epsilon": 0.0, "delta": DELTA}, "epsilon"),
        ({"epsilon": 1.0, "delta": 0.0}, "delta"),
        ({"epsilon": 1.0, "delta": DELTA, "sample_rate": 2.0}, "sample_rate"),
        ({"epsilon": 1.0, "delta": DELTA, "steps": 0}, "steps"),
        ({"epsilon": 1e-6, "delta": DELTA}, "cannot calibrate"),
    ],
)
def test_calibration_validation(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        calibrate_noise_multiplier(**kwargs)  # type: ignore[arg-type]


def test_gaussian_sigma_rejects_bad_sensitivity() -> None:
    with pytest.raises(ValueError, match="sensitivity"):
        gaussian_sigma(epsilon=1.0, delta=DELTA, sensitivity=0.0)
