"""LoRA state on the wire: extraction, application and rank resizing.

A LoRA state is a flat ``dict[str, Tensor]`` keyed the way peft's
``get_peft_model_state_dict`` keys it, e.g.
``base_model.model.encoder.layer.0.attention.self.query.lora_A.weight``.
``lora_A`` factors are ``[r, in]`` and ``lora_B`` factors are ``[out, r]``, so the
rank is dim 0 of A and dim 1 of B.
"""

from __future__ import annotations

import re

import torch
from torch import nn

__all__ = [
    "LORA_KEY_PATTERN",
    "is_lora_key",
    "get_lora_state",
    "set_lora_state",
    "lora_rank_of",
    "pad_rank",
    "truncate_rank",
    "resize_rank",
    "state_nbytes",
]

LORA_KEY_PATTERN = re.compile(r"^[A-Za-z0-9_.]+\.lora_(A|B)\.weight$")


def is_lora_key(key: str) -> bool:
    """True when ``key`` names a LoRA A or B factor."""
    return bool(LORA_KEY_PATTERN.fullmatch(key))


def _is_a(key: str) -> bool:
    return key.endswith(".lora_A.weight")


def get_lora_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """LoRA factors of a peft model, detached and on CPU."""
    from peft import get_peft_model_state_dict

    state = get_peft_model_state_dict(model)
    return {k: v.detach().cpu().clone() for k, v in state.items() if is_lora_key(k)}


def set_lora_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load LoRA factors into a peft model; every key must be known to the model."""
    from peft import set_peft_model_state_dict

    expected = set(get_lora_state(model))
    unknown = sorted(set(state) - expected)
    missing = sorted(expected - set(state))
    if unknown or missing:
        raise ValueError(
            f"LoRA state does not fit the model: unknown keys {unknown[:3]}, "
            f"missing keys {missing[:3]}"
        )
    set_peft_model_state_dict(model, state)


def lora_rank_of(state: dict[str, torch.Tensor]) -> int:
    """The rank of a LoRA state (all factors must agree)."""
    ranks = {v.shape[0] if _is_a(k) else v.shape[1] for k, v in state.items()}
    if len(ranks) != 1:
        raise ValueError(f"LoRA state mixes ranks {sorted(ranks)}")
    return ranks.pop()


def pad_rank(state: dict[str, torch.Tensor], rank: int) -> dict[str, torch.Tensor]:
    """Zero-pad every factor up to ``rank`` (rows of A, columns of B)."""
    out = {}
    for k, v in state.items():
        r = v.shape[0] if _is_a(k) else v.shape[1]
        if r > rank:
            raise ValueError(f"cannot pad {k} of rank {r} down to {rank}")
        if _is_a(k):
            out[k] = torch.cat([v, v.new_zeros(rank - r, v.shape[1])], dim=0)
        else:
            out[k] = torch.cat([v, v.new_zeros(v.shape[0], rank - r)], dim=1)
    return out


def truncate_rank(state: dict[str, torch.Tensor], rank: int) -> dict[str, torch.Tensor]:
    """Keep the first ``rank`` rank slices (HetLoRA truncation)."""
    return {k: (v[:rank].clone() if _is_a(k) else v[:, :rank].clone()) for k, v in state.items()}


def resize_rank(state: dict[str, torch.Tensor], rank: int) -> dict[str, torch.Tensor]:
    """Pad or truncate ``state`` to ``rank``."""
    current = lora_rank_of(state)
    if current == rank:
        return dict(state)
    return pad_rank(state, rank) if current < rank else truncate_rank(state, rank)


def state_nbytes(state: dict[str, torch.Tensor]) -> int:
    """Bytes of the tensors in ``state``."""
    return sum(v.numel() * v.element_size() for v in state.values())
