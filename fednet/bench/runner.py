"""``fednet bench``: train every row on one preset, answer one query stream, report.

Stages, in order: the three federated runs (fednet, local-only, generalist) as
Flower simulations; the centralized model in this process; the six rows
answered through hubs and loopback peers; the routing and privacy sections
when their modules are installed; the plots and the report. Each stage is
logged, timed and announced to an optional progress callback.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fednet.bench.config import BenchConfig
from fednet.bench.queries import query_streams, task_of_dataset
from fednet.bench.report import ROWS, SCHEMA, evaluate_targets
from fednet.bench.runs import bench_federation, simulate_variant, train_centralized, variant
from fednet.bench.sections import privacy_section, reused_json, routing_section, run_section
from fednet.config import FederationConfig

__all__ = ["STAGES", "Progress", "run_bench"]

logger = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
"""Called with ``(stage, index, total)`` as each stage starts."""

STAGES = (
    "train fednet",
    "train local-only",
    "train generalist",
    "train centralized",
    "answer local-only",
    "answer centralized and generalist",
    "answer fednet (warm-up, routed, broadcast, oracle)",
    "routing section",
    "privacy section",
    "plots and report",
)


class _Stages:
    """Announces, logs and times stages; keeps the times in ``record`` (JSON).

    A stage marked reused keeps the time recorded by the run that did it.
    """

    def __init__(self, progress: Progress | None, record: Path, *, reuse: bool) -> None:
        self.progress = progress
        self.record = record
        self.recorded: dict[str, float] = {}
        if reuse and record.is_file():
            self.recorded = dict(json.loads(record.read_text(encoding="utf-8")))
        self.timings: dict[str, float] = {}
        self.reused: list[str] = []

    def mark_reused(self, name: str) -> None:
        """The current stage's work was done by an earlier run."""
        self.reused.append(name)

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        index = STAGES.index(name)
        logger.info("bench [%d/%d] %s", index + 1, len(STAGES), name)
        if self.progress is not None:
            self.progress(name, index, len(STAGES))
        started = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - started
            if name in self.reused and name in self.recorded:
                elapsed = self.recorded[name]
            self.timings[name] = elapsed
            self.record.parent.mkdir(parents=True, exist_ok=True)
            self.record.write_text(
                json.dumps({**self.recorded, **self.timings}, indent=2), encoding="utf-8"
            )


def _stamp(out: Path) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    n, candidate = 1, stamp
    while (out / f"{candidate}.json").exists() or (out / f"{candidate}-work").exists():
        n += 1
        candidate = f"{stamp}-{n}"
    return candidate


def _privacy_note(summary: Mapping[str, Any]) -> str:
    privacy = summary.get("privacy", {})
    if privacy.get("updates_private"):
        return "updates and sketch under DP (ledger ε)"
    return "updates not DP; ε covers the DP sketch only"


def _shared(summary: Mapping[str, Any]) -> dict[str, int]:
    return {cid: int(c["bytes_up_total"]) for cid, c in sorted(summary["clients"].items())}


def _columns(
    bytes_by: Mapping[str, int], eps_by: Mapping[str, float | None], privacy: str
) -> dict[str, Any]:
    known = [v for v in eps_by.values() if v is not None]
    return {
        "bytes_shared_by_client": dict(bytes_by),
        "bytes_shared_per_client": sum(bytes_by.values()) / len(bytes_by) if bytes_by else 0.0,
        "epsilon_by_client": dict(eps_by),
        "epsilon_max": max(known) if known else None,
        "privacy": privacy,
    }


def _machine() -> dict[str, Any]:
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "processor": platform.processor() or platform.machine(),
        "load_average_at_start": list(os.getloadavg()),
    }


