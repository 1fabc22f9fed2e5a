"""Representation benchmark: map fit, routing across models, prototype transfer.

``fednet bench-representation`` writes ``representation-<time>.json`` and
``.md`` under the output directory, with three figures:

1. **Map fit.** For every base model other than the network space's, each map
   method (Procrustes, ridge, MLP, the mean estimator) is fitted on paired
   embeddings of ``fit_texts`` public texts (:mod:`fednet.representation.corpus`,
   checked disjoint from every catalogue data set) and scored on ``pool`` held-out
   texts: paired cosine and recall@1 of the paired text among ``pool``.
2. **Routing.** Every base model hosts ``clients_per_dataset`` clients of each
   routing data set; each releases a DP sketch (ε = ``sketch_epsilon``) of its
   frozen-encoder embeddings. Queries are held-out texts of each data set; a
   route is correct when the chosen client holds the query's data set.
   *Same model*: the asker's encoder, candidates on its model only.
   *Cross model*: the query embedded once by the asker's encoder and mapped into
   the network space, candidates on every model with their sketches mapped
   (:class:`~fednet.routing.NetworkSketchRouter`'s matcher); also against the
   clients of the other models only.
3. **Transfer.** A small client (``small_examples`` examples of ``transfer_task``)
   on the network space's model trains LoRA and a head for ``steps`` steps:
   alone; with FedProto alignment to DP prototypes (ε = ``prototype_epsilon``)
   released by ``other_clients`` clients of the same task on ``other_model``
   (frozen-encoder prototypes, one exchange) and its own; and in a one-model
   federation (FedAvg of LoRA and heads, ``rounds`` rounds) with
   ``other_clients`` clients of the same task on its own model. Accuracy on
   held-out catalogue texts of the task.

Embeddings are cached under ``cache_dir`` by model and text digest. DP noise is
drawn from seeded sources so a run can be repeated; its ε is the noise scale's,
not a privacy guarantee.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

import torch

from fednet.bench.representation_setup import EmbeddingCache, Progress, RepresentationBenchConfig

__all__ = [
    "RepresentationBenchConfig",
    "precompute_embeddings",
    "run_representation_bench",
    "write_results",
]

logger = logging.getLogger(__name__)


def _corpus_texts(cfg: RepresentationBenchConfig) -> list[str]:
    from fednet.representation.corpus import load_public_corpus

    texts = load_public_corpus(cfg.corpus)
    gen = torch.Generator().manual_seed(cfg.seed)
    order = torch.randperm(len(texts), generator=gen).tolist()
    need = cfg.fit_texts + cfg.pool
    if len(order) < need:
        raise ValueError(f"corpus {cfg.corpus} has {len(order)} texts, the bench needs {need}")
    return [texts[i] for i in order[:need]]


def precompute_embeddings(
    cfg: RepresentationBenchConfig, model: str, *, cache_dir: str | Path, progress: Progress
) -> None:
    """Fill the embedding cache with every text the bench embeds with ``model``.

    Lets the slow encoders run in separate processes before the bench itself.
    """
    torch.set_num_threads(cfg.threads)
    emb = EmbeddingCache(Path(cache_dir), cfg.max_length, progress)
    if "fit" in cfg.parts:
        emb(model, _corpus_texts(cfg))
    if "routing" in cfg.parts:
        clients, queries = _routing_data(cfg)
        emb(model, [t for t, _ in queries] + [t for c in clients for t in c["texts"]])
    if "transfer" in cfg.parts:
        from fednet.bench.transfer import transfer_data

        data = transfer_data(cfg)
        if model == cfg.other_model:
            emb(model, [t for texts, _ in data["other_model"] for t in texts])
        if model == cfg.reference:
            emb(model, data["small"][0])


def _fit_maps(
    cfg: RepresentationBenchConfig, emb: EmbeddingCache, out_dir: Path, progress: Progress
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    from fednet.representation.artifact import map_name, save_map
    from fednet.representation.corpus import check_disjoint, corpus_digest
    from fednet.representation.maps import create_map, fit_quality

    chosen = _corpus_texts(cfg)
    progress(f"checking {cfg.corpus} is disjoint from the client catalogue")
    check_disjoint(chosen)
    digest = corpus_digest(chosen)
    y = emb(cfg.reference, chosen)
    rows: list[dict[str, Any]] = []
    maps: dict[str, dict[str, Any]] = {}
    for model in cfg.models:
        if model == cfg.reference:
            continue
        x = emb(model, chosen)
        xf, yf = x[: cfg.fit_texts], y[: cfg.fit_texts]
        xt, yt = x[cfg.fit_texts :], y[cfg.fit_texts :]
        maps[model] = {}
        for method in cfg.methods:
            t0 = time.perf_counter()
            m = create_map(method, source_dim=x.shape[1], target_dim=y.shape[1])
            m.fit(xf, yf, seed=cfg.seed)
            seconds = time.perf_counter() - t0
            q = fit_quality(m, xt, yt, pool=cfg.pool)
            maps[model][method] = m
            save_map(
                out_dir / map_name(model, cfg.reference, method),
                m,
                source_model=model,
                network_space=cfg.reference,
                corpus=cfg.corpus,
                corpus_sha256=digest,
                quality=q,
            )
            rows.append(
                {
                    "source": model,
                    "network_space": cfg.reference,
                    "method": method,
                    **q.to_dict(),
                    "fit_pairs": cfg.fit_texts,
                    "fit_s": round(seconds, 2),
                    **({"alpha": m.hyperparameters().get("alpha")} if method == "ridge" else {}),
                }
            )
            progress(
                f"  {model} -> {cfg.reference} {method}: cos {q.paired_cosine:.3f}, "
                f"R@1 {q.recall_at_1:.3f}"
            )
    return rows, maps


# -- 2. routing ------------------------------------------------------------------------


def _routing_data(
    cfg: RepresentationBenchConfig,
) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    from fednet.data import load_dataset

    clients: list[dict[str, Any]] = []
    queries: list[tuple[str, str]] = []
    for name in cfg.routing_datasets:
        ds = load_dataset(name)
        gen = torch.Generator().manual_seed(cfg.seed + len(name))
        order = torch.randperm(len(ds), generator=gen).tolist()
        n = cfg.clients_per_dataset * cfg.examples_per_client
        if len(order) < n + cfg.queries_per_dataset:
            raise ValueError(f"data set {name} is too small for the routing settings")
        texts, labels = ds["text"], ds["label"]
        for c in range(cfg.clients_per_dataset):
            idx = order[c * cfg.examples_per_client : (c + 1) * cfg.examples_per_client]
            clients.append(
                {
                    "dataset": name,
                    "index": c,
                    "texts": [texts[i] for i in idx],
                    "labels": torch.tensor([labels[i] for i in idx]),
                    "label_names": tuple(ds.features["label"].names),
                }
            )
        queries += [(texts[i], name) for i in order[n : n + cfg.queries_per_dataset]]
    return clients, queries


def _route_accuracy(
    matcher: Any, candidates: list[Any], queries: list[tuple[str, str]], embedder: Any
) -> float:
    from fednet.routing import Query

    hits = 0
    for text, dataset in queries:
        matches = matcher.match(Query(text, embedder), candidates)
        best = max(range(len(candidates)), key=lambda i: matches[i].similarity)
        hits += candidates[best].task == dataset
    return hits / len(queries)


def _routing(
    cfg: RepresentationBenchConfig,
    emb: EmbeddingCache,
    maps: dict[str, dict[str, Any]],
    progress: Progress,
) -> list[dict[str, Any]]:
    from fednet.privacy.randomness import NoiseSource
    from fednet.privacy.sketch import build_sketch, sketch_noise_multiplier
    from fednet.representation.space import NetworkSpace
    from fednet.routing import Candidate, RouterConfig, SketchMatcher
    from fednet.routing.network_router import NetworkSketchMatcher

    clients, queries = _routing_data(cfg)
    z = sketch_noise_multiplier(epsilon=cfg.sketch_epsilon, delta=cfg.delta)
    query_texts = [t for t, _ in queries]
    candidates: dict[str, list[Candidate]] = {}
    for model in cfg.models:
        emb(model, query_texts + [t for client in clients for t in client["texts"]])
        candidates[model] = []
        for k, client in enumerate(clients):
            x = emb.lookup(model, client["texts"])
            sketch = build_sketch(
                x,
                client["labels"],
                num_labels=len(client["label_names"]),
                clip=1.0,
                noise_multiplier=z,
                noise=NoiseSource.seeded(cfg.seed * 1000 + k),
                delta=cfg.delta,
                label_names=client["label_names"],
            )
            candidates[model].append(
                Candidate(
                    adapter=f"{client['dataset']}-{client['index']}-{model}",
                    version=1,
                    base_model=model,
                    task=client["dataset"],
                    label_names=client["label_names"],
                    owner=f"{client['dataset']}-{client['index']}-{model}",
                    sketch=sketch,
                )
            )
    router_cfg = RouterConfig()
    rows: list[dict[str, Any]] = []
    dim = int(emb.lookup(cfg.reference, query_texts[:1]).shape[1])
    for asker in cfg.models:
        same = _route_accuracy(
            SketchMatcher(emb.lookup, router_cfg), candidates[asker], queries, emb.lookup
        )
        methods = cfg.methods if len(cfg.models) > 1 else ()
        for method in methods:
            space = NetworkSpace(
                reference=cfg.reference,
                dim=dim,
                maps={m: maps[m][method] for m in cfg.models if m != cfg.reference},
            )
            every = [c for model in cfg.models for c in candidates[model]]
            others = [c for model in cfg.models if model != asker for c in candidates[model]]
            row = {
                "asker_model": asker,
                "method": method,
                "same_model": same,
                "cross_model_all": _route_accuracy(
                    NetworkSketchMatcher(emb.lookup, router_cfg, space=space, asker_model=asker),
                    every,
                    queries,
                    emb.lookup,
                ),
                "cross_model_others": _route_accuracy(
                    NetworkSketchMatcher(emb.lookup, router_cfg, space=space, asker_model=asker),
                    others,
                    queries,
                    emb.lookup,
                ),
                "queries": len(queries),
                "candidates_all": len(every),
                "sketch_epsilon": cfg.sketch_epsilon,
            }
            row["gap_all"] = row["same_model"] - row["cross_model_all"]
            row["gap_others"] = row["same_model"] - row["cross_model_others"]
            rows.append(row)
            progress(
                f"  asker {asker} via {method}: same {same:.3f}, cross(all) "
                f"{row['cross_model_all']:.3f}, cross(others) {row['cross_model_others']:.3f}"
            )
    return rows


# -- running and writing ----------------------------------------------------------------


def run_representation_bench(
    cfg: RepresentationBenchConfig,
    *,
    out_dir: str | Path,
    cache_dir: str | Path,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run the parts of ``cfg`` and return the results (see the module notes)."""
    from fednet.bench.transfer import transfer, transfer_baselines, transfer_data

    say = progress or (lambda line: logger.info("%s", line))
    torch.set_num_threads(cfg.threads)
    out = Path(out_dir)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    emb = EmbeddingCache(Path(cache_dir), cfg.max_length, say)
    results: dict[str, Any] = {"config": dataclasses.asdict(cfg), "stamp": stamp}
    t0 = time.perf_counter()
    if cfg.parts == ("transfer-baselines",):
        say("3. transfer baselines")
        results["transfer_baselines"] = transfer_baselines(
            cfg, transfer_data(cfg), Path(cache_dir), say
        )
        return results
    say("1. fitting maps")
    results["fit"], maps = _fit_maps(cfg, emb, out / f"representation-{stamp}-maps", say)
    if "routing" in cfg.parts:
        say("2. routing")
        results["routing"] = _routing(cfg, emb, maps, say)
    if "transfer" in cfg.parts:
        say("3. transfer")
        results["transfer"] = transfer(cfg, emb, maps, say, Path(cache_dir))
    results["seconds"] = round(time.perf_counter() - t0, 1)
    return results


