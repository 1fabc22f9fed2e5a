"""The aggregation benchmark's malicious-client mod and its command-line checks."""

import pytest
import torch
from flwr.app import ArrayRecord, Context, Message, MessageType, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from fednet import protocol as P
from fednet.bench.aggregation import AttackMod
from fednet.cli import main

A = "m.lora_A.weight"


@pytest.fixture(autouse=True)
def _task_identity():
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1


def _exchange(mod, partition, received, trained, kind=MessageType.TRAIN):
    msg = Message(
        RecordDict({P.LORA: ArrayRecord({A: received})}), dst_node_id=1, message_type=kind
    )
    ctx = Context(1, 1, {"partition-id": partition}, RecordDict(), {})

    def call_next(m, c):
        return Message(RecordDict({P.LORA: ArrayRecord({A: trained})}), reply_to=m)

    return mod(msg, ctx, call_next).content[P.LORA].to_torch_state_dict()[A]


def test_attacks_rewrite_only_the_malicious_clients_training_reply():
    received, trained = torch.tensor([[1.0, 2.0]]), torch.tensor([[1.5, 1.0]])
    # update (0.5, -1): x100 -> received + (50, -100); sign flip -> received - update
    assert _exchange(AttackMod("norm-x100"), 0, received, trained).tolist() == [[51.0, -98.0]]
    assert _exchange(AttackMod("sign-flip"), 0, received, trained).tolist() == [[0.5, 3.0]]
    noisy = _exchange(AttackMod("gaussian-noise"), 0, received, trained)
    assert not torch.equal(noisy, trained) and noisy.dtype == torch.float32
    assert torch.equal(_exchange(AttackMod("sign-flip"), 1, received, trained), trained)
    evaluated = _exchange(AttackMod("sign-flip"), 0, received, trained, MessageType.EVALUATE)
    assert torch.equal(evaluated, trained)


def test_unknown_attack_and_bad_flags_are_named(capsys):
    with pytest.raises(ValueError, match="norm-x100, sign-flip, gaussian-noise"):
        AttackMod("label-flip")
    assert main(["bench-aggregation", "--methods", "fedit,mean"]) == 2
    assert "`--methods`: unknown mean" in capsys.readouterr().err
    assert main(["bench-aggregation", "--wrappers", "krum"]) == 2
    assert "`--wrappers`: unknown krum" in capsys.readouterr().err


def test_data_attacks_poison_the_first_spam_client_by_config_and_show_in_the_table():
    from fednet.bench.aggregation import (
        DATA_ATTACKS,
        _with_attack,
        default_malicious,
        markdown,
    )
    from fednet.config import load_preset

    cfg = load_preset("configs/default.toml")
    bad = default_malicious(cfg)
    assert cfg.clients[bad].id == "spam-0"
    for attack in DATA_ATTACKS:
        attacked = _with_attack(cfg, bad, attack)
        assert [c.attack for c in attacked.clients] == ["", "", attack, "", "", ""]
    row = {
        "accuracy_mean": 0.8,
        "accuracy_weighted": 0.8,
        "task_accuracy": 0.9,
        "backdoor_success": 0.25,
        "spam_recall": 0.5,
        "backdoor_success_on_detected": 0.1,
        "bytes_up_per_client_round": 100.0,
        "updates_rejected": 1,
        "updates_clipped_or_down_weighted": 0,
    }
    report = {
        "preset": "p.toml",
        "lora_grouping": "base-model",
        "rounds": 1,
        "local_steps": [10],
        "eval_examples": 128,
        "clients": 6,
        "malicious_client": "spam-0",
        "attacked_task": "sms-spam",
        "complete": False,
        "wall_s": 60.0,
        "command": "fednet bench-aggregation",
        "methods": [{"rank_aggregation": "svd", **row, "backdoor_success": None}],
        "attacks": [
            {"attack": "backdoor", "robust": "median", **row},
            {"attack": "backdoor", "robust": "none", **row, "clients_failed": ["spam-1"]},
        ],
    }
    text = markdown(report)
    assert "INCOMPLETE" in text
    assert "| svd | 0.800 | 0.800 | 0.900 | - | 0.500 | 100 |" in text
    assert "| backdoor | median | 0.800 | 0.900 | 0.250 | 0.500 | 0.100 | 1 | 0 |" in text
    assert "| backdoor | none (INVALID: spam-1 failed) | 0.800 |" in text


