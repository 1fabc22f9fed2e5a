"""Typed, frozen configuration of a router and its objective."""

from __future__ import annotations

import math
from dataclasses import dataclass

from fednet.checks import check_int

__all__ = ["RouterConfig"]


def _number(key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"`router.{key}` must be a number, got {type(value).__name__} {value!r}")
    if math.isnan(value):
        raise ValueError(f"`router.{key}` must not be NaN, got {value!r}")
    return float(value)


def _non_negative(key: str, value: object) -> float:
    number = _number(key, value)
    if not 0.0 <= number < math.inf:
        raise ValueError(f"`router.{key}` must be finite and >= 0, got {value!r}")
    return number


def _positive(key: str, value: object) -> float:
    number = _number(key, value)
    if not 0.0 < number < math.inf:
        raise ValueError(f"`router.{key}` must be finite and > 0, got {value!r}")
    return number


@dataclass(frozen=True, kw_only=True)
class RouterConfig:
    """How a router scores candidates and how the objective trades them off.

    The objective ranks candidates by the utility
    ``accuracy_weight * p - latency_weight * latency_s - cost_weight * cost``,
    where ``p`` is the router's estimate that the candidate answers correctly,
    ``latency_s`` its expected latency in seconds and ``cost`` its cost per query.

    Parameters
    ----------
    name : str
        Registered router (see :func:`fednet.routing.available_routers`).
    top_k : int
        Candidates a decision keeps (a cascade asks them in order, an
        ensemble asks them all).
    accuracy_weight : float
        Utility of one unit of expected accuracy.
    latency_weight : float
        Utility lost per second of expected latency.
    cost_weight : float
        Utility lost per unit of cost.
    latency_budget_s : float or None
        Candidates slower than this are dropped; if every candidate is slower,
        the fastest one is kept (and the decision says so).
    default_latency_s : float
        Latency assumed for a candidate never measured.
    default_accuracy : float
        Accuracy assumed for a candidate whose manifest has no ``accuracy``.
    sharpness : float
        Inverse temperature ``kappa`` of the sketch likelihood: a candidate
        whose sketch score is ``d`` below the best one gets relevance
        ``exp(-kappa * d)``.
    min_count : float
        Sketch rows whose noisy count is at most this are ignored.
    learning_rate : float
        Step size of the learned router's online logistic regression.
    l2 : float
        L2 penalty of the learned router per update.
    exploration : float
        Optimism bonus of the learned router (upper confidence bound scale);
        0 always exploits.
    sketch_gate : float
        The learned router embeds the query (for sketch relevance) unless its
        word model gives its best candidate at least this probability and
        every candidate of another task at most ``1 - sketch_gate``; 1 always
        embeds, 0 never does.
    feature_bits : int
        The learned router hashes features into ``2**feature_bits`` weights.
    latency_decay : float
        Weight of the newest observation in the latency moving average.
    confidence_feedback : bool
        Let the learned router train on an answer's confidence when nobody
        says whether it was correct (self-training; off by default, since a
        confidently wrong out-of-domain peer would teach it the wrong thing).
    contribution_weight : float
        Weight ``w`` of the contribution prior: each candidate's utility gains
        ``w * (c - c_mean)``, where ``c`` is its owner's signed contribution
        score and ``c_mean`` the mean score of the candidates that have one
        (a candidate without a score gains 0). 0 (default) turns it off.
    """

    name: str = "sketch"
    top_k: int = 2
    accuracy_weight: float = 1.0
    latency_weight: float = 0.0
    cost_weight: float = 0.0
    latency_budget_s: float | None = None
    default_latency_s: float = 0.05
    default_accuracy: float = 0.5
    sharpness: float = 40.0
    min_count: float = 0.0
    learning_rate: float = 1.0
    l2: float = 1e-6
    exploration: float = 0.0
    sketch_gate: float = 0.7
    feature_bits: int = 18
    latency_decay: float = 0.2
    confidence_feedback: bool = False
    contribution_weight: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"`router.name` must be a non-empty string, got {self.name!r}")
        check_int("router.top-k", self.top_k, minimum=1)
        _non_negative("accuracy-weight", self.accuracy_weight)
        _non_negative("latency-weight", self.latency_weight)
        _non_negative("cost-weight", self.cost_weight)
        if self.latency_budget_s is not None:
            _positive("latency-budget-s", self.latency_budget_s)
        _positive("default-latency-s", self.default_latency_s)
        accuracy = _number("default-accuracy", self.default_accuracy)
        if not 0.0 <= accuracy <= 1.0:
            raise ValueError(f"`router.default-accuracy` must be in [0, 1], got {accuracy!r}")
        _positive("sharpness", self.sharpness)
        _number("min-count", self.min_count)
        _positive("learning-rate", self.learning_rate)
        _non_negative("l2", self.l2)
        _non_negative("exploration", self.exploration)
        _non_negative("contribution-weight", self.contribution_weight)
        gate = _number("sketch-gate", self.sketch_gate)
        if not 0.0 <= gate <= 1.0:
            raise ValueError(f"`router.sketch-gate` must be in [0, 1], got {gate!r}")
        bits = check_int("router.feature-bits", self.feature_bits, minimum=8)
        if bits > 24:
            raise ValueError(f"`router.feature-bits` must be <= 24, got {bits!r}")
        if not isinstance(self.confidence_feedback, bool):
            raise TypeError(
                f"`router.confidence-feedback` must be a bool, got {self.confidence_feedback!r}"
            )
        decay = _number("latency-decay", self.latency_decay)
        if not 0.0 < decay <= 1.0:
            raise ValueError(f"`router.latency-decay` must be in (0, 1], got {decay!r}")
