"""``fednet bench --quick`` end to end: real simulations, hubs and peers; a sound report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fednet.bench.plots import PLOTS
from fednet.bench.report import ROWS, check_report, non_finite
from fednet.cli import main

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("bench")
    assert main(["bench", "--quick", "--out", str(out)]) == 0
    (path,) = out.glob("*.json")
    return json.loads(path.read_text()), out


def test_report_follows_the_schema_and_every_number_is_finite(report):
    data, _ = report
    assert check_report(data) == []
    assert non_finite(data) == []
    assert data["quick"] is True
    assert [r["key"] for r in data["rows"]] == [k for k, _ in ROWS]
    assert all(isinstance(t["met"], bool) and t["why"] for t in data["targets"])


def test_every_row_answered_every_query(report):
    data, _ = report
    n = data["queries"]["measured"]
    assert n == 8 * len(data["queries"]["datasets"])
    clients = len(data["federation"]["clients"])
    by_key = {r["key"]: r for r in data["rows"]}
    for row in data["rows"]:
        assert row["queries"] == n
        assert 0.0 <= row["accuracy"] <= 1.0
        assert 0 < row["latency_p50_ms"] <= row["latency_p95_ms"]
        assert row["cpu_s_per_1000"] > 0
    assert by_key["broadcast"]["calls_per_query"] == clients
    assert 1 <= by_key["routed"]["calls_per_query"] <= data["config"]["top_k"]
    for key in ("local", "centralized", "generalist", "oracle"):
        assert by_key[key]["calls_per_query"] == 1
    assert sum(sum(r) for r in data["router_confusion"]["matrix"]) == n


def test_what_each_row_shared(report):
    data, _ = report
    by_key = {r["key"]: r for r in data["rows"]}
    assert set(by_key["local"]["bytes_shared_by_client"].values()) == {0}
    raw = by_key["centralized"]["bytes_shared_by_client"]
    fed = by_key["routed"]["bytes_shared_by_client"]
    assert set(raw) == set(fed) and all(v > 0 for v in fed.values())
    assert by_key["centralized"]["epsilon_max"] is None
    assert by_key["routed"]["epsilon_max"] > 0  # the DP sketch is released
    comm = data["communication"]
    for r in comm["rounds"]:
        assert 0 < r["bytes_up"] < r["full_fedavg_bytes_up"]


def test_generalist_is_a_union_head_federation(report):
    data, _ = report
    runs = data["runs"]
    assert set(runs["generalist"]["tasks"]) == {"union"}
    assert runs["local"]["strategy"] == "local" and runs["fednet"]["strategy"] == "fedlora"
    assert (
        runs["centralized"]["steps"]
        == sum(c["local_steps"] for c in data["federation"]["clients"])
        * data["federation"]["rounds"]
    )
    for o in data["overhead"].values():
        assert o["ratio"] > 0 and len(o["rounds"]) == data["federation"]["rounds"]


def test_markdown_and_plots_are_written(report):
    data, out = report
    (md,) = out.glob("*.md")
    text = md.read_text()
    for _, title in ROWS:
        assert title in text
    for t in data["targets"]:
        assert t["target"] in text
    assert set(data["plots"]) == set(PLOTS)
    for name in data["plots"].values():
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({name})" in text


def test_the_routing_section_ran(report):
    data, _ = report
    routing = data["sections"]["routing_bench"]
    assert "error" not in routing, routing.get("error")
    assert data["sections"]["privacy_bench"] == {"skipped": "turned off"}
