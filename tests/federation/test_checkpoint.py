"""Checkpoints: exact round trips, atomic replacement, damage detection, strategy state."""

from __future__ import annotations

import json
import math
import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord

from fednet.config import load_preset
from fednet.errors import ConfigError
from fednet.federation import checkpoint as C
from fednet.federation.server import build_strategy
from fednet.privacy import PrivacyLedger


def _arrays(seed: int = 0) -> ArrayRecord:
    g = torch.Generator().manual_seed(seed)
    return ArrayRecord(
        {
            "lora/tiny-bert/layer.0.query.lora_A.weight": torch.randn(4, 32, generator=g),
            "lora/tiny-bert/layer.0.query.lora_B.weight": torch.randn(32, 4, generator=g),
            "head/sms-spam/head.weight": torch.randn(2, 32, generator=g),
        }
    )


def test_round_trip_is_exact(tmp_path):
    cfg = load_preset("configs/tiny.toml")
    strategy = build_strategy(cfg)
    strategy.refusals["spam-1"] = "budget spent"
    history = [{"round": 1, "evaluate": {"accuracy": 0.5}, "train": {}, "wall_s": 1.0}]
    C.save_checkpoint(
        tmp_path,
        server_round=1,
        arrays=_arrays(),
        strategy=strategy,
        history=history,
        meta={"federation": cfg.name},
    )
    ck = C.load_checkpoint(tmp_path)
    assert ck is not None and ck.server_round == 1
    want = _arrays().to_torch_state_dict()
    got = ck.arrays.to_torch_state_dict()
    assert set(got) == set(want)
    for k in want:
        assert torch.equal(got[k], want[k]), k
    assert ck.history == history and ck.meta["federation"] == "tiny"
    fresh = build_strategy(cfg)
    C.restore_strategy(fresh, ck.strategy)
    assert fresh.refusals == {"spam-1": "budget spent"}


def test_sampling_after_resume_matches_an_uninterrupted_run(tmp_path, monkeypatch):
    cfg = load_preset("configs/tiny.toml")
    pool = [f"c{i}" for i in range(10)]

    def draws(strategy, n):
        return [strategy.rng.sample(pool, 3) for _ in range(n)]

    straight = build_strategy(cfg)
    expected = draws(straight, 5)
    killed = build_strategy(cfg)
    first = draws(killed, 2)
    C.save_checkpoint(tmp_path, server_round=2, arrays=_arrays(), strategy=killed)
    resumed = build_strategy(cfg)
    C.restore_strategy(resumed, C.load_checkpoint(tmp_path).strategy)
    assert first + draws(resumed, 3) == expected


def test_global_rngs_are_restored(tmp_path):
    torch.manual_seed(1)
    np.random.seed(1)
    random.seed(1)
    C.save_checkpoint(tmp_path, server_round=1, arrays=_arrays(), strategy=object())
    want = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(99)
    np.random.seed(99)
    random.seed(99)
    ck = C.load_checkpoint(tmp_path)
    C.restore_rng(ck.rng["meta"], ck.rng["tensors"])
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(got[0], want[0]) and np.array_equal(got[1], want[1])
    assert got[2] == want[2]


def test_noise_generators_and_ledgers_of_wrappers(tmp_path):
    class Inner:
        def __init__(self) -> None:
            self.rng = random.Random(3)
            self.ledgers = {"c0": PrivacyLedger("c0", delta=1e-5)}

    class Wrapper:
        def __init__(self, inner: Inner) -> None:
            self.strategy = inner
            self.generator = torch.Generator().manual_seed(5)

        def __getattr__(self, name):  # forwards like CentralDP
            return getattr(self.strategy, name)

    s = Wrapper(Inner())
    s.strategy.ledgers["c0"].charge(noise_multiplier=1.0, sample_rate=0.1, steps=10, kind="update")
    C.save_checkpoint(tmp_path, server_round=1, arrays=_arrays(), strategy=s)
    eps = s.strategy.ledgers["c0"].epsilon

    fresh = Wrapper(Inner())
    C.restore_strategy(fresh, C.load_checkpoint(tmp_path).strategy)
    assert math.isclose(fresh.strategy.ledgers["c0"].epsilon, eps)
    assert eps > 0


