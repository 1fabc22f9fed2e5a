"""The six rows of the benchmark, each answered through its own hub and peers.

- ``local``: the local-only run's adapters (each client's own), oracle-routed;
- ``centralized`` and ``generalist``: one union-head model each, asked every query;
- ``broadcast``, ``routed``, ``oracle``: the fednet run's adapters, asked by
  the ensemble of every peer, by the learned router's cascade, and by oracle
  routing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from fednet.bench.answering import (
    label_counts,
    measure,
    network,
    oracle_candidate,
    router_confusion,
    serving,
    warm_up,
)
from fednet.bench.queries import BenchQuery, QueryStreams
from fednet.config import UNION_TASK, FederationConfig
from fednet.hub.manifest import Manifest
from fednet.hub.publish import adapter_name, client_key, publish_run
from fednet.hub.store import HubStore
from fednet.inference import Network
from fednet.inference.combine import Answer
from fednet.routing import Candidate

__all__ = ["answer_local", "answer_union", "answer_fednet", "CENTRALIZED"]

logger = logging.getLogger(__name__)

CENTRALIZED = "centralized"
"""Hub name, owner and peer id of the centralized model."""


def _pick(candidates: list[Candidate], adapter: str) -> Candidate:
    for c in candidates:
        if c.adapter == adapter:
            return c
    raise ValueError(f"no live peer serves {adapter!r}; candidates: {[c.key for c in candidates]}")


@contextmanager
def _asking(
    store: HubStore,
    adapters: Mapping[str, Sequence[str]],
    cfg: FederationConfig,
    streams: QueryStreams,
    *,
    cache_root: Path,
    threshold: float,
    routers: Sequence[tuple[str, int]] = (("prior", 1),),
    keys_dir: Path,
) -> Iterator[list[Network]]:
    """Peers serving ``adapters`` and one network client per ``(router, top_k)``.

    The benchmark plays every owner and the reader, so it trusts exactly the
    keys in ``keys_dir``, and each peer signs with its owner's key there.
    """
    limits = {"max_length": cfg.max_length, "max_chars": streams.max_chars}
    with ExitStack() as stack:
        stack.enter_context(
            serving(store, adapters, cache_root=cache_root, keys_dir=keys_dir, **limits)
        )

        yield [
            stack.enter_context(network(store, router=r, top_k=k, threshold=threshold, **limits))
            for r, k in routers
        ]


def answer_local(
    cfg: FederationConfig,
    run_dir: Path,
    streams: QueryStreams,
    tasks: Mapping[str, str],
    *,
    work: Path,
    threshold: float,
) -> dict[str, Any]:
    """Row 1: each query to the local-only adapter of the client an oracle picks."""
    counts = label_counts(cfg)
    with HubStore(work / "hubs" / "local") as store:
        publish_run(run_dir, store, vet=None, keys_dir=work / "keys", kinds=("personalized",))
        adapters = {c.id: [adapter_name(c.id, "personalized")] for c in cfg.clients}
        with _asking(
            store,
            adapters,
            cfg,
            streams,
            cache_root=work / "cache" / "local",
            threshold=threshold,
            keys_dir=work / "keys",
        ) as (net,):
            candidates = net.refresh()
            row, _ = measure(
                "local-only",
                streams.measured,
                lambda q: net.ask(
                    q.text, k=1, candidates=[oracle_candidate(candidates, q, tasks, counts)]
                ),
                tasks,
            )
    return row


def answer_union(
    cfg: FederationConfig,
    generalist_run: Path,
    centralized: Mapping[str, Any],
    streams: QueryStreams,
    tasks: Mapping[str, str],
    *,
    work: Path,
    threshold: float,
) -> dict[str, dict[str, Any]]:
    """Rows 2 and 3: the centralized and the generalist model answer every query."""
    first = cfg.clients[0].id
    general = adapter_name(first, "shared")
    with HubStore(work / "hubs" / "union") as store:
        publish_run(
            generalist_run,
            store,
            vet=None,
            keys_dir=work / "keys",
            clients=[first],
            kinds=("shared",),
        )
        draft = Manifest(
            name=CENTRALIZED,
            base_model=str(centralized["base_model"]),
            rank=int(centralized["rank"]),
            task=UNION_TASK,
            owner=CENTRALIZED,
            label_names=tuple(centralized["label_names"]),
            kind="shared",
        )
        store.publish(centralized["adapter_dir"], draft, client_key(work / "keys", CENTRALIZED))
        adapters = {"generalist": [general], CENTRALIZED: [CENTRALIZED]}
        with _asking(
            store,
            adapters,
            cfg,
            streams,
            cache_root=work / "cache" / "union",
            threshold=threshold,
            keys_dir=work / "keys",
        ) as (net,):
            candidates = net.refresh()
            out: dict[str, dict[str, Any]] = {}
            for key, name in ((CENTRALIZED, CENTRALIZED), ("generalist", general)):
                only = [_pick(candidates, name)]

                def ask(q: BenchQuery, only: list[Candidate] = only) -> Answer:
                    return net.ask(q.text, k=1, candidates=only)

                out[key], _ = measure(key, streams.measured, ask, tasks)
    return out


def answer_fednet(
    cfg: FederationConfig,
    run_dir: Path,
    streams: QueryStreams,
    tasks: Mapping[str, str],
    *,
    work: Path,
    top_k: int,
    threshold: float,
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Rows 4 to 6 and the router's confusion matrix, on the fednet run's adapters.

    Every peer serves its client's personalised and shared adapters. The
    learned router first learns from the warm-up stream (with true labels),
    then answers the measured stream as a cascade; the broadcast ensemble asks
    every peer's personalised adapter; the oracle asks the personalised
    adapter of the client an oracle picks (as for row 1).
    """
    from fednet.inference import owned_adapters

    counts = label_counts(cfg)
    with HubStore(work / "hubs" / "fednet") as store:
        publish_run(run_dir, store, vet=None, keys_dir=work / "keys")
        adapters = {c.id: owned_adapters(store, c.id) for c in cfg.clients}
        with _asking(
            store,
            adapters,
            cfg,
            streams,
            cache_root=work / "cache" / "fednet",
            threshold=threshold,
            routers=(("learned", top_k), ("prior", 1)),
            keys_dir=work / "keys",
        ) as (net, oracle_net):
            candidates = net.refresh()
            own = [c for c in candidates if c.adapter == adapter_name(c.peer_id, "personalized")]
            logger.info("router warm-up on %d queries", len(streams.warmup))
            warm_up(net, streams.warmup, tasks)
            rows: dict[str, dict[str, Any]] = {}
            rows["routed"], answers = measure(
                "routed", streams.measured, lambda q: net.ask(q.text), tasks
            )
            rows["broadcast"], _ = measure(
                "broadcast",
                streams.measured,
                lambda q: net.ask(q.text, mode="ensemble", k=len(own), candidates=own),
                tasks,
            )
            rows["oracle"], _ = measure(
                "oracle",
                streams.measured,
                lambda q: oracle_net.ask(
                    q.text, k=1, candidates=[oracle_candidate(candidates, q, tasks, counts)]
                ),
                tasks,
            )
            rows["routed"]["candidates"] = len(candidates)
            rows["broadcast"]["candidates"] = len(own)
    confusion = router_confusion(streams.measured, answers, streams.datasets, tasks)
    return rows, confusion
