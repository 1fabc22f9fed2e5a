"""The benchmark's parts on known inputs: config, union labels, streams, figures, targets."""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import pytest

from fednet.bench import BenchConfig
from fednet.bench.answering import oracle_candidate, router_confusion
from fednet.bench.markdown import human_bytes
from fednet.bench.queries import BenchQuery, is_correct, query_streams, task_of_dataset
from fednet.bench.report import check_report, evaluate_targets, non_finite
from fednet.bench.runs import centralized_steps, variant
from fednet.bench.runstats import (
    accuracy_per_round,
    communication,
    epsilon_per_round,
    flower_overhead,
)
from fednet.config import UNION_TASK, load_preset
from fednet.errors import ConfigError
from fednet.federation.client_data import load_client_data
from fednet.federation.labels import to_union, union_label, union_label_names


@pytest.fixture(scope="module")
def tiny():
    return load_preset("configs/tiny.toml")


# -- config -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "error", "needle"),
    [
        ("queries_per_dataset", 0, ConfigError, "`bench.queries-per-dataset` must be >= 1, got 0"),
        (
            "confidence_threshold",
            1.5,
            ConfigError,
            "`bench.confidence-threshold` must be in [0, 1]",
        ),
        ("clients_at_once", True, ConfigError, "`bench.clients-at-once` must be an int, got True"),
        ("rounds", 0, ConfigError, "`bench.rounds` must be >= 1, got 0"),
        ("preset", "", ConfigError, "`bench.preset`"),
    ],
)
def test_bench_config_names_the_bad_key_and_value(field, value, error, needle):
    with pytest.raises(error) as info:
        BenchConfig(**{field: value})
    assert needle in str(info.value)


def test_quick_mode_uses_tiny_bert_and_keeps_overrides():
    quick = BenchConfig.quick_mode(out_dir="x", queries_per_dataset=3)
    assert quick.quick and quick.preset == "configs/tiny.toml"
    assert quick.queries_per_dataset == 3 and quick.out_dir == "x"
    assert not quick.privacy_section


# -- the union label space ----------------------------------------------------------------


def test_union_label_space_maps_every_dataset_into_one_head(tiny):
    union = tiny.with_overrides(label_space="union")
    assert {c.task for c in union.clients} == {UNION_TASK}
    names = union_label_names(union)
    assert names == (
        "sms-spam:ham",
        "sms-spam:spam",
        "bbc-news:business",
        "bbc-news:entertainment",
        "bbc-news:politics",
        "bbc-news:sports",
        "bbc-news:tech",
    )
    for client in union.clients:
        own = load_client_data(tiny, client)
        mapped = load_client_data(union, client)
        assert mapped.label_names == names
        assert mapped.train_texts == own.train_texts
        assert [names[y] for y in mapped.train_labels] == [
            union_label(client.dataset, own.label_names[y]) for y in own.train_labels
        ]


def test_union_rejects_an_explicit_task_and_unknown_label_spaces(tiny):
    custom = dataclasses.replace(tiny.clients[0], task="spam-task")
    with pytest.raises(ValueError, match=r"clients\[spam-0\]\.task.*'spam-task'"):
        tiny.with_overrides(label_space="union", clients=(custom, *tiny.clients[1:]))
    with pytest.raises(ValueError, match="`federation.label-space` must be 'task' or 'union'"):
        tiny.with_overrides(label_space="mixed")


def test_to_union_refuses_labels_outside_the_union():
    with pytest.raises(ValueError, match="'bbc-news:sport' is not in the union"):
        to_union([0], ["sport"], "bbc-news", ["sms-spam:ham"])


def test_label_space_is_a_preset_key(tmp_path):
    preset = tmp_path / "p.toml"
    preset.write_text(
        '[federation]\nlabel-space = "union"\n[[clients]]\nid = "a"\ndataset = "sms-spam"\n'
    )
    assert load_preset(preset).clients[0].task == UNION_TASK
    preset.write_text('[federation]\nlabel-space = 3\n[[clients]]\nid = "a"\ndataset = "x"\n')
    with pytest.raises(
        ConfigError, match="`federation.label-space` must be 'task' or 'union', got 3"
    ):
        load_preset(preset)


# -- variants and budgets -------------------------------------------------------------------


