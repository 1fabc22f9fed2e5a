"""The contribution ledger's estimates, by hand."""

import pytest
import torch
from flwr.app import ArrayRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from fednet import protocol as P
from fednet.strategies import ClientProfile, FedLoRA, GlobalState, MultiKrum

A = "m.lora_A.weight"
B = "m.lora_B.weight"
HEAD = {"head.weight": torch.zeros(2, 1), "head.bias": torch.zeros(2)}


@pytest.fixture(autouse=True)
def _task_identity():
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1


def make(method, ns, rank=1, out=1, inp=1):
    s = FedLoRA(rank_aggregation=method)
    s.profiles = {
        i + 1: ClientProfile(i + 1, f"c{i + 1}", "tiny", "t", ("a", "b"), rank, 2.0 * rank, n)
        for i, n in enumerate(ns)
    }
    s._state_for_round = GlobalState(
        lora={"tiny": {A: torch.ones(rank, inp), B: torch.zeros(out, rank)}},
        heads={"tiny:t": dict(HEAD)},
    )
    return s


def reply(node, lora):
    msg = Message(RecordDict(), dst_node_id=node, message_type=MessageType.TRAIN)
    content = RecordDict(
        {
            P.LORA: ArrayRecord(lora),
            P.HEAD: ArrayRecord(HEAD),
            P.METRICS: MetricRecord({"train-loss": 1.0}),
        }
    )
    return Message(content, reply_to=msg)


def test_gradient_projection_by_hand():
    # frozen A = 1; B moves from 0 to 2 (30 examples) and to -1 (10 examples)
    s = make("frozen-a", [30, 10])
    arrays, _ = s.aggregate_train(
        1, [reply(1, {B: torch.tensor([[2.0]])}), reply(2, {B: torch.tensor([[-1.0]])})]
    )
    rows = {r["client"]: r for r in s.contributions(1, arrays)}
    # aggregate 1.25; c1: 0.75 * 2 * 1.25 / 1.25^2 = 1.2, c2: 0.25 * -1 * 1.25 / 1.25^2 = -0.2
    assert rows["c1"]["contribution"] == pytest.approx(1.2)
    assert rows["c2"]["contribution"] == pytest.approx(-0.2)
    assert rows["c1"]["cosine"] == pytest.approx(1.0) and rows["c2"]["cosine"] == pytest.approx(
        -1.0
    )
    assert rows["c1"]["method"] == "gradient-projection" and rows["c1"]["status"] == "accepted"


def test_shares_sum_to_one_when_the_aggregate_is_the_exact_mean():
    # three clients whose products have rank 1 each: rank(ΔW) <= 3 <= R = 4, so svd is exact
    gen = torch.Generator().manual_seed(1)
    s = make("svd", [30, 10, 20], rank=4, out=6, inp=5)
    replies = [
        reply(
            i + 1,
            {
                A: torch.cat([torch.randn(1, 5, generator=gen), torch.zeros(3, 5)]),
                B: torch.cat([torch.randn(6, 1, generator=gen), torch.zeros(6, 3)], 1),
            },
        )
        for i in range(3)
    ]
    arrays, _ = s.aggregate_train(1, replies)
    rows = s.contributions(1, arrays)
    assert sum(r["contribution"] for r in rows) == pytest.approx(1.0, abs=1e-5)
    assert all(-1.0 <= r["cosine"] <= 1.0 for r in rows)
    assert [r["weight"] for r in rows] == pytest.approx([0.5, 1 / 6, 1 / 3])


def test_a_client_the_wrapper_drops_gets_no_share_but_a_cosine():
    s = MultiKrum(make("frozen-a", [10] * 6), byzantine=1)
    vals = [1.0, 1.1, 0.9, 1.0, 1.05, -50.0]
    arrays, _ = s.aggregate_train(
        1, [reply(i + 1, {B: torch.tensor([[v]])}) for i, v in enumerate(vals)]
    )
    rows = {r["client"]: r for r in s.contributions(1, arrays)}
    assert rows["c6"]["status"] == "rejected" and rows["c6"]["reasons"] == ["krum-outlier"]
    assert rows["c6"]["contribution"] == 0.0 and rows["c6"]["cosine"] == pytest.approx(-1.0)
    assert sum(r["contribution"] for r in rows.values()) == pytest.approx(1.0)
