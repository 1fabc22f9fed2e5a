"""A real Flower simulation of clients on three tiny architectures (BERT, MPNet, Llama):
LoRA is averaged per base model, heads per task and base model, and every adapter loads
in peft on its own base model."""

from __future__ import annotations

import json

import pytest
import torch
from peft import PeftModel

from fednet.config import load_preset
from fednet.federation.simulation import simulate
from fednet.lora import LoraUpdate, aggregate_lora, truncate_rank
from fednet.models import build_classifier, create_base_model, load_adapter, lora_targets
from fednet.models.adapters import adapter_fit_problems

from .wire_audit import WireRecorder, load_wire

pytestmark = pytest.mark.integration

HIDDEN = {"tiny-bert": 32, "tiny-mpnet": 40, "tiny-llama": 48}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    cfg = load_preset("configs/hetero-tiny.toml")
    wire = tmp_path_factory.mktemp("wire")
    run_dir = tmp_path_factory.mktemp("runs") / "run"
    summary = simulate(cfg, run_dir, mods=(WireRecorder(wire, cfg),))
    return cfg, run_dir, summary, load_wire(wire)


def _adapter(run_dir, rnd, base, task):
    return load_adapter(run_dir / "rounds" / str(rnd) / base / task)


def test_every_client_on_every_architecture_finishes(run):
    cfg, _, summary, _ = run
    assert summary["rounds_completed"] == cfg.rounds == 2
    assert summary["complete"] and not summary["failed_clients"]
    assert sorted(summary["clients_finished"]) == sorted(c.id for c in cfg.clients)
    bases = {c["base_model"] for c in summary["clients"].values()}
    assert bases == set(HIDDEN)
    # one task on three base models: its accuracy is reported per base model too
    assert set(summary["tasks"]["sms-spam"]["base_models"]) == set(HIDDEN)


def _last_train_replies(cfg, run_dir, wire):
    """Each client's training reply of the last round: the one whose incoming LoRA is the
    state the server saved after the round before."""
    out = {}
    for entry in wire:
        if entry["message_type"] != "train" or "lora" not in entry["records"]:
            continue
        c = cfg.client(entry["client"])
        sent = _adapter(run_dir, cfg.rounds - 1, c.base_model, c.task)
        want = truncate_rank(sent.lora_state, c.lora_rank)
        got = entry["incoming"]["lora"]
        if all(torch.equal(torch.from_numpy(got[k]), v) for k, v in want.items()):
            out[c.id] = entry
    assert sorted(out) == sorted(c.id for c in cfg.clients)
    return out


def test_lora_is_averaged_per_base_model(run):
    cfg, run_dir, summary, wire = run
    replies = _last_train_replies(cfg, run_dir, wire)
    final = {
        (c.base_model, c.task): _adapter(run_dir, cfg.rounds, c.base_model, c.task)
        for c in cfg.clients
    }
    # the two tasks on tiny-llama share one adapter: their clients' average, rank-wise
    llama = [c for c in cfg.clients if c.base_model == "tiny-llama"]
    assert {c.task for c in llama} == {"sms-spam", "bbc-news"}
    before = _adapter(run_dir, cfg.rounds - 1, "tiny-llama", "sms-spam").lora_state
    want = aggregate_lora(
        [
            LoraUpdate(
                {k: torch.from_numpy(v) for k, v in replies[c.id]["records"]["lora"][1].items()},
                summary["clients"][c.id]["num_examples"],
            )
            for c in llama
        ],
        rank=max(c.lora_rank for c in llama),
        previous=before,
        method=cfg.strategy.rank_aggregation,
    )
    # each task's adapter is that average at the task's own largest rank: the slices
    # beyond it hold only the other task's training
    assert {c.task: c.lora_rank for c in llama} == {"sms-spam": 4, "bbc-news": 2}
    for task in ("sms-spam", "bbc-news"):
        got = final[("tiny-llama", task)].lora_state
        rank = max(c.lora_rank for c in llama if c.task == task)
        assert final[("tiny-llama", task)].rank == rank
        want_task = truncate_rank(want, rank)
        assert got.keys() == want_task.keys()
        for k in want_task:
            torch.testing.assert_close(got[k], want_task[k], rtol=1e-6, atol=1e-7)
    # each base model keeps its own adapter, on its own layers, at its task's rank
    for (base, task), saved in final.items():
        assert saved.target_modules == tuple(sorted(lora_targets(base)))
        a = next(v for k, v in saved.lora_state.items() if k.endswith("lora_A.weight"))
        mine = [c for c in cfg.clients if c.base_model == base and c.task == task]
        assert tuple(a.shape) == (max(c.lora_rank for c in mine), HIDDEN[base])


def test_heads_of_one_task_on_different_models_are_not_averaged_together(run):
    cfg, run_dir, _, wire = run
    replies = _last_train_replies(cfg, run_dir, wire)
    for c in cfg.clients:
        saved = _adapter(run_dir, cfg.rounds, c.base_model, c.task)
        assert saved.head_state is not None
        assert tuple(saved.head_state["head.weight"].shape) == (
            len(saved.label_names),
            HIDDEN[c.base_model],
        )
        # every (task, base model) has one client here: the head is that client's own
        sent = replies[c.id]["records"]["head"][1]
        for k, v in sent.items():
            torch.testing.assert_close(saved.head_state[k], torch.from_numpy(v))


def test_adapters_load_in_peft_on_their_own_base_models(run):
    cfg, run_dir, _, _ = run
    for c in cfg.clients:
        d = run_dir / "rounds" / str(cfg.rounds) / c.base_model / c.task
        saved = load_adapter(d)
        assert saved.base_model == c.base_model
        peft_model = PeftModel.from_pretrained(create_base_model(c.base_model), str(d))
        loaded = {
            k.replace(".default", ""): v for k, v in peft_model.state_dict().items() if "lora_" in k
        }
        assert saved.lora_state and all(
            torch.equal(loaded[k], v) for k, v in saved.lora_state.items()
        )
        # the same adapter in fednet's classifier answers a query with the task's labels
        model = build_classifier(
            c.base_model,
            rank=saved.rank,
            lora_alpha=saved.lora_alpha,
            lora_dropout=0.0,
            target_modules=saved.target_modules,
            num_labels=len(saved.label_names),
            seed=0,
        ).eval()
        model.load_lora_state(saved.lora_state)
        model.load_head_state(saved.head_state)
        ids = torch.randint(1000, 2000, (1, 12))
        mask = torch.ones_like(ids)
        with torch.no_grad():
            hidden = peft_model.eval()(input_ids=ids, attention_mask=mask).last_hidden_state
            torch.testing.assert_close(
                model.encoder(input_ids=ids, attention_mask=mask).last_hidden_state, hidden
            )
        # on any other architecture it does not fit
        config = json.loads((d / "adapter_config.json").read_text())
        shapes = {k: tuple(v.shape) for k, v in saved.lora_state.items()}
        for other in set(HIDDEN) - {c.base_model}:
            assert adapter_fit_problems(config, shapes, other)
