"""Answering the query stream: every row through the same hub, peers and client.

Each model the benchmark compares is published to a hub and served by real
:class:`~fednet.inference.PeerServer` instances on loopback, in this process, and
every query is asked through :class:`~fednet.inference.Network`. So every row
pays the same HTTP hop per call, and one CPU clock (``time.process_time``)
covers the asking client and the peers it calls.

- one fixed candidate per query (local-only oracle, centralized, generalist,
  fednet oracle): the ``prior`` router over that one candidate, one call;
- ``broadcast``: every peer's own (personalised) adapter asked, combined by the
  ensemble's confidence-weighted vote;
- ``routed``: the learned router's top-k, asked as a cascade with early exit,
  after a warm-up stream on which it learns from the true labels.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from fednet.bench.queries import BenchQuery, is_correct
from fednet.config import FederationConfig
from fednet.hub.store import HubStore
from fednet.inference import AskConfig, Network, PeerConfig, PeerServer
from fednet.inference.combine import Answer
from fednet.routing import Candidate, RouterConfig

__all__ = [
    "serving",
    "network",
    "measure",
    "label_counts",
    "oracle_candidate",
    "warm_up",
    "router_confusion",
]

logger = logging.getLogger(__name__)

Ask = Callable[[BenchQuery], Answer]


@contextmanager
def serving(
    store: HubStore,
    adapters_by_peer: Mapping[str, Sequence[str]],
    *,
    cache_root: Path,
    max_length: int,
    max_chars: int,
    keys_dir: Path,
) -> Iterator[dict[str, PeerServer]]:
    """Start one peer per entry (serving its adapters), registered with ``store``.

    Each peer reads ``max_length`` tokens of a text and accepts texts of up to
    ``max_chars`` characters. A peer serves only its owner's adapters: it is
    registered by the owner of the adapters it serves and signs with that owner's
    key ``<keys_dir>/<owner>.key``.
    """
    from fednet.hub.publish import client_key, keys_dir_trust

    peers: dict[str, PeerServer] = {}
    try:
        for peer_id, adapters in adapters_by_peer.items():
            owners = {store.resolve(name).owner for name in adapters}
            if len(owners) != 1:
                raise ValueError(f"peer {peer_id!r} would serve adapters of owners {owners}")
            (owner,) = owners
            peer = PeerServer(
                store,
                peer_id=peer_id,
                adapters=list(adapters),
                config=PeerConfig(max_length=max_length, max_query_chars=max(2000, max_chars)),
                cache_dir=cache_root / peer_id,
                owner=owner,
                key=client_key(keys_dir, owner),
            )
            if store.trust is None:
                store.trust = keys_dir_trust(keys_dir)
            peer.start()
            peers[peer_id] = peer
        yield peers
    finally:
        for peer in peers.values():
            peer.stop()


def network(
    store: HubStore,
    *,
    router: str,
    top_k: int,
    threshold: float,
    max_length: int,
    max_chars: int,
) -> Network:
    """A client of the peers registered with ``store`` (queries up to ``max_chars``)."""
    config = AskConfig(
        router=RouterConfig(name=router, top_k=top_k),
        confidence_threshold=threshold,
        max_length=max_length,
        max_query_chars=max(2000, max_chars),
        peer_timeout_s=60.0,
    )
    return Network(store, config=config)


def label_counts(cfg: FederationConfig) -> dict[str, dict[str, int]]:
    """Training examples per label name of every client (what an oracle knows)."""
    from fednet.federation.client_data import load_client_data

    out: dict[str, dict[str, int]] = {}
    for client in cfg.clients:
        data = load_client_data(cfg, client)
        counts: dict[str, int] = {}
        for y in data.train_labels:
            counts[data.label_names[y]] = counts.get(data.label_names[y], 0) + 1
        out[client.id] = counts
    return out


def oracle_candidate(
    candidates: Sequence[Candidate],
    query: BenchQuery,
    tasks: Mapping[str, str],
    counts: Mapping[str, Mapping[str, int]],
) -> Candidate:
    """The personalised adapter of the client best placed for the query.

    The oracle knows the query's data set and true label: among the clients
    of the query's task it takes the one whose training data holds the largest
    share of that label (a model leans to the labels it saw most; ties go to
    the best reported accuracy). Every oracle row of the benchmark uses this
    rule, so they differ only in the adapters.

    Raises
    ------
    ValueError
        If no candidate serves the query's task.
    """
    task = tasks.get(query.dataset)
    own = [c for c in candidates if c.task == task and c.kind == "personalized"]
    own = own or [c for c in candidates if c.task == task]
    if not own:
        raise ValueError(f"no candidate serves task {task!r} of data set {query.dataset!r}")

    def support(c: Candidate) -> tuple[float, float]:
        own_counts = counts.get(c.owner, {})
        share = own_counts.get(query.label, 0) / max(1, sum(own_counts.values()))
        return share, c.accuracy or 0.0

    return max(own, key=support)


def warm_up(net: Network, queries: Sequence[BenchQuery], tasks: Mapping[str, str]) -> None:
    """Ask ``queries`` and tell the router the true label of each."""
    for i, q in enumerate(queries, 1):
        net.feedback(net.ask(q.text), true_label=q.label, true_task=tasks.get(q.dataset))
        if i % 50 == 0:
            logger.info("router warm-up: %d/%d queries", i, len(queries))


def _percentile_ms(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q) * 1000.0)


def measure(
    name: str,
    queries: Sequence[BenchQuery],
    ask: Ask,
    tasks: Mapping[str, str],
) -> tuple[dict[str, Any], list[Answer]]:
    """Answer every query with ``ask``; return the row's figures and the answers.

    Latency is the wall time of one ``ask`` (routing, calls and combining).
    ``latency_parallel_*`` models peers on separate machines: the router's time
    plus the slowest call of an ensemble (asked in parallel) or the sum of a
    cascade's calls (asked one after another). CPU-seconds are this process's
    CPU time, which includes the in-process peers.
    """
    latencies: list[float] = []
    parallel: list[float] = []
    routers: list[float] = []
    calls: list[int] = []
    hits: list[bool] = []
    by_dataset: dict[str, list[bool]] = {}
    answers: list[Answer] = []
    cpu = time.process_time()
    wall = time.perf_counter()
    for i, q in enumerate(queries, 1):
        started = time.perf_counter()
        answer = ask(q)
        latencies.append(time.perf_counter() - started)
        ok = is_correct(answer.task, answer.label, q, tasks)
        hits.append(ok)
        by_dataset.setdefault(q.dataset, []).append(ok)
        routers.append(answer.router_s)
        calls.append(len(answer.calls))
        times = [c.latency_s for c in answer.calls]
        spent = max(times) if answer.mode == "ensemble" else sum(times)
        parallel.append(answer.router_s + spent)
        answers.append(answer)
        if i % 100 == 0:
            logger.info("%s: %d/%d queries", name, i, len(queries))
    cpu = time.process_time() - cpu
    wall = time.perf_counter() - wall
    n = len(queries)
    row = {
        "queries": n,
        "accuracy": float(np.mean(hits)),
        "accuracy_by_dataset": {k: float(np.mean(v)) for k, v in sorted(by_dataset.items())},
        "latency_p50_ms": _percentile_ms(latencies, 50),
        "latency_p95_ms": _percentile_ms(latencies, 95),
        "latency_parallel_p50_ms": _percentile_ms(parallel, 50),
        "latency_parallel_p95_ms": _percentile_ms(parallel, 95),
        "cpu_s_per_1000": cpu / n * 1000.0,
        "calls_per_query": float(np.mean(calls)),
        "router_ms_mean": float(np.mean(routers) * 1000.0),
        "router_share_of_latency": float(np.sum(routers) / max(np.sum(latencies), 1e-12)),
        "wall_s": wall,
    }
    logger.info(
        "%s: accuracy %.4f, p50 %.1f ms, %.1f CPU-s per 1,000 queries",
        name,
        row["accuracy"],
        row["latency_p50_ms"],
        row["cpu_s_per_1000"],
    )
    return row, answers


def router_confusion(
    queries: Sequence[BenchQuery],
    answers: Sequence[Answer],
    datasets: Sequence[str],
    tasks: Mapping[str, str],
) -> dict[str, Any]:
    """Counts of (query's data set, data set of the router's first choice).

    A candidate's data set is the one whose task it answers; a task shared by
    several data sets (or none of them) is its own column.
    """
    dataset_of: dict[str, str] = {}
    for dataset in datasets:
        dataset_of.setdefault(tasks.get(dataset, dataset), dataset)
    columns = list(datasets)
    counts: dict[tuple[str, str], int] = {}
    for q, a in zip(queries, answers, strict=True):
        task = a.decision.best.candidate.task
        chosen = dataset_of.get(task, task)
        if chosen not in columns:
            columns.append(chosen)
        counts[(q.dataset, chosen)] = counts.get((q.dataset, chosen), 0) + 1
    matrix = [[counts.get((r, c), 0) for c in columns] for r in datasets]
    total = sum(sum(row) for row in matrix)
    right = sum(matrix[i][columns.index(d)] for i, d in enumerate(datasets))
    return {
        "rows": list(datasets),
        "columns": columns,
        "matrix": matrix,
        "first_choice_on_own_dataset": right / total if total else 0.0,
    }
