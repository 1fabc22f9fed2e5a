"""``fednet bench`` and ``fednet bench-aggregation``: the benchmarks."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from fednet.cli._common import add_command, check_positive
from fednet.errors import FednetError

__all__ = ["register", "cmd_bench", "cmd_bench_aggregation"]

logger = logging.getLogger("fednet.cli")


def register(sub: argparse._SubParsersAction) -> None:
    _add_bench(sub)
    _add_bench_aggregation(sub)
    _add_bench_representation(sub)


def _add_bench_representation(sub: argparse._SubParsersAction) -> None:
    from fednet.bench import representation

    p = add_command(
        sub,
        "bench-representation",
        help="fit of each map, routing across models, prototype transfer to a small client",
        description="Fit maps from each base model into the network space on public text, "
        "route queries across models, and measure prototype transfer to a small client; "
        "write JSON and Markdown under bench/results.",
    )
    representation.add_arguments(p)
    p.set_defaults(func=lambda args: representation.main(args))


def _add_bench(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "bench",
        help="benchmark the network against one big model: figures, plots, targets",
        description="Train every way of answering on one preset, ask each of them the same "
        "queries, and write a Markdown and JSON report with plots and the targets met.",
    )
    p.add_argument(
        "--config",
        default=None,
        help="TOML preset (default: configs/default.toml, or tiny with --quick)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="tiny-bert, short rounds, few queries: a smoke run of every stage",
    )
    p.add_argument("--out", default="bench/results", help="directory of the report and plots")
    p.add_argument("--queries", type=int, default=None, help="measured queries per data set")
    p.add_argument("--warmup", type=int, default=None, help="router warm-up queries per data set")
    p.add_argument(
        "--clients-at-once",
        type=int,
        default=None,
        help="clients each simulation runs concurrently (default: one per core)",
    )
    p.add_argument(
        "--sections",
        default=None,
        help="comma-separated extra sections: routing, privacy, or none "
        "(default: routing,privacy; routing with --quick)",
    )
    p.add_argument(
        "--reuse",
        default=None,
        help="a previous <time>-work directory: reuse its runs, centralized model and sections",
    )
    p.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    """Run the benchmark with a progress bar; print the table and the targets."""
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    from fednet.bench import BenchConfig, run_bench
    from fednet.bench.markdown import human_bytes
    from fednet.bench.runner import STAGES

    options: dict[str, object] = {"out_dir": args.out, "clients_at_once": args.clients_at_once}
    if args.clients_at_once is not None and args.clients_at_once < 1:
        raise FednetError(f"`--clients-at-once` must be >= 1, got {args.clients_at_once}")
    if args.sections is not None:
        chosen = {s.strip() for s in args.sections.split(",") if s.strip()} - {"none"}
        unknown = sorted(chosen - {"routing", "privacy"})
        if unknown:
            raise FednetError(
                f"`--sections`: unknown section(s) {', '.join(unknown)}; valid: routing, privacy"
            )
        options["routing_section"] = "routing" in chosen
        options["privacy_section"] = "privacy" in chosen
    if args.config:
        options["preset"] = args.config
    if args.queries is not None:
        options["queries_per_dataset"] = args.queries
    if args.warmup is not None:
        options["warmup_per_dataset"] = args.warmup
    if args.reuse is not None:
        if not Path(args.reuse).is_dir():
            raise FednetError(f"`--reuse` {args.reuse!r} is not a directory")
        options["reuse"] = args.reuse
    config = BenchConfig.quick_mode(**options) if args.quick else BenchConfig(**options)  # type: ignore[arg-type]
    # On a terminal a bar; elsewhere the stage log lines are the progress display.
    with (
        tqdm(
            total=len(STAGES), unit="stage", file=sys.stderr, disable=not sys.stderr.isatty()
        ) as bar,
        logging_redirect_tqdm(loggers=[logging.getLogger("fednet")]),
    ):

        def progress(stage: str, index: int, total: int) -> None:
            bar.n = index
            bar.set_description(stage)
            bar.refresh()

        report = run_bench(config, progress=progress)
        bar.n = len(STAGES)
        bar.set_description("done")
    for row in report["rows"]:
        print(
            f"{row['name']:<56} accuracy {row['accuracy']:.3f}  "
            f"p50 {row['latency_p50_ms']:7.1f} ms  "
            f"{row['cpu_s_per_1000']:7.1f} CPU-s/1k  "
            f"shared {human_bytes(row['bytes_shared_per_client'])}"
        )
    for t in report["targets"]:
        print(f"{'met' if t['met'] else 'NOT MET':<8} {t['target']}")
    print(f"report: {report['paths']['markdown']}")
    print(f"json:   {report['paths']['json']}")
    return 0


def _add_bench_aggregation(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "bench-aggregation",
        help="accuracy and bytes of each rank-aggregation; attacks with and without each wrapper",
        description="Measure accuracy and upload bytes per rank-aggregation method, and "
        "accuracy and backdoor success with one malicious client (--malicious) under each "
        "attack, with and without each robust wrapper. Writes <out>/aggregation-<time>.json "
        "and .md, rewritten after every row.",
    )
    p.add_argument("--config", default="configs/default.toml", help="TOML preset")
    p.add_argument("--grouping", default="base-model", help="strategy.lora-grouping of every run")
    p.add_argument("--rounds", type=int, default=None, help="override federation.rounds")
    p.add_argument("--methods", default="fedit,rank-wise,svd,frozen-a", help="comma-separated")
    p.add_argument(
        "--attacks",
        default="norm-x100,sign-flip,gaussian-noise,label-flip,backdoor",
        help="comma-separated, or none",
    )
    p.add_argument(
        "--wrappers",
        default="none,norm-bound,trimmed-mean,median,multi-krum",
        help="comma-separated strategy.robust values run under each attack",
    )
    p.add_argument(
        "--malicious",
        type=int,
        default=None,
        help="index of the malicious client (default: the first sms-spam client)",
    )
    p.add_argument(
        "--no-clean",
        action="store_true",
        help="skip the clean reference row (another report of the same settings holds it)",
    )
    p.add_argument("--out", default="bench/results", help="directory of the JSON and Markdown")
    p.set_defaults(func=cmd_bench_aggregation)


def cmd_bench_aggregation(args: argparse.Namespace) -> int:
    """Run the aggregation benchmark; print where its tables are."""
    from fednet.bench.aggregation import ATTACKS, run_aggregation_bench
    from fednet.config import LORA_GROUPINGS, RANK_AGGREGATIONS, ROBUST_RULES

    def names(value: str, valid: Sequence[str], flag: str) -> list[str]:
        chosen = [v.strip() for v in value.split(",") if v.strip()]
        if flag != "--wrappers":  # "none" is a wrapper, but no method or attack
            chosen = [v for v in chosen if v != "none"]
        bad = [v for v in chosen if v not in valid]
        if bad:
            raise FednetError(f"`{flag}`: unknown {', '.join(bad)}; valid: {', '.join(valid)}")
        return chosen

    if args.grouping not in LORA_GROUPINGS:
        raise FednetError(f"`--grouping` must be one of {', '.join(LORA_GROUPINGS)}")
    check_positive("--rounds", args.rounds)
    report = run_aggregation_bench(
        args.config,
        args.out,
        grouping=args.grouping,
        methods=names(args.methods, RANK_AGGREGATIONS, "--methods"),
        attacks=names(args.attacks, ATTACKS, "--attacks"),
        wrappers=names(args.wrappers, ROBUST_RULES, "--wrappers"),
        rounds=args.rounds,
        malicious=args.malicious,
        clean=not args.no_clean,
        progress=lambda label: logger.info("running %s", label),
    )
    print(Path(report["paths"]["markdown"]).read_text())
    print(f"json: {report['paths']['json']}")
    return 0
