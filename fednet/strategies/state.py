"""The global state a fednet strategy keeps: one LoRA per base model, one head per task.

It travels inside Flower as one ``ArrayRecord`` whose keys are namespaced
``lora/<base-model>/<peft key>`` and ``head/<task>/<head key>``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from flwr.app import ArrayRecord

__all__ = ["GlobalState"]


@dataclass
class GlobalState:
    """LoRA factors per base-model group and head tensors per task."""

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

    def rank_of(self, base: str) -> int:
        a = next(v for k, v in self.lora[base].items() if k.endswith("lora_A.weight"))
        return int(a.shape[0])
