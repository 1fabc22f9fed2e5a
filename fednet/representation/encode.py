"""Frozen base-model embeddings: the pooled spaces that maps connect."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from fednet.models.classifier import mean_pool
from fednet.models.registry import create_base_model, load_tokenizer
from fednet.training import embed_texts

__all__ = ["encode_texts"]


def encode_texts(
    base_model: str, texts: Sequence[str], *, max_length: int = 64, batch_size: int = 32
) -> torch.Tensor:
    """L2-normalised mean-pooled embeddings ``[n, d]`` of ``texts`` by frozen ``base_model``.

    The same space sketches are released in (:mod:`fednet.privacy.sketch`).

    Raises
    ------
    ValueError
        If ``base_model`` is not registered (the valid names are listed).
    """
    model = create_base_model(base_model)
    tokenizer = load_tokenizer(base_model)
    if tokenizer.pad_token is None:  # decoder tokenizers: pad with end-of-sequence
        tokenizer.pad_token = tokenizer.eos_token

    def encode(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = model(input_ids=input_ids, attention_mask=attention_mask)
        return mean_pool(out.last_hidden_state, attention_mask)

    with torch.inference_mode():
        return embed_texts(
            encode, list(texts), tokenizer, max_length=max_length, batch_size=batch_size
        ).float()