def _targets(results: dict[str, Any]) -> list[str]:
    """Whether the issue's targets are met: ridge (the map fixed in advance) and the best."""
    lines = []
    routing = [r for r in results.get("routing", []) if r["method"] != "mean"]
    for label, rows in (
        ("ridge map", [r for r in routing if r["method"] == "ridge"]),
        ("best map per asker, chosen on these queries", _best_per_asker(routing)),
    ):
        if not rows:
            continue
        for key, who in (("gap_all", "all candidates"), ("gap_others", "other models only")):
            worst = max(r[key] for r in rows)
            met = "met" if worst <= 0.03 else "NOT met"
            lines.append(
                f"- Cross-model routing within 3 points of same-model routing ({label}, "
                f"{who}): {met}; largest gap {100 * worst:+.1f} points."
            )
    transfer = results.get("transfer")
    if transfer:
        gain = transfer["gain_over_alone"]
        met = "met" if gain >= 0.03 else "NOT met"
        lines.append(
            f"- Transfer gives the small client >= +3 points over training alone: {met}; "
            f"{100 * gain:+.1f} points."
        )
    return lines


def _best_per_asker(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    best: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r["asker_model"] not in best or r["gap_all"] < best[r["asker_model"]]["gap_all"]:
            best[r["asker_model"]] = r
    return list(best.values())


def write_results(results: dict[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``representation-<stamp>.json`` and ``.md``; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"representation-{results['stamp']}"
    json_path = stem.with_suffix(".json")
    json_path.write_text(json.dumps(results, indent=2, allow_nan=False) + "\n")
    cfg = results["config"]
    lines = [
        f"# Representation layer benchmark ({results['stamp']})",
        "",
        f"Network space: `{cfg['reference']}`. Public corpus: `{cfg['corpus']}` "
        f"({cfg['fit_texts']} fitting texts, {cfg['pool']} held out), max length "
        f"{cfg['max_length']} tokens. Run time {results['seconds']:.0f} s.",
        "",
        "## Targets",
        "",
        *_targets(results),
        "",
        "## 1. Map fit (held out)",
        "",
        "| source | method | paired cosine | recall@1 among pool | pool | fit s |",
        "|---|---|---|---|---|---|",
    ]
    for r in results["fit"]:
        lines.append(
            f"| {r['source']} | {r['method']} | {r['paired_cosine']:.3f} | "
            f"{r['recall_at_1']:.3f} | {r['pool']} | {r['fit_s']} |"
        )
    if results.get("routing"):
        first = results["routing"][0]
        lines += [
            "",
            "## 2. Routing accuracy (chosen client holds the query's data set)",
            "",
            f"{first['queries']} queries from {', '.join(cfg['routing_datasets'])}; "
            f"{cfg['clients_per_dataset']} clients per data set on each model, sketches at "
            f"epsilon {first['sketch_epsilon']}.",
            "",
            "| asker model | map | same model | cross model (all) | cross model (others only) "
            "| gap (all) |",
            "|---|---|---|---|---|---|",
        ]
        for r in results["routing"]:
            lines.append(
                f"| {r['asker_model']} | {r['method']} | {r['same_model']:.3f} | "
                f"{r['cross_model_all']:.3f} | {r['cross_model_others']:.3f} | "
                f"{100 * r['gap_all']:+.1f} pt |"
            )
    t = results.get("transfer")
    if t:
        lines += [
            "",
            "## 3. Knowledge transfer to a small client",
            "",
            f"Task `{t['task']}`; small client: {t['small_examples']} examples on "
            f"`{t['small_model']}`, {t['steps']} steps; {t['other_clients']} clients of "
            f"{t['other_examples']} examples on `{t['other_model']}` share DP prototypes "
            f"(epsilon {t['prototype_epsilon']} each; weight {t['prototype_weight']}); the "
            f"one-model federation has {t['other_clients']} such clients on `{t['small_model']}` "
            f"({t['federation_rounds']} rounds). Accuracy on {t['test_examples']} held-out texts.",
            "",
            "| small client | accuracy |",
            "|---|---|",
            f"| alone | {t['alone']:.3f} |",
            f"| with prototypes from {t['other_model']} | {t['with_prototypes']:.3f} |",
            f"| one-model federation | {t['one_model_federation']:.3f} |",
            "",
            f"Gain over alone: {100 * t['gain_over_alone']:+.1f} points.",
        ]
    md_path = stem.with_suffix(".md")
    md_path.write_text("\n".join(lines) + "\n")
    return json_path, md_path


# -- command line ------------------------------------------------------------------------


_INT_HELP = {
    "fit_texts": "public texts the maps are fitted on",
    "pool": "held-out public texts for paired cosine and recall@1",
    "max_length": "tokens per text",
    "steps": "local training steps in the transfer part",
    "rounds": "rounds of the one-model federation baseline",
    "seed": "seed of every sample and split",
    "threads": "torch threads",
    "examples_per_client": "examples of each routing client",
    "queries_per_dataset": "routing queries per data set",
    "small_examples": "examples of the small transfer client",
    "other_examples": "examples of each peer that sends prototypes",
}


def add_arguments(p: Any) -> None:
    """Options of ``fednet bench-representation`` (defaults: :class:`RepresentationBenchConfig`)."""
    d = RepresentationBenchConfig()
    p.add_argument("--models", default=",".join(d.models), help="comma-separated base models")
    p.add_argument("--reference", default=d.reference, help="base model of the network space")
    p.add_argument("--other-model", default=d.other_model, help="model of the transfer's peers")
    p.add_argument("--corpus", default=d.corpus, help="public corpus the maps are fitted on")
    p.add_argument("--methods", default=",".join(d.methods), help="comma-separated map methods")
    p.add_argument("--parts", default=",".join(d.parts), help="fit, routing, transfer")
    ints = ("fit_texts", "pool", "max_length", "steps", "rounds", "seed", "threads")
    ints += ("examples_per_client", "queries_per_dataset", "small_examples", "other_examples")
    for name in ints:
        p.add_argument(
            f"--{name.replace('_', '-')}",
            type=int,
            default=getattr(d, name),
            help=_INT_HELP[name],
        )
    p.add_argument(
        "--prototype-weight",
        type=float,
        default=d.prototype_weight,
        help="weight of FedProto's alignment term in the transfer part",
    )
    p.add_argument(
        "--sketch-epsilon",
        type=float,
        default=d.sketch_epsilon,
        help="epsilon of each client's routing sketch",
    )
    p.add_argument("--out", default="bench/results", help="directory of the JSON and Markdown")
    p.add_argument(
        "--cache-dir",
        default=str(Path.home() / ".cache" / "fednet" / "bench-embeddings"),
        help="embedding cache",
    )
    p.add_argument(
        "--embed-only",
        default="",
        help="only fill the embedding cache for these comma-separated models, then exit",
    )


def main(args: Any) -> int:
    """Run ``fednet bench-representation``; print the Markdown and where the files are."""

    def split(value: str) -> tuple[str, ...]:
        return tuple(v.strip() for v in value.split(",") if v.strip())

    cfg = RepresentationBenchConfig(
        models=split(args.models),
        reference=args.reference,
        other_model=args.other_model,
        corpus=args.corpus,
        methods=split(args.methods),
        parts=split(args.parts),
        fit_texts=args.fit_texts,
        pool=args.pool,
        max_length=args.max_length,
        steps=args.steps,
        rounds=args.rounds,
        examples_per_client=args.examples_per_client,
        queries_per_dataset=args.queries_per_dataset,
        small_examples=args.small_examples,
        other_examples=args.other_examples,
        seed=args.seed,
        threads=args.threads,
        prototype_weight=args.prototype_weight,
        sketch_epsilon=args.sketch_epsilon,
    )

    def say(line: str) -> None:
        print(line, flush=True)

    if args.embed_only:
        for model in split(args.embed_only):
            precompute_embeddings(cfg, model, cache_dir=args.cache_dir, progress=say)
        return 0
    results = run_representation_bench(
        cfg, out_dir=args.out, cache_dir=args.cache_dir, progress=say
    )
    if "transfer_baselines" in results:
        print(json.dumps(results["transfer_baselines"], indent=2))
        return 0
    json_path, md_path = write_results(results, args.out)
    print(md_path.read_text())
    print(f"json: {json_path}")
    return 0
