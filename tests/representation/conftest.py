"""Paired embeddings with a known relation between two spaces."""

from __future__ import annotations

import pytest
import torch


def paired(n: int, d_in: int, d_out: int, *, seed: int, noise: float = 0.0):
    """``x`` and ``y = normalize(x @ R + noise)`` for a fixed random ``R``."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.normalize(torch.randn(n, d_in, generator=gen) + 0.5, dim=1)
    r = torch.linalg.qr(torch.randn(max(d_in, d_out), max(d_in, d_out), generator=gen))[0]
    y = x @ r[:d_in, :d_out] + noise * torch.randn(n, d_out, generator=gen)
    return x, torch.nn.functional.normalize(y, dim=1)


@pytest.fixture(scope="module")
def pairs():
    """1,500 fitting and 1,000 held-out pairs, 24-d -> 16-d, a little noise."""
    x, y = paired(2500, 24, 16, seed=0, noise=0.05)
    return x[:1500], y[:1500], x[1500:], y[1500:]


@pytest.fixture(autouse=True)
def _one_thread():
    """Small matrices: one thread is faster than two on a shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def adapter_dir_tiny(tmp_path_factory):
    """A real peft LoRA adapter of the registered tiny-bert."""
    from peft import LoraConfig, get_peft_model

    from fednet.models.registry import create_base_model

    model = get_peft_model(
        create_base_model("tiny-bert"), LoraConfig(r=4, target_modules=["query", "value"])
    )
    out = tmp_path_factory.mktemp("lora")
    model.save_pretrained(out)
    return out
