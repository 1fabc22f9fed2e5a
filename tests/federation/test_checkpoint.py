"""Checkpoints: exact round trips, atomic replacement, damage detection, strategy state."""

from __future__ import annotations

import dataclasses
import json
import math
import random
import re
from pathlib import Path
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


def _checkpoint_of(cfg, run_dir) -> None:
    hook = C.checkpointing(
        lambda o: None, run_dir, cfg, build_strategy(cfg), SimpleNamespace(history=[])
    )
    hook(SimpleNamespace(server_round=1, arrays=_arrays()))


def _with_client(cfg, index, **changes):
    clients = list(cfg.clients)
    clients[index] = dataclasses.replace(clients[index], **changes)
    return dataclasses.replace(cfg, clients=tuple(clients))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda c: _with_client(c, 1, lora_rank=16),
            "clients[spam-1].lora-rank: checkpoint 2, preset 16",
        ),
        (
            lambda c: _with_client(c, 2, base_model="tiny-bert-2"),
            "clients[news-0].base-model: checkpoint 'tiny-bert', preset 'tiny-bert-2'",
        ),
        (
            lambda c: _with_client(c, 0, task="other"),
            "clients[spam-0].task: checkpoint 'sms-spam', preset 'other'",
        ),
        (
            lambda c: dataclasses.replace(c, clients=c.clients[:2]),
            "clients: checkpoint has news-0, the preset does not",
        ),
        (
            lambda c: dataclasses.replace(
                c, clients=(*c.clients, dataclasses.replace(c.clients[0], id="spam-9"))
            ),
            "clients: the preset adds spam-9",
        ),
        (
            lambda c: dataclasses.replace(
                c, strategy=dataclasses.replace(c.strategy, rank_aggregation="zero-pad")
            ),
            "strategy.rank-aggregation: checkpoint 'rank-wise', preset 'zero-pad'",
        ),
        (
            lambda c: dataclasses.replace(c, lora=dataclasses.replace(c.lora, alpha_ratio=4.0)),
            "lora.alpha-ratio: checkpoint 2.0, preset 4.0",
        ),
    ],
)
def test_resume_refuses_a_changed_preset(tmp_path, change, message):
    cfg = load_preset("configs/tiny.toml")
    _checkpoint_of(cfg, tmp_path)
    changed = change(cfg)
    with pytest.raises(ConfigError, match=re.escape(message)):
        C.check_resume(tmp_path, changed)
    with pytest.raises(ConfigError, match=re.escape(message)):
        C.resume_from(tmp_path, changed, build_strategy(cfg), SimpleNamespace(history=[]))


def test_resume_accepts_what_may_change(tmp_path):
    cfg = load_preset("configs/tiny.toml")
    _checkpoint_of(cfg, tmp_path)
    longer = _with_client(cfg.with_overrides(rounds=5), 0, learning_rate=0.01, local_steps=3)
    assert C.check_resume(tmp_path, longer).server_round == 1
    assert C.load_checkpoint(tmp_path).meta["preset"]["clients[spam-1].lora-rank"] == 2


@pytest.mark.integration
def test_flower_server_refuses_to_resume_a_real_run_with_a_changed_preset(tmp_path, capsys):
    from fednet.deploy import server_cmd
    from fednet.deploy.net import free_port
    from fednet.federation.simulation import simulate

    cfg = load_preset("configs/tiny.toml")
    run = tmp_path / "run"
    simulate(cfg.with_overrides(rounds=1, personalize_steps=0), run)
    before = {p.name: p.read_bytes() for p in (run / "checkpoint").iterdir()}
    text = Path("configs/tiny.toml").read_text(encoding="utf-8")
    assert text.count("lora-rank = 2") == 1
    changed = tmp_path / "tiny.toml"
    changed.write_text(text.replace("lora-rank = 2", "lora-rank = 16"), encoding="utf-8")
    argv = ["--run-dir", str(run), "--resume", "--insecure"]
    argv += ["--address", f"127.0.0.1:{free_port()}", "--config", str(changed)]
    assert server_cmd.main(argv) == 2
    err = capsys.readouterr().err
    assert "clients[spam-1].lora-rank: checkpoint 2, preset 16" in err
    assert "Traceback" not in err
    assert {p.name: p.read_bytes() for p in (run / "checkpoint").iterdir()} == before
    assert not (run / "deploy").exists()


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
