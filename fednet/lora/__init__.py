"""LoRA state on the wire and the maths that combines it."""

from fednet.lora.aggregate import LoraUpdate, aggregate_lora, weighted_mean
from fednet.lora.state import (
    LORA_KEY_PATTERN,
    get_lora_state,
    is_lora_key,
    lora_rank_of,
    pad_rank,
    resize_rank,
    set_lora_state,
    state_nbytes,
    truncate_rank,
)

__all__ = [
    "LORA_KEY_PATTERN",
    "LoraUpdate",
    "aggregate_lora",
    "get_lora_state",
    "is_lora_key",
    "lora_rank_of",
    "pad_rank",
    "resize_rank",
    "set_lora_state",
    "state_nbytes",
    "truncate_rank",
    "weighted_mean",
]
