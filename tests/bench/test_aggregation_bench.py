"""The aggregation benchmark's malicious-client mod and its command-line checks."""

import pytest
import torch
from flwr.app import ArrayRecord, Context, Message, MessageType, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from fednet import protocol as P
from fednet.bench.aggregation import AttackMod
from fednet.cli import main

A = "m.lora_A.weight"


@pytest.fixture(autouse=True)
def _task_identity():
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1


def _exchange(mod, partition, received, trained, kind=MessageType.TRAIN):
    msg = Message(
        RecordDict({P.LORA: ArrayRecord({A: received})}), dst_node_id=1, message_type=kind
    )
    ctx = Context(1, 1, {"partition-id": partition}, RecordDict(), {})

    def call_next(m, c):
        return Message(RecordDict({P.LORA: ArrayRecord({A: trained})}), reply_to=m)

    return mod(msg, ctx, call_next).content[P.LORA].to_torch_state_dict()[A]


def test_attacks_rewrite_only_the_malicious_clients_training_reply():
    received, trained = torch.tensor([[1.0, 2.0]]), torch.tensor([[1.5, 1.0]])
    # update (0.5, -1): x100 -> received + (50, -100); sign flip -> received - update
    assert _exchange(AttackMod("norm-x100"), 0, received, trained).tolist() == [[51.0, -98.0]]
    assert _exchange(AttackMod("sign-flip"), 0, received, trained).tolist() == [[0.5, 3.0]]
    noisy = _exchange(AttackMod("gaussian-noise"), 0, received, trained)
    assert not torch.equal(noisy, trained) and noisy.dtype == torch.float32
    assert torch.equal(_exchange(AttackMod("sign-flip"), 1, received, trained), trained)
    evaluated = _exchange(AttackMod("sign-flip"), 0, received, trained, MessageType.EVALUATE)
    assert torch.equal(evaluated, trained)


def test_unknown_attack_and_bad_flags_are_named(capsys):
    with pytest.raises(ValueError, match="norm-x100, sign-flip, gaussian-noise"):
        AttackMod("label-flip")
    assert main(["bench-aggregation", "--methods", "fedit,mean"]) == 2
    assert "`--methods`: unknown mean" in capsys.readouterr().err
    assert main(["bench-aggregation", "--wrappers", "krum"]) == 2
    assert "`--wrappers`: unknown krum" in capsys.readouterr().err
