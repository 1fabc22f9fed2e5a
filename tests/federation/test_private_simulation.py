"""Privacy in a real simulation: local update DP, per-client ledgers, budget refusals."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from fednet.config import load_preset
from fednet.federation.client_data import load_client_data
from fednet.federation.simulation import simulate
from fednet.privacy import PrivacyConfig, compute_epsilon, sketch_noise_multiplier

pytestmark = pytest.mark.integration


def _ledger(tmp_path, cid):
    (path,) = (tmp_path / "state" / cid).glob("ledger-*.json")
    return json.loads(path.read_text())


def _signed_as_its_ledger(tmp_path, cfg, run="run"):
    """Every client signed its adapters' manifests, each claiming what its own ledger holds."""
    from fednet.federation.signing import client_ledger
    from fednet.hub.manifest import Manifest

    for c in cfg.clients:
        ledger = client_ledger(tmp_path / "state", c)
        assert ledger is not None, c.id
        paths = sorted((tmp_path / run / "signed").glob(f"{c.id}-*.json"))
        assert paths, f"{c.id} signed nothing"
        for m in (Manifest.from_json(p.read_text()) for p in paths):
            assert m.owner == c.id and m.signature
            for got, want in (
                (m.epsilon, ledger.epsilon),
                (m.update_epsilon, ledger.epsilon_of(("dpsgd", "update"))),
                (m.sketch_epsilon, ledger.epsilon_of(("sketch",))),
            ):
                assert got == (None if want is None else pytest.approx(want, rel=1e-9)), m.name
            assert (m.delta, m.accountant) == (ledger.delta, ledger.accountant_name)


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
    _signed_as_its_ledger(tmp_path, cfg)


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
            dpsgd_sample_rate=0.1,
            sketch_epsilon=1.0,
        ),
    )
    summary = simulate(cfg, tmp_path / "run")
    for cid, c in summary["clients"].items():
        assert c["refused"] is None
        ledger = _ledger(tmp_path, cid)
        # two rounds and the personalisation of DP-SGD, and the last round's sketch
        assert ledger["kinds"].count("dpsgd") == 3 and ledger["kinds"].count("sketch") == 1
        # under DP the accuracy stays with the client, in its own record
        assert c["personalized_accuracy"] is None
        own = (tmp_path / "state" / cid / "metrics.jsonl").read_text().splitlines()
        personal = [json.loads(x) for x in own if '"personalized": 1.0' in x]
        assert personal and 0.0 <= personal[-1]["metrics"]["accuracy"] <= 1.0
        assert c["update_epsilon"] is not None and c["sketch_epsilon"] is not None
    _signed_as_its_ledger(tmp_path, cfg)


def test_dpsgd_with_empty_poisson_batches(tmp_path):
    # batch 1: q = 1/n and a Poisson batch is empty with probability (1 - 1/n)^n ~ 0.37, so
    # 8 steps on each of 3 clients draw several empty batches (seeded: the same every run)
    base = load_preset("configs/tiny.toml")
    clients = tuple(dataclasses.replace(c, batch_size=1, local_steps=8) for c in base.clients)
    z = 1.0
    # the public rate: 1 / the largest client's n, so every client's batches are often empty
    q = 1 / max(len(load_client_data(base, c).train_texts) for c in clients)
    cfg = dataclasses.replace(
        base,
        rounds=1,
        personalize_steps=0,
        clients=clients,
        privacy=PrivacyConfig(
            enabled=True,
            epsilon_budget=50.0,
            dpsgd=True,
            dpsgd_noise_multiplier=z,
            dpsgd_sample_rate=q,
            sketch_epsilon=1.0,
        ),
    )
    summary = simulate(cfg, tmp_path / "run")
    z_sketch = sketch_noise_multiplier(epsilon=1.0, delta=cfg.privacy.delta)
    for cid, c in summary["clients"].items():
        assert c["refused"] is None, cid
        want = compute_epsilon([(z, q, 8), (z_sketch, 1.0, 1)], delta=cfg.privacy.delta)
        assert c["epsilon"] == pytest.approx(want, rel=1e-9), cid
        assert c["bytes_up_total"] > 0, cid


def _small(cfg, n_clients=2, steps=2):
    return tuple(dataclasses.replace(c, local_steps=steps) for c in cfg.clients[:n_clients])


def test_ledger_outlives_the_run_dir_and_refuses_a_spent_budget(tmp_path):
    z = 1.5
    base = load_preset("configs/tiny.toml")
    z_sketch = sketch_noise_multiplier(epsilon=1.0, delta=1e-5)
    one_run = compute_epsilon([(z, 1.0, 1), (z_sketch, 1.0, 1)], delta=1e-5)
    cfg = dataclasses.replace(
        base,
        clients=_small(base),
        state_dir=str(tmp_path / "state"),
        rounds=1,
        personalize_steps=0,
        privacy=PrivacyConfig(
            enabled=True,
            epsilon_budget=one_run * 1.05,
            update_mode="local",
            update_clip=0.5,
            update_noise_multiplier=z,
            sketch_epsilon=1.0,
        ),
    )
    first = simulate(cfg, tmp_path / "run-1")
    second = simulate(cfg, tmp_path / "run-2")  # a new run directory, the same data
    for cid in first["clients"]:
        assert first["clients"][cid]["epsilon"] == pytest.approx(one_run, rel=1e-9)
        assert first["clients"][cid]["refused"] is None
        assert "budget" in second["clients"][cid]["refused"]
        assert _ledger(tmp_path, cid)["kinds"] == ["update", "sketch"]
    assert not list((tmp_path / "run-1").rglob("ledger*.json"))
    _signed_as_its_ledger(tmp_path, cfg, run="run-1")


