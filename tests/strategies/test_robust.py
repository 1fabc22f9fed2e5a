"""Robust aggregation wrappers on hand-built updates: values computed by hand."""

import dataclasses
import math

import pytest
import torch
from flwr.app import ArrayRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from fednet import protocol as P
from fednet.config import parse_preset
from fednet.errors import ConfigError
from fednet.federation.server import build_strategy
from fednet.strategies import (
    ClientProfile,
    CoordinateMedian,
    FedLoRA,
    GlobalState,
    LocalOnly,
    MultiKrum,
    NormBound,
    TrimmedMean,
    available_wrappers,
    create_wrapper,
)
from fednet.strategies.dp_central import CentralDP
from fednet.strategies.robust_utils import coordinate_median, krum_scores, trimmed_mean

A = "m.lora_A.weight"
B = "m.lora_B.weight"
NAN = math.nan


@pytest.fixture(autouse=True)
def _task_identity():
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1


def inner(n=6, rank=1, method="rank-wise"):
    s = FedLoRA(rank_aggregation=method)
    s.profiles = {
        i: ClientProfile(i, f"c{i}", "tiny", "t", ("a", "b"), rank, 2.0 * rank, 10)
        for i in range(1, n + 1)
    }
    s._state_for_round = GlobalState(
        lora={"tiny": {A: torch.zeros(rank, 2), B: torch.zeros(2, rank)}},
        heads={"tiny:t": {"head.weight": torch.zeros(2, 2), "head.bias": torch.zeros(2)}},
    )
    return s


def reply(node, a, b=(0.0, 0.0), h=0.0):
    msg = Message(RecordDict(), dst_node_id=node, message_type=MessageType.TRAIN)
    content = RecordDict(
        {
            P.LORA: ArrayRecord({A: torch.tensor([a]), B: torch.tensor([b]).T.contiguous()}),
            P.HEAD: ArrayRecord(
                {"head.weight": torch.full((2, 2), h), "head.bias": torch.zeros(2)}
            ),
            P.METRICS: MetricRecord({"train-loss": 1.0}),
        }
    )
    return Message(content, reply_to=msg)


def new_a(arrays):
    return GlobalState.from_arrayrecord(arrays).lora["tiny"][A]


# -- the maths, by hand ------------------------------------------------------------
def test_trimmed_mean_and_median_by_hand_with_missing_slices():
    x = torch.tensor([[1.0, NAN], [2.0, 5.0], [3.0, 7.0], [100.0, NAN], [4.0, 6.0]])
    # column 0: 5 values, drop 1 at each end -> mean(2, 3, 4) = 3; column 1: 3 values, k=0 -> 6
    assert trimmed_mean(x, trim_fraction=0.2).tolist() == [3.0, 6.0]
    # median: column 0 -> 3; column 1 -> 6
    assert coordinate_median(x).tolist() == [3.0, 6.0]
    assert coordinate_median(torch.tensor([[1.0], [2.0], [3.0], [100.0]])).tolist() == [2.5]
    assert math.isnan(coordinate_median(torch.tensor([[NAN], [NAN]]))[0])


def test_krum_scores_by_hand():
    # points 0, 1, 10 with f=0: n-f-2 = 1 nearest neighbour
    s = krum_scores(torch.tensor([[0.0], [1.0], [10.0]]), byzantine=0)
    assert s.tolist() == [1.0, 1.0, 81.0]


# -- the wrappers on Flower replies ------------------------------------------------
def test_norm_bound_clips_to_a_multiple_of_the_median_and_logs_it():
    s = NormBound(inner(3), multiple=3.0)
    arrays, metrics = s.aggregate_train(
        1, [reply(1, [1.0, 0.0]), reply(2, [2.0, 0.0]), reply(3, [300.0, 0.0])]
    )
    # median norm 2, bound 6: c3 scaled to [6, 0]; mean of (1, 2, 6) = 3
    assert new_a(arrays).tolist() == [[3.0, 0.0]]
    assert metrics["clients"] == 3
    (ev,) = s.events
    assert ev["client"] == "c3" and ev["status"] == "clipped" and ev["stage"] == "norm-bound"
    assert ev["scale"] == pytest.approx(6 / 300) and ev["reasons"] == ["norm-above-bound"]


