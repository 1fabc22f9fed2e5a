"""Prototypes on the wire: exactly the released tensors cross, nothing else."""

from __future__ import annotations

import pytest
import torch
from flwr.app import ArrayRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from fednet import protocol as P
from fednet.errors import UpdateRejectedError
from fednet.privacy.randomness import NoiseSource
from fednet.representation import IdentityMap
from fednet.representation.prototypes import PROTOTYPE_KEYS, release_prototypes

TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1  # as a ServerApp


def _release() -> dict[str, torch.Tensor]:
    return release_prototypes(
        torch.randn(20, 8),
        torch.arange(20) % 2,
        num_labels=2,
        to_network=IdentityMap(source_dim=8, target_dim=8),
        clip=1.0,
        noise_multiplier=1.0,
        ledger=None,
        noise=NoiseSource.seeded(0),
    ).to_tensors()


def _through_allowlist(records: dict) -> Message:
    incoming = Message(RecordDict(), dst_node_id=1, message_type=MessageType.TRAIN)

    def answer(msg: Message, context: object) -> Message:
        return Message(RecordDict(records), reply_to=incoming)

    return P.allowlist_mod(incoming, None, answer)  # type: ignore[arg-type]


def test_the_allowlist_names_exactly_the_released_tensors() -> None:
    assert frozenset(PROTOTYPE_KEYS) == P.PROTO_KEYS


@pytest.mark.parametrize("private", [False, True])
def test_a_prototype_release_crosses(private: bool) -> None:
    content = RecordDict({P.PROTO: ArrayRecord(_release()), P.METRICS: MetricRecord({"steps": 3})})
    P.check_reply(content, private=private)
    reply = _through_allowlist({P.PROTO: ArrayRecord(_release())})
    assert not reply.has_error()
    assert set(reply.content.array_records[P.PROTO]) == set(PROTOTYPE_KEYS)


@pytest.mark.parametrize(
    "records",
    [
        # raw per-example embeddings next to the release
        {P.PROTO: ArrayRecord({**_release(), "proto.embeddings": torch.randn(20, 8)})},
        # prototypes smuggled under another record
        {P.HEAD: ArrayRecord({"proto.sums": torch.randn(2, 8)})},
        # an exact (un-noised) mean under a made-up key
        {P.PROTO: ArrayRecord({"proto.means": torch.randn(2, 8)})},
        # prototypes as a record of the wrong type
        {P.PROTO: MetricRecord({"proto.counts": 3.0})},
    ],
)
def test_nothing_else_crosses(records: dict) -> None:
    with pytest.raises(UpdateRejectedError):
        P.check_reply(RecordDict(records))
    reply = _through_allowlist(records)
    assert reply.has_error() and reply.error.code == 403