def _runs(
    summaries: Mapping[str, Mapping[str, Any]],
    central: Mapping[str, Any],
    run_dirs: Mapping[str, Path],
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, s in summaries.items():
        out[name] = {
            "run_dir": str(run_dirs[name]),
            "strategy": s["strategy"],
            "rounds": s["rounds_completed"],
            "wall_s": s["wall_s"],
            "final": s["final"],
            "tasks": {
                t: {k: v[k] for k in ("accuracy", "personalized")} for t, v in s["tasks"].items()
            },
        }
    out["centralized"] = {k: v for k, v in central.items() if k != "label_names"}
    return out


def run_bench(config: BenchConfig, *, progress: Progress | None = None) -> dict[str, Any]:
    """Run the whole benchmark; write ``<stamp>.json``, ``<stamp>.md`` and the plots.

    Returns
    -------
    dict
        The report, with ``paths`` naming the files written.
    """
    from fednet.bench import runstats
    from fednet.bench.markdown import render_markdown
    from fednet.bench.plots import write_plots
    from fednet.bench.rows import answer_fednet, answer_local, answer_union

    started = time.perf_counter()
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stamp = _stamp(out)
    work = Path(config.reuse) if config.reuse else out / f"{stamp}-work"
    if config.reuse:
        # Only a benchmark's own work directory (it wrote timings.json) is reused: its
        # hubs, caches and unfinished runs are deleted, so never those of any other.
        if not (work / "timings.json").is_file():
            raise ValueError(
                f"`--reuse` {str(work)!r} is not a benchmark work directory "
                "(no timings.json); give a <time>-work directory a benchmark wrote"
            )
        # Trained runs and finished sections are kept; hubs and peer caches are rebuilt.
        for stale in ("hubs", "cache"):
            shutil.rmtree(work / stale, ignore_errors=True)
    machine = _machine()
    cfg: FederationConfig = bench_federation(config)
    streams = query_streams(
        cfg,
        per_dataset=config.queries_per_dataset,
        warmup_per_dataset=config.warmup_per_dataset,
        seed=config.seed,
    )
    tasks = task_of_dataset(cfg)
    stage = _Stages(progress, work / "timings.json", reuse=bool(config.reuse))
    lanes = config.clients_at_once or max(1, min(os.cpu_count() or 1, len(cfg.clients)))
    run_dirs = {name: work / "runs" / name for name in ("fednet", "local", "generalist")}
    summaries: dict[str, dict[str, Any]] = {}
    variants = {
        name: variant(
            cfg,
            name,
            eval_examples=config.baseline_eval_examples,
            sketch_examples=config.baseline_sketch_examples,
        )
        for name in run_dirs
    }
    for name, title in (
        ("fednet", "train fednet"),
        ("local", "train local-only"),
        ("generalist", "train generalist"),
    ):
        with stage(title):
            done = run_dirs[name] / "summary.json"
            if config.reuse and done.is_file():
                logger.info("reusing %s", run_dirs[name])
                stage.mark_reused(title)
                summaries[name] = json.loads(done.read_text(encoding="utf-8"))
            else:
                shutil.rmtree(run_dirs[name], ignore_errors=True)
                summaries[name] = simulate_variant(
                    variants[name], run_dirs[name], clients_at_once=lanes
                )
    with stage("train centralized"):
        done = work / "centralized.json"
        if config.reuse and done.is_file():
            logger.info("reusing %s", work / "centralized")
            stage.mark_reused("train centralized")
            central = json.loads(done.read_text(encoding="utf-8"))
        else:
            central = train_centralized(cfg, work / "centralized")
            done.write_text(json.dumps(central, indent=2), encoding="utf-8")
    rows: dict[str, dict[str, Any]] = {}
    threshold = config.confidence_threshold
    with stage("answer local-only"):
        rows["local"] = answer_local(
            cfg, run_dirs["local"], streams, tasks, work=work, threshold=threshold
        )
    with stage("answer centralized and generalist"):
        rows.update(
            answer_union(
                cfg,
                run_dirs["generalist"],
                central,
                streams,
                tasks,
                work=work,
                threshold=threshold,
            )
        )
    with stage("answer fednet (warm-up, routed, broadcast, oracle)"):
        fed_rows, confusion = answer_fednet(
            cfg,
            run_dirs["fednet"],
            streams,
            tasks,
            work=work,
            top_k=config.top_k,
            threshold=threshold,
        )
        rows.update(fed_rows)
    sections: dict[str, Any] = {}
    for title, key, enabled, path, run in (
        (
            "routing section",
            "routing_bench",
            config.routing_section,
            work / "routing" / "routing.json",
            lambda: routing_section(config, run_dirs["fednet"], work),
        ),
        (
            "privacy section",
            "privacy_bench",
            config.privacy_section,
            work / "privacy" / "privacy.json",
            lambda: privacy_section(config, work),
        ),
    ):
        with stage(title):
            previous = reused_json(config, path) if enabled else None
            if not enabled:
                sections[key] = {"skipped": "turned off"}
            elif previous is not None:
                stage.mark_reused(title)
                sections[key] = previous
            else:
                sections[key] = run_section(title.split()[0], run)

    fed, gen = summaries["fednet"], summaries["generalist"]
    columns = {
        "local": _columns(
            {c.id: 0 for c in cfg.clients},
            {c.id: 0.0 for c in cfg.clients},
            "nothing leaves a client; the oracle that routes is hypothetical",
        ),
        "centralized": _columns(
            central["raw_bytes_by_client"],
            {c.id: None for c in cfg.clients},
            "no privacy: every client hands over its raw training text",
        ),
        "generalist": _columns(_shared(gen), runstats.client_epsilons(gen), _privacy_note(gen)),
    }
    fed_columns = _columns(_shared(fed), runstats.client_epsilons(fed), _privacy_note(fed))
    examples: dict[str, float] = {}
    for c in cfg.clients:
        examples[c.dataset] = examples.get(c.dataset, 0) + gen["clients"][c.id]["num_examples"]
    rows["generalist"]["fedavg_weight_by_dataset"] = {
        d: n / sum(examples.values()) for d, n in examples.items()
    }
    report_rows = []
    for key, title in ROWS:
        report_rows.append(
            {"key": key, "name": title, **rows[key], **columns.get(key, fed_columns)}
        )
    communication = runstats.communication(fed)
    overhead = {
        name: runstats.flower_overhead(s, clients_at_once=lanes) for name, s in summaries.items()
    }
    accuracy = {
        name: runstats.accuracy_per_round(s, variants[name]) for name, s in summaries.items()
    }
    epsilon = runstats.epsilon_per_round(fed)
    targets = evaluate_targets(
        report_rows,
        communication=communication,
        overhead=overhead["fednet"],
        ranks={c.id: c.lora_rank for c in cfg.clients},
        confusion=confusion,
    )
    with stage("plots and report"):
        plots = write_plots(
            out,
            stamp,
            accuracy=accuracy,
            epsilon=epsilon,
            confusion=confusion,
            communication=communication,
        )
        machine["load_average_at_end"] = list(os.getloadavg())
        report: dict[str, Any] = {
            "schema": SCHEMA,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "preset": cfg.source,
            "quick": config.quick,
            "machine": machine,
            "config": {k: v for k, v in vars(config).items()},
            "federation": {
                "clients": [
                    {
                        "id": c.id,
                        "dataset": c.dataset,
                        "task": c.task,
                        "rank": c.lora_rank,
                        "local_steps": c.local_steps,
                    }
                    for c in cfg.clients
                ],
                "rounds": cfg.rounds,
                "personalize_steps": cfg.personalize_steps,
                "base_model": cfg.base_model,
            },
            "queries": {
                "datasets": list(streams.datasets),
                "measured": len(streams.measured),
                "warmup": len(streams.warmup),
                "per_dataset": config.queries_per_dataset,
                "warmup_per_dataset": config.warmup_per_dataset,
                "duplicates_of_training_texts_dropped": dict(streams.duplicates_dropped),
            },
            "rows": report_rows,
            "targets": targets,
            "runs": _runs(summaries, central, run_dirs),
            "overhead": overhead,
            "communication": communication,
            "accuracy_per_round": accuracy,
            "epsilon_per_round": epsilon,
            "router_confusion": confusion,
            "plots": plots,
            "sections": sections,
            "timings": dict(stage.timings),
            "reused_stages": list(stage.reused),
            "wall_s": 0.0,
            "stages_s": sum(stage.timings.values()),
        }
        report["wall_s"] = time.perf_counter() - started
        json_path, md_path = out / f"{stamp}.json", out / f"{stamp}.md"
        md_path.write_text(render_markdown(report), encoding="utf-8")
        json_path.write_text(json.dumps(report, indent=2, sort_keys=False), encoding="utf-8")
    report["paths"] = {"json": str(json_path), "markdown": str(md_path), "work": str(work)}
    logger.info("bench report: %s (%.0fs)", md_path, report["wall_s"])
    return report