def test_trimmed_mean_wrapper_by_hand():
    s = TrimmedMean(inner(5), trim_fraction=0.2)
    vals = [1.0, 2.0, 3.0, 4.0, 100.0]
    arrays, _ = s.aggregate_train(1, [reply(i + 1, [v, -v]) for i, v in enumerate(vals)])
    assert new_a(arrays).tolist() == [[3.0, -3.0]]
    assert [e["client"] for e in s.events] == ["c5"]  # 100 is far beyond the others
    assert s.events[0]["status"] == "down-weighted"


def test_trimmed_mean_says_when_a_group_is_too_small_to_trim(caplog):
    s = TrimmedMean(inner(3), trim_fraction=0.2)
    arrays, _ = s.aggregate_train(
        1, [reply(i + 1, [v, 0.0]) for i, v in enumerate([1.0, 2.0, 9.0])]
    )
    assert new_a(arrays).tolist() == [[4.0, 0.0]]  # floor(0.2 * 3) = 0: the plain mean
    assert "trims nothing" in caplog.text


def test_median_wrapper_by_hand():
    s = CoordinateMedian(inner(4))
    arrays, _ = s.aggregate_train(
        1, [reply(i + 1, [v, 0.0]) for i, v in enumerate([1.0, 2.0, 3.0, 100.0])]
    )
    assert new_a(arrays).tolist() == [[2.5, 0.0]]


HONEST = [[1.0, 1.0], [1.1, 0.9], [0.9, 1.1], [1.0, 1.05], [1.05, 1.0]]


@pytest.mark.parametrize(
    "attack",
    {
        "norm-x100": [100.0, 100.0],
        "sign-flip": [-1.0, -1.0],
        "gaussian-noise": [7.3, -12.1],  # a fixed draw of N(0, 10^2)
    }.items(),
    ids=lambda a: a[0],
)
@pytest.mark.parametrize("wrapper", ["multi-krum", "median", "trimmed-mean", "norm-bound"])
def test_one_malicious_of_six_is_contained(wrapper, attack):
    name, bad = attack
    cfg = parse_preset(
        {
            "clients": [{"id": "x", "dataset": "sms-spam"}],
            "strategy": {"robust": wrapper, "trim-fraction": 0.2, "krum-byzantine": 1},
        }
    ).strategy
    s = create_wrapper(wrapper, inner(6), cfg)
    replies = [reply(i + 1, v) for i, v in enumerate(HONEST)] + [reply(6, bad)]
    arrays, _ = s.aggregate_train(1, replies)
    got = new_a(arrays)[0]
    clean = torch.tensor(HONEST).mean(0)
    plain, _ = inner(6).aggregate_train(1, replies)
    plain_err = float((new_a(plain)[0] - clean).norm())
    err = float((got - clean).norm())
    if wrapper == "norm-bound" and name == "sign-flip":
        # a sign flip of honest size is within the bound: norm bounding cannot see it
        assert s.events == [] and err == pytest.approx(plain_err)
        return
    assert err < 0.5 * plain_err, (wrapper, name, got.tolist())
    # norm bounding only limits the shift: to (3 x median norm + clean norm) / 6 = 0.94
    assert err < (0.95 if wrapper == "norm-bound" else 0.4)
    flagged = {e["client"] for e in s.events}
    assert "c6" in flagged, s.events
    assert flagged <= {"c6"} or wrapper == "multi-krum"


