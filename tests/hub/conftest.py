"""Fixtures for the hub tests: a real tiny PEFT adapter, keys, stores and a live server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import save_file
from transformers import BertConfig, BertModel

from fednet.hub import (
    HubClient,
    HubStore,
    Manifest,
    create_app,
    encode_public_key,
    generate_private_key,
)
from fednet.hub.keys import Ed25519PrivateKey

from ..loopback import serving as running

WRITE_TOKEN = "write-secret"
READ_TOKEN = "read-secret"


def tiny_bert_config() -> BertConfig:
    """The shape of the registered ``tiny-bert`` base model, which the drafts name."""
    return BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
    )


@pytest.fixture(scope="session")
def adapter_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PEFT LoRA adapter of a tiny BERT, with non-zero B, a head and a DP sketch."""
    torch.manual_seed(0)
    model = get_peft_model(
        BertModel(tiny_bert_config()), LoraConfig(r=4, target_modules=["query", "value"])
    )
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_()
    out = tmp_path_factory.mktemp("adapter")
    model.save_pretrained(out)
    save_file({"weight": torch.randn(3, 32), "bias": torch.zeros(3)}, str(out / "head.safetensors"))
    save_file(
        {"centroids": torch.randn(3, 32), "counts": torch.tensor([4.0, 7.5, 1.0])},
        str(out / "sketch.safetensors"),
    )
    return out


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return generate_private_key()


@pytest.fixture
def other_key() -> Ed25519PrivateKey:
    return generate_private_key()


@pytest.fixture
def make_draft() -> Callable[..., Manifest]:
    def make(**overrides: Any) -> Manifest:
        fields: dict[str, Any] = {
            "name": "sst2-lora",
            "base_model": "tiny-bert",
            "rank": 4,
            "task": "sst2",
            "owner": "client-1",
            "label_names": ("neg", "pos", "neutral"),
            "round": 3,
            "kind": "shared",
            "metrics": {"accuracy": 0.8125, "loss": 0.5},
            "epsilon": 2.5,
            "delta": 1e-5,
        }
        fields.update(overrides)
        return Manifest(**fields)

    return make


@pytest.fixture
def store(tmp_path: Path) -> Iterator[HubStore]:
    with HubStore(tmp_path / "hub") as hub:
        yield hub


@pytest.fixture
def serve_store() -> Callable[..., Any]:
    """Start a server over a store; returns a context manager yielding its URL."""

    def start(hub: HubStore, **kwargs: Any) -> Any:
        kwargs.setdefault("write_token", WRITE_TOKEN)
        return running(create_app(hub, **kwargs))

    return start


@pytest.fixture
def hub_url(store: HubStore, serve_store: Callable[..., Any]) -> Iterator[str]:
    with serve_store(store) as url:
        yield url


@pytest.fixture
def client(hub_url: str, key: Ed25519PrivateKey) -> Iterator[HubClient]:
    """A writer and reader that pinned ``key`` for owner ``client-1`` only."""
    trust = {"client-1": [encode_public_key(key)]}
    with HubClient(hub_url, token=WRITE_TOKEN, timeout=5.0, trust=trust) as hub:
        yield hub
