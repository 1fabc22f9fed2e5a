"""LoRA state on the wire and the maths that combines it."""

from fednet.lora.aggregate import (
    EXACT_METHODS,
    RANK_AGGREGATIONS,
    LoraUpdate,
    aggregate_lora,
    frozen_a_aggregate,
    weighted_mean,
)
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
from fednet.lora.svd import SvdAggregate, svd_aggregate

__all__ = [
    "EXACT_METHODS",
    "RANK_AGGREGATIONS",
    "LORA_KEY_PATTERN",
    "LoraUpdate",
    "aggregate_lora",
    "frozen_a_aggregate",
    "get_lora_state",
    "is_lora_key",
    "lora_rank_of",
    "pad_rank",
    "resize_rank",
    "set_lora_state",
    "state_nbytes",
    "svd_aggregate",
    "SvdAggregate",
    "truncate_rank",
    "weighted_mean",
]