def test_multi_krum_drops_the_outlier_with_its_reason():
    s = MultiKrum(inner(6), byzantine=1)
    replies = [reply(i + 1, v) for i, v in enumerate(HONEST)] + [reply(6, [100.0, 100.0])]
    arrays, metrics = s.aggregate_train(1, replies)
    assert metrics["clients"] == 5
    assert torch.allclose(new_a(arrays)[0], torch.tensor(HONEST).mean(0))
    (ev,) = s.events
    assert ev["client"] == "c6" and ev["status"] == "rejected" and ev["reasons"] == ["krum-outlier"]


def test_an_update_multi_krum_drops_still_reports_its_epsilon():
    s = MultiKrum(inner(6), byzantine=1)
    replies = [reply(i + 1, v) for i, v in enumerate(HONEST)] + [reply(6, [100.0, 100.0])]
    for i, r in enumerate(replies):
        r.content[P.METRICS] = MetricRecord({"train-loss": 1.0, "epsilon": 1.0 + i})
    _, metrics = s.aggregate_train(1, replies)
    assert metrics["clients"] == 5 and [e["client"] for e in s.events] == ["c6"]
    assert [metrics[f"c{i}/epsilon"] for i in range(1, 7)] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]


def test_wrappers_compose_with_frozen_a_and_svd():
    s = MultiKrum(inner(6, rank=1, method="frozen-a"), byzantine=1)
    msgs = []
    for i, b in enumerate([*HONEST, [100.0, 100.0]]):
        m = reply(i + 1, [0.0, 0.0], b)
        del m.content[P.LORA]
        m.content[P.LORA] = ArrayRecord({B: torch.tensor([b]).T.contiguous()})
        msgs.append(m)
    arrays, metrics = s.aggregate_train(1, msgs)
    assert metrics["clients"] == 5 and [e["client"] for e in s.events] == ["c6"]
    state = GlobalState.from_arrayrecord(arrays).lora["tiny"]
    assert torch.equal(state[A], torch.zeros(1, 2))  # A stays fixed
    m = CoordinateMedian(inner(3, rank=1, method="svd"))
    arrays, _ = m.aggregate_train(
        1, [reply(i + 1, [1.0, 0.0], [v, 0.0]) for i, v in enumerate([1.0, 2.0, 300.0])]
    )
    st = GlobalState.from_arrayrecord(arrays).lora["tiny"]
    # median of the products [[v, 0], [0, 0]] is [[2, 0], [0, 0]]
    assert torch.allclose(st[B] @ st[A], torch.tensor([[2.0, 0.0], [0.0, 0.0]]), atol=1e-6)


def test_central_dp_refuses_filters_that_read_every_clients_update():
    # NormBound clips to a multiple of the median norm: dropping one client moves the
    # median and so the others' clipped updates; the noised sum's sensitivity is not C
    for wrapper in (NormBound(inner(3), multiple=3.0), MultiKrum(inner(3), byzantine=1)):
        with pytest.raises(TypeError, match="no longer has sensitivity"):
            CentralDP(wrapper, noise_multiplier=1.0, clipping_norm=1.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="aggregate_train would be bypassed"):
        NormBound(LocalOnly())
    with pytest.raises(TypeError, match="put CentralDP outside"):
        NormBound(CentralDP(inner(3), noise_multiplier=0.0, clipping_norm=1.0))  # type: ignore[arg-type]


def _cfg(**strategy):
    return parse_preset(
        {
            "clients": [{"id": "x", "dataset": "sms-spam"}],
            "strategy": strategy,
            "privacy": {"enabled": True, "update-mode": "central", "dpsgd": False},
        }
    )


