"""Real tiny-bert simulations with exact aggregation, a robust wrapper and the ledger."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from flwr.app import ArrayRecord, RecordDict
from safetensors.torch import load_file

from fednet import protocol as P
from fednet.config import load_preset
from fednet.federation.simulation import simulate
from fednet.lora import truncate_rank

pytestmark = pytest.mark.integration


def _run(tmp_path, name, **strategy):
    cfg = load_preset("configs/tiny.toml")
    cfg = dataclasses.replace(cfg, rounds=1, strategy=dataclasses.replace(cfg.strategy, **strategy))
    run_dir = tmp_path / name
    return run_dir, simulate(cfg, run_dir)


def _tags(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tb"))
    acc.Reload()
    return set(acc.Tags()["scalars"])


def test_svd_with_multi_krum_records_energy_events_and_contributions(tmp_path):
    run_dir, summary = _run(tmp_path, "svd", rank_aggregation="svd", robust="multi-krum")
    assert summary["rank_aggregation"] == "svd" and summary["robust"] == "multi-krum"
    assert summary["rounds_completed"] == 1
    tags = _tags(run_dir)
    assert "svd-energy/tiny-bert" in tags
    assert "updates-rejected/total" in tags
    ledger = json.loads((run_dir / "contributions.json").read_text())
    rows = {r["client"]: r for r in ledger["rows"]}
    assert rows.keys() == {"spam-0", "spam-1", "news-0"}
    for r in rows.values():
        assert r["status"] in ("accepted", "rejected") and r["method"] == "gradient-projection"
        assert -1.0 <= r["cosine"] <= 1.0
    # three clients, f = 1: Multi-Krum keeps n - f = 2 and says why it dropped the third
    dropped = [e for e in summary["update_events"] if e["stage"] == "multi-krum"]
    assert len(dropped) == 1 and "Krum score" in dropped[0]["detail"]
    assert rows[dropped[0]["client"]]["contribution"] == 0.0
    assert summary["clients"][dropped[0]["client"]]["updates_rejected"] == 1


def test_frozen_a_keeps_a_sends_half_and_still_learns(tmp_path):
    run_dir, summary = _run(tmp_path, "ffa", rank_aggregation="frozen-a")
    before = load_file(
        str(run_dir / "rounds" / "0" / "tiny-bert" / "sms-spam" / "adapter_model.safetensors")
    )
    after = load_file(
        str(run_dir / "rounds" / "1" / "tiny-bert" / "sms-spam" / "adapter_model.safetensors")
    )
    for k, v in before.items():
        if ".lora_A." in k:
            assert torch.equal(after[k], v), k
        else:
            assert not torch.equal(after[k], v), k  # B trained
    fedit_dir, fedit = _run(tmp_path, "fedit", rank_aggregation="fedit")
    for cid, c in summary["clients"].items():
        mine = truncate_rank(before, c["rank"])
        a_bytes, b_bytes = (
            P.record_nbytes(
                RecordDict({"x": ArrayRecord({k: v for k, v in mine.items() if f in k})})
            )
            for f in (".lora_A.", ".lora_B.")
        )
        assert a_bytes == b_bytes  # query and value are square: A is half of the LoRA upload
        assert fedit["clients"][cid]["bytes_up_total"] - c["bytes_up_total"] == a_bytes, cid
    assert summary["final"]["accuracy"] > 0.5
    assert (run_dir / "personalized" / "spam-0" / "adapter_model.safetensors").is_file()
