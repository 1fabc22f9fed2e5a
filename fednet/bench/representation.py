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

from fednet.bench.representation_setup import (
    EmbeddingCache,
    Progress,
    RepresentationBenchConfig,
    paired_difference_interval,
    wilson_interval,
)

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
    # held-out pool first, so it stays the same texts whatever `fit_texts` is
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
    """Fit every method per source model; choose one on a held-out public slice.

    The corpus sample is ``[pool | fitting texts]``: the pool scores the figures;
    of the fitting texts, the first ``fit_texts // 6`` (the selection slice) are
    held out from fitting and choose each source model's map (``maps[m]["selected"]``)
    by :func:`~fednet.representation.maps.select_map`; the rest fit the maps.
    """
    from fednet.representation.artifact import map_name, save_map
    from fednet.representation.corpus import check_disjoint, corpus_digest
    from fednet.representation.maps import create_map, fit_quality, select_map

    chosen = _corpus_texts(cfg)
    progress(f"checking {cfg.corpus} is disjoint from the client catalogue")
    check_disjoint(chosen)
    digest = corpus_digest(chosen)
    y = emb(cfg.reference, chosen)
    n_select = len(corpus_split(cfg, chosen)[1])
    rows: list[dict[str, Any]] = []
    maps: dict[str, dict[str, Any]] = {}
    for model in cfg.models:
        if model == cfg.reference:
            continue
        x = emb(model, chosen)
        xt, yt = x[: cfg.pool], y[: cfg.pool]
        xs, ys = x[cfg.pool : cfg.pool + n_select], y[cfg.pool : cfg.pool + n_select]
        xf, yf = x[cfg.pool + n_select :], y[cfg.pool + n_select :]
        maps[model] = {}
        model_rows = []
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
            model_rows.append(
                {
                    "source": model,
                    "network_space": cfg.reference,
                    "method": method,
                    **q.to_dict(),
                    "fit_pairs": int(xf.shape[0]),
                    "fit_s": round(seconds, 2),
                    **({"alpha": m.hyperparameters().get("alpha")} if method == "ridge" else {}),
                }
            )
            progress(
                f"  {model} -> {cfg.reference} {method}: cos {q.paired_cosine:.3f}, "
                f"R@1 {q.recall_at_1:.3f}"
            )
        learned = {k: v for k, v in maps[model].items() if k != "mean"} or maps[model]
        best, scores = select_map(learned, xs, ys)
        maps[model]["selected"] = maps[model][best]
        for row in model_rows:
            score = scores.get(str(row["method"]))
            row["selection_recall_at_1"] = None if score is None else score.recall_at_1
            row["selection_paired_cosine"] = None if score is None else score.paired_cosine
            row["selection_pairs"] = n_select
            row["selected"] = row["method"] == best
        rows += model_rows
        progress(f"  {model}: {best} chosen on {n_select} held-out public texts")
    return rows, maps


