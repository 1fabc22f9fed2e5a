"""``fednet bench-representation`` on tiny random models: every figure is written."""

from __future__ import annotations

import json

import pytest

from fednet.cli import main


@pytest.mark.slow
def test_bench_writes_every_figure(tmp_path, capsys):
    from fednet.bench.representation import (
        RepresentationBenchConfig,
        run_representation_bench,
        write_results,
    )

    cfg = RepresentationBenchConfig(
        models=("tiny-bert", "tiny-mpnet"),
        reference="tiny-bert",
        other_model="tiny-mpnet",
        fit_texts=60,
        pool=20,
        max_length=16,
        examples_per_client=12,
        queries_per_dataset=6,
        small_examples=24,
        other_examples=24,
        test_examples=24,
        steps=4,
        rounds=2,
    )
    results = run_representation_bench(cfg, out_dir=tmp_path, cache_dir=tmp_path / "cache")
    json_path, md_path = write_results(results, tmp_path)
    data = json.loads(json_path.read_text())
    assert [(r["source"], r["method"]) for r in data["fit"]] == [
        ("tiny-mpnet", m) for m in ("procrustes", "ridge", "mlp", "mean")
    ]
    mean = next(r for r in data["fit"] if r["method"] == "mean")
    assert mean["recall_at_1"] <= 1 / 20
    assert {r["asker_model"] for r in data["routing"]} == {"tiny-bert", "tiny-mpnet"}
    for r in data["routing"]:
        assert 0 <= r["cross_model_all"] <= 1 and r["queries"] == 18
    t = data["transfer"]
    assert {"alone", "with_prototypes", "one_model_federation"} <= set(t)
    assert 0 < t["small_client_epsilon"] <= 1.0
    text = md_path.read_text()
    assert "## 1. Map fit" in text and "## 3. Knowledge transfer" in text
    assert (tmp_path / f"representation-{data['stamp']}-maps").is_dir()


def test_cli_fit_part_and_bad_names(tmp_path, capsys):
    args = ["bench-representation", "--models", "tiny-bert,tiny-mpnet", "--reference"]
    args += ["tiny-bert", "--parts", "fit", "--fit-texts", "40", "--pool", "10"]
    args += ["--max-length", "16", "--out", str(tmp_path), "--cache-dir", str(tmp_path / "c")]
    assert main([*args, "--methods", "ridge,mean"]) == 0
    out = capsys.readouterr().out
    assert "| tiny-mpnet | ridge |" in out and "json:" in out
    assert main([*args, "--methods", "pca"]) == 2
    assert "unknown map method 'pca'" in capsys.readouterr().err
    assert main([*args, "--parts", "plots"]) == 2
