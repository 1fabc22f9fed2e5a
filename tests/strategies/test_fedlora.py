"""FedLoRA aggregation on real Flower messages, checked by hand."""

import pytest
import torch
from flwr.app import ArrayRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from fednet import protocol as P
from fednet.strategies import ClientProfile, FedLoRA, GlobalState, create_strategy

A = "m.lora_A.weight"
B = "m.lora_B.weight"


@pytest.fixture(autouse=True)
def _task_identity():
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1


def profile(node, cid, task, rank, n, base="tiny"):
    return ClientProfile(
        node_id=node,
        client_id=cid,
        base_model=base,
        task=task,
        label_names=("a", "b"),
        rank=rank,
        lora_alpha=2.0 * rank,
        num_examples=n,
    )


def reply(node, lora, head, metrics=None):
    msg = Message(RecordDict(), dst_node_id=node, message_type=MessageType.TRAIN)
    content = RecordDict(
        {
            P.LORA: ArrayRecord(lora),
            P.HEAD: ArrayRecord(head),
            P.METRICS: MetricRecord(metrics or {"train-loss": 1.0}),
        }
    )
    return Message(content, reply_to=msg)


def head(v):
    return {"head.weight": torch.full((2, 2), float(v)), "head.bias": torch.full((2,), float(v))}


@pytest.fixture
def strategy():
    s = FedLoRA(rank_aggregation="rank-wise")
    s.profiles = {
        1: profile(1, "x", "t1", 2, 30),
        2: profile(2, "y", "t1", 1, 10),
        3: profile(3, "z", "t2", 2, 20),
    }
    s._state_for_round = GlobalState(
        lora={"tiny": {A: torch.zeros(2, 2), B: torch.zeros(2, 2)}},
        heads={"tiny:t1": head(0), "tiny:t2": head(0)},
    )
    return s


def test_aggregates_lora_over_group_and_heads_per_task(strategy):
    replies = [
        reply(1, {A: torch.ones(2, 2), B: torch.ones(2, 2)}, head(1)),
        reply(2, {A: torch.full((1, 2), 5.0), B: torch.full((2, 1), 5.0)}, head(5)),
        reply(3, {A: torch.full((2, 2), 2.0), B: torch.full((2, 2), 2.0)}, head(7)),
    ]
    arrays, metrics = strategy.aggregate_train(1, replies)
    state = GlobalState.from_arrayrecord(arrays)
    # slice 0: (30*1 + 10*5 + 20*2)/60 = 2; slice 1: (30*1 + 20*2)/50 = 1.4
    assert torch.allclose(state.lora["tiny"][A][0], torch.full((2,), 2.0))
    assert torch.allclose(state.lora["tiny"][A][1], torch.full((2,), 1.4))
    # task t1 head: (30*1 + 10*5)/40 = 2 ; t2 head is z's alone: 7
    assert torch.allclose(state.heads["tiny:t1"]["head.weight"], torch.full((2, 2), 2.0))
    assert torch.allclose(state.heads["tiny:t2"]["head.bias"], torch.full((2,), 7.0))
    assert metrics["clients"] == 3


def test_rejects_bad_updates_and_keeps_the_rest(strategy, caplog):
    replies = [
        reply(1, {A: torch.ones(2, 2), B: torch.ones(2, 2)}, head(1)),
        reply(2, {A: torch.ones(2, 2), B: torch.ones(2, 2)}, head(5)),  # rank 2 > its rank 1
        reply(3, {A: torch.full((2, 2), float("nan")), B: torch.ones(2, 2)}, head(1)),
    ]
    arrays, metrics = strategy.aggregate_train(1, replies)
    assert metrics["clients"] == 1
    assert torch.allclose(GlobalState.from_arrayrecord(arrays).lora["tiny"][A], torch.ones(2, 2))
    assert "expected (1, 2)" in caplog.text and "non-finite" in caplog.text


def test_a_rejected_update_still_reports_the_epsilon_its_client_spent(strategy):
    """The client's ledger was charged for a round the server rejects: the ε it reported
    stays in the round's metrics, so the manifests it signs later claim what it spent."""
    spent = {"epsilon": 2.5, "update-epsilon": 2.0, "sketch-epsilon": 1.0}
    replies = [
        reply(1, {A: torch.ones(2, 2), B: torch.ones(2, 2)}, head(1), {"epsilon": 1.5}),
        reply(3, {A: torch.full((2, 2), float("nan")), B: torch.ones(2, 2)}, head(1), spent),
    ]
    _, metrics = strategy.aggregate_train(1, replies)
    assert metrics["clients"] == 1 and strategy.failures["z"]
    assert metrics["x/epsilon"] == 1.5
    assert {k: metrics[f"z/{k}"] for k in spent} == spent
    assert "z/train-loss" not in metrics  # the rest of a rejected reply counts for nothing


