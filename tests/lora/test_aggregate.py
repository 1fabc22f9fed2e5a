"""LoRA rank resizing and aggregation, checked against values computed by hand."""

import pytest
import torch

from fednet.lora import (
    LoraUpdate,
    aggregate_lora,
    lora_rank_of,
    pad_rank,
    resize_rank,
    truncate_rank,
)

A = "m.lora_A.weight"
B = "m.lora_B.weight"


def state(a_rows, b_cols):
    return {
        A: torch.tensor(a_rows, dtype=torch.float32),
        B: torch.tensor(b_cols, dtype=torch.float32).T.contiguous(),
    }


def test_pad_and_truncate_round_trip():
    s = state([[1.0, 2.0]], [[3.0, 4.0]])  # rank 1, in=2, out=2
    p = pad_rank(s, 3)
    assert p[A].shape == (3, 2) and p[B].shape == (2, 3)
    assert torch.equal(p[A][1:], torch.zeros(2, 2)) and torch.equal(p[B][:, 1:], torch.zeros(2, 2))
    assert torch.equal(truncate_rank(p, 1)[A], s[A])
    assert lora_rank_of(resize_rank(p, 2)) == 2


def test_pad_refuses_to_shrink():
    with pytest.raises(ValueError, match="cannot pad"):
        pad_rank(state([[1.0], [2.0]], [[1.0], [1.0]]), 1)


def test_zero_pad_average_by_hand():
    # client 1: rank 2, 30 examples; client 2: rank 1, 10 examples
    c1 = state([[1.0, 1.0], [2.0, 2.0]], [[1.0], [3.0]])
    c2 = state([[5.0, 5.0]], [[9.0]])
    out = aggregate_lora([LoraUpdate(c1, 30), LoraUpdate(c2, 10)], rank=2, method="zero-pad")
    # row 0: (30*1 + 10*5)/40 = 2 ; row 1: (30*2 + 10*0)/40 = 1.5
    assert torch.allclose(out[A], torch.tensor([[2.0, 2.0], [1.5, 1.5]]))
    # B col 0: (30*1 + 10*9)/40 = 3 ; col 1: (30*3 + 0)/40 = 2.25
    assert torch.allclose(out[B][:, 0], torch.tensor([3.0]))
    assert torch.allclose(out[B][:, 1], torch.tensor([2.25]))


def test_rank_wise_average_by_hand():
    c1 = state([[1.0, 1.0], [2.0, 2.0]], [[1.0], [3.0]])
    c2 = state([[5.0, 5.0]], [[9.0]])
    out = aggregate_lora(
        [LoraUpdate(c1, 30), LoraUpdate(c2, 10)],
        rank=3,
        method="rank-wise",
        previous=pad_rank(state([[7.0, 7.0]], [[7.0]]), 3),
    )
    # slice 0 held by both: (30*1+10*5)/40 = 2; slice 1 only by c1: 2; slice 2 by nobody: previous 0
    assert torch.allclose(out[A], torch.tensor([[2.0, 2.0], [2.0, 2.0], [0.0, 0.0]]))
    assert torch.allclose(out[B], torch.tensor([[3.0, 3.0, 0.0]]))


def test_rank_wise_keeps_untrained_slices_of_previous():
    prev = {A: torch.full((2, 1), 4.0), B: torch.full((1, 2), 4.0)}
    out = aggregate_lora([LoraUpdate(state([[1.0]], [[1.0]]), 1)], rank=2, previous=prev)
    assert out[A].tolist() == [[1.0], [4.0]]
    assert out[B].tolist() == [[1.0, 4.0]]


def test_equal_ranks_reduce_to_fedavg():
    c1, c2 = state([[0.0, 4.0]], [[2.0]]), state([[2.0, 0.0]], [[4.0]])
    for method in ("rank-wise", "zero-pad"):
        out = aggregate_lora([LoraUpdate(c1, 1), LoraUpdate(c2, 3)], rank=1, method=method)
        assert torch.allclose(out[A], torch.tensor([[1.5, 1.0]]))
        assert torch.allclose(out[B], torch.tensor([[3.5]]))


@pytest.mark.parametrize("bad", [dict(method="mean"), dict(updates=[])])
def test_bad_arguments(bad):
    updates = bad.pop("updates", [LoraUpdate(state([[1.0]], [[1.0]]), 1)])
    with pytest.raises(ValueError):
        aggregate_lora(updates, rank=1, **bad)


def test_mismatched_keys_rejected():
    other = {"n.lora_A.weight": torch.ones(1, 1), "n.lora_B.weight": torch.ones(1, 1)}
    with pytest.raises(ValueError, match="same keys"):
        aggregate_lora([LoraUpdate(state([[1.0]], [[1.0]]), 1), LoraUpdate(other, 1)], rank=1)
