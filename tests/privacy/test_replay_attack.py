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
from fednet.federation.client_data import client_seed as _client_seed
from fednet.federation.simulation import simulate
from fednet.privacy import PrivacyConfig, local_noise_std
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
            std = local_noise_std(noise_multiplier=Z, clip=CLIP)
            noise = torch.randn(delta.shape, generator=gen) * std
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


def _arrays(entry, name):
    return {k: np.asarray(v) for k, v in entry["records"][name][1].items()}


def test_two_runs_of_one_preset_release_different_noise(released, tmp_path):
    """Same preset, same seed, same data: fresh noise every run, in updates and sketches."""
    cfg, first = released
    wire = tmp_path / "wire"
    wire.mkdir()
    simulate(cfg, tmp_path / "run", mods=(WireRecorder(wire, tag_client=cfg),))
    a, b = _victim_reply(first), _victim_reply(load_wire(wire))
    for name in ("lora", "head", "sketch"):
        x, y = _arrays(a, name), _arrays(b, name)
        noisy = [k for k in x if k != "sketch.params" and k != "sketch.label_names"]
        assert noisy and all(not np.array_equal(x[k], y[k]) for k in noisy), name
    # and under privacy only the DP metrics left the clients
    from fednet.protocol import DP_METRIC_KEYS

    for e in first:
        assert set(e["records"].get("metrics", (None, {}))[1]) <= DP_METRIC_KEYS


@pytest.fixture(scope="module")
def reproducible(tmp_path_factory):
    from fednet.config import HubConfig

    runs = []
    for i in range(2):
        tmp = tmp_path_factory.mktemp(f"reproducible-{i}")
        cfg = dataclasses.replace(
            _cfg(tmp, reproducible_noise=True), hub=HubConfig(location=str(tmp / "hub"))
        )
        wire = tmp / "wire"
        wire.mkdir()
        summary = simulate(cfg, tmp / "run", mods=(WireRecorder(wire, tag_client=cfg),))
        runs.append((cfg, tmp, summary, load_wire(wire)))
    return runs


def test_reproducible_noise_repeats_voids_epsilon_and_the_attack_succeeds(reproducible):
    """The test-only flag: the same sketches twice, the replay attack works, and the
    summary and every manifest say that epsilon is not valid."""
    from fednet.hub import HubStore
    from fednet.privacy import NOT_VALID_NOTE, NoiseSource, derive_seed

    (cfg, tmp, summary, wire), (_, _, _, again) = reproducible
    a, b = _victim_reply(wire), _victim_reply(again)
    for k, v in _arrays(a, "sketch").items():
        assert np.array_equal(v, _arrays(b, "sketch")[k]), k

    src = NoiseSource.seeded(derive_seed(cfg.seed, VICTIM, "update", 1))
    residual = []
    for name in ("lora", "head"):
        for key, value in a["records"][name][1].items():
            delta = torch.from_numpy(value - a["incoming"][name][key])
            std = local_noise_std(noise_multiplier=Z, clip=CLIP)  # the attacker knows the code
            residual.append((delta - src.normal(delta.shape, std=std)).flatten())
    assert float(torch.linalg.vector_norm(torch.cat(residual))) <= CLIP * 1.01

    assert summary["privacy"]["epsilon_note"] == NOT_VALID_NOTE
    with HubStore(tmp / "hub") as hub:
        manifests = hub.list()
    assert manifests and all(m.epsilon_note == NOT_VALID_NOTE for m in manifests)
