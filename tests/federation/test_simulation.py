"""A real Flower simulation of tiny-bert clients: learning, outputs and the wire."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from peft import PeftModel

from fednet.config import HubConfig, load_preset
from fednet.federation.client_data import load_client_data
from fednet.federation.simulation import simulate
from fednet.lora import is_lora_key
from fednet.models import create_base_model, load_adapter

from .wire_audit import WireRecorder, load_wire

pytestmark = pytest.mark.integration


OPENED: list[str] = []
"""Paths this (the server's) process opened while the simulation ran."""
_RECORDING = [False]


def _audit(event: str, args: tuple) -> None:
    if _RECORDING[0] and event == "open" and isinstance(args[0], str | bytes | Path):
        OPENED.append(os.fsdecode(args[0]))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    cfg = load_preset("configs/tiny.toml")
    hub = tmp_path_factory.mktemp("hub")
    cfg = dataclasses.replace(cfg, hub=HubConfig(location=str(hub)))
    wire = tmp_path_factory.mktemp("wire")
    run_dir = tmp_path_factory.mktemp("runs") / "run"
    sys.addaudithook(_audit)  # the ServerApp runs in this process, the ClientApps in workers
    _RECORDING[0] = True
    try:
        summary = simulate(cfg, run_dir, mods=(WireRecorder(wire),))
    finally:
        _RECORDING[0] = False
    return cfg, run_dir, summary, load_wire(wire)


def test_accuracy_rises_above_chance(run):
    cfg, _, summary, _ = run
    assert summary["rounds_completed"] == cfg.rounds == 2
    for cid, c in summary["clients"].items():
        client = cfg.client(cid)
        data = load_client_data(cfg, client)
        chance = 1.0 / len(data.label_names)
        assert c["accuracy"] > chance, (cid, c["accuracy"], chance)
    assert summary["final"]["accuracy"] > 0.5


def test_outputs_written(run):
    cfg, run_dir, summary, _ = run
    assert (run_dir / "summary.json").is_file()
    assert not list(run_dir.rglob("data-*.json"))  # clients' prepared data stays out of the run
    assert list((run_dir / "tb").glob("events.out.tfevents.*"))
    on_disk = json.loads((run_dir / "summary.json").read_text())
    assert on_disk["clients"].keys() == {c.id for c in cfg.clients}
    for c in on_disk["clients"].values():
        assert 0 < c["bytes_up_per_round"] < 0.05 * on_disk["base_model_bytes"]["tiny-bert"]
        assert c["personalized_accuracy"] is not None


def test_round_and_personalised_adapters_load_with_peft(run):
    cfg, run_dir, _, _ = run
    dirs = [
        run_dir / "rounds" / str(cfg.rounds) / "tiny-bert" / "sms-spam",
        run_dir / "personalized" / "spam-1",
    ]
    for d in dirs:
        saved = load_adapter(d)
        model = PeftModel.from_pretrained(create_base_model("tiny-bert"), str(d))
        loaded = {
            k.replace(".default", ""): v for k, v in model.state_dict().items() if "lora_" in k
        }
        for k, v in saved.lora_state.items():
            assert torch.equal(loaded[k], v)
        assert saved.label_names == ("ham", "spam")
    assert load_adapter(dirs[1]).rank == cfg.client("spam-1").lora_rank


def test_nothing_but_adapters_and_metrics_leave_a_client(run):
    cfg, _, _, wire = run
    assert len(wire) >= len(cfg.clients) * (1 + 2 * cfg.rounds)
    base = {k: v.numpy() for k, v in create_base_model("tiny-bert").state_dict().items()}
    base_shapes = {v.shape for v in base.values()}
    texts: set[str] = set()
    for c in cfg.clients:
        d = load_client_data(cfg, c)
        texts |= set(d.train_texts) | set(d.test_texts)
    for entry in wire:
        assert entry["error"] is None
        for name, (kind, payload) in entry["records"].items():
            assert name in {"lora", "head", "sketch", "metrics", "profile", "signed"}, name
            if kind == "arrays":
                for key, arr in payload.items():
                    assert (
                        is_lora_key(key)
                        or key in {"head.weight", "head.bias"}
                        or (name == "sketch" and key.startswith("sketch."))
                    ), key
                    if key != "sketch.label_names":  # the task's label names, UTF-8 bytes
                        assert arr.dtype.kind == "f", (key, arr.dtype)  # no label ids
                    if arr.shape in base_shapes:
                        assert not any(np.array_equal(arr, b) for b in base.values()), key
            elif kind == "metrics":
                assert all(isinstance(v, int | float) for v in payload.values())
            elif kind == "config" and name == "signed":
                # manifests the client signed: hashes, a public key, a signature
                for text in payload.values():
                    manifest = json.loads(text)
                    assert manifest["signature"] and manifest["owner_public_key"]
                    assert "PRIVATE" not in text
            elif kind == "config":
                for v in payload.values():
                    for s in v if isinstance(v, list) else [v]:
                        assert not (isinstance(s, str) and s in texts), s
            else:
                pytest.fail(f"unexpected record kind {kind}")


def test_sketch_leaves_once_per_client_in_the_last_round(run):
    cfg, run_dir, _, wire = run
    with_sketch = [e for e in wire if "sketch" in e["records"]]
    assert len(with_sketch) == len(cfg.clients)
    for c in cfg.clients:
        assert (run_dir / "sketches" / c.id / "sketch.safetensors").is_file()
        assert (run_dir / "personalized" / c.id / "sketch.safetensors").is_file()


def test_run_publishes_signed_adapters_to_the_hub(run):
    from fednet.hub import HubStore

    cfg, _, _, _ = run
    store = HubStore(Path(cfg.hub.location))
    manifests = {m.name: m for m in store.list()}
    for c in cfg.clients:
        for kind in ("shared", "personalized"):
            m = manifests[f"{c.id}-{kind}"]
            assert m.owner == c.id and m.kind == kind and m.signature
            # privacy is off: only the sketch is private, the weights carry no epsilon
            assert m.sketch and m.sketch_epsilon is not None
            assert m.update_epsilon is None and m.epsilon is None
    assert store.verify() == []


def test_clients_sign_with_keys_the_server_never_reads(run):
    """Each client's key stays in its own key directory (0700, key 0600); the server
    process never opens it, and nothing the server writes holds a private key."""
    from cryptography.hazmat.primitives import serialization

    from fednet.federation.apps import client_key_dir
    from fednet.hub import HubStore, encode_public_key, load_private_key

    cfg, run_dir, _, _ = run
    hub = Path(cfg.hub.location)
    private = {}
    key_dirs = {c.id: client_key_dir(cfg, c.id) for c in cfg.clients}
    assert len(set(key_dirs.values())) == len(cfg.clients)  # each client has its own
    for c in cfg.clients:
        keys = key_dirs[c.id]
        assert keys.resolve() not in (run_dir.resolve(), *run_dir.resolve().parents)
        assert not keys.resolve().is_relative_to(run_dir.resolve())
        assert not keys.resolve().is_relative_to(hub.resolve())
        assert stat.S_IMODE(keys.stat().st_mode) == 0o700
        path = keys / f"{c.id}.key"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        key = load_private_key(path)
        private[c.id] = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        with HubStore(hub) as store:
            for kind in ("shared", "personalized"):
                m = store.resolve(f"{c.id}-{kind}")
                assert m.owner_public_key == encode_public_key(key)  # signed by the client
        assert (run_dir / "signed" / f"{c.id}-shared.json").is_file()
    # the server process opened no file in the clients' key directory
    touched = [
        p
        for p in OPENED
        if any(Path(p).resolve().is_relative_to(k.resolve()) for k in key_dirs.values())
    ]
    assert touched == []
    assert any(Path(p).resolve().is_relative_to(run_dir.resolve()) for p in OPENED)  # the hook saw
    # the run keeps what its clients signed, and `hub push` forwards it as it is
    from fednet.cli import main

    again = run_dir.parent / "hub-again"
    assert main(["hub", "push", str(run_dir), "--hub", str(again)]) == 0
    with HubStore(again) as store:
        for c in cfg.clients:
            m = store.resolve(f"{c.id}-personalized")
            key = load_private_key(key_dirs[c.id] / f"{c.id}.key")
            assert m.owner_public_key == encode_public_key(key)
    # and nothing the server wrote (the run, the hub) holds a private key
    for root in (run_dir, hub):
        for path in root.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                assert b"PRIVATE KEY" not in data, path
                assert not any(raw in data for raw in private.values()), path


def test_local_only_strategy_runs(tmp_path):
    cfg = load_preset("configs/tiny.toml")
    cfg = dataclasses.replace(
        cfg, rounds=1, personalize_steps=0, strategy=dataclasses.replace(cfg.strategy, name="local")
    )
    summary = simulate(cfg, tmp_path / "local")
    assert summary["strategy"] == "local"
    assert all(c["accuracy"] is not None for c in summary["clients"].values())


def test_float16_wire_and_task_groups(run, tmp_path):
    """Half-precision LoRA on the wire, and one LoRA per task instead of one in all."""
    cfg, _, full, _ = run
    cfg = dataclasses.replace(
        cfg,
        rounds=1,
        personalize_steps=0,
        wire_dtype="float16",
        hub=HubConfig(),
        strategy=dataclasses.replace(cfg.strategy, lora_grouping="task"),
    )
    wire = tmp_path / "wire"
    wire.mkdir()
    summary = simulate(cfg, tmp_path / "half", mods=(WireRecorder(wire),))
    replies = [e for e in load_wire(wire) if "lora" in e["records"]]
    assert len(replies) == len(cfg.clients)
    for entry in replies:
        for name in ("lora", "head"):
            assert {a.dtype for a in entry["records"][name][1].values()} == {np.dtype("float16")}
    for cid, c in summary["clients"].items():
        assert c["accuracy"] is not None
        # the same LoRA and head in half the bytes; the sketch stays float32
        assert c["bytes_up_total"] < 0.6 * full["clients"][cid]["bytes_up_per_round"] + 4096
    # each task's round adapter holds its own clients' average: tasks no longer share factors
    adapters = {
        t: load_adapter(tmp_path / "half" / "rounds" / "1" / "tiny-bert" / t).lora_state
        for t in {c.task for c in cfg.clients}
    }
    first, *others = adapters.values()
    key = next(iter(first))
    assert all(not torch.equal(first[key], other[key]) for other in others)
