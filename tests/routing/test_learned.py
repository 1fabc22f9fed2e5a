"""The learned router: it improves from feedback, persists, and explores."""

from __future__ import annotations

import random

import pytest
import torch

from fednet.routing import LearnedRouter, Outcome, RouterConfig, query_tokens

from .conftest import DOMAINS, keyword_embedder, make_candidate

FILLER = ["the", "a", "today", "please", "now", "and", "my", "is"]


def stream(n: int, seed: int) -> list[tuple[str, str]]:
    """Queries from three domains, identified only by their (domain) words."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        domain = rng.choice(sorted(DOMAINS))
        words = rng.sample(DOMAINS[domain], 2) + rng.sample(FILLER, 3)
        rng.shuffle(words)
        out.append((" ".join(words), domain))
    return out


def choice_accuracy(
    router: LearnedRouter,
    queries: list[tuple[str, str]],
    cands: list,  # type: ignore[type-arg]
    *,
    learn: bool,
) -> float:
    hits = 0
    for text, domain in queries:
        chosen = router.route(text, cands, k=1).best.candidate
        hits += chosen.task == domain
        if learn:
            router.update(Outcome(query=text, candidate=chosen, correct=chosen.task == domain))
    return hits / len(queries)


def test_learns_to_route_from_bandit_feedback() -> None:
    # no sketches, no embedder: it must learn from outcomes of its own choices
    cands = [make_candidate(d, sketch=False, accuracy=0.8) for d in sorted(DOMAINS)]
    router = LearnedRouter(RouterConfig(name="learned", exploration=0.5))
    before = choice_accuracy(router, stream(150, seed=1), cands, learn=False)
    choice_accuracy(router, stream(400, seed=2), cands, learn=True)
    after = choice_accuracy(router, stream(150, seed=3), cands, learn=False)
    assert before < 0.5
    assert after > 0.95
    assert router.updates == 400


def test_starts_like_the_sketch_router_when_given_an_embedder(candidates: list) -> None:  # type: ignore[type-arg]
    router = LearnedRouter(embedder=keyword_embedder)
    assert choice_accuracy(router, stream(60, seed=4), candidates, learn=False) == 1.0


def test_state_dict_round_trip() -> None:
    cands = [make_candidate(d, sketch=False) for d in sorted(DOMAINS)]
    router = LearnedRouter()
    choice_accuracy(router, stream(100, seed=5), cands, learn=True)
    router.update(Outcome(query="x", candidate=cands[0], latency_s=0.3))
    clone = LearnedRouter()
    clone.load_state_dict(router.state_dict())
    query = "cash prize today"
    a = [s.estimate.accuracy for s in router.route(query, cands, k=3).ranked]
    b = [s.estimate.accuracy for s in clone.route(query, cands, k=3).ranked]
    assert a == pytest.approx(b)
    assert clone.latencies == router.latencies
    assert clone.updates == router.updates


def test_load_state_dict_rejects_bad_state() -> None:
    router = LearnedRouter()
    state = router.state_dict()
    with pytest.raises(ValueError, match="missing \\['weights'\\]"):
        router.load_state_dict({k: v for k, v in state.items() if k != "weights"})
    with pytest.raises(ValueError, match="feature_bits=12"):
        router.load_state_dict({**state, "feature_bits": 12})
    with pytest.raises(ValueError, match="`weights` must be a tensor of shape"):
        router.load_state_dict({**state, "weights": torch.zeros(3)})
    with pytest.raises(ValueError, match="latencies\\['a'\\]` must be >= 0"):
        router.load_state_dict({**state, "latencies": {"a": -1.0}})


def test_failures_teach_and_latency_is_tracked() -> None:
    cand = make_candidate("spam", sketch=False)
    router = LearnedRouter(RouterConfig(latency_decay=0.5))
    start = router.route("cash", [cand]).best.estimate.accuracy
    for _ in range(20):
        router.update(Outcome(query="cash", candidate=cand, failed=True))
    assert router.route("cash", [cand]).best.estimate.accuracy < start / 2
    router.update(Outcome(query="cash", candidate=cand, latency_s=0.2))
    router.update(Outcome(query="cash", candidate=cand, latency_s=0.4))
    assert router.latencies[cand.key] == pytest.approx(0.3)


def test_confidence_is_a_label_only_when_enabled() -> None:
    cand = make_candidate("spam", sketch=False)
    outcome = Outcome(query="cash", candidate=cand, confidence=0.9)
    off = LearnedRouter()
    off.update(outcome)
    assert off.updates == 0
    on = LearnedRouter(RouterConfig(confidence_feedback=True))
    on.update(outcome)
    assert on.updates == 1


def test_exploration_bonus_shrinks_with_observations() -> None:
    cand = make_candidate("spam", sketch=False)
    router = LearnedRouter(RouterConfig(exploration=1.0))
    first = router.route("cash prize", [cand]).best.estimate.signals["bonus"]
    for _ in range(10):
        router.update(Outcome(query="cash prize", candidate=cand, correct=True))
    later = router.route("cash prize", [cand]).best.estimate.signals["bonus"]
    assert 0 < later < first / 2


def test_query_tokens() -> None:
    assert query_tokens("@united WIN win £100!!") == ["@", "united", "win", "£", "100", "!"]
    assert len(query_tokens(" ".join(f"w{i}" for i in range(500)))) == 64
