"""Typed, frozen configuration of peers and of asking the network."""

from __future__ import annotations

from dataclasses import field
from typing import Annotated, Literal, get_args

from fednet.config_base import Finite, Int, bound, config_model
from fednet.routing.config import RouterConfig

__all__ = ["PeerConfig", "AskConfig", "COMBINER_MODES"]

CombinerMode = Literal["cascade", "ensemble"]
COMBINER_MODES: tuple[str, ...] = get_args(CombinerMode)
"""How answers of several peers are combined (see :mod:`fednet.inference.combine`)."""


@config_model("peer")
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

    max_length: Annotated[Int, *bound(">= 8")] = 64
    cache_size: Annotated[Int, *bound(">= 1")] = 8
    batch_window_s: Annotated[Finite, *bound("in [0, 1]")] = 0.002
    max_batch_texts: Annotated[Int, *bound(">= 1")] = 64
    max_texts: Annotated[Int, *bound(">= 1")] = 64
    max_query_chars: Annotated[Int, *bound(">= 1")] = 2000
    request_timeout_s: Annotated[Finite, *bound("> 0")] = 30.0
    heartbeat_s: Annotated[Finite, *bound("> 0")] = 10.0
    resolve_ttl_s: Annotated[Finite, *bound("> 0")] = 30.0


@config_model("ask")
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
    mode: CombinerMode = "cascade"
    confidence_threshold: Annotated[Finite, *bound("in [0, 1]")] = 0.8
    peer_timeout_s: Annotated[Finite, *bound("> 0")] = 5.0
    max_query_chars: Annotated[Int, *bound(">= 1")] = 2000
    max_length: Annotated[Int, *bound(">= 8")] = 64
    hub_timeout_s: Annotated[Finite, *bound("> 0")] = 10.0
    peer_cooldown_s: Annotated[Finite, *bound(">= 0")] = 30.0
    candidates_ttl_s: Annotated[Finite, *bound("> 0")] = 60.0