def test_build_strategy_composes_or_refuses_with_a_clear_error():
    assert isinstance(build_strategy(_cfg()), CentralDP)
    for robust in ("norm-bound", "multi-krum", "median", "trimmed-mean"):
        with pytest.raises(ConfigError, match="cannot run under `privacy.update-mode` 'central'"):
            build_strategy(_cfg(robust=robust))
    for method in ("frozen-a", "svd"):  # central DP would average the factors itself
        with pytest.raises(ConfigError, match=f"{method}' does not yet compose"):
            build_strategy(_cfg(**{"rank-aggregation": method}))
    plain = dataclasses.replace(_cfg(robust="trimmed-mean"), privacy=_cfg().privacy.__class__())
    assert isinstance(build_strategy(plain), TrimmedMean)


def test_config_validates_robust_keys():
    base = {"clients": [{"id": "x", "dataset": "sms-spam"}]}
    assert available_wrappers() == ["none", "median", "multi-krum", "norm-bound", "trimmed-mean"]
    with pytest.raises(ConfigError, match="`strategy.robust` must be one of 'none', 'norm-bound'"):
        parse_preset({**base, "strategy": {"robust": "krum"}})
    with pytest.raises(ConfigError, match="`strategy.trim-fraction` must be in \\[0, 0.5\\)"):
        parse_preset({**base, "strategy": {"trim-fraction": 0.5}})
    with pytest.raises(ConfigError, match="`strategy.norm-bound-multiple` must be >= 1"):
        parse_preset({**base, "strategy": {"norm-bound-multiple": 0.5}})
    with pytest.raises(ConfigError, match="`strategy.krum-byzantine` must be >= 0"):
        parse_preset({**base, "strategy": {"krum-byzantine": -1}})


def _mixed(ranks, tasks, lora_grouping="base-model"):
    """FedLoRA with clients c1..cn of the given ranks and tasks, global state zero at max rank."""
    s = FedLoRA(rank_aggregation="rank-wise", lora_grouping=lora_grouping)
    s.profiles = {
        i: ClientProfile(i, f"c{i}", "tiny", t, ("a", "b"), r, 2.0 * r, 10)
        for i, (r, t) in enumerate(zip(ranks, tasks, strict=True), 1)
    }
    top = max(ranks)
    s._state_for_round = GlobalState(
        lora={"tiny": {A: torch.zeros(top, 2), B: torch.zeros(2, top)}},
        heads={
            f"tiny:{t}": {"head.weight": torch.zeros(2, 2), "head.bias": torch.zeros(2)}
            for t in set(tasks)
        },
    )
    return s


def _reply_at_rank(node, a_rows, h=0.0):
    a = torch.tensor(a_rows)
    msg = Message(RecordDict(), dst_node_id=node, message_type=MessageType.TRAIN)
    content = RecordDict(
        {
            P.LORA: ArrayRecord({A: a, B: torch.zeros(2, a.shape[0])}),
            P.HEAD: ArrayRecord(
                {"head.weight": torch.full((2, 2), h), "head.bias": torch.zeros(2)}
            ),
            P.METRICS: MetricRecord({"train-loss": 1.0}),
        }
    )
    return Message(content, reply_to=msg)


def test_multi_krum_does_not_take_a_higher_rank_for_an_outlier():
    # c5 is honest at rank 4: on slice 0 it agrees with the rank-1 clients, and its slices
    # 1-3 are ones no other client holds. c6 (rank 1) is off on the slice everyone holds.
    # Counting c5's extra slices against zeros the others never sent made c5 the outlier.
    s = MultiKrum(_mixed([1, 1, 1, 1, 4, 1], ["t"] * 6), byzantine=1)
    replies = [_reply_at_rank(i + 1, [v]) for i, v in enumerate(HONEST[:4])]
    replies.append(_reply_at_rank(5, [HONEST[4], [3.0, 3.0], [3.0, 3.0], [3.0, 3.0]]))
    replies.append(_reply_at_rank(6, [[2.0, 2.0]]))
    _, metrics = s.aggregate_train(1, replies)
    assert metrics["clients"] == 5
    assert [e["client"] for e in s.events] == ["c6"], s.events


