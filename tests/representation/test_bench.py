"""``fednet bench-representation`` on tiny random models: every figure is written."""

from __future__ import annotations

import json

import pytest
import torch

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
    # one map per source model chosen on held-out public text, never the mean
    chosen = [r for r in data["fit"] if r["selected"]]
    assert len(chosen) == 1 and chosen[0]["method"] != "mean"
    assert all(r["fit_pairs"] == 50 and r["selection_pairs"] == 10 for r in data["fit"])
    assert {r["asker_model"] for r in data["routing"]} == {"tiny-bert", "tiny-mpnet"}
    for r in data["routing"]:
        assert 0 <= r["cross_model_all"] <= 1 and r["queries"] == 18
        for key in ("same_model", "cross_model_all", "cross_model_others"):
            low, high = r[f"{key}_ci95"]
            assert low <= r[key] <= high
        low, high = r["gap_all_ci95"]
        assert -1 <= low <= high <= 1
    selected = [r for r in data["routing"] if r["method"] == "selected"]
    assert len(selected) == 2 and selected[0]["maps"] == {"tiny-mpnet": chosen[0]["method"]}
    t = data["transfer"]
    arms = ("alone", "alone_prototypes", "own_release_only", "with_prototypes")
    arms += ("one_model_federation",)
    assert set(arms) <= set(t)
    assert t["map"] == chosen[0]["method"]
    # the target is judged against the stronger alone arm on the test texts
    assert t["target_baseline"] in ("alone", "alone_prototypes")
    assert t["gain"] == t["with_prototypes"] - max(t["alone"], t["alone_prototypes"])
    assert t["gain_over_own"] == t["with_prototypes"] - t["alone_prototypes"]
    assert t["gain_from_peers"] == t["with_prototypes"] - t["own_release_only"]
    for arm in arms:
        assert t[f"{arm}_detail"]["learning_rate"] in cfg.learning_rates
        assert len(t[f"{arm}_detail"]["correct"]) == 24
    assert (t["small_train"], t["small_validation"]) == (19, 5)
    assert set(t["diagnostics"]) == {
        "nearest_prototype",
        "probe_own",
        "probe_peers_mapped",
        "probe_peers_native",
    }
    assert all(0 <= v <= 1 for v in t["diagnostics"].values())
    assert 0 < t["small_client_epsilon"] <= 1.0
    text = md_path.read_text()
    assert "## 1. Map fit" in text and "## 3. Knowledge transfer" in text
    assert "alone, FedProto's recipe on its own exact prototypes" in text
    assert "ablation: the same recipe on its own DP release only" in text
    assert "the stronger alone arm" in text
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


def test_held_out_pool_is_the_same_texts_whatever_the_fitting_size():
    from fednet.bench.representation import (
        RepresentationBenchConfig,
        _corpus_texts,
        corpus_split,
    )

    small = RepresentationBenchConfig(fit_texts=60, pool=20)
    large = RepresentationBenchConfig(fit_texts=120, pool=20)
    pool_a, select_a, fit_a = corpus_split(small, _corpus_texts(small))
    pool_b, select_b, fit_b = corpus_split(large, _corpus_texts(large))
    assert pool_a == pool_b and len(pool_a) == 20
    assert (len(select_a), len(fit_a)) == (10, 50) and (len(select_b), len(fit_b)) == (20, 100)
    assert not set(pool_b) & set(select_b) and not set(select_b) & set(fit_b)
    assert not set(pool_b) & set(fit_b)


def test_wilson_and_paired_bootstrap_intervals():
    from fednet.bench.representation import paired_difference_interval, wilson_interval

    low, high = wilson_interval(81, 100)
    assert (round(low, 3), round(high, 3)) == (0.722, 0.875)  # Wilson's 95% interval
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    with pytest.raises(ValueError, match="hits"):
        wilson_interval(11, 10)
    same = [True] * 80 + [False] * 20
    assert paired_difference_interval(same, same) == (0.0, 0.0)
    worse = [True] * 60 + [False] * 40  # differs on 20 of 100 items
    low, high = paired_difference_interval(same, worse, seed=1)
    assert 0.0 < low < 0.2 < high < 0.3
    with pytest.raises(ValueError, match="one length"):
        paired_difference_interval([True], [True, False])


def test_transfer_peers_are_the_same_data_in_both_comparisons():
    from fednet.bench.representation import RepresentationBenchConfig
    from fednet.bench.transfer import split_validation, transfer_data

    cfg = RepresentationBenchConfig(small_examples=30, other_examples=50, test_examples=40)
    data = transfer_data(cfg)
    assert data["own_model"] == data["other_model"] and len(data["other_model"]) == 2
    assert all(len(texts) == 50 for texts, _ in data["other_model"])
    peers = {t for texts, _ in data["other_model"] for t in texts}
    assert len(peers) > 90  # two disjoint shares (the data set repeats a few tweets)
    assert not peers & set(data["small"][0]) and not peers & set(data["test"][0])
    train, validation = split_validation(cfg, data["small"])
    assert (len(train[0]), len(validation[0])) == (24, 6)
    assert train[0] + validation[0] == data["small"][0]


class _Constant(torch.nn.Module):
    """A classifier that always answers ``label``."""

    def __init__(self, label: int) -> None:
        super().__init__()
        self.label = label

    def forward(self, input_ids, attention_mask):
        logits = torch.zeros(input_ids.shape[0], 2)
        logits[:, self.label] = 1.0
        return logits


def test_learning_rate_is_chosen_on_the_validation_share_never_the_test():
    from fednet.bench.representation import RepresentationBenchConfig
    from fednet.bench.transfer import select_and_test

    cfg = RepresentationBenchConfig(
        models=("tiny-bert",), reference="tiny-bert", learning_rates=(0.1, 0.2)
    )
    validation = (["a b c", "d e f"], [1, 1])
    test = (["g h i", "j k l", "m n o"], [0, 0, 0])
    picked = select_and_test(
        cfg, lambda lr: _Constant(1 if lr == 0.2 else 0), validation, test, lambda _: None, "x"
    )
    assert picked["learning_rate"] == 0.2 and picked["validation"] == {"0.1": 0.0, "0.2": 1.0}
    assert picked["accuracy"] == 0.0 and picked["correct"] == [False, False, False]


def test_default_sizes_of_the_fit_routing_and_transfer_parts():
    """At least 5,000 public pairs for a 768 -> 384 map, 600 routing queries (95% intervals
    of about +-4 points per accuracy) and 2,000 transfer test texts (about +-2 points)."""
    from fednet.bench.representation import RepresentationBenchConfig, corpus_split

    d = RepresentationBenchConfig()
    _, select, fit = corpus_split(d, [str(i) for i in range(d.pool + d.fit_texts)])
    assert len(fit) >= 5000 and len(select) >= 1000
    assert d.queries_per_dataset * len(d.routing_datasets) >= 600
    assert d.other_examples >= 1000 > d.small_examples  # peers hold a realistic share
    assert d.test_examples >= 2000 and len(d.learning_rates) >= 3
