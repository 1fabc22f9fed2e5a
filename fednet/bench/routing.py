"""Routing benchmark: how well, how fast and how cheaply the network answers.

It shares the core of :func:`fednet.bench.run_bench`: the same held-out query
streams (:func:`fednet.bench.queries.query_streams`), the same scoring and
figures (:func:`fednet.bench.answering.measure`) and the same oracle
(:func:`fednet.bench.answering.oracle_candidate`). The measured stream is
answered in three ways by real peers (one
:class:`~fednet.inference.server.PeerServer` per client, on loopback, in this
process so that one CPU clock covers router, client and peers):

- ``router_cascade`` (a): the learned router's top-1, cascading to its second
  choice when the answer's confidence is under the threshold;
- ``broadcast_ensemble`` (b): every peer answers with its own (personalised)
  adapter, combined by a confidence-weighted vote;
- ``oracle`` (d): the personalised adapter of the client of the query's task
  whose training data holds the largest share of the query's true label. This
  oracle knows the answer, a bound no label-blind router meets.

Before (a) the learned router warms up on the disjoint warm-up stream with
feedback (the true label). Each way reports accuracy, p50 and p95 latency,
CPU-seconds per 1,000 queries, calls per query and the router's share of the
end-to-end latency. The benchmark also times an adapter hot-swap
on a peer: already attached, attached from the disk cache, and fetched from
the hub. A client without a sketch in the run gets a stand-in, released the way
a client would: a DP sketch at the preset's ``privacy.sketch-epsilon``.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import random
import shutil
import statistics
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from fednet.bench.answering import label_counts, measure, oracle_candidate, warm_up
from fednet.bench.queries import BenchQuery, query_streams, task_of_dataset
from fednet.hub.client import HubClient, open_hub
from fednet.hub.publish import client_key, find_sketch, keys_dir_trust, publish_run
from fednet.hub.store import HubStore
from fednet.inference.ask import Network
from fednet.inference.combine import Answer
from fednet.inference.config import AskConfig, PeerConfig
from fednet.inference.server import PeerServer, owned_adapters
from fednet.routing import LearnedRouter, PriorRouter, RouterConfig

__all__ = ["stand_in_sketches", "run_routing_bench"]

logger = logging.getLogger(__name__)


def stand_in_sketches(run_dir: Path, cfg: Any, out_dir: Path) -> dict[str, Path]:
    """Release a DP sketch for every client of the run that has none."""
    from safetensors.torch import save_file

    from fednet.federation.client_data import load_client_data
    from fednet.inference.ask import FrozenEncoder
    from fednet.privacy import build_sketch, noise_source, sketch_noise_multiplier

    privacy = cfg.privacy
    z = sketch_noise_multiplier(epsilon=privacy.sketch_epsilon, delta=privacy.delta)
    encoder = FrozenEncoder(max_length=cfg.max_length)
    out: dict[str, Path] = {}
    for client in cfg.clients:
        path = out_dir / f"{client.id}.safetensors"
        if find_sketch(run_dir, client.id) is not None:
            continue
        if path.is_file():  # released by an earlier benchmark of this run
            out[client.id] = path
            continue
        data = load_client_data(cfg, client)
        rows = list(range(len(data.train_texts)))
        random.Random(client.id).shuffle(rows)
        rows = rows[: privacy.sketch_examples]
        texts = [data.train_texts[i] for i in rows]
        embeddings = torch.cat(
            [encoder(client.base_model, texts[i : i + 64]) for i in range(0, len(texts), 64)]
        )
        sketch = build_sketch(
            embeddings,
            torch.tensor([data.train_labels[i] for i in rows]),
            num_labels=len(data.label_names),
            clip=privacy.sketch_clip,
            noise_multiplier=z,
            delta=privacy.delta,
            label_names=data.label_names,
            noise=noise_source(
                reproducible=privacy.reproducible_noise, parts=(cfg.seed, client.id, "sketch")
            ),
        )
        out_dir.mkdir(parents=True, exist_ok=True)
        save_file(sketch.to_tensors(), str(path))
        out[client.id] = path
        logger.info("stand-in sketch for %s: epsilon %.2f", client.id, sketch.epsilon)
    return out


def _hot_swap(server: PeerServer, names: Sequence[str], repeats: int = 3) -> dict[str, Any]:
    engine = server.engine
    if engine is None:
        raise RuntimeError("the peer is not started")
    times: dict[str, list[float]] = {"memory": [], "disk": [], "hub": []}
    for _ in range(repeats):
        for name in names:
            engine.unload(name)
            shutil.rmtree(engine.cache_dir / name, ignore_errors=True)
            engine.ensure(name)  # fetched from the hub
            times[engine.last_load[0]].append(engine.last_load[1])
            engine.ensure(name)  # already attached
            times[engine.last_load[0]].append(engine.last_load[1])
            engine.unload(name)
            engine.ensure(name)  # attached again from the disk cache
            times[engine.last_load[0]].append(engine.last_load[1])
    return {
        f"{source}_ms_median": statistics.median(values) * 1000
        for source, values in times.items()
        if values
    } | {"peer": server.peer_id, "adapters": list(names), "repeats": repeats}


def run_routing_bench(
    run_dir: str | Path,
    hub: HubStore | HubClient | str | Path | None,
    out_path: str | Path,
    *,
    queries_per_dataset: int = 200,
    warmup_per_dataset: int = 200,
    threshold: float = 0.8,
    sketch_gate: float = 0.7,
    keys_dir: str | Path | None = None,
    token: str | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Run the routing benchmark on a finished run and write its figures as JSON.

    Parameters
    ----------
    run_dir : str or Path
        Output of ``fednet simulate`` (its preset is read from ``summary.json``).
    hub : HubStore, HubClient, str, Path or None
        Hub to publish the run to and serve from; ``None`` makes one under
        ``<out_path>.work/``.
    out_path : str or Path
        The JSON file to write.
    queries_per_dataset, warmup_per_dataset : int
        Evaluated and warm-up queries drawn from each data set's test split.
    threshold : float
        Cascade confidence threshold of (a).
    sketch_gate : float
        ``router.sketch-gate`` of the learned router.
    keys_dir : str or Path, optional
        Owner keys for publishing (default ``<out_path>.work/keys``).
    token : str, optional
        Write token when ``hub`` is a URL.
    seed : int
        Seed of the query streams.

    Returns
    -------
    dict
        What was written.
    """
    from fednet.config import load_preset

    run_dir, out_path = Path(run_dir), Path(out_path)
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    cfg = load_preset(summary["preset"])
    work = out_path.with_name(out_path.name + ".work")
    if hub is None:
        hub = work / "hub"
    store = open_hub(hub, token=token) if isinstance(hub, str | Path) else hub
    sketches = stand_in_sketches(run_dir, cfg, work / "sketches")
    keys = Path(keys_dir or work / "keys")
    if not store.list():
        publish_run(run_dir, store, vet=None, keys_dir=keys, sketches=sketches)
    store.trust = keys_dir_trust(keys)  # the benchmark plays every owner and the reader
    streams = query_streams(
        cfg, per_dataset=queries_per_dataset, warmup_per_dataset=warmup_per_dataset, seed=seed
    )
    datasets = sorted(streams.datasets)
    max_chars = max(2000, streams.max_chars)
    tasks, counts = task_of_dataset(cfg), label_counts(cfg)
    peers = [
        PeerServer(
            store,
            peer_id=c.id,
            adapters=owned_adapters(store, c.id),
            config=PeerConfig(max_length=cfg.max_length, max_query_chars=max_chars),
            cache_dir=work / "cache" / c.id,
            key=client_key(keys, c.id),
        )
        for c in cfg.clients
    ]
    try:
        for peer in peers:
            peer.start()
        ask_cfg = AskConfig(
            router=RouterConfig(name="learned", top_k=2, sketch_gate=sketch_gate),
            confidence_threshold=threshold,
            max_length=cfg.max_length,
            max_query_chars=max_chars,
            peer_timeout_s=30.0,
            candidates_ttl_s=24 * 3600.0,  # the peers do not change during the benchmark
        )
        with (
            Network(store, config=ask_cfg) as net,
            Network(
                store, config=ask_cfg, router=PriorRouter(RouterConfig(name="prior"))
            ) as oracle_net,
        ):
            warm_up(net, streams.warmup, tasks)
            modes, embed_rate = _answer_modes(
                net, oracle_net, peers, streams.measured, tasks, counts
            )
        hot_swap = _hot_swap(peers[0], [c.id + "-shared" for c in cfg.clients[1:3]])
    finally:
        for peer in peers:
            peer.stop()
        if isinstance(hub, str | Path):
            store.close()
    a, b, d = modes["router_cascade"], modes["broadcast_ensemble"], modes["oracle"]
    report = {
        "run_dir": str(run_dir),
        "preset": summary["preset"],
        "datasets": datasets,
        "warmup_queries": len(streams.warmup),
        "peers": [p.peer_id for p in peers],
        "threshold": threshold,
        "router": {"name": "learned", "sketch_gate": sketch_gate, "embed_rate": embed_rate},
        "stand_in_sketches": sorted(sketches),
        "modes": modes,
        "targets": {
            "a_minus_d_accuracy_points": (a["accuracy"] - d["accuracy"]) * 100,
            "a_within_1_point_of_d": a["accuracy"] >= d["accuracy"] - 0.01,
            "a_cpu_over_b_cpu": a["cpu_s_per_1000"] / b["cpu_s_per_1000"],
            "a_cpu_at_most_third_of_b": a["cpu_s_per_1000"] <= b["cpu_s_per_1000"] / 3,
            "router_share_at_most_15_percent": a["router_share_of_latency"] <= 0.15,
        },
        "hot_swap": hot_swap,
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpus": os.cpu_count(),
        },
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(report, indent=2, sort_keys=True), encoding="utf-8")
    logger.info("routing benchmark written to %s", out_path)
    return report


