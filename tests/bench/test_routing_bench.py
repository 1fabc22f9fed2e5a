"""The routing benchmark on a small fake run: it runs end to end and writes its figures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from fednet.bench.routing import run_routing_bench

pytestmark = pytest.mark.integration

PRESET = """
[federation]
name = "bench-test"
base-model = "tiny-bert"
rounds = 2
seed = 3
max-length = 32

[[clients]]
id = "news-0"
dataset = "bbc-news"

[[clients]]
id = "spam-0"
dataset = "sms-spam"
num-partitions = 2
partition = 0

[[clients]]
id = "spam-1"
dataset = "sms-spam"
num-partitions = 2
partition = 1

[[clients]]
id = "tweets-0"
dataset = "tweets-sentiment"
"""


def test_bench_writes_every_figure(run_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    (tmp_path / "preset.toml").write_text(PRESET)
    summary = json.loads((run / "summary.json").read_text())
    summary["preset"] = str(tmp_path / "preset.toml")
    (run / "summary.json").write_text(json.dumps(summary))
    out = tmp_path / "bench" / "routing.json"
    report = run_routing_bench(run, None, out, queries_per_dataset=4, warmup_per_dataset=4)
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    assert report["peers"] == ["news-0", "spam-0", "spam-1", "tweets-0"]
    assert report["warmup_queries"] == 12
    modes = report["modes"]
    assert set(modes) == {"router_cascade", "broadcast_ensemble", "oracle"}
    # the figures of the main benchmark's rows, from the same measure
    row_keys = {
        "queries", "accuracy", "accuracy_by_dataset", "latency_p50_ms", "latency_p95_ms",
        "latency_parallel_p50_ms", "latency_parallel_p95_ms", "cpu_s_per_1000",
        "calls_per_query", "router_ms_mean", "router_share_of_latency", "wall_s",
    }  # fmt: skip
    for figures in modes.values():
        assert set(figures) == row_keys
        assert figures["queries"] == 12
        assert 0.0 <= figures["accuracy"] <= 1.0
        assert 0 < figures["latency_p50_ms"] <= figures["latency_p95_ms"]
        assert figures["cpu_s_per_1000"] > 0
    assert modes["broadcast_ensemble"]["calls_per_query"] == 4.0
    assert modes["oracle"]["calls_per_query"] == 1.0
    assert modes["oracle"]["router_share_of_latency"] < 0.05  # no embedding, one candidate
    assert 0.0 <= report["router"]["embed_rate"] <= 1.0
    assert 1.0 <= modes["router_cascade"]["calls_per_query"] <= 2.0
    assert 0 < modes["router_cascade"]["router_share_of_latency"] < 1
    swap = report["hot_swap"]
    assert swap["memory_ms_median"] < swap["hub_ms_median"]
    assert set(report["targets"]) >= {
        "a_within_1_point_of_d",
        "a_cpu_at_most_third_of_b",
        "router_share_at_most_15_percent",
    }


def test_stand_in_sketches_are_released_with_fresh_noise(tmp_path: Path) -> None:
    import dataclasses

    from safetensors.torch import load_file

    from fednet.bench.routing import stand_in_sketches
    from fednet.config import load_preset

    cfg = load_preset("configs/tiny.toml")
    cfg = dataclasses.replace(cfg, clients=cfg.clients[:1], max_length=16)
    first = load_file(str(stand_in_sketches(tmp_path, cfg, tmp_path / "a")["spam-0"]))
    second = load_file(str(stand_in_sketches(tmp_path, cfg, tmp_path / "b")["spam-0"]))
    assert not torch.equal(first["sketch.counts"], second["sketch.counts"])
