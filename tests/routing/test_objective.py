"""The accuracy / latency / cost objective, with utilities computed by hand."""

from __future__ import annotations

import math

import pytest

from fednet.errors import ConfigError
from fednet.routing import Estimate, Objective, RouterConfig

from .conftest import make_candidate


def two() -> tuple[list, list[Estimate]]:  # type: ignore[type-arg]
    accurate = make_candidate("spam", adapter="slow-accurate", latency_s=0.5, cost=2.0)
    fast = make_candidate("news", adapter="fast-cheap", latency_s=0.05, cost=1.0)
    return [accurate, fast], [Estimate(0.9), Estimate(0.8)]


def test_accuracy_only_picks_the_accurate_one() -> None:
    cands, est = two()
    decision = Objective(RouterConfig()).select(
        Objective(RouterConfig()).score(cands, est), k=1, router="t"
    )
    assert decision.best.candidate.adapter == "slow-accurate"
    assert decision.best.utility == pytest.approx(0.9)


def test_latency_weight_flips_the_choice() -> None:
    # u = p - 0.5 * latency: 0.9 - 0.25 = 0.65 vs 0.8 - 0.025 = 0.775
    objective = Objective(RouterConfig(latency_weight=0.5))
    cands, est = two()
    scored = objective.score(cands, est)
    assert [s.utility for s in scored] == pytest.approx([0.65, 0.775])
    assert objective.select(scored, k=2, router="t").best.candidate.adapter == "fast-cheap"


def test_cost_weight_flips_the_choice() -> None:
    # u = p - 0.2 * cost: 0.9 - 0.4 = 0.5 vs 0.8 - 0.2 = 0.6
    objective = Objective(RouterConfig(cost_weight=0.2))
    cands, est = two()
    scored = objective.score(cands, est)
    assert [s.utility for s in scored] == pytest.approx([0.5, 0.6])
    assert objective.select(scored, k=1, router="t").best.candidate.adapter == "fast-cheap"


def test_small_latency_weight_keeps_the_accurate_one() -> None:
    # 0.9 - 0.1 * 0.5 = 0.85 > 0.8 - 0.1 * 0.05 = 0.795
    objective = Objective(RouterConfig(latency_weight=0.1))
    cands, est = two()
    decision = objective.select(objective.score(cands, est), k=1, router="t")
    assert decision.best.candidate.adapter == "slow-accurate"
    assert decision.best.utility == pytest.approx(0.85)


def test_latency_budget_drops_slow_candidates() -> None:
    objective = Objective(RouterConfig(latency_budget_s=0.1))
    cands, est = two()
    decision = objective.select(objective.score(cands, est), k=2, router="t")
    assert [s.candidate.adapter for s in decision.chosen] == ["fast-cheap"]
    assert [s.within_budget for s in decision.ranked] == [True, False]
    assert decision.notes == ()


def test_budget_nobody_meets_keeps_the_fastest_and_says_so() -> None:
    objective = Objective(RouterConfig(latency_budget_s=0.01))
    cands, est = two()
    decision = objective.select(objective.score(cands, est), k=2, router="t")
    assert [s.candidate.adapter for s in decision.chosen] == ["fast-cheap"]
    assert "latency budget" in decision.notes[0]


def test_measured_latency_overrides_and_default_fills_in() -> None:
    objective = Objective(RouterConfig(latency_weight=1.0, default_latency_s=0.2))
    cands = [make_candidate("spam"), make_candidate("news")]
    scored = objective.score(cands, [Estimate(0.5), Estimate(0.5)], latencies={cands[0].key: 0.1})
    assert [s.latency_s for s in scored] == pytest.approx([0.1, 0.2])
    assert [s.utility for s in scored] == pytest.approx([0.4, 0.3])