def corpus_split(
    cfg: RepresentationBenchConfig, texts: list[str]
) -> tuple[list[str], list[str], list[str]]:
    """``(pool, selection, fit)`` slices of the corpus sample ``texts``.

    The held-out pool comes first, so it is the same texts whatever
    ``fit_texts`` is; a sixth of the fitting texts (at least 5) is held out to
    choose the map; the rest fit it.
    """
    n_select = max(5, cfg.fit_texts // 6)
    pool, rest = texts[: cfg.pool], texts[cfg.pool : cfg.pool + cfg.fit_texts]
    return pool, rest[:n_select], rest[n_select:]


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


def _route_hits(
    matcher: Any, candidates: list[Any], queries: list[tuple[str, str]], embedder: Any
) -> list[bool]:
    """Per query: whether the best-matching candidate holds the query's data set."""
    from fednet.routing import Query

    hits = []
    for text, dataset in queries:
        matches = matcher.match(Query(text, embedder), candidates)
        best = max(range(len(candidates)), key=lambda i: matches[i].similarity)
        hits.append(candidates[best].task == dataset)
    return hits


def _accuracy_fields(name: str, hits: list[bool]) -> dict[str, Any]:
    low, high = wilson_interval(sum(hits), len(hits))
    return {name: sum(hits) / len(hits), f"{name}_ci95": [low, high]}


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
        same_hits = _route_hits(
            SketchMatcher(emb.lookup, router_cfg), candidates[asker], queries, emb.lookup
        )
        same = sum(same_hits) / len(same_hits)
        methods = (*cfg.methods, "selected") if len(cfg.models) > 1 else ()
        for method in methods:
            space = NetworkSpace(
                reference=cfg.reference,
                dim=dim,
                maps={m: maps[m][method] for m in cfg.models if m != cfg.reference},
            )
            every = [c for model in cfg.models for c in candidates[model]]
            others = [c for model in cfg.models if model != asker for c in candidates[model]]
            hits = {}
            for key, pool in (("cross_model_all", every), ("cross_model_others", others)):
                hits[key] = _route_hits(
                    NetworkSketchMatcher(emb.lookup, router_cfg, space=space, asker_model=asker),
                    pool,
                    queries,
                    emb.lookup,
                )
            row = {
                "asker_model": asker,
                "method": method,
                **(
                    {"maps": {m: maps[m][method].method for m in maps}}
                    if method == "selected"
                    else {}
                ),
                **_accuracy_fields("same_model", same_hits),
                **_accuracy_fields("cross_model_all", hits["cross_model_all"]),
                **_accuracy_fields("cross_model_others", hits["cross_model_others"]),
                "queries": len(queries),
                "candidates_all": len(every),
                "sketch_epsilon": cfg.sketch_epsilon,
            }
            for key, name in (("cross_model_all", "gap_all"), ("cross_model_others", "gap_others")):
                row[name] = row["same_model"] - row[key]
                row[f"{name}_ci95"] = list(
                    paired_difference_interval(same_hits, hits[key], seed=cfg.seed)
                )
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
    """Whether the issue's targets are met, on maps fixed before the routing queries.

    Routing is judged with the ridge map and with each source model's map chosen
    on held-out public text (``selected``); the map that is best on the routing
    queries themselves is shown apart, as it is chosen on the test set.
    """
    lines = []
    routing = [r for r in results.get("routing", []) if r["method"] != "mean"]
    for label, rows in (
        ("ridge map", [r for r in routing if r["method"] == "ridge"]),
        (
            "map chosen on held-out public text",
            [r for r in routing if r["method"] == "selected"],
        ),
    ):
        if not rows:
            continue
        for key, who in (("gap_all", "all candidates"), ("gap_others", "other models only")):
            worst = max(rows, key=lambda r: r[key])
            met = "met" if worst[key] <= 0.03 else "NOT met"
            low, high = worst.get(f"{key}_ci95", (float("nan"), float("nan")))
            lines.append(
                f"- Cross-model routing within 3 points of same-model routing ({label}, "
                f"{who}): {met}; largest gap {100 * worst[key]:+.1f} points "
                f"(asker {worst['asker_model']}, 95% CI {100 * low:+.1f} to {100 * high:+.1f})."
            )
    chosen_on_test = _best_per_asker([r for r in routing if r["method"] != "selected"])
    if chosen_on_test:
        worst = max(r["gap_all"] for r in chosen_on_test)
        lines.append(
            f"- Not a target figure (map chosen on these routing queries, i.e. on the test "
            f"set): largest gap, all candidates, {100 * worst:+.1f} points."
        )
    transfer = results.get("transfer")
    if transfer:
        gain = transfer["gain"]
        met = "met" if gain >= 0.03 else "NOT met"
        low, high = transfer.get("gain_ci95", (float("nan"), float("nan")))
        baseline = {"alone": "random head", "alone_prototypes": "its own prototypes"}.get(
            transfer.get("target_baseline", "alone"), "random head"
        )
        lines.append(
            f"- Transfer gives the small client >= +3 points over training alone (the "
            f"stronger alone arm on the test texts, {baseline}: a choice that can only make "
            f"the target harder, and that the interval does not count): {met}; "
            f"{100 * gain:+.1f} points (95% CI {100 * low:+.1f} to {100 * high:+.1f})."
        )
    return lines


def _best_per_asker(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    best: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r["asker_model"] not in best or r["gap_all"] < best[r["asker_model"]]["gap_all"]:
            best[r["asker_model"]] = r
    return list(best.values())


def _with_ci(row: dict[str, Any], key: str, *, points: bool = False) -> str:
    value = row[key]
    ci = row.get(f"{key}_ci95")
    if points:
        text = f"{100 * value:+.1f}"
        return text if ci is None else f"{text} [{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]"
    return f"{value:.3f}" if ci is None else f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"


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
        "Scored on the held-out pool; each source model's map is chosen by recall@1 "
        "(ties: paired cosine) on a further held-out slice of public text (`selection R@1`).",
        "",
        "| source | method | paired cosine | recall@1 among pool | pool | fit pairs "
        "| selection R@1 | chosen | fit s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["fit"]:
        sel = r.get("selection_recall_at_1")
        lines.append(
            f"| {r['source']} | {r['method']} | {r['paired_cosine']:.3f} | "
            f"{r['recall_at_1']:.3f} | {r['pool']} | {r.get('fit_pairs', cfg['fit_texts'])} | "
            f"{'-' if sel is None else f'{sel:.3f}'} | {'yes' if r.get('selected') else ''} | "
            f"{r['fit_s']} |"
        )
    if results.get("routing"):
        first = results["routing"][0]
        lines += [
            "",
            "## 2. Routing accuracy (chosen client holds the query's data set)",
            "",
            f"{first['queries']} queries from {', '.join(cfg['routing_datasets'])}; "
            f"{cfg['clients_per_dataset']} clients of {cfg['examples_per_client']} examples per "
            f"data set on each model, sketches at epsilon {first['sketch_epsilon']}. "
            "Accuracies with 95% Wilson intervals; gaps (same minus cross, points) with 95% "
            "paired bootstrap intervals over the queries. `selected`: each source model's map "
            "chosen on held-out public text.",
            "",
            "| asker model | map | same model | cross model (all) | cross model (others only) "
            "| gap (all) | gap (others) |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in results["routing"]:
            name = r["method"]
            if name == "selected":
                name += " (" + ", ".join(f"{k}: {v}" for k, v in r["maps"].items()) + ")"
            lines.append(
                f"| {r['asker_model']} | {name} | {_with_ci(r, 'same_model')} | "
                f"{_with_ci(r, 'cross_model_all')} | {_with_ci(r, 'cross_model_others')} | "
                f"{_with_ci(r, 'gap_all', points=True)} | "
                f"{_with_ci(r, 'gap_others', points=True)} |"
            )
    t = results.get("transfer")
    if t:
        lines += [
            "",
            "## 3. Knowledge transfer to a small client",
            "",
            f"Task `{t['task']}`; small client: {t['small_examples']} examples on "
            f"`{t['small_model']}` ({t['small_train']} to train, {t['small_validation']} to "
            f"choose the learning rate among {', '.join(f'{x:g}' for x in t['learning_rates'])}, "
            f"the same for every arm), {t['steps']} steps; {t['other_clients']} peers of "
            f"{t['other_examples']} examples each on `{t['other_model']}` share DP prototypes "
            f"(epsilon {t['prototype_epsilon']} each, mapped by the `{t['map']}` map). With "
            f"prototypes, the small client's head starts as FedProto's nearest-prototype rule and "
            f"its loss adds the alignment term (weight {t['prototype_weight']}); its own "
            f"prototypes cost it epsilon {t['small_client_epsilon']:.2f}. The one-model "
            f"federation trains the same peers' data on `{t['small_model']}` "
            f"({t['federation_rounds']} rounds of FedAvg). Accuracy on {t['test_examples']} "
            "held-out texts, with 95% Wilson intervals.",
            "",
            "| small client | accuracy | learning rate |",
            "|---|---|---|",
            f"| alone, random head | {_with_ci(t, 'alone')} | "
            f"{t['alone_detail']['learning_rate']:g} |",
            *(
                [
                    f"| alone, FedProto's recipe on its own exact prototypes | "
                    f"{_with_ci(t, 'alone_prototypes')} | "
                    f"{t['alone_prototypes_detail']['learning_rate']:g} |"
                ]
                if "alone_prototypes" in t
                else []
            ),
            *(
                [
                    f"| ablation: the same recipe on its own DP release only (no peers) | "
                    f"{_with_ci(t, 'own_release_only')} | "
                    f"{t['own_release_only_detail']['learning_rate']:g} |"
                ]
                if "own_release_only" in t
                else []
            ),
            f"| with prototypes from {t['other_model']} | {_with_ci(t, 'with_prototypes')} | "
            f"{t['with_prototypes_detail']['learning_rate']:g} |",
            f"| one-model federation | {_with_ci(t, 'one_model_federation')} | "
            f"{t['one_model_federation_detail']['learning_rate']:g} |",
            "",
            f"Gain over alone with a random head: {_with_ci(t, 'gain_over_alone', points=True)} "
            "points"
            + (
                f"; over alone with its own prototypes: "
                f"{_with_ci(t, 'gain_over_own', points=True)} points"
                if "gain_over_own" in t
                else ""
            )
            + (
                f"; what the peers' prototypes add (over the ablation): "
                f"{_with_ci(t, 'gain_from_peers', points=True)} points"
                if "gain_from_peers" in t
                else ""
            )
            + " (95% paired bootstrap intervals over the test texts).",
        ]
        diag = t.get("diagnostics")
        if diag:
            lines += [
                "",
                "What the frozen network space can carry (diagnostics on the same test texts; "
                "the probes on peer data are non-private upper bounds, not part of the system):",
                "",
                "| frozen-encoder classifier | accuracy |",
                "|---|---|",
                f"| nearest released global prototype, no training | "
                f"{diag['nearest_prototype']:.3f} |",
                f"| linear probe on the small client's own {t['small_train']} examples | "
                f"{diag['probe_own']:.3f} |",
                f"| linear probe on the peers' examples mapped from `{t['other_model']}` | "
                f"{diag['probe_peers_mapped']:.3f} |",
                f"| linear probe on the peers' examples embedded by `{t['small_model']}` (no map) "
                f"| {diag['probe_peers_native']:.3f} |",
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
    ints: tuple[str, ...] = ("fit_texts", "pool", "max_length", "steps", "rounds", "seed")
    ints += ("threads", "examples_per_client", "queries_per_dataset", "small_examples")
    ints += ("other_examples",)
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
