"""Cascade and ensemble over scripted peers: early exit, votes, fallbacks."""

from __future__ import annotations

import pytest

from fednet.errors import PeerError
from fednet.inference import Cascade, Ensemble, PeerReply, create_combiner
from fednet.routing import Candidate, Estimate, Objective, RouterConfig, Scored

LABELS = {"spam": ("ham", "spam"), "news": ("business", "tech")}


def candidate(name: str, task: str) -> Candidate:
    return Candidate(
        adapter=name,
        version=1,
        base_model="b",
        task=task,
        label_names=LABELS[task],
        owner=name,
        peer_id=f"peer-{name}",
        endpoint=f"http://{name}",
        cost=2.0,
    )


def decide(*entries: tuple[str, str, float]):  # type: ignore[no-untyped-def]
    cands = [candidate(n, t) for n, t, _ in entries]
    objective = Objective(RouterConfig())
    scored = objective.score(cands, [Estimate(p) for _, _, p in entries])
    return objective.select(scored, k=len(entries), router="test")


def scripted(answers: dict[str, tuple[str, float] | Exception]):  # type: ignore[no-untyped-def]
    asked: list[str] = []

    def call(scored: Scored) -> PeerReply:
        name = scored.candidate.adapter
        asked.append(name)
        answer = answers[name]
        if isinstance(answer, Exception):
            raise answer
        label, confidence = answer
        return PeerReply(
            label=label,
            confidence=confidence,
            probabilities={label: confidence},
            adapter=name,
            version=1,
            task=scored.candidate.task,
            peer_id=scored.candidate.peer_id,
            latency_s=0.01,
        )

    return call, asked


def test_cascade_stops_at_the_first_confident_answer() -> None:
    call, asked = scripted({"a": ("spam", 0.6), "b": ("spam", 0.9), "c": ("ham", 0.99)})
    answer = Cascade(confidence_threshold=0.8).combine(
        "q", decide(("a", "spam", 0.9), ("b", "spam", 0.8), ("c", "spam", 0.7)), call
    )
    assert asked == ["a", "b"]
    assert (answer.label, answer.confidence, answer.answered_by) == (
        "spam",
        0.9,
        ["peer-a/a", "peer-b/b"],
    )
    assert answer.cost == 4.0 and answer.fallbacks == ()
    assert answer.to_dict()["decision"]["chosen"] == ["peer-a/a", "peer-b/b", "peer-c/c"]


def test_cascade_skips_failures_and_keeps_the_most_confident() -> None:
    call, asked = scripted(
        {"a": PeerError("peer a is unreachable"), "b": ("ham", 0.7), "c": ("spam", 0.75)}
    )
    answer = Cascade(confidence_threshold=0.8).combine(
        "q", decide(("a", "spam", 0.9), ("b", "spam", 0.8), ("c", "spam", 0.7)), call
    )
    assert asked == ["a", "b", "c"]
    assert answer.label == "spam" and answer.confidence == 0.75
    assert answer.fallbacks[0] == "skipped peer-a/a: peer a is unreachable"
    assert "no answer reached confidence 0.8" in answer.fallbacks[1]
    assert [c.ok for c in answer.calls] == [False, True, True]


def test_every_failure_is_one_clear_error() -> None:
    call, _ = scripted({"a": PeerError("timed out"), "b": ValueError("malformed")})
    with pytest.raises(
        PeerError, match="no peer answered 'q': peer-a/a: timed out; peer-b/b: malformed"
    ):
        Cascade().combine("q", decide(("a", "spam", 0.9), ("b", "spam", 0.8)), call)
    with pytest.raises(PeerError, match="no peer answered"):
        Ensemble().combine("q", decide(("a", "spam", 0.9), ("b", "spam", 0.8)), call)


def test_ensemble_votes_by_confidence_times_router_estimate() -> None:
    # votes: spam = 0.9*0.8 + 0.6*0.5 = 1.02; ham = 0.95*0.9 = 0.855; tech = 0.99*0.01
    call, asked = scripted(
        {"a": ("spam", 0.9), "b": ("spam", 0.6), "c": ("ham", 0.95), "d": ("tech", 0.99)}
    )
    answer = Ensemble().combine(
        "q",
        decide(("a", "spam", 0.8), ("b", "spam", 0.5), ("c", "spam", 0.9), ("d", "news", 0.01)),
        call,
    )
    assert sorted(asked) == ["a", "b", "c", "d"]
    assert answer.votes == pytest.approx({"spam": 1.02, "ham": 0.855, "tech": 0.0099})
    assert answer.label == "spam" and answer.task == "spam"
    assert answer.confidence == pytest.approx(1.02 / (1.02 + 0.855 + 0.0099))


def test_ensemble_survives_a_failed_peer() -> None:
    call, _ = scripted({"a": PeerError("refused (409): tampered"), "b": ("ham", 0.6)})
    answer = Ensemble().combine("q", decide(("a", "spam", 0.9), ("b", "spam", 0.8)), call)
    assert answer.label == "ham"
    assert answer.fallbacks == ("skipped peer-a/a: refused (409): tampered",)


def test_combiner_registry() -> None:
    assert isinstance(create_combiner("cascade", confidence_threshold=0.5), Cascade)
    with pytest.raises(ValueError, match="unknown combiner 'vote'; valid: cascade, ensemble"):
        create_combiner("vote")
