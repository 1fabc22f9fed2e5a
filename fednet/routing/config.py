"""Typed, frozen configuration of a router and its objective."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from fednet.config_base import Bool, Finite, Float, Int, Str, bound, config_model

__all__ = ["RouterConfig"]


@config_model("router")
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

    name: Annotated[Str, Field(min_length=1)] = "sketch"
    top_k: Annotated[Int, *bound(">= 1")] = 2
    accuracy_weight: Annotated[Finite, *bound(">= 0")] = 1.0
    latency_weight: Annotated[Finite, *bound(">= 0")] = 0.0
    cost_weight: Annotated[Finite, *bound(">= 0")] = 0.0
    latency_budget_s: Annotated[Finite, *bound("> 0")] | None = None
    default_latency_s: Annotated[Finite, *bound("> 0")] = 0.05
    default_accuracy: Annotated[Finite, *bound("in [0, 1]")] = 0.5
    sharpness: Annotated[Finite, *bound("> 0")] = 40.0
    min_count: Float = 0.0
    learning_rate: Annotated[Finite, *bound("> 0")] = 1.0
    l2: Annotated[Finite, *bound(">= 0")] = 1e-6
    exploration: Annotated[Finite, *bound(">= 0")] = 0.0
    sketch_gate: Annotated[Finite, *bound("in [0, 1]")] = 0.7
    feature_bits: Annotated[Int, *bound("in [8, 24]")] = 18
    latency_decay: Annotated[Finite, *bound("in (0, 1]")] = 0.2
    confidence_feedback: Bool = False
    contribution_weight: Annotated[Finite, *bound(">= 0")] = 0.0
