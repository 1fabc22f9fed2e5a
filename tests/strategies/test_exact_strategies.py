"""FedLoRA with exact aggregation (svd, frozen-a) on real Flower messages."""

import pytest
import torch
from flwr.app import ArrayRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from fednet import config as fconfig
from fednet import protocol as P
from fednet.config import parse_preset
from fednet.errors import ConfigError
from fednet.lora import RANK_AGGREGATIONS
from fednet.lora.svd import lora_product
from fednet.strategies import ClientProfile, FedLoRA, GlobalState

A = "m.lora_A.weight"
B = "m.lora_B.weight"


@pytest.fixture(autouse=True)
def _task_identity():
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1


def profile(node, rank, n):
    return ClientProfile(node, f"c{node}", "tiny", "t", ("a", "b"), rank, 2.0 * rank, n)


def reply(node, lora, hv=0.0):
    msg = Message(RecordDict(), dst_node_id=node, message_type=MessageType.TRAIN)
    head = {"head.weight": torch.full((2, 3), hv), "head.bias": torch.zeros(2)}
    content = RecordDict(
        {
            P.LORA: ArrayRecord(lora),
            P.HEAD: ArrayRecord(head),
            P.METRICS: MetricRecord({"train-loss": 1.0}),
        }
    )
    return Message(content, reply_to=msg)


def make(method, ranks=(2, 1), ns=(30, 10)):
    s = FedLoRA(rank_aggregation=method)
    s.profiles = {
        i + 1: profile(i + 1, r, n) for i, (r, n) in enumerate(zip(ranks, ns, strict=True))
    }
    r = max(ranks)
    s._state_for_round = GlobalState(
        lora={"tiny": {A: torch.eye(r, 3), B: torch.zeros(3, r)}},
        heads={"tiny:t": {"head.weight": torch.zeros(2, 3), "head.bias": torch.zeros(2)}},
    )
    return s


def test_rank_aggregations_are_defined_alike_in_config_and_maths():
    assert fconfig.RANK_AGGREGATIONS == RANK_AGGREGATIONS


def test_svd_strategy_aggregates_the_mean_product_and_reports_energy():
    s = make("svd")
    c1 = {A: torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), B: torch.tensor([[1.0, 0.0]] * 3)}
    c2 = {A: torch.tensor([[0.0, 0.0, 2.0]]), B: torch.tensor([[1.0], [1.0], [0.0]])}
    arrays, metrics = s.aggregate_train(1, [reply(1, c1), reply(2, c2)])
    assert metrics["clients"] == 2
    new = GlobalState.from_arrayrecord(arrays).lora["tiny"]
    want = (30 * lora_product(c1, "m") + 10 * lora_product(c2, "m")) / 40
    # rank(ΔW) = 2 = R: exact
    assert torch.allclose(lora_product(new, "m"), want, atol=1e-6)
    assert s.diagnostics["svd-energy/tiny"] == pytest.approx(1.0)


def test_frozen_a_sends_the_flag_keeps_a_and_takes_b_only(caplog):
    s = make("frozen-a")
    assert s.message_config(1)[P.FROZEN_A_KEY] == 1
    assert make("rank-wise").message_config(1)[P.FROZEN_A_KEY] == 0
    b1 = {B: torch.tensor([[2.0, 4.0]] * 3)}
    b2 = {B: torch.tensor([[6.0]] * 3)}
    arrays, metrics = s.aggregate_train(1, [reply(1, b1), reply(2, b2)])
    assert metrics["clients"] == 2
    new = GlobalState.from_arrayrecord(arrays).lora["tiny"]
    assert torch.equal(new[A], torch.eye(2, 3))
    # B = (30*[2, 4] + 10*[6, 0]) / 40 = [3, 3]
    assert torch.allclose(new[B], torch.tensor([[3.0, 3.0]] * 3))


def test_frozen_a_rejects_a_client_that_sends_a(caplog):
    s = make("frozen-a")
    moved = {A: torch.ones(2, 3), B: torch.ones(3, 2)}
    arrays, metrics = s.aggregate_train(1, [reply(1, moved)])
    assert arrays is None and metrics["clients"] == 0
    assert s.events[0]["status"] == "rejected"
    assert s.events[0]["reasons"] == ["unexpected-key"]
    assert "B factors only" in caplog.text


def test_frozen_a_upload_is_half_of_fedit_for_square_layers():
    full = RecordDict({P.LORA: P.to_wire({A: torch.ones(4, 8), B: torch.ones(8, 4)}, "float32")})
    half = RecordDict({P.LORA: P.to_wire({B: torch.ones(8, 4)}, "float32")})
    assert P.record_nbytes(half) * 2 == P.record_nbytes(full)


def test_config_names_the_valid_rank_aggregations():
    base = {"clients": [{"id": "a", "dataset": "sms-spam"}]}
    for m in RANK_AGGREGATIONS:
        assert (
            parse_preset({**base, "strategy": {"rank-aggregation": m}}).strategy.rank_aggregation
            == m
        )
    with pytest.raises(ConfigError, match="'svd' or 'frozen-a', got 'flexlora'"):
        parse_preset({**base, "strategy": {"rank-aggregation": "flexlora"}})