def test_variants_differ_only_where_they_must(tiny):
    local, general = variant(tiny, "local"), variant(tiny, "generalist")
    assert local.strategy.name == "local" and local.clients == tiny.clients
    assert general.label_space == "union" and general.personalize_steps == 0
    assert [c.local_steps for c in general.clients] == [c.local_steps for c in tiny.clients]
    assert centralized_steps(tiny) == tiny.rounds * sum(c.local_steps for c in tiny.clients)
    with pytest.raises(ValueError, match="unknown benchmark variant 'big'; valid: fednet"):
        variant(tiny, "big")
    capped = variant(tiny, "local", eval_examples=8, sketch_examples=4)
    assert capped.eval_examples == 8 and capped.privacy.sketch_examples == 4
    assert capped.clients == tiny.clients and capped.rounds == tiny.rounds
    assert variant(tiny, "fednet", eval_examples=8) is tiny


# -- the query stream ---------------------------------------------------------------------


def test_query_streams_are_held_out_disjoint_and_balanced(tiny):
    streams = query_streams(tiny, per_dataset=6, warmup_per_dataset=3)
    assert streams.datasets == ("sms-spam", "bbc-news")
    for stream, n in ((streams.measured, 6), (streams.warmup, 3)):
        for d in streams.datasets:
            assert sum(q.dataset == d for q in stream) == n
    assert not {q.text for q in streams.warmup} & {q.text for q in streams.measured}
    seen = set()
    for client in tiny.clients:
        data = load_client_data(tiny, client)
        seen |= set(data.train_texts) | set(data.test_texts)
    assert not {q.text for q in (*streams.warmup, *streams.measured)} & seen
    assert streams.max_chars == max(len(q.text) for q in (*streams.warmup, *streams.measured))
    again = query_streams(tiny, per_dataset=6, warmup_per_dataset=3)
    assert again == streams
    # the corpus repeats messages, but the split keeps every copy of a text on one side
    assert streams.duplicates_dropped == {"sms-spam": 0, "bbc-news": 0}
    with pytest.raises(ValueError, match="needs 100003"):
        query_streams(tiny, per_dataset=100_000, warmup_per_dataset=3)


def test_answers_are_right_only_for_the_query_task_and_label(tiny):
    tasks = task_of_dataset(tiny)
    q = BenchQuery("free prize", "sms-spam", "spam")
    assert is_correct("sms-spam", "spam", q, tasks)
    assert not is_correct("sms-spam", "ham", q, tasks)
    assert not is_correct("bbc-news", "spam", q, tasks)
    assert is_correct(UNION_TASK, "sms-spam:spam", q, tasks)
    assert not is_correct(UNION_TASK, "bbc-news:spam", q, tasks)


def test_oracle_picks_the_client_richest_in_the_true_label():
    def cand(owner, task, kind="personalized", accuracy=0.5):
        return SimpleNamespace(owner=owner, task=task, kind=kind, metrics={}, accuracy=accuracy)

    candidates = [
        cand("n0", "news"),
        cand("n1", "news", accuracy=0.9),
        cand("s0", "spam"),
        cand("n1", "news", kind="shared", accuracy=1.0),
    ]
    # n1 holds more sport texts than n0, but sport is a larger share of n0's data
    counts = {"n0": {"sport": 40, "tech": 10}, "n1": {"sport": 60, "tech": 540}, "s0": {"ham": 9}}
    tasks = {"bbc": "news", "sms": "spam"}
    pick = oracle_candidate(candidates, BenchQuery("t", "bbc", "sport"), tasks, counts)
    assert pick is candidates[0]
    pick = oracle_candidate(candidates, BenchQuery("t", "bbc", "tech"), tasks, counts)
    assert pick is candidates[1]  # personalised, not the shared adapter
    pick = oracle_candidate(candidates, BenchQuery("t", "bbc", "politics"), tasks, counts)
    assert pick is candidates[1]  # nobody holds the label: best reported accuracy
    with pytest.raises(ValueError, match="no candidate serves task None"):
        oracle_candidate(candidates, BenchQuery("t", "tweets", "x"), tasks, counts)


def test_router_confusion_counts_first_choices():
    def answer(task):
        candidate = SimpleNamespace(task=task)
        return SimpleNamespace(decision=SimpleNamespace(best=SimpleNamespace(candidate=candidate)))

    queries = [BenchQuery("t", d, "x") for d in ("a", "a", "b", "b")]
    answers = [answer(t) for t in ("ta", "tb", "tb", "other")]
    out = router_confusion(queries, answers, ["a", "b"], {"a": "ta", "b": "tb"})
    assert out["columns"] == ["a", "b", "other"]
    assert out["matrix"] == [[1, 1, 0], [0, 1, 1]]
    assert out["first_choice_on_own_dataset"] == 0.5