def test_a_row_with_a_failed_client_names_it():
    from fednet.bench.aggregation import _row

    ok = {"accuracy": 0.9, "bytes_up_total": 10, "finished": True, "failures": []}
    summary = {
        "clients": {
            "spam-0": ok,
            "spam-1": {
                "accuracy": None,
                "bytes_up_total": 0,
                "finished": False,
                "failures": [{"round": 1, "stage": "train", "reason": "worker killed"}],
            },
        },
        "rounds_completed": 1,
        "final": {"accuracy": 0.9},
        "tasks": {"sms-spam": {"accuracy": 0.9}},
        "update_events": [],
    }
    row = _row(summary, "sms-spam", attack="none")
    assert row["clients_failed"] == ["spam-1"]
    assert row["accuracy_mean"] == 0.9  # over the clients that reported: hence the mark


def _attack_row(attack, robust, acc, bs=None):
    return {
        "attack": attack,
        "robust": robust,
        "accuracy_mean": acc,
        "backdoor_success": bs,
        "clients_failed": [],
        "updates_rejected": 0,
        "updates_clipped_or_down_weighted": 0,
    }


def test_targets_are_judged_from_the_rows_of_the_report():
    from fednet.bench.aggregation import markdown, targets

    report = {
        "preset": "p",
        "lora_grouping": "base-model",
        "rounds": 3,
        "clients": 6,
        "wall_s": 60.0,
        "command": "c",
        "attacked_task": "sms-spam",
        "malicious_client": "x",
        "methods": [
            {
                "rank_aggregation": m,
                "accuracy_mean": a,
                "accuracy_weighted": a,
                "bytes_up_per_client_round": 1.0,
                "clients_failed": [],
            }
            for m, a in [("fedit", 0.80), ("svd", 0.79), ("frozen-a", 0.81)]
        ],
        "attacks": [
            _attack_row("none", "none", 0.90, 0.05),
            _attack_row("backdoor", "none", 0.89, 0.60),
            # within 2 points, but backdoor success 0.12 is not below 0.10
            _attack_row("backdoor", "median", 0.885, 0.12),
            # backdoor contained, but 2.5 points below the clean run
            _attack_row("backdoor", "multi-krum", 0.875, 0.04),
            _attack_row("sign-flip", "none", 0.70),
            _attack_row("sign-flip", "median", 0.881),  # 1.9 points below: met
        ],
    }
    got = {t["target"]: t for t in targets(report)}
    bd = got["backdoor: one malicious client contained"]
    assert not bd["met"] and "multi-krum" in bd["detail"] and "-2.5 points" in bd["detail"]
    assert got["sign-flip: one malicious client contained"]["met"]
    exact = got["svd or frozen-a at least as accurate as fedit"]
    assert exact["met"] and exact["detail"] == "frozen-a 0.810 vs fedit 0.800"
    report["attacks"][3]["accuracy_mean"] = 0.885
    assert targets(report)[0]["met"]
    md = markdown(report)
    assert "- backdoor: one malicious client contained: met; best wrapper multi-krum" in md
    report["lora_grouping"] = "task"  # the exactness target is for base-model grouping only
    assert all("fedit" not in t["target"] for t in targets(report))


def test_an_invalid_row_is_named_never_silently_left_out():
    from fednet.bench.aggregation import targets

    report = {
        "lora_grouping": "task",
        "methods": [],
        "attacks": [
            {**_attack_row("none", "none", 0.90, 0.05), "clients_failed": ["news-1"]},
            _attack_row("backdoor", "median", 0.89, 0.02),
        ],
    }
    got = targets(report)
    assert [t["met"] for t in got] == [False, False]
    assert "not judged: the row is invalid, clients news-1 failed" in got[0]["detail"]
    assert "no valid clean row" in got[1]["detail"]


def test_every_row_starts_from_the_preset_without_personalisation():
    from fednet.bench.aggregation import bench_preset
    from fednet.config import load_preset

    assert load_preset("configs/default.toml").personalize_steps > 0
    cfg = bench_preset("configs/default.toml")
    assert cfg.personalize_steps == 0
    assert cfg.rounds == load_preset("configs/default.toml").rounds
