"""A corpus of poisoned training replies, crafted from an honest one.

Malformed replies break the wire contract and must be rejected with a named
reason; adversarial replies are well formed and are the robust wrappers' job.
"""

from __future__ import annotations

import torch
from flwr.app import ArrayRecord, Message, MessageType, MetricRecord, RecordDict

from fednet import protocol as P

A = "base_model.model.encoder.layer.0.attention.self.query.lora_A.weight"
B = "base_model.model.encoder.layer.0.attention.self.query.lora_B.weight"
RANK, IN, OUT = 2, 4, 4


def honest_update(seed: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """A plausible update of the received (A = 1, B = 1): a shared step of +0.5 and
    small client-specific noise."""
    g = torch.Generator().manual_seed(seed)
    lora = {
        A: torch.full((RANK, IN), 1.5) + 0.05 * torch.randn(RANK, IN, generator=g),
        B: torch.full((OUT, RANK), 1.5) + 0.05 * torch.randn(OUT, RANK, generator=g),
    }
    head = {
        "head.weight": 0.1 + 0.01 * torch.randn(2, OUT, generator=g),
        "head.bias": torch.zeros(2),
    }
    return lora, head


def message(node: int, lora: dict, head: dict, **records: object) -> Message:
    msg = Message(RecordDict(), dst_node_id=node, message_type=MessageType.TRAIN)
    content = RecordDict(
        {
            P.LORA: ArrayRecord(lora),
            P.HEAD: ArrayRecord(head),
            P.METRICS: MetricRecord({"train-loss": 0.7}),
            **records,  # type: ignore[dict-item]
        }
    )
    return Message(content, reply_to=msg)


def _nan(lora, head):
    lora = dict(lora)
    lora[A] = lora[A].clone()
    lora[A][0, 0] = float("nan")
    return lora, head


def _inf(lora, head):
    head = dict(head)
    head["head.bias"] = torch.tensor([float("inf"), 0.0])
    return lora, head


def _wrong_shape(lora, head):
    return {**lora, B: torch.ones(OUT + 1, RANK)}, head


def _wrong_dtype(lora, head):
    return {**lora, A: lora[A].double()}, head


def _extra_key(lora, head):
    extra = "base_model.model.encoder.layer.0.attention.self.key.lora_A.weight"
    return {**lora, extra: torch.ones(RANK, IN)}, head


def _base_model_weights(lora, head):
    base = "base_model.model.encoder.layer.0.attention.self.query.weight"
    return {**lora, base: torch.ones(OUT, IN)}, head


def _partial_head(lora, head):
    return lora, {"head.bias": head["head.bias"]}


MALFORMED = {
    "nan": (_nan, "non-finite"),
    "inf": (_inf, "non-finite"),
    "wrong-shape": (_wrong_shape, "wrong-shape"),
    "wrong-dtype": (_wrong_dtype, "wrong-dtype"),
    "extra-key": (_extra_key, "unexpected-key"),
    "base-model-weights": (_base_model_weights, "unexpected-key"),
    "partial-head": (_partial_head, "unexpected-key"),
}
"""name -> (craft(lora, head) -> (lora, head), the named rejection reason)."""


def _scaled(factor):
    def craft(lora, head, ref_lora, ref_head):
        return (
            {k: ref_lora[k] + factor * (v - ref_lora[k]) for k, v in lora.items()},
            {k: ref_head[k] + factor * (v - ref_head[k]) for k, v in head.items()},
        )

    return craft


def _noise(lora, head, ref_lora, ref_head):
    g = torch.Generator().manual_seed(1234)
    return (
        {k: v + 10.0 * torch.randn(v.shape, generator=g) for k, v in lora.items()},
        {k: v + 10.0 * torch.randn(v.shape, generator=g) for k, v in head.items()},
    )


ADVERSARIAL = {
    "norm-x100": _scaled(100.0),
    "sign-flip": _scaled(-1.0),
    "gaussian-noise": _noise,
}
"""name -> craft(lora, head, received lora, received head) -> (lora, head), well formed."""