def test_multi_krum_compares_clients_of_different_tasks_on_what_they_share():
    # One LoRA group, two tasks. The u-clients' heads moved far (a bigger task), which says
    # nothing against them: no t-client holds a u-head. c3 is off on the shared LoRA.
    s = MultiKrum(_mixed([1] * 6, ["t", "t", "t", "u", "u", "u"]), byzantine=1)
    a_rows = [HONEST[0], HONEST[1], [2.0, 2.0], HONEST[2], HONEST[3], HONEST[4]]
    heads = [0.0, 0.0, 0.0, 5.0, 5.1, 4.9]
    replies = [
        _reply_at_rank(i + 1, [a], h) for i, (a, h) in enumerate(zip(a_rows, heads, strict=True))
    ]
    _, metrics = s.aggregate_train(1, replies)
    assert [e["client"] for e in s.events] == ["c3"], s.events


def test_multi_krum_keeps_a_group_of_two_whole(caplog):
    # Two updates are each other's only neighbour: equal scores, nothing to choose.
    s = MultiKrum(inner(2), byzantine=1)
    arrays, metrics = s.aggregate_train(1, [reply(1, [1.0, 0.0]), reply(2, [2.0, 0.0])])
    assert metrics["clients"] == 2 and s.events == []
    assert new_a(arrays).tolist() == [[1.5, 0.0]]
    assert "cannot tell apart" in caplog.text


def test_multi_krum_bounds_a_head_only_its_task_holds():
    # Base-model grouping, tasks t, t, u, u, u, u. c2 sends an honest LoRA and a head
    # moved by 100: its t-head is compared with no u-client, and Krum's three nearest
    # neighbours of c2 are u-clients, so only the per-block bound can see it.
    s = MultiKrum(_mixed([1] * 6, ["t", "t", "u", "u", "u", "u"]), byzantine=1)
    heads = [1.0, 100.0, 1.0, 1.1, 0.9, 1.0]
    a_rows = [[1.0, 1.0], [1.0, 1.0], [1.0, 1.0], [1.0, 1.05], [1.05, 1.0], [1.3, 1.3]]
    replies = [
        _reply_at_rank(i + 1, [a], h) for i, (a, h) in enumerate(zip(a_rows, heads, strict=True))
    ]
    arrays, _ = s.aggregate_train(1, replies)
    flagged = {e["client"]: e["status"] for e in s.events}
    # Krum drops c6, the u-client furthest on the shared LoRA; c2's head is bounded
    assert flagged == {"c6": "rejected", "c2": "clipped"}, s.events
    head_t = GlobalState.from_arrayrecord(arrays).heads["tiny:t"]["head.weight"]
    # c2's head change (100 per entry) is scaled to 3 x c1's (1): the mean is (1 + 3) / 2
    assert torch.allclose(head_t, torch.full((2, 2), 2.0)), head_t


def test_multi_krum_bounds_poison_in_slices_few_clients_hold():
    # Ranks 1, 1, 1, 1, 4, 4: c6 agrees on slice 0 and puts 100 in slices 1-3, which
    # only c5 also holds; compared on slice 0 with the rank-1 clients, it looks honest.
    s = MultiKrum(_mixed([1, 1, 1, 1, 4, 4], ["t"] * 6), byzantine=1)
    replies = [_reply_at_rank(i + 1, [v]) for i, v in enumerate(HONEST[:4])]
    replies.append(_reply_at_rank(5, [HONEST[4], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
    replies.append(_reply_at_rank(6, [[1.0, 1.0], [100.0, 0.0], [0.0, 100.0], [100.0, 100.0]]))
    arrays, _ = s.aggregate_train(1, replies)
    assert "c6" in {e["client"] for e in s.events}, s.events
    a = GlobalState.from_arrayrecord(arrays).lora["tiny"][A]
    # slices 1-3 are the mean of c5 and c6, c6 scaled to 3 x c5's slice norm
    assert float(a[1:].abs().max()) <= 3.0, a