def _answer_modes(
    net: Network,
    oracle_net: Network,
    peers: Sequence[PeerServer],
    queries: Sequence[BenchQuery],
    tasks: Mapping[str, str],
    counts: Mapping[str, Mapping[str, int]],
) -> tuple[dict[str, dict[str, Any]], float]:
    """Answer ``queries`` every way; return the figures and the router's embed rate."""
    candidates = net.refresh()
    own = {p.peer_id: p.adapters[0] for p in peers}
    broadcast = [c for c in candidates if own.get(c.peer_id) == c.adapter]
    router = net.router
    if isinstance(router, LearnedRouter):
        router.embedded = router.estimated = 0

    asks: dict[str, Callable[[BenchQuery], Answer]] = {
        "router_cascade": lambda q: net.ask(q.text),
        "broadcast_ensemble": lambda q: net.ask(
            q.text, mode="ensemble", k=len(broadcast), candidates=broadcast
        ),
        "oracle": lambda q: oracle_net.ask(
            q.text, k=1, candidates=[oracle_candidate(candidates, q, tasks, counts)]
        ),
    }
    modes = {name: measure(name, queries, ask, tasks)[0] for name, ask in asks.items()}
    rate = router.embed_rate if isinstance(router, LearnedRouter) else 1.0
    return modes, rate