def test_a_crash_before_the_pointer_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    C.save_checkpoint(tmp_path, server_round=1, arrays=_arrays(1), strategy=object())
    real = C._fsync_write

    def crash_on_pointer(path, data):
        if path.name == "latest.json":
            raise OSError("power cut")
        return real(path, data)

    monkeypatch.setattr(C, "_fsync_write", crash_on_pointer)
    with pytest.raises(OSError):
        C.save_checkpoint(tmp_path, server_round=2, arrays=_arrays(2), strategy=object())
    ck = C.load_checkpoint(tmp_path)
    assert ck.server_round == 1
    got = ck.arrays.to_torch_state_dict()
    assert all(torch.equal(v, _arrays(1).to_torch_state_dict()[k]) for k, v in got.items())


def test_damaged_files_are_refused(tmp_path):
    C.save_checkpoint(tmp_path, server_round=3, arrays=_arrays(), strategy=object())
    latest = json.loads((tmp_path / "checkpoint" / "latest.json").read_text())
    blob = tmp_path / "checkpoint" / latest["tensors"]
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match="SHA-256"):
        C.load_checkpoint(tmp_path)


def test_only_the_last_two_rounds_are_kept(tmp_path):
    for r in range(1, 5):
        C.save_checkpoint(tmp_path, server_round=r, arrays=_arrays(r), strategy=object())
    names = sorted(p.name for p in (tmp_path / "checkpoint").iterdir())
    assert names == [
        "latest.json",
        "round-0003.json",
        "round-0003.safetensors",
        "round-0004.json",
        "round-0004.safetensors",
    ]
    assert C.load_checkpoint(tmp_path).server_round == 4
    assert C.load_checkpoint(tmp_path / "nothing-here") is None


def test_resume_refuses_another_federation(tmp_path):
    cfg = load_preset("configs/tiny.toml")
    recorder = SimpleNamespace(history=[])
    hook = C.checkpointing(lambda o: None, tmp_path, cfg, build_strategy(cfg), recorder)
    hook(SimpleNamespace(server_round=1, arrays=_arrays()))
    other = cfg.with_overrides(name="another")
    with pytest.raises(ConfigError, match="another"):
        C.resume_from(tmp_path, other, build_strategy(other), recorder)
    ck = C.resume_from(tmp_path, cfg, build_strategy(cfg), recorder)
    assert ck.server_round == 1 and ck.meta["resumed_from"] == 0


def test_strategy_mismatch_is_refused(tmp_path):
    C.save_checkpoint(tmp_path, server_round=1, arrays=_arrays(), strategy=object())
    cfg = load_preset("configs/tiny.toml")
    with pytest.raises(ConfigError, match="FedLoRA"):
        C.restore_strategy(build_strategy(cfg), C.load_checkpoint(tmp_path).strategy)


def test_no_noise_state_is_ever_checkpointed(tmp_path):
    """A generator's state in a checkpoint would let its reader regenerate the DP noise."""
    from fednet.strategies import FedLoRA
    from fednet.strategies.dp_central import CentralDP

    s = CentralDP(FedLoRA(), noise_multiplier=1.0, clipping_norm=1.0)
    s.generator = torch.Generator().manual_seed(5)  # even a stray generator attribute
    C.save_checkpoint(tmp_path, server_round=1, arrays=_arrays(), strategy=s)
    text = "".join(p.read_text() for p in (tmp_path / C.CHECKPOINT_DIR).glob("*.json"))
    assert "generator" not in text and "noise" not in text
    assert not any(
        layer.keys() - {"class", "rng", "ledgers", "refusals", "state"}
        for layer in C.load_checkpoint(tmp_path).strategy["layers"]
    )