# -- figures from a run summary ------------------------------------------------------------


def _summary():
    history = [
        {
            "round": 1,
            "wall_s": 12.0,
            "train": {"a/wall-s": 4.0, "b/wall-s": 6.0, "a/epsilon": 0.0, "b/epsilon": 0.0},
            "evaluate": {
                "a/accuracy": 0.5,
                "b/accuracy": 0.7,
                "a/eval-wall-s": 1.0,
                "b/eval-wall-s": 1.0,
            },
            "bytes_up": {"a": 100, "b": 300},
            "bytes_down": {"a": 200, "b": 200},
        },
        {
            "round": 2,
            "wall_s": 11.0,
            "train": {"a/wall-s": 4.0, "b/wall-s": 5.0, "a/epsilon": 1.0},
            "evaluate": {"a/accuracy": 0.6, "a/eval-wall-s": 1.0, "b/eval-wall-s": 0.0},
            "bytes_up": {"a": 100},
            "bytes_down": {"a": 200},
        },
    ]
    clients = {
        "a": {
            "base_model": "m",
            "bytes_up_per_round": 100.0,
            "bytes_up_total": 200,
            "epsilon": 1.0,
        },
        "b": {
            "base_model": "m",
            "bytes_up_per_round": 150.0,
            "bytes_up_total": 300,
            "epsilon": None,
        },
    }
    return {
        "history": history,
        "clients": clients,
        "base_model_bytes": {"m": 10_000},
        "upload_fraction_of_base_per_round": {"a": 0.01, "b": 0.015},
    }


def test_flower_overhead_is_wall_over_the_clients_critical_path():
    out = flower_overhead(_summary(), clients_at_once=1)
    assert [r["client_work_s"] for r in out["rounds"]] == [12.0, 10.0]
    assert out["rounds"][0]["ratio"] == pytest.approx(1.0)
    assert out["ratio"] == pytest.approx(23.0 / 22.0)
    assert out["ratio_after_round_1"] == pytest.approx(1.1)
    two = flower_overhead(_summary(), clients_at_once=2)  # max(sum / 2, longest) per phase
    assert [r["client_work_s"] for r in two["rounds"]] == [7.0, 6.0]
    assert two["ratio"] == pytest.approx(23.0 / 13.0)


def test_communication_against_full_model_fedavg():
    out = communication(_summary())
    assert out["rounds"][0] == {
        "round": 1,
        "clients": 2,
        "bytes_up": 400,
        "bytes_down": 400,
        "full_fedavg_bytes_up": 20_000,
        "full_fedavg_bytes_down": 20_000,
    }
    assert out["rounds"][1]["full_fedavg_bytes_up"] == 10_000
    assert out["upload_fraction_of_base_per_client_per_round"] == {"a": 0.01, "b": 0.015}


def test_accuracy_and_epsilon_per_round(tiny):
    cfg = SimpleNamespace(
        clients=[SimpleNamespace(id="a", dataset="d1"), SimpleNamespace(id="b", dataset="d1")]
    )
    acc = accuracy_per_round(_summary(), cfg)  # type: ignore[arg-type]
    assert acc["rounds"] == [1, 2]
    assert acc["by_dataset"]["d1"] == [pytest.approx(0.6), pytest.approx(0.6)]
    eps = epsilon_per_round(_summary())
    assert eps["by_client"] == {"a": [0.0, 1.0], "b": [0.0, 0.0]}


# -- targets and the report -----------------------------------------------------------------


def _rows(
    routed=0.9,
    general=0.8,
    central=0.92,
    routed_ms=10.0,
    broad_ms=40.0,
    routed_cpu=10.0,
    broad_cpu=60.0,
):
    base = {"accuracy_by_dataset": {"d": 0.5}, "calls_per_query": 1.0}

    def row(key, acc, ms=10.0, cpu=10.0, calls=1.0):
        return {
            **base,
            "key": key,
            "accuracy": acc,
            "latency_p50_ms": ms,
            "latency_parallel_p50_ms": ms,
            "cpu_s_per_1000": cpu,
            "calls_per_query": calls,
        }

    return [
        row("local", 0.85),
        row("centralized", central),
        row("generalist", general),
        row("broadcast", 0.88, broad_ms, broad_cpu, 6.0),
        row("routed", routed, routed_ms, routed_cpu),
        row("oracle", 0.91),
    ]