def test_top_k_order_and_explanation() -> None:
    objective = Objective(RouterConfig())
    cands = [make_candidate(d) for d in ("spam", "news", "tweets")]
    decision = objective.select(
        objective.score(cands, [Estimate(0.2), Estimate(0.7), Estimate(0.5)]), k=2, router="t"
    )
    assert [s.candidate.task for s in decision.chosen] == ["news", "tweets"]
    explained = decision.to_dict()
    assert explained["chosen"] == ["news-peer/news-adapter", "tweets-peer/tweets-adapter"]
    assert [s["accuracy"] for s in explained["scores"]] == [0.7, 0.5, 0.2]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"top_k": 0}, "`router.top-k` must be >= 1, got 0"),
        ({"latency_weight": -1.0}, "`router.latency-weight` must be >= 0, got -1.0"),
        ({"latency_weight": math.inf}, "`router.latency-weight` must be a finite number, got inf"),
        ({"latency_budget_s": 0.0}, "`router.latency-budget-s` must be > 0, got 0.0"),
        ({"default_accuracy": 1.5}, "`router.default-accuracy` must be in [0, 1], got 1.5"),
        ({"feature_bits": 30}, "`router.feature-bits` must be in [8, 24], got 30"),
        ({"latency_decay": 0.0}, "`router.latency-decay` must be in (0, 1], got 0.0"),
        ({"name": ""}, "`router.name` must be a non-empty string"),
    ],
)
def test_config_names_the_bad_key(kwargs: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(")):
        RouterConfig(**kwargs)


def test_config_rejects_wrong_types() -> None:
    with pytest.raises(ConfigError, match="`router.top-k` must be an int, got 1.5"):
        RouterConfig(top_k=1.5)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="`router.confidence-feedback` must be true or false"):
        RouterConfig(confidence_feedback="yes")  # type: ignore[arg-type]


def test_select_rejects_nothing_to_choose() -> None:
    with pytest.raises(ValueError, match="no candidates"):
        Objective(RouterConfig()).select([], k=1, router="t")
    with pytest.raises(ValueError, match="`k` must be an int >= 1"):
        Objective(RouterConfig()).select([], k=0, router="t")


def _contributors() -> tuple[list, list[Estimate]]:  # type: ignore[type-arg]
    # two spam adapters the router finds almost equally likely to be right; the
    # slightly better one comes from a client whose updates worked against the aggregate
    flipper = make_candidate("spam", adapter="spam-0", contribution=-0.1)
    helper = make_candidate("spam", adapter="spam-1", contribution=0.3)
    unscored = make_candidate("spam", adapter="spam-2")
    return [flipper, helper, unscored], [Estimate(0.85), Estimate(0.8), Estimate(0.5)]


def test_contribution_prior_is_off_by_default_and_reranks_when_weighted() -> None:
    cands, est = _contributors()
    plain = Objective(RouterConfig())
    assert plain.select(plain.score(cands, est), k=1, router="t").best.candidate.adapter == (
        "spam-0"
    )
    # u = p + 0.5 * (c - mean of the scored candidates' c = 0.1):
    # 0.85 - 0.1 = 0.75, 0.8 + 0.1 = 0.9, and 0.5 for the candidate without a score
    weighted = Objective(RouterConfig(contribution_weight=0.5))
    scored = weighted.score(cands, est)
    assert [s.utility for s in scored] == pytest.approx([0.75, 0.9, 0.5])
    assert [s.prior for s in scored] == pytest.approx([-0.1, 0.1, 0.0])
    decision = weighted.select(scored, k=3, router="t")
    assert [s.candidate.adapter for s in decision.ranked] == ["spam-1", "spam-0", "spam-2"]
    assert decision.to_dict()["scores"][0]["contribution_prior"] == pytest.approx(0.1)
    assert decision.to_dict()["scores"][0]["contribution"] == pytest.approx(0.3)


def test_an_inflated_contribution_buys_no_more_than_a_full_share() -> None:
    # the owner signs its own score: 1e6 counts as 1, and -1e6 as -1
    cands, est = _contributors()
    liar = make_candidate("spam", adapter="spam-3", contribution=1e6)
    sinker = make_candidate("spam", adapter="spam-4", contribution=-1e6)
    weighted = Objective(RouterConfig(contribution_weight=0.5))
    priors = weighted.contribution_priors([*cands, liar, sinker])
    mean = (-0.1 + 0.3 + 1.0 - 1.0) / 4
    assert priors == pytest.approx(
        [0.5 * (c - mean) for c in (-0.1, 0.3)]
        + [0.0]
        + [
            0.5 * (1.0 - mean),
            0.5 * (-1.0 - mean),
        ]
    )
    assert max(priors) - min(priors) <= 2 * 0.5


def test_contribution_prior_needs_a_finite_score_and_weight() -> None:
    with pytest.raises(ValueError, match="router.contribution-weight"):
        RouterConfig(contribution_weight=-1.0)
    with pytest.raises(ValueError, match="`contribution`"):
        make_candidate("spam", contribution=float("nan"))
