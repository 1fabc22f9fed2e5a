"""Maps into the network space: each method's fit, the mean baseline, state round trips."""

from __future__ import annotations

import pytest
import torch

from fednet.representation import (
    IdentityMap,
    available_map_methods,
    create_map,
    fit_quality,
    map_from_state,
)

from .conftest import paired

LEARNED = ("procrustes", "ridge", "mlp")


_FITTED: dict = {}


def _fit(method, pairs):
    """Each method fitted once per module (the MLP takes the longest)."""
    if method not in _FITTED:
        x, y, _, _ = pairs
        settings = {"epochs": 30, "hidden": 32, "batch_size": 256} if method == "mlp" else {}
        m = create_map(method, source_dim=24, target_dim=16, **settings)
        _FITTED[method] = m.fit(x, y, seed=0)
    return _FITTED[method]


@pytest.mark.parametrize("method", LEARNED)
def test_learned_maps_recover_a_linear_relation(method, pairs):
    _, _, xt, yt = pairs
    q = fit_quality(_fit(method, pairs), xt, yt, pool=1000)
    assert q.paired_cosine > 0.9
    assert q.recall_at_1 > 0.5
    assert (q.pool, q.held_out) == (1000, 1000)


def test_mean_estimator_is_the_chance_baseline(pairs):
    _, _, xt, yt = pairs
    mean = fit_quality(_fit("mean", pairs), xt, yt, pool=1000)
    assert mean.recall_at_1 <= 1 / 1000
    for method in LEARNED:
        assert fit_quality(_fit(method, pairs), xt, yt).paired_cosine > mean.paired_cosine


def test_procrustes_is_exact_on_an_exact_rotation():
    from .conftest import paired

    x, y = paired(300, 8, 8, seed=3)
    m = create_map("procrustes", source_dim=8, target_dim=8).fit(x, y)
    assert torch.nn.functional.cosine_similarity(m(x), y).min() > 0.999


@pytest.mark.parametrize("method", [*LEARNED, "mean"])
def test_state_round_trip_gives_the_same_outputs(method, pairs):
    m = _fit(method, pairs)
    again = map_from_state(
        method,
        source_dim=24,
        target_dim=16,
        hyperparameters=m.hyperparameters(),
        state=m.state(),
    )
    x = pairs[2][:5]
    assert torch.allclose(again(x), m(x), atol=1e-6)


def test_bad_input_is_named(pairs):
    with pytest.raises(ValueError, match="unknown map method 'pca'; valid: identity, mean, mlp"):
        create_map("pca", source_dim=2, target_dim=2)
    m = create_map("ridge", source_dim=24, target_dim=16)
    with pytest.raises(RuntimeError, match="not fitted"):
        m(pairs[0])
    with pytest.raises(ValueError, match="24 -> 16, got pairs 16 -> 16"):
        m.fit(pairs[1], pairs[1])
    with pytest.raises(ValueError, match="NaN"):
        m.fit(torch.full((4, 24), float("nan")), torch.zeros(4, 16))
    m.fit(pairs[0], pairs[1])
    with pytest.raises(ValueError, match=r"takes \[n, 24\]"):
        m(torch.zeros(3, 16))
    with pytest.raises(ValueError, match="shapes"):
        m.load_state({"map.weight": torch.zeros(2, 2)})
    with pytest.raises(ValueError, match="equal dims"):
        IdentityMap(source_dim=3, target_dim=4)
    assert set(available_map_methods()) >= {*LEARNED, "mean", "identity"}


def test_fit_quality_needs_a_full_pool(pairs):
    with pytest.raises(ValueError, match="recall@1 among 1000 needs >= 1000"):
        fit_quality(_fit("ridge", pairs), pairs[2][:500], pairs[3][:500], pool=1000)


def test_differentiable_map_passes_gradients(pairs):
    m = _fit("mlp", pairs)
    x = pairs[2][:4].clone().requires_grad_(True)
    m.differentiable(x).sum().backward()
    assert x.grad is not None and bool(x.grad.abs().sum() > 0)
    assert not any(t.requires_grad for t in m.state().values())


def test_ridge_penalty_grid_reaches_strong_shrinkage_for_few_noisy_pairs():
    """With fewer pairs than dimensions and much noise, the best penalty is past 1."""
    from fednet.representation.maps import RIDGE_ALPHAS

    assert min(RIDGE_ALPHAS) <= 1e-4 and max(RIDGE_ALPHAS) >= 10
    x, y = paired(80, 24, 16, seed=0, noise=1.0)
    m = create_map("ridge", source_dim=24, target_dim=16).fit(x, y, seed=0)
    assert m.alpha is not None and m.alpha > 1.0


def test_select_map_chooses_on_held_out_pairs(pairs):
    from fednet.representation.maps import select_map

    _, _, xt, yt = pairs
    mean = create_map("mean", source_dim=24, target_dim=16).fit(pairs[0], pairs[1])
    fitted = {"mean": mean, "ridge": _fit("ridge", pairs)}
    best, scores = select_map(fitted, xt[:200], yt[:200])
    assert best == "ridge"
    assert set(scores) == {"mean", "ridge"} and scores["ridge"].pool == 200
    assert scores["ridge"].recall_at_1 > scores["mean"].recall_at_1
    best, _ = select_map(fitted, xt[:200], yt[:200], criterion="paired_cosine")
    assert best == "ridge"
    with pytest.raises(ValueError, match="at least one"):
        select_map({}, xt, yt)
    with pytest.raises(ValueError, match="criterion"):
        select_map(fitted, xt, yt, criterion="accuracy")
