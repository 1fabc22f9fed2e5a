"""Central DP wrapper: server-side clipping and calibrated noise, by hand and by statistics."""

import pytest
import torch
from flwr.app import ArrayRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from fednet import protocol as P
from fednet.strategies import ClientProfile, FedLoRA, GlobalState
from fednet.strategies.dp_central import CentralDP

A = "m.lora_A.weight"
B = "m.lora_B.weight"


@pytest.fixture(autouse=True)
def _task_identity():
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1


def make(z, clip, ranks=(1, 1)):
    inner = FedLoRA()
    inner.profiles = {
        i + 1: ClientProfile(
            node_id=i + 1,
            client_id=f"c{i}",
            base_model="b",
            task="t",
            label_names=("x", "y"),
            rank=r,
            lora_alpha=2.0 * r,
            num_examples=10,
        )
        for i, r in enumerate(ranks)
    }
    inner._state_for_round = GlobalState(
        lora={"b": {A: torch.zeros(max(ranks), 1), B: torch.zeros(1, max(ranks))}},
        heads={"b:t": {"head.weight": torch.zeros(2, 1), "head.bias": torch.zeros(2)}},
    )
    return CentralDP(inner, noise_multiplier=z, clipping_norm=clip)


def reply(node, a, b, hw=0.0):
    msg = Message(RecordDict(), dst_node_id=node, message_type=MessageType.TRAIN)
    content = RecordDict(
        {
            P.LORA: ArrayRecord({A: torch.tensor(a), B: torch.tensor(b)}),
            P.HEAD: ArrayRecord(
                {"head.weight": torch.full((2, 1), hw), "head.bias": torch.zeros(2)}
            ),
            P.METRICS: MetricRecord({"train-loss": 0.5}),
        }
    )
    return Message(content, reply_to=msg)


def test_clips_each_update_then_averages_uniformly():
    s = make(z=0.0, clip=1.0)
    # client 0: update (A=3, B=4) has norm 5 -> clipped to (0.6, 0.8); client 1: (0, 0.5) kept
    arrays, _ = s.aggregate_train(1, [reply(1, [[3.0]], [[4.0]]), reply(2, [[0.0]], [[0.5]])])
    state = GlobalState.from_arrayrecord(arrays)
    assert state.lora["b"][A].item() == pytest.approx((0.6 + 0.0) / 2)
    assert state.lora["b"][B].item() == pytest.approx((0.8 + 0.5) / 2)


def test_noise_std_is_z_c_over_m():
    s = make(z=2.0, clip=0.5)
    draws = []
    for _ in range(3000):
        arrays, _ = s.aggregate_train(1, [reply(1, [[0.0]], [[0.0]]), reply(2, [[0.0]], [[0.0]])])
        draws.append(GlobalState.from_arrayrecord(arrays).lora["b"][A].item())
    std = torch.tensor(draws).std().item()
    assert std == pytest.approx(2.0 * 0.5 / 2, rel=0.1)


def test_wraps_only_fedlora_and_validates():
    with pytest.raises(ValueError, match="update-clip"):
        CentralDP(FedLoRA(), noise_multiplier=1.0, clipping_norm=0.0)
    with pytest.raises(ValueError, match="noise-multiplier"):
        CentralDP(FedLoRA(), noise_multiplier=-1.0, clipping_norm=1.0)
    with pytest.raises(TypeError):
        CentralDP(object(), noise_multiplier=1.0, clipping_norm=1.0)  # type: ignore[arg-type]


def make_sampled(z, clip, q):
    s = make(z, clip)
    s.strategy.fraction_train = s.sample_rate = q
    return s


def test_fixed_denominator_is_the_expected_cohort():
    """DP-FedAvg: the sum of clipped updates over q * N, however many replied."""
    for q, cohort in ((1.0, 2.0), (0.5, 1.0)):  # N = 2 clients
        s = make_sampled(z=0.0, clip=1.0, q=q)
        arrays, _ = s.aggregate_train(1, [reply(1, [[3.0]], [[4.0]])])  # clipped to (0.6, 0.8)
        state = GlobalState.from_arrayrecord(arrays)
        assert state.lora["b"][A].item() == pytest.approx(0.6 / cohort)
        assert state.lora["b"][B].item() == pytest.approx(0.8 / cohort)


def test_a_round_without_replies_still_releases_noise():
    s = make_sampled(z=2.0, clip=0.5, q=0.5)
    draws = []
    for _ in range(2000):
        arrays, _ = s.aggregate_train(1, [])
        draws.append(GlobalState.from_arrayrecord(arrays).lora["b"][A].item())
    # noise z * C on the sum, over W = q * N = 1
    assert torch.tensor(draws).std().item() == pytest.approx(2.0 * 0.5 / 1.0, rel=0.1)
