"""The replay attack: an adversary with the preset and the code regenerates the DP noise.

Threat model: the adversary knows the preset, the code, what the server sent
and everything a client released. It does not know the client's data or its
secret randomness. It regenerates the noise the way the code would derive it
from the preset and subtracts it from what the client released:

- from a locally noised update it recovers the clipped update: a vector inside
  the clipping ball, where the noise alone has norm ``z * C * sqrt(d)``;
- from a sketch it recovers the exact per-label counts: integers.

Each test fails if the attack succeeds on a run with secure noise.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from fednet.config import load_preset
from fednet.federation.client import _client_seed
from fednet.federation.simulation import simulate
from fednet.privacy import PrivacyConfig
from tests.federation.wire_audit import WireRecorder, load_wire

pytestmark = pytest.mark.integration

Z, CLIP = 1.0, 0.5
VICTIM = "spam-0"


def _cfg(tmp_path, **privacy):
    base = load_preset("configs/tiny.toml")
    clients = tuple(dataclasses.replace(c, local_steps=2) for c in base.clients[:2])
    return dataclasses.replace(
        base,
        clients=clients,
        state_dir=str(tmp_path / "state"),
        rounds=1,
        personalize_steps=0,
        privacy=PrivacyConfig(
            enabled=True,
            epsilon_budget=math.inf,
            update_mode="local",
            update_clip=CLIP,
            update_noise_multiplier=Z,
            sketch_epsilon=1.0,
            **privacy,
        ),
    )


def _victim_reply(wire):
    (entry,) = [e for e in wire if "lora" in e["records"] and e["client"] == VICTIM]
    return entry


def _replay_update_noise(cfg, entry) -> float:
    """Norm of the released update minus the regenerated noise (the attack's estimate)."""
    seed = _client_seed(cfg, VICTIM)
    gen = torch.Generator().manual_seed(seed * 7919 + 1)
    residual = []
    for name in ("lora", "head"):
        sent = entry["records"][name][1]
        received = entry["incoming"][name]
        for key, value in sent.items():
            delta = torch.from_numpy(value.astype(np.float32) - received[key].astype(np.float32))
            noise = torch.randn(delta.shape, generator=gen) * (Z * CLIP)
            residual.append((delta - noise).flatten())
    return float(torch.linalg.vector_norm(torch.cat(residual)))


def _replay_sketch_counts(cfg, entry) -> torch.Tensor:
    tensors = {k: torch.from_numpy(v) for k, v in entry["records"]["sketch"][1].items()}
    centroids, counts = tensors["sketch.centroids"], tensors["sketch.counts"]
    z = float(tensors["sketch.params"][1])
    gen = torch.Generator().manual_seed(_client_seed(cfg, VICTIM) + 1)
    torch.randn(centroids.shape, generator=gen, dtype=centroids.dtype)  # the sums' noise
    noise = torch.randn(counts.shape, generator=gen, dtype=counts.dtype) * (math.sqrt(2.0) * z)
    return counts.double() - noise.double()


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("replay")
    cfg = _cfg(tmp)
    wire = tmp / "wire"
    wire.mkdir()
    simulate(cfg, tmp / "run", mods=(WireRecorder(wire, tag_client=cfg),))
    return cfg, load_wire(wire)


def test_update_noise_cannot_be_replayed(released):
    cfg, wire = released
    entry = _victim_reply(wire)
    estimate = _replay_update_noise(cfg, entry)
    # a successful replay lands inside the clipping ball; fresh noise is far outside it
    assert estimate > 10 * CLIP, f"the adversary recovered the clipped update (norm {estimate:.3g})"


def test_sketch_noise_cannot_be_replayed(released):
    cfg, wire = released
    entry = _victim_reply(wire)
    counts = _replay_sketch_counts(cfg, entry)
    off_integer = (counts - counts.round()).abs().max().item()
    assert off_integer > 1e-2, f"the adversary recovered the exact label counts {counts.tolist()}"
