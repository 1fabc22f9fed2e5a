"""The contribution-prior routing benchmark, end to end on the tiny preset."""

import json

import pytest


@pytest.mark.integration
def test_the_benchmark_runs_to_its_report_on_an_attacked_run(tmp_path):
    from fednet.bench.contribution_routing import run_contribution_routing

    report = run_contribution_routing(
        "configs/bench-aggregation-tiny.toml",
        tmp_path,
        attack="label-flip",
        personalize_steps=2,
        weights=[0.0, 4.0],
        queries_per_dataset=4,
    )
    assert report["attackers"]
    assert [r["contribution_weight"] for r in report["rows"]] == [0.0, 4.0]
    for r in report["rows"]:
        assert 0.0 <= r["accuracy"] <= 1.0
    (md,) = tmp_path.glob("contribution-routing-*.md")
    (js,) = tmp_path.glob("contribution-routing-*.json")
    assert "| contribution-weight |" in md.read_text()
    assert json.loads(js.read_text())["rows"] == report["rows"]