@pytest.mark.parametrize(
    ("kwargs", "met"),
    [
        ({}, [True, True, True, True, True, True]),
        ({"routed": 0.81}, [False, True, True, False, True, True]),
        ({"routed_ms": 30.0, "routed_cpu": 20.0}, [True, False, False, True, True, True]),
    ],
)
def test_targets_met_or_not(kwargs, met):
    comm = {"upload_fraction_of_base_per_client_per_round": {"a": 0.004, "b": 0.0049}}
    overhead = {
        "ratio": 1.1,
        "ratio_after_round_1": 1.05,
        "wall_s": 11.0,
        "client_work_s": 10.0,
        "clients_at_once": 1,
    }
    targets = evaluate_targets(
        _rows(**kwargs), communication=comm, overhead=overhead, ranks={"a": 4, "b": 8}
    )
    assert [t["met"] for t in targets] == met
    assert targets[0]["value"] == pytest.approx((_rows(**kwargs)[4]["accuracy"] - 0.8) * 100)


def test_upload_and_overhead_targets_fail_over_their_bounds():
    comm = {"upload_fraction_of_base_per_client_per_round": {"a": 0.004, "b": 0.0065}}
    overhead = {
        "ratio": 1.3,
        "ratio_after_round_1": None,
        "wall_s": 13.0,
        "client_work_s": 10.0,
        "clients_at_once": 1,
    }
    targets = {
        t["key"]: t
        for t in evaluate_targets(_rows(), communication=comm, overhead=overhead, ranks={"b": 16})
    }
    assert not targets["upload_per_round"]["met"]
    assert "b (rank 16) 0.650%" in targets["upload_per_round"]["why"]
    assert not targets["flower_overhead"]["met"]
    assert targets["flower_overhead"]["value"] == 1.3


def test_report_checks_find_missing_keys_and_non_finite_numbers():
    assert non_finite({"a": [1.0, {"b": math.nan}], "c": math.inf, "d": None}) == [
        "$.a[1].b",
        "$.c",
    ]
    problems = check_report({"schema": "fednet-bench/1", "rows": [], "targets": []})
    assert "missing key `overhead`" in problems
    assert any(p.startswith("rows must be") for p in problems)


def test_human_bytes():
    assert [human_bytes(n) for n in (0, 1536, 5 * 2**20, None)] == [
        "0 B",
        "1.5 KiB",
        "5.0 MiB",
        "-",
    ]


def test_unknown_wire_dtype_names_the_key(tiny):
    with pytest.raises(ValueError, match="`federation.wire-dtype` must be 'float32' or 'float16'"):
        tiny.with_overrides(wire_dtype="bfloat16")


def test_unknown_lora_grouping_names_the_key(tiny):
    import dataclasses

    with pytest.raises(ValueError, match="`strategy.lora-grouping` must be 'base-model' or 'task'"):
        tiny.with_overrides(strategy=dataclasses.replace(tiny.strategy, lora_grouping="client"))


def test_privacy_bench_runs_every_client_at_once(monkeypatch):
    from fednet.bench import privacy

    monkeypatch.setattr(privacy.os, "cpu_count", lambda: 2)
    share = privacy._core_share(3)
    assert share == 0.666 and int(2 / share) == 3  # Ray fits all three on two cores
    assert privacy._core_share(2) == 1.0 and privacy._core_share(1) == 1.0


def test_reuse_refuses_a_directory_no_benchmark_wrote(tmp_path):
    # --reuse deletes the work directory's hubs/ and cache/: never in a user's directory
    from fednet.bench.runner import run_bench

    mine = tmp_path / "mine"
    (mine / "hubs").mkdir(parents=True)
    (mine / "hubs" / "notes.txt").write_text("keep me")
    (mine / "cache").mkdir()
    config = BenchConfig(preset="configs/tiny.toml", out_dir=str(tmp_path / "out"), reuse=str(mine))
    with pytest.raises(ValueError, match="not a benchmark work directory"):
        run_bench(config)
    assert (mine / "hubs" / "notes.txt").read_text() == "keep me"
    assert (mine / "cache").is_dir()
