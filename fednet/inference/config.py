"""Typed, frozen configuration of peers and of asking the network."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from fednet.checks import check_int
from fednet.routing.config import RouterConfig

__all__ = ["PeerConfig", "AskConfig", "COMBINER_MODES"]

COMBINER_MODES: tuple[str, ...] = ("cascade", "ensemble")
"""How answers of several peers are combined (see :mod:`fednet.inference.combine`)."""


def _positive(key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"`{key}` must be a number, got {type(value).__name__} {value!r}")
    if not 0 < value < math.inf:
        raise ValueError(f"`{key}` must be finite and > 0, got {value!r}")
    return float(value)


@dataclass(frozen=True, kw_only=True)
class PeerConfig:
    """How a peer serves adapters.

    Parameters
    ----------
    max_length : int
        Tokens per text fed to the encoder (longer texts are truncated).
    cache_size : int
        Adapters kept loaded next to the base model (LRU).
    batch_window_s : float
        How long the batcher waits for more requests to join a forward pass.
    max_batch_texts : int
        Most texts in one forward pass.
    max_texts : int
        Most texts in one request.
    max_query_chars : int
        Longest text accepted.
    request_timeout_s : float
        A request not answered by then gets 504.
    heartbeat_s : float
        Seconds between heartbeats to the hub.
    resolve_ttl_s : float
        How long ``latest`` resolves to the same version before the hub is
        asked again.
    """

    max_length: int = 64
    cache_size: int = 8
    batch_window_s: float = 0.002
    max_batch_texts: int = 64
    max_texts: int = 64
    max_query_chars: int = 2000
    request_timeout_s: float = 30.0
    heartbeat_s: float = 10.0
    resolve_ttl_s: float = 30.0

    def __post_init__(self) -> None:
        check_int("peer.max-length", self.max_length, minimum=8)
        check_int("peer.cache-size", self.cache_size, minimum=1)
        window = self.batch_window_s
        if isinstance(window, bool) or not isinstance(window, int | float):
            raise TypeError(f"`peer.batch-window-s` must be a number, got {window!r}")
        if not 0 <= window <= 1:
            raise ValueError(f"`peer.batch-window-s` must be in [0, 1], got {window!r}")
        check_int("peer.max-batch-texts", self.max_batch_texts, minimum=1)
        check_int("peer.max-texts", self.max_texts, minimum=1)
        check_int("peer.max-query-chars", self.max_query_chars, minimum=1)
        _positive("peer.request-timeout-s", self.request_timeout_s)
        _positive("peer.heartbeat-s", self.heartbeat_s)
        _positive("peer.resolve-ttl-s", self.resolve_ttl_s)


@dataclass(frozen=True, kw_only=True)
class AskConfig:
    """How a query is routed, sent and combined.

    Parameters
    ----------
    router : RouterConfig
        Router name, objective weights, latency budget and top-k.
    mode : str
        ``cascade`` or ``ensemble``.
    confidence_threshold : float
        A cascade stops at the first answer at least this confident.
    peer_timeout_s : float
        Seconds before an unanswered peer is skipped.
    max_query_chars : int
        Longest query accepted (``hub.max-query-chars`` in a preset).
    max_length : int
        Tokens per query for local inference and for the router's embedding.
    hub_timeout_s : float
        Seconds before an unanswering hub is reported unreachable.
    peer_cooldown_s : float
        After a failed call a candidate is left out of routing this long.
    candidates_ttl_s : float
        Candidates (manifests, sketches, live peers) are re-read from the hub
        when older than this.
    """

    router: RouterConfig = field(default_factory=RouterConfig)
    mode: str = "cascade"
    confidence_threshold: float = 0.8
    peer_timeout_s: float = 5.0
    max_query_chars: int = 2000
    max_length: int = 64
    hub_timeout_s: float = 10.0
    peer_cooldown_s: float = 30.0
    candidates_ttl_s: float = 60.0

    def __post_init__(self) -> None:
        if not isinstance(self.router, RouterConfig):
            raise TypeError(f"`ask.router` must be a RouterConfig, got {self.router!r}")
        if self.mode not in COMBINER_MODES:
            raise ValueError(f"`ask.mode` must be one of {list(COMBINER_MODES)}, got {self.mode!r}")
        threshold = self.confidence_threshold
        if isinstance(threshold, bool) or not isinstance(threshold, int | float):
            raise TypeError(f"`ask.confidence-threshold` must be a number, got {threshold!r}")
        if not 0 <= threshold <= 1:
            raise ValueError(f"`ask.confidence-threshold` must be in [0, 1], got {threshold!r}")
        _positive("ask.peer-timeout-s", self.peer_timeout_s)
        check_int("ask.max-query-chars", self.max_query_chars, minimum=1)
        check_int("ask.max-length", self.max_length, minimum=8)
        _positive("ask.hub-timeout-s", self.hub_timeout_s)
        _positive("ask.candidates-ttl-s", self.candidates_ttl_s)
        cooldown = self.peer_cooldown_s
        if isinstance(cooldown, bool) or not isinstance(cooldown, int | float) or cooldown < 0:
            raise ValueError(f"`ask.peer-cooldown-s` must be a number >= 0, got {cooldown!r}")
