"""Routing: which peers and adapters should answer a query.

Candidates come from the hub (:func:`candidates_from_hub`). A router estimates
how likely each candidate is to answer correctly: the ``sketch`` router from DP
capability sketches, the ``learned`` router from the outcomes of past queries,
the ``prior`` router from the owners' reported accuracy. An :class:`Objective`
weighs these estimates against latency and cost and keeps the top-k, exposing
every candidate's scores in the :class:`Decision`.
"""

from fednet.routing.base import Embedder, Outcome, Query, Router
from fednet.routing.candidates import (
    LOCAL_PEER,
    Candidate,
    HubReader,
    candidates_from_hub,
    sketch_from_bytes,
)
from fednet.routing.config import RouterConfig
from fednet.routing.learned import LearnedRouter, query_tokens
from fednet.routing.network_router import NetworkSketchMatcher, NetworkSketchRouter
from fednet.routing.objective import Decision, Estimate, Objective, Scored
from fednet.routing.prior import PriorRouter
from fednet.routing.registry import available_routers, create_router, register_router
from fednet.routing.sketch_router import SketchMatch, SketchMatcher, SketchRouter, mixture_score

__all__ = [
    "LOCAL_PEER",
    "Candidate",
    "Decision",
    "Embedder",
    "Estimate",
    "HubReader",
    "LearnedRouter",
    "NetworkSketchMatcher",
    "NetworkSketchRouter",
    "Objective",
    "Outcome",
    "PriorRouter",
    "Query",
    "Router",
    "RouterConfig",
    "Scored",
    "SketchMatch",
    "SketchMatcher",
    "SketchRouter",
    "available_routers",
    "candidates_from_hub",
    "create_router",
    "mixture_score",
    "query_tokens",
    "register_router",
    "sketch_from_bytes",
]

register_router(SketchRouter.name, SketchRouter)
register_router(LearnedRouter.name, LearnedRouter)
register_router(PriorRouter.name, PriorRouter)
register_router(NetworkSketchRouter.name, NetworkSketchRouter)
