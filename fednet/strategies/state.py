"""The global state a fednet strategy keeps: one LoRA per group, one head per task.

A LoRA group is the set of clients that average their LoRA factors together
(``strategy.lora-grouping``): every client of a base model (``"base-model"``,
key ``<base-model>``), or every client of a base model and task (``"task"``,
key ``<base-model>:<task>``). The state travels inside Flower as one
``ArrayRecord`` whose keys are namespaced ``lora/<group>/<peft key>`` and
``head/<task>/<head key>``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from flwr.app import ArrayRecord

from fednet.config import LORA_GROUPINGS

__all__ = ["GlobalState", "LORA_GROUPINGS", "lora_group"]


def lora_group(base_model: str, task: str, grouping: str) -> str:
    """Key of the LoRA group of a client of ``base_model`` and ``task``."""
    if grouping == "base-model":
        return base_model
    if grouping == "task":
        return f"{base_model}:{task}"
    raise ValueError(
        f"`lora-grouping` must be one of {', '.join(map(repr, LORA_GROUPINGS))}, got {grouping!r}"
    )


@dataclass
class GlobalState:
    """LoRA factors per group (see :func:`lora_group`) and head tensors per task."""

    lora: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    heads: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)

    def to_arrayrecord(self) -> ArrayRecord:
        flat: dict[str, torch.Tensor] = {}
        for base, state in self.lora.items():
            flat.update({f"lora/{base}/{k}": v for k, v in state.items()})
        for task, state in self.heads.items():
            flat.update({f"head/{task}/{k}": v for k, v in state.items()})
        return ArrayRecord(flat)

    @classmethod
    def from_arrayrecord(cls, record: ArrayRecord) -> GlobalState:
        out = cls()
        for key, tensor in record.to_torch_state_dict().items():
            kind, group, name = key.split("/", 2)
            target = out.lora if kind == "lora" else out.heads
            target.setdefault(group, {})[name] = tensor
        return out

    def rank_of(self, group: str) -> int:
        a = next(v for k, v in self.lora[group].items() if k.endswith("lora_A.weight"))
        return int(a.shape[0])
