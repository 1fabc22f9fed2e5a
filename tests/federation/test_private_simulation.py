"""Privacy in a real simulation: local update DP, per-client ledgers, budget refusals."""

from __future__ import annotations

import dataclasses
import json

import pytest

from fednet.config import load_preset
from fednet.federation.simulation import simulate
from fednet.privacy import PrivacyConfig, compute_epsilon, sketch_noise_multiplier

pytestmark = pytest.mark.integration


def _ledger(tmp_path, cid):
    (path,) = (tmp_path / "state" / cid).glob("ledger-*.json")
    return json.loads(path.read_text())


def test_local_dp_ledger_and_budget_refusal(tmp_path):
    z = 1.5
    spent_round_1 = compute_epsilon([(z, 1.0, 1)], delta=1e-5)
    base = load_preset("configs/tiny.toml")
    cfg = dataclasses.replace(
        base,
        state_dir=str(tmp_path / "state"),
        rounds=2,
        personalize_steps=0,
        privacy=PrivacyConfig(
            enabled=True,
            epsilon_budget=spent_round_1 * 1.05,
            delta=1e-5,
            update_mode="local",
            update_clip=0.5,
            update_noise_multiplier=z,
            sketch_epsilon=spent_round_1,
        ),
    )
    summary = simulate(cfg, tmp_path / "run")
    for cid, c in summary["clients"].items():
        # round 1 released one noised update; round 2 (update + sketch) would exceed the budget
        assert c["epsilon"] == pytest.approx(spent_round_1, rel=1e-9), cid
        assert c["refused"] and "budget" in c["refused"]
        ledger = _ledger(tmp_path, cid)
        assert ledger["kinds"] == ["update"]
    assert summary["rounds_completed"] == 2
    assert summary["privacy"]["updates_private"] is True
    assert not list((tmp_path / "run").glob("sketches/*/sketch.safetensors"))


def test_central_dp_runs_and_reports_epsilon(tmp_path):
    base = load_preset("configs/tiny.toml")
    cfg = dataclasses.replace(
        base,
        state_dir=str(tmp_path / "state"),
        rounds=1,
        personalize_steps=0,
        privacy=PrivacyConfig(
            enabled=True,
            epsilon_budget=50.0,
            update_mode="central",
            update_clip=1.0,
            update_noise_multiplier=1.0,
        ),
    )
    summary = simulate(cfg, tmp_path / "run")
    z_sketch = sketch_noise_multiplier(epsilon=cfg.privacy.sketch_epsilon, delta=1e-5)
    # one central update (z=1, q=fraction-train=1) and the last round's sketch, composed
    want = compute_epsilon([(1.0, 1.0, 1), (z_sketch, 1.0, 1)], delta=1e-5)
    for c in summary["clients"].values():
        assert c["epsilon"] == pytest.approx(want, rel=1e-9)
        assert c["accuracy"] is None  # evaluation results stay on the client under DP


def test_dpsgd_trains_every_round(tmp_path):
    base = load_preset("configs/tiny.toml")
    cfg = dataclasses.replace(
        base,
        state_dir=str(tmp_path / "state"),
        rounds=2,
        personalize_steps=1,
        privacy=PrivacyConfig(
            enabled=True,
            epsilon_budget=20.0,
            dpsgd=True,
            dpsgd_noise_multiplier=1.0,
            sketch_epsilon=1.0,
        ),
    )
    summary = simulate(cfg, tmp_path / "run")
    for cid, c in summary["clients"].items():
        assert c["refused"] is None
        ledger = _ledger(tmp_path, cid)
        # two rounds and the personalisation of DP-SGD, and the last round's sketch
        assert ledger["kinds"].count("dpsgd") == 3 and ledger["kinds"].count("sketch") == 1
        assert c["personalized_accuracy"] is not None
