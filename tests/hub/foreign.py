"""Adapters made outside fednet, and a hub that holds them past its checks, for tests."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import save_file

from fednet.hub import HubStore, Manifest
from fednet.hub.bundle import read_adapter_dir, sha256_hex
from fednet.hub.keys import Ed25519PrivateKey, sign_manifest


def peft_adapter(out: Path, model: torch.nn.Module, hidden: int, r: int = 4) -> Path:
    """Save a real peft LoRA adapter of ``model`` with a 2-label head, as peft users do."""
    torch.manual_seed(0)
    peft_model = get_peft_model(model, LoraConfig(r=r, target_modules=["query", "value"]))
    peft_model.save_pretrained(out)
    save_file(
        {"head.weight": torch.randn(2, hidden), "head.bias": torch.zeros(2)},
        str(out / "head.safetensors"),
    )
    return out


def draft(name: str, rank: int) -> Manifest:
    return Manifest(
        name=name, base_model="tiny-bert", rank=rank, task="t", owner="me", label_names=("a", "b")
    )


def signed_upload(
    adapter: Path, name: str, key: Ed25519PrivateKey
) -> tuple[Manifest, dict[str, bytes]]:
    """Sign an adapter as its owner would, without the checks of ``prepare_publish``."""
    files = read_adapter_dir(adapter)
    rank = json.loads(files["adapter_config.json"])["r"]
    digests = {n: sha256_hex(d) for n, d in files.items()}
    return sign_manifest(replace(draft(name, rank), files=digests), key), files


def smuggle(store: HubStore, adapter: Path, name: str, key: Ed25519PrivateKey) -> None:
    """Store an adapter past the checks, as a hub written by an older fednet holds it."""
    signed, files = signed_upload(adapter, name, key)
    for n, digest in signed.files.items():
        store._write_blob(digest, files[n])  # noqa: SLF001 - the test plays the old hub
    with store._engine.begin() as conn:  # noqa: SLF001
        store._insert_manifest(conn, signed)  # noqa: SLF001


def small_bert() -> torch.nn.Module:
    """A BERT smaller than ``tiny-bert`` (hidden size 16), as another base model."""
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=100,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
    )
    return BertModel(config)
