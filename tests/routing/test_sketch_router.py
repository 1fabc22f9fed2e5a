"""The sketch router: count-weighted similarity to DP sketches."""

from __future__ import annotations

import math

import pytest
import torch

from fednet.routing import RouterConfig, SketchRouter, create_router, mixture_score

from .conftest import keyword_embedder, make_candidate, sketch_for


def test_mixture_score_by_hand() -> None:
    # s = (1/k) log(sum_l pi_l exp(k cos_l)), pi = (3/4, 1/4), k = 2
    sims, counts = torch.tensor([0.5, 0.1]), torch.tensor([3.0, 1.0])
    expected = 0.5 * math.log(0.75 * math.exp(1.0) + 0.25 * math.exp(0.2))
    assert mixture_score(sims, counts, sharpness=2.0) == pytest.approx(expected)


def test_mixture_score_weighs_counts_and_ignores_empty_rows() -> None:
    sims = torch.tensor([0.9, 0.2])
    often = mixture_score(sims, torch.tensor([50.0, 1.0]), sharpness=10.0)
    rarely = mixture_score(sims, torch.tensor([1.0, 50.0]), sharpness=10.0)
    assert often > rarely
    # a row whose noisy count is <= min_count carries no signal
    assert mixture_score(sims, torch.tensor([-0.3, 4.0]), sharpness=10.0) == pytest.approx(0.2)
    assert mixture_score(sims, torch.tensor([0.0, -1.0]), sharpness=10.0) == -1.0


@pytest.mark.parametrize(
    ("query", "domain"),
    [("win a cash prize", "spam"), ("the election result", "news"), ("my flight delay", "tweets")],
)
def test_routes_to_the_matching_sketch(query: str, domain: str, candidates: list) -> None:  # type: ignore[type-arg]
    router = SketchRouter(RouterConfig(sharpness=20.0), embedder=keyword_embedder)
    decision = router.route(query, candidates, k=1)
    assert decision.best.candidate.task == domain
    signals = {s.candidate.task: s.estimate.signals for s in decision.ranked}
    assert signals[domain]["relevance"] == 1.0
    assert all(signals[d]["relevance"] < 0.01 for d in signals if d != domain)
    assert decision.best.estimate.accuracy == pytest.approx(0.9)  # relevance 1 x prior 0.9
    assert decision.overhead_s > 0


def test_relevance_times_prior_accuracy() -> None:
    good = make_candidate("spam", adapter="good", accuracy=0.95)
    poor = make_candidate("spam", adapter="poor", accuracy=0.6)
    router = SketchRouter(embedder=keyword_embedder)
    decision = router.route("cash prize", [poor, good], k=2)
    assert [s.candidate.adapter for s in decision.chosen] == ["good", "poor"]
    assert [s.estimate.accuracy for s in decision.chosen] == pytest.approx([0.95, 0.6])


def test_label_names_stand_in_for_a_missing_sketch() -> None:
    plain = [make_candidate(d, sketch=False) for d in ("spam", "news")]
    decision = SketchRouter(embedder=keyword_embedder).route("election", plain, k=1)
    assert decision.best.candidate.task == "news"
    assert decision.best.estimate.signals["label_fallback"] == 1.0


def test_noisy_counts_shift_the_choice_within_a_domain() -> None:
    cash = make_candidate("spam", adapter="cash-heavy", sketch=sketch_for("spam", [1, 1, 90]))
    prize = make_candidate("spam", adapter="prize-heavy", sketch=sketch_for("spam", [90, 1, 1]))
    router = SketchRouter(RouterConfig(sharpness=5.0), embedder=keyword_embedder)
    assert router.route("prize", [cash, prize], k=1).best.candidate.adapter == "prize-heavy"
    assert router.route("cash", [cash, prize], k=1).best.candidate.adapter == "cash-heavy"


def test_needs_an_embedder_and_candidates() -> None:
    with pytest.raises(TypeError, match="needs an `embedder`"):
        SketchRouter()
    with pytest.raises(ValueError, match="no candidates"):
        SketchRouter(embedder=keyword_embedder).route("x", [])


def test_registry_lists_valid_names() -> None:
    with pytest.raises(
        ValueError, match="unknown router 'nope'; valid: learned, network-sketch, prior, sketch"
    ):
        create_router("nope")
    router = create_router("prior")
    assert router.name == "prior" and router.config.name == "prior"
    assert create_router(config=RouterConfig(name="sketch"), embedder=keyword_embedder).name == (
        "sketch"
    )