def test_smuggled_record_is_rejected(strategy):
    bad = reply(1, {A: torch.ones(2, 2), B: torch.ones(2, 2)}, head(1))
    bad.content["texts"] = ArrayRecord({"x": torch.zeros(3)})
    arrays, metrics = strategy.aggregate_train(1, [bad])
    assert arrays is None and metrics["clients"] == 0


def test_min_clients_keeps_state(strategy):
    strategy.min_clients = 2
    arrays, _ = strategy.aggregate_train(
        1, [reply(1, {A: torch.ones(2, 2), B: torch.ones(2, 2)}, head(1))]
    )
    assert arrays is None


def test_evaluate_weighted_and_per_client(strategy):
    def ev(node, acc, n):
        msg = Message(RecordDict(), dst_node_id=node, message_type=MessageType.EVALUATE)
        return Message(
            RecordDict(
                {
                    P.METRICS: MetricRecord(
                        {"accuracy": acc, "loss": 1.0 - acc, "num-examples": float(n)}
                    )
                }
            ),
            reply_to=msg,
        )

    m = strategy.aggregate_evaluate(1, [ev(1, 1.0, 30), ev(2, 0.0, 10)])
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["accuracy-mean"] == pytest.approx(0.5)
    assert m["x/accuracy"] == 1.0 and m["y/loss"] == 1.0


def test_registry_lists_valid_names():
    with pytest.raises(ValueError, match="fedlora, local"):
        create_strategy("fedprox-lora")
    with pytest.raises(ValueError, match="rank-aggregation"):
        create_strategy("fedlora", rank_aggregation="svd-ish")


def test_float16_wire_sends_half_precision_and_aggregates_in_float32():
    s = FedLoRA(wire_dtype="float16")
    p = profile(1, "x", "t1", 2, 30)
    s.profiles = {1: p}
    state = GlobalState(
        lora={"tiny": {A: torch.full((2, 2), 0.1), B: torch.zeros(2, 2)}},
        heads={"tiny:t1": head(0)},
    )
    out = s.payload(state, p)
    assert {a.dtype for rec in (out[P.LORA], out[P.HEAD]) for a in rec.values()} == {"float16"}
    assert s.message_config(3)[P.WIRE_DTYPE_KEY] == "float16"

    s._state_for_round = state
    half = {A: torch.full((2, 2), 1.0, dtype=torch.float16), B: torch.ones(2, 2).half()}
    half_head = {k: v.half() for k, v in head(3).items()}
    arrays, metrics = s.aggregate_train(1, [reply(1, half, half_head)])
    assert metrics["clients"] == 1
    new = GlobalState.from_arrayrecord(arrays)
    assert new.lora["tiny"][A].dtype == torch.float32
    assert torch.equal(new.heads["tiny:t1"]["head.bias"], torch.full((2,), 3.0))
    full = FedLoRA().payload(state, p)  # float32
    values = 4 + 4 + 4 + 2
    assert P.record_nbytes(full) - P.record_nbytes(out) == values * (4 - 2)


def test_reply_in_another_wire_dtype_is_rejected_by_name(caplog):
    s = FedLoRA(wire_dtype="float16")
    s.profiles = {1: profile(1, "x", "t1", 2, 30)}
    s._state_for_round = GlobalState(
        lora={"tiny": {A: torch.zeros(2, 2), B: torch.zeros(2, 2)}}, heads={"tiny:t1": head(0)}
    )
    half_head = {k: v.half() for k, v in head(1).items()}
    arrays, metrics = s.aggregate_train(
        1, [reply(1, {A: torch.ones(2, 2), B: torch.ones(2, 2)}, half_head)]
    )
    assert arrays is None and metrics["clients"] == 0
    assert f"array `lora/{A}` is float32, expected float16" in caplog.text


def test_unknown_wire_dtype_is_refused():
    with pytest.raises(ValueError, match="`wire-dtype` must be one of 'float32', 'float16'"):
        FedLoRA(wire_dtype="int8")


