"""Exact aggregation (svd, frozen-a) against FedIT's separate averaging, by hand."""

import numpy as np
import pytest
import torch

from fednet.lora import LoraUpdate, aggregate_lora, svd_aggregate, truncate_rank
from fednet.lora.svd import lora_product

A = "m.lora_A.weight"
B = "m.lora_B.weight"


def product(state):
    return lora_product(state, "m")


def truth(states, weights):
    total = sum(weights)
    return sum(product(s) * (w / total) for s, w in zip(states, weights, strict=True))


def random_states(ranks=(4, 8, 16), out=40, inp=48, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [
        {
            A: torch.randn(r, inp, generator=gen) * 0.3,
            B: torch.randn(out, r, generator=gen) * 0.3,
        }
        for r in ranks
    ]


WEIGHTS = [30.0, 10.0, 20.0]


def test_fedit_is_biased_and_svd_exact_by_hand():
    # two rank-1 clients of equal weight: x-axis and y-axis; the mean product is I/2
    c1 = {A: torch.tensor([[1.0, 0.0]]), B: torch.tensor([[1.0], [0.0]])}
    c2 = {A: torch.tensor([[0.0, 1.0]]), B: torch.tensor([[0.0], [1.0]])}
    ups = [LoraUpdate(c1, 1), LoraUpdate(c2, 1)]
    fedit = aggregate_lora(ups, rank=1, method="fedit")
    # A = [.5, .5], B = [.5, .5]^T: product 0.25 everywhere, error ||I/2 - J/4||_F = 0.5
    assert torch.allclose(product(fedit), torch.full((2, 2), 0.25, dtype=torch.float64))
    assert float((product(fedit) - torch.eye(2, dtype=torch.float64) / 2).norm()) == pytest.approx(
        0.5
    )
    svd = aggregate_lora(ups, rank=2, method="svd")
    assert torch.allclose(product(svd), torch.eye(2, dtype=torch.float64) / 2, atol=1e-7)


@pytest.mark.parametrize("rank", [28, 32])
def test_svd_product_equals_weighted_mean_of_products_when_rank_covers(rank):
    states = random_states()  # ranks 4, 8, 16: rank(ΔW) <= 28
    res = svd_aggregate(states, WEIGHTS, rank=rank)
    assert res.state[A].shape == (rank, 48) and res.state[B].shape == (40, rank)
    assert torch.allclose(product(res.state), truth(states, WEIGHTS), atol=1e-5)
    assert res.min_energy == pytest.approx(1.0, abs=1e-9)
    # rank 32 > 28: the 4 empty slices are revived (B column 0, A row live) not left dead
    assert res.revived["m"] == rank - 28
    if rank > 28:
        assert torch.count_nonzero(res.state[B][:, 28:]) == 0
        assert bool((res.state[A][28:].norm(dim=1) > 0).all())


def test_svd_below_the_rank_is_the_best_approximation_and_reports_its_energy():
    states = random_states()
    res = svd_aggregate(states, WEIGHTS, rank=16)
    s = np.linalg.svd(truth(states, WEIGHTS).numpy(), compute_uv=False)
    assert res.energy["m"] == pytest.approx(float((s[:16] ** 2).sum() / (s**2).sum()), rel=1e-9)
    assert res.energy["m"] < 1.0
    err = float((product(res.state) - truth(states, WEIGHTS)).norm())
    assert err == pytest.approx(float(np.sqrt((s[16:] ** 2).sum())), rel=1e-4)  # Eckart-Young
    # a client of rank 4 receives the first 4 slices: the best rank-4 approximation
    err4 = float((product(truncate_rank(res.state, 4)) - truth(states, WEIGHTS)).norm())
    assert err4 == pytest.approx(float(np.sqrt((s[4:] ** 2).sum())), rel=1e-4)


def test_fedit_error_on_the_same_inputs():
    states = random_states()
    ups = [LoraUpdate(s, w) for s, w in zip(states, WEIGHTS, strict=True)]
    want = truth(states, WEIGHTS)
    for method in ("fedit", "zero-pad", "rank-wise"):
        got = aggregate_lora(ups, rank=16, method=method)
        rel = float((product(got) - want).norm() / want.norm())
        assert rel > 0.5, method  # independent random factors: the product of means is far off
    exact = svd_aggregate(states, WEIGHTS, rank=28)
    assert float((product(exact.state) - want).norm() / want.norm()) < 1e-6


def test_frozen_a_averages_b_exactly_by_hand():
    prev = {A: torch.eye(2), B: torch.zeros(1, 2)}  # R = 2, in = 2, out = 1
    c1 = {B: torch.tensor([[2.0, 4.0]])}  # rank 2, weight 1
    c2 = {B: torch.tensor([[6.0]])}  # rank 1, weight 3
    out = aggregate_lora(
        [LoraUpdate(c1, 1), LoraUpdate(c2, 3)], rank=2, method="frozen-a", previous=prev
    )
    # B = ((1*[2, 4]) + 3*[6, 0]) / 4 = [5, 1]; A unchanged
    assert out[B].tolist() == [[5.0, 1.0]]
    assert torch.equal(out[A], torch.eye(2))


def test_frozen_a_is_exact_for_ranks_4_8_16():
    states = random_states()
    shared_a = states[2][A]  # the group's A at R = 16
    b_only = [{B: s[B]} for s in states]
    with_a = [{A: shared_a[: s[B].shape[1]], B: s[B]} for s in states]
    out = aggregate_lora(
        [LoraUpdate(s, w) for s, w in zip(b_only, WEIGHTS, strict=True)],
        rank=16,
        method="frozen-a",
        previous={A: shared_a, B: torch.zeros(40, 16)},
    )
    assert torch.equal(out[A], shared_a)
    assert torch.allclose(product(out), truth(with_a, WEIGHTS), atol=1e-5)


def test_frozen_a_refuses_a_factors_and_needs_previous():
    s = {A: torch.ones(1, 2), B: torch.ones(2, 1)}
    with pytest.raises(ValueError, match="only B factors"):
        aggregate_lora([LoraUpdate(s, 1)], rank=1, method="frozen-a", previous=s)
    with pytest.raises(ValueError, match="previous"):
        aggregate_lora([LoraUpdate({B: s[B]}, 1)], rank=1, method="frozen-a")


def test_rank_collapse_guard_revives_empty_slices_without_changing_the_product():
    # both clients learn the same rank-1 product: ΔW has rank 1, R = 4
    c = {A: torch.tensor([[1.0, 2.0, 0.0]]), B: torch.tensor([[3.0], [0.0], [4.0]])}
    res = svd_aggregate([c, c], [1.0, 1.0], rank=4)
    # min(out, in) = 3 singular values: 1 live, 2 revived; the 4th slice is padded and revived
    assert res.revived["m"] == 3
    assert torch.count_nonzero(res.state[B][:, 1:]) == 0
    assert bool((res.state[A][1:3].norm(dim=1) > 0).all())
    # the revived rows are orthogonal to the live one (right singular vectors)
    assert torch.allclose(res.state[A][1:3] @ res.state[A][0], torch.zeros(2), atol=1e-5)
    assert torch.allclose(product(res.state), product(c), atol=1e-6)


def test_unknown_method_lists_the_valid_ones():
    with pytest.raises(ValueError, match="'fedit', 'svd', 'frozen-a'"):
        aggregate_lora(
            [LoraUpdate({A: torch.ones(1, 1), B: torch.ones(1, 1)}, 1)],
            rank=1,
            method="mean-of-products",
        )