def test_central_mode_with_personalisation_and_client_sampling(tmp_path):
    """Secret Poisson sampling at q = 1/2; personalised adapters stay on the clients;
    only DP metrics leave; each ledger holds (z, q, rounds) once, as DP-FedAvg charges."""
    from opacus.accountants import RDPAccountant

    from fednet.privacy import RDP_ORDERS
    from fednet.protocol import DP_METRIC_KEYS

    from .wire_audit import WireRecorder, load_wire

    z, q, rounds = 1.2, 0.5, 2
    base = load_preset("configs/tiny.toml")
    cfg = dataclasses.replace(
        base,
        clients=_small(base, n_clients=3),
        state_dir=str(tmp_path / "state"),
        rounds=rounds,
        personalize_steps=1,
        strategy=dataclasses.replace(base.strategy, fraction_train=q),
        privacy=PrivacyConfig(
            enabled=True,
            epsilon_budget=100.0,
            update_mode="central",
            update_clip=1.0,
            update_noise_multiplier=z,
            sketch_epsilon=1.0,
        ),
    )
    wire = tmp_path / "wire"
    wire.mkdir()
    summary = simulate(cfg, tmp_path / "run", mods=(WireRecorder(wire, tag_client=cfg),))
    entries = load_wire(wire)
    personal = [
        e for e in entries if e["records"].get("metrics", (None, {}))[1].get("personalized") == 1.0
    ]
    assert {e["client"] for e in personal} == {c.id for c in cfg.clients}
    for e in entries:
        assert e["error"] is None
        metrics = e["records"].get("metrics", (None, {}))[1]
        assert set(metrics) <= DP_METRIC_KEYS, metrics
        if "profile" in e["records"]:
            assert "num-examples" not in e["records"]["profile"][1]
    for e in personal:  # the personalised adapter never leaves the client
        assert "lora" not in e["records"] and "head" not in e["records"]
    assert not (tmp_path / "run" / "personalized").exists()

    z_sketch = sketch_noise_multiplier(epsilon=1.0, delta=1e-5)
    assert summary["privacy"]["accounting"]["rule"] == "poisson-every-round"
    for c in cfg.clients:
        ledger = _ledger(tmp_path, c.id)
        assert (tmp_path / "state" / c.id / "personalized" / "adapter_config.json").is_file()
        (central,) = [
            (h, n)
            for h, k, n in zip(ledger["history"], ledger["kinds"], ledger["notes"], strict=True)
            if k == "update"
        ]
        assert central[0] == [z, q, rounds] and "poisson-every-round" in central[1]
        # hand computation with opacus: every round charged with amplification q
        acc = RDPAccountant()
        acc.history = [(z, q, rounds)] + [(z_sketch, 1.0, 1)] * ledger["kinds"].count("sketch")
        want = acc.get_epsilon(delta=1e-5, alphas=list(RDP_ORDERS))
        assert summary["clients"][c.id]["epsilon"] == pytest.approx(want, rel=1e-9)
        assert summary["clients"][c.id]["accuracy"] is None
    _signed_as_its_ledger(tmp_path, cfg)
    _sample_stays_secret(tmp_path / "run", cfg)


def _sample_stays_secret(run: Path, cfg) -> None:  # type: ignore[no-untyped-def]
    """Nothing published carries the central-DP sample or a statistic of raw updates:
    no contribution rows (their norm, cosine and score are computed from the unnoised
    updates of the sampled clients), and no contribution score in a signed manifest.
    (The trusted server's own log and round history do name who trained.)"""
    import json

    rows = json.loads((run / "contributions.json").read_text())["rows"]
    assert rows == [], rows
    signed = list((run / "signed").rglob("*.json"))
    assert signed
    for path in signed:
        text = path.read_text()
        assert '"contribution": null' in text or '"contribution"' not in text, path


def test_clients_whose_updates_multi_krum_drops_still_sign_what_they_spent(tmp_path):
    """Multi-Krum keeps one update of three each round; every client's ledger was
    charged all the same, and the ε the run claims (and each client signs) is its own."""
    base = load_preset("configs/tiny.toml")
    cfg = dataclasses.replace(
        base,
        clients=_small(base, n_clients=3),
        state_dir=str(tmp_path / "state"),
        rounds=2,
        personalize_steps=0,
        strategy=dataclasses.replace(
            base.strategy, robust="multi-krum", krum_byzantine=1, krum_select=1
        ),
        privacy=PrivacyConfig(
            enabled=True,
            epsilon_budget=50.0,
            update_mode="local",
            update_clip=0.5,
            update_noise_multiplier=1.5,
            sketch_epsilon=1.0,
        ),
    )
    summary = simulate(cfg, tmp_path / "run")
    dropped = [e for e in summary["update_events"] if e["stage"] == "multi-krum"]
    assert [e["round"] for e in dropped] == [1, 1, 2, 2]
    z_sketch = sketch_noise_multiplier(epsilon=1.0, delta=1e-5)
    want = compute_epsilon([(1.5, 1.0, 1), (1.5, 1.0, 1), (z_sketch, 1.0, 1)], delta=1e-5)
    for cid, c in summary["clients"].items():
        assert c["epsilon"] == pytest.approx(want, rel=1e-9), cid
    _signed_as_its_ledger(tmp_path, cfg)
