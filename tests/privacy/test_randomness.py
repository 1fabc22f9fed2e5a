"""The noise source: OS entropy by default, correct distributions, never reproducible."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
import torch
from scipy import stats

from fednet.privacy import NoiseSource, PoissonBatchSampler, gaussian_noise_like, secure_source


def test_secure_normal_is_standard_normal():
    x = secure_source().standard_normal(200_000)
    assert x.dtype == np.float64
    assert abs(x.mean()) < 0.01 and x.std() == pytest.approx(1.0, rel=0.01)
    assert stats.kstest(x, "norm").pvalue > 1e-4


def test_secure_uniform_is_open_unit_interval():
    u = secure_source().uniform(100_000)
    assert u.min() > 0.0 and u.max() < 1.0
    assert stats.kstest(u, "uniform").pvalue > 1e-4


def test_two_secure_sources_never_repeat_and_default_noise_is_fresh():
    a, b = secure_source().normal((1000,), std=1.0), secure_source().normal((1000,), std=1.0)
    assert not torch.equal(a, b)
    x = torch.zeros(500)
    assert not torch.equal(gaussian_noise_like(x, std=1.0), gaussian_noise_like(x, std=1.0))
    assert not secure_source().reproducible


def test_seeded_source_is_reproducible_and_says_so():
    a = NoiseSource.seeded(5).normal((3, 4), std=2.0, dtype=torch.float64)
    b = NoiseSource.seeded(5).normal((3, 4), std=2.0, dtype=torch.float64)
    assert torch.equal(a, b) and NoiseSource.seeded(5).reproducible


def test_source_is_never_pickled_nor_duplicated():
    src = secure_source()
    with pytest.raises(TypeError, match="never pickled"):
        pickle.dumps(src)
    assert copy.deepcopy(src) is src


def test_poisson_sampler_rate_and_empty_batches():
    sampler = PoissonBatchSampler(num_samples=50, sample_rate=0.1, noise=secure_source())
    assert len(sampler) == 10
    sizes = [len(b) for _ in range(200) for b in sampler]
    assert np.mean(sizes) == pytest.approx(5.0, rel=0.05)
    assert min(sizes) == 0 or np.var(sizes) > 1  # sizes vary as Binomial(50, 0.1)
    with pytest.raises(ValueError, match="sample_rate"):
        PoissonBatchSampler(num_samples=5, sample_rate=0.0, noise=secure_source())
