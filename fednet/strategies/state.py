"""The global state a fednet strategy keeps: one LoRA per group, one head per head group.

A LoRA group is the set of clients that average their LoRA factors together
(``strategy.lora-grouping``): every client of a base model (``"base-model"``,
key ``<base-model>``), or every client of a base model and task (``"task"``,
key ``<base-model>:<task>``).

A head group is every client of one task *on one base model* (key
``<base-model>:<task>``, :func:`head_group`). A classification head is a
``[labels, hidden]`` map from its base model's pooled embedding space, so heads
of one task on different base models differ in shape and meaning and are never
averaged together raw. Joining them needs a map between the embedding spaces
(the representation layer); :func:`head_group` and
:meth:`fednet.strategies.FedLoRA.head_of` are the one place that key is decided.

The state travels inside Flower as one ``ArrayRecord`` whose keys are
namespaced ``lora/<group>/<peft key>`` and ``head/<head group>/<head key>``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from flwr.app import ArrayRecord

from fednet.config import LORA_GROUPINGS

__all__ = ["GlobalState", "LORA_GROUPINGS", "head_group", "lora_group"]


def lora_group(base_model: str, task: str, grouping: str) -> str:
    """Key of the LoRA group of a client of ``base_model`` and ``task``."""
    if grouping == "base-model":
        return base_model
    if grouping == "task":
        return f"{base_model}:{task}"
    raise ValueError(
        f"`lora-grouping` must be one of {', '.join(map(repr, LORA_GROUPINGS))}, got {grouping!r}"
    )


def head_group(base_model: str, task: str) -> str:
    """Key of the head trained by the clients of ``task`` on ``base_model``.

    Heads are tied to their base model's hidden size (and embedding space), so
    the key names both: ``<base-model>:<task>``.
    """
    return f"{base_model}:{task}"


@dataclass
class GlobalState:
    """LoRA factors per group (see :func:`lora_group`) and head tensors per head group
    (see :func:`head_group`)."""

    lora: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    heads: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)

    def to_arrayrecord(self) -> ArrayRecord:
        flat: dict[str, torch.Tensor] = {}
        for base, state in self.lora.items():
            flat.update({f"lora/{base}/{k}": v for k, v in state.items()})
        for key, state in self.heads.items():
            flat.update({f"head/{key}/{k}": v for k, v in state.items()})
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
