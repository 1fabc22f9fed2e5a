"""User-level update clipping and noise, against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
from flwr.supercore.differential_privacy import compute_stdv

from fednet.privacy import (
    central_noise_std,
    clip_update,
    local_noise_std,
    noise_update,
    privatize_update,
)
from fednet.privacy.randomness import NoiseSource


def _update() -> dict[str, torch.Tensor]:
    # flattened norm: sqrt(3^2 + 4^2) = 5
    return {"a.lora_A": torch.tensor([[3.0, 0.0], [0.0, 0.0]]), "head.bias": torch.tensor([4.0])}


def test_clip_update_scales_whole_update() -> None:
    delta = _update()
    clipped = clip_update(delta, max_norm=1.0)
    torch.testing.assert_close(clipped["a.lora_A"], torch.tensor([[0.6, 0.0], [0.0, 0.0]]))
    torch.testing.assert_close(clipped["head.bias"], torch.tensor([0.8]))
    assert delta["head.bias"].item() == 4.0  # input untouched
    unchanged = clip_update(delta, max_norm=10.0)
    for key in delta:
        torch.testing.assert_close(unchanged[key], delta[key])


def test_noise_std_formulas() -> None:
    assert central_noise_std(noise_multiplier=1.2, clip=0.5, num_clients=4) == pytest.approx(0.15)
    assert local_noise_std(noise_multiplier=1.2, clip=0.5) == pytest.approx(1.2)
    # same as Flower's server-side fixed clipping
    assert central_noise_std(noise_multiplier=0.7, clip=2.0, num_clients=10) == pytest.approx(
        compute_stdv(0.7, 2.0, 10)
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"noise_multiplier": -1.0, "clip": 1.0, "num_clients": 2}, "noise_multiplier"),
        ({"noise_multiplier": 1.0, "clip": 0.0, "num_clients": 2}, "clip"),
        ({"noise_multiplier": 1.0, "clip": 1.0, "num_clients": 0}, "num_clients"),
    ],
)
def test_central_noise_std_validation(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        central_noise_std(**kwargs)  # type: ignore[arg-type]


def test_noise_update_statistics_and_reproducibility() -> None:
    delta = {"w": torch.zeros(200, 250), "b": torch.ones(100)}
    noisy = noise_update(delta, std=0.3, noise=NoiseSource.seeded(1))
    again = noise_update(delta, std=0.3, noise=NoiseSource.seeded(1))
    torch.testing.assert_close(noisy["w"], again["w"])
    noise = noisy["w"].flatten()
    assert noise.std().item() == pytest.approx(0.3, rel=0.03)
    assert abs(noise.mean().item()) < 0.01
    assert not torch.equal(noisy["b"], delta["b"])
    assert torch.equal(delta["b"], torch.ones(100))


def test_privatize_update_clips_then_noises() -> None:
    delta = {"w": torch.full((100, 100), 0.5)}  # norm 50
    exact = privatize_update(delta, clip=2.0, noise_multiplier=0.0)
    assert torch.linalg.vector_norm(exact["w"]).item() == pytest.approx(2.0, rel=1e-5)
    noisy = privatize_update(delta, clip=2.0, noise_multiplier=0.01, noise=NoiseSource.seeded(0))
    residual = noisy["w"] - exact["w"]
    assert residual.std().item() == pytest.approx(0.04, rel=0.05)  # 2 * z * C


def test_noise_update_rejects_integer_tensor() -> None:
    with pytest.raises(TypeError, match="delta\\['n'\\]"):
        noise_update({"n": torch.ones(3, dtype=torch.long)}, std=1.0)


def _gaussian_delta(epsilon: float, *, sensitivity: float, std: float) -> float:
    """Exact δ(ε) of the Gaussian mechanism (Balle & Wang, ICML 2018, theorem 8)."""
    from scipy.stats import norm

    a, b = sensitivity / (2 * std), epsilon * std / sensitivity
    return float(norm.cdf(a - b) - math.exp(epsilon) * norm.cdf(-a - b))


@pytest.mark.parametrize("z", [0.8, 1.5, 4.0])
def test_a_local_release_holds_the_epsilon_its_ledger_is_charged(z: float) -> None:
    """The attack: one example more or less can turn a client's whole update around.

    Two neighbouring data sets of one client may train updates pointing in
    opposite directions, so after clipping to C they differ by 2C. The release
    is charged to the ledger as (z, 1, 1); at the ε that charge reports, the
    released Gaussian mechanism's exact δ must not exceed the ledger's δ.
    """
    from fednet.privacy.ledger import PrivacyLedger

    clip = 0.5
    up = clip_update({"w": torch.tensor([10.0, 0.0])}, max_norm=clip)["w"]
    down = clip_update({"w": torch.tensor([-3.0, 0.0])}, max_norm=clip)["w"]
    sensitivity = float((up - down).norm())
    assert sensitivity == pytest.approx(2 * clip)
    ledger = PrivacyLedger("c", delta=1e-5)
    ledger.charge(noise_multiplier=z, sample_rate=1.0, steps=1, kind="update")
    std = local_noise_std(noise_multiplier=z, clip=clip)
    assert _gaussian_delta(ledger.epsilon, sensitivity=sensitivity, std=std) <= 1e-5