def test_task_grouping_averages_lora_only_within_a_task():
    s = FedLoRA(rank_aggregation="rank-wise", lora_grouping="task")
    s.profiles = {
        1: profile(1, "x", "t1", 2, 30),
        2: profile(2, "y", "t1", 2, 10),
        3: profile(3, "z", "t2", 2, 20),
    }
    zeros = {A: torch.zeros(2, 2), B: torch.zeros(2, 2)}
    s._state_for_round = GlobalState(
        lora={"tiny:t1": dict(zeros), "tiny:t2": dict(zeros)},
        heads={"tiny:t1": head(0), "tiny:t2": head(0)},
    )
    replies = [
        reply(1, {A: torch.ones(2, 2), B: torch.ones(2, 2)}, head(1)),
        reply(2, {A: torch.full((2, 2), 5.0), B: torch.full((2, 2), 5.0)}, head(5)),
        reply(3, {A: torch.full((2, 2), 9.0), B: torch.full((2, 2), 9.0)}, head(9)),
    ]
    arrays, _ = s.aggregate_train(1, replies)
    state = GlobalState.from_arrayrecord(arrays)
    assert torch.allclose(state.lora["tiny:t1"][A], torch.full((2, 2), 2.0))  # (30*1 + 10*5)/40
    assert torch.allclose(state.lora["tiny:t2"][B], torch.full((2, 2), 9.0))  # z's own
    out = s.payload(state, s.profiles[3])
    sent = out[P.LORA].to_torch_state_dict()
    assert torch.allclose(sent[A], torch.full((2, 2), 9.0))


def test_unknown_lora_grouping_is_refused():
    with pytest.raises(ValueError, match="`lora-grouping` must be one of 'base-model', 'task'"):
        FedLoRA(lora_grouping="client")


def _head_of_width(v, width):
    return {
        "head.weight": torch.full((2, width), float(v)),
        "head.bias": torch.full((2,), float(v)),
    }


def test_one_task_on_two_base_models_keeps_a_head_per_base_model():
    """A head reads its base model's embedding: heads of one task on models of different
    hidden sizes (2 and 3 here) are averaged per base model, never together."""
    s = FedLoRA(rank_aggregation="rank-wise")
    s.profiles = {
        1: profile(1, "x", "t1", 2, 30, base="small"),
        2: profile(2, "y", "t1", 2, 10, base="small"),
        3: profile(3, "z", "t1", 2, 20, base="large"),
    }
    assert [s.head_of(p) for p in s.profiles.values()] == ["small:t1", "small:t1", "large:t1"]
    s._state_for_round = GlobalState(
        lora={
            "small": {A: torch.zeros(2, 2), B: torch.zeros(2, 2)},
            "large": {A: torch.zeros(2, 3), B: torch.zeros(3, 2)},
        },
        heads={"small:t1": _head_of_width(0, 2), "large:t1": _head_of_width(0, 3)},
    )
    replies = [
        reply(1, {A: torch.ones(2, 2), B: torch.ones(2, 2)}, _head_of_width(1, 2)),
        reply(2, {A: torch.ones(2, 2), B: torch.ones(2, 2)}, _head_of_width(5, 2)),
        reply(3, {A: torch.ones(2, 3), B: torch.ones(3, 2)}, _head_of_width(7, 3)),
    ]
    arrays, metrics = s.aggregate_train(1, replies)
    assert metrics["clients"] == 3
    state = GlobalState.from_arrayrecord(arrays)
    assert torch.equal(state.heads["small:t1"]["head.weight"], torch.full((2, 2), 2.0))  # 80/40
    assert torch.equal(state.heads["large:t1"]["head.weight"], torch.full((2, 3), 7.0))  # z's own
    assert set(state.heads) == {"small:t1", "large:t1"}
    # each client receives its own base model's head
    sent = s.payload(state, s.profiles[3])[P.HEAD].to_torch_state_dict()
    assert tuple(sent["head.weight"].shape) == (2, 3)


def test_a_head_of_another_base_models_width_is_rejected(caplog):
    s = FedLoRA()
    s.profiles = {1: profile(1, "x", "t1", 2, 30, base="small")}
    s._state_for_round = GlobalState(
        lora={"small": {A: torch.zeros(2, 2), B: torch.zeros(2, 2)}},
        heads={"small:t1": _head_of_width(0, 2), "large:t1": _head_of_width(0, 3)},
    )
    bad = reply(1, {A: torch.ones(2, 2), B: torch.ones(2, 2)}, _head_of_width(1, 3))
    arrays, metrics = s.aggregate_train(1, [bad])
    assert arrays is None and metrics["clients"] == 0
    assert "head.weight has shape (2, 3), expected (2, 2)" in caplog.text
