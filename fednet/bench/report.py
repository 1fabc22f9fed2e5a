"""The benchmark's targets, its JSON schema checks and its Markdown report."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

__all__ = [
    "SCHEMA",
    "REPORT_KEYS",
    "ROW_KEYS",
    "ROWS",
    "TARGET_KEYS",
    "evaluate_targets",
    "non_finite",
    "check_report",
]

SCHEMA = "fednet-bench/1"

ROWS: tuple[tuple[str, str], ...] = (
    ("local", "1. local-only, oracle routing"),
    ("centralized", "2. centralized, union head (non-private bound)"),
    ("generalist", "3. single generalist (FedAvg, union head, no routing)"),
    ("broadcast", "4. broadcast ensemble of all peers"),
    ("routed", "5. fednet routed (cascade, early exit)"),
    ("oracle", "6. oracle routing (fednet adapters)"),
)
"""Row keys and titles, in report order."""

REPORT_KEYS = (
    "schema",
    "created",
    "preset",
    "quick",
    "machine",
    "config",
    "queries",
    "rows",
    "targets",
    "runs",
    "overhead",
    "communication",
    "accuracy_per_round",
    "epsilon_per_round",
    "router_confusion",
    "plots",
    "sections",
    "timings",
    "wall_s",
)
ROW_KEYS = (
    "key",
    "name",
    "queries",
    "accuracy",
    "accuracy_by_dataset",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_parallel_p50_ms",
    "cpu_s_per_1000",
    "calls_per_query",
    "bytes_shared_per_client",
    "bytes_shared_by_client",
    "epsilon_by_client",
    "epsilon_max",
    "privacy",
)
TARGET_KEYS = ("key", "target", "value", "threshold", "met", "why")


def _row(rows: Sequence[Mapping[str, Any]], key: str) -> Mapping[str, Any]:
    for row in rows:
        if row["key"] == key:
            return row
    raise KeyError(f"the report has no row {key!r}")


def _target(
    key: str, target: str, value: float | None, threshold: float, met: bool, why: str
) -> dict[str, Any]:
    return {
        "key": key,
        "target": target,
        "value": value,
        "threshold": threshold,
        "met": bool(met),
        "why": why,
    }


def evaluate_targets(
    rows: Sequence[Mapping[str, Any]],
    *,
    communication: Mapping[str, Any],
    overhead: Mapping[str, Any],
    ranks: Mapping[str, int],
    confusion: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Each of the issue's targets with its value, whether it is met, and why."""
    routed, general = _row(rows, "routed"), _row(rows, "generalist")
    broad, central = _row(rows, "broadcast"), _row(rows, "centralized")
    oracle = _row(rows, "oracle")
    out = []

    points = (routed["accuracy"] - general["accuracy"]) * 100
    out.append(
        _target(
            "routed_accuracy_vs_generalist",
            "routed accuracy >= single generalist + 2 points",
            points,
            2.0,
            points >= 2.0,
            f"routed {routed['accuracy']:.1%} vs generalist {general['accuracy']:.1%}: "
            f"{points:+.1f} points. By data set, routed {_by(routed)}; generalist {_by(general)}."
            + _fedavg_weights(general),
        )
    )

    ratio = routed["latency_p50_ms"] / broad["latency_p50_ms"]
    modelled = routed["latency_parallel_p50_ms"] / broad["latency_parallel_p50_ms"]
    out.append(
        _target(
            "routed_latency_vs_broadcast",
            "routed p50 latency <= 0.6 x broadcast ensemble",
            ratio,
            0.6,
            ratio <= 0.6,
            f"p50 {routed['latency_p50_ms']:.1f} ms vs {broad['latency_p50_ms']:.1f} ms "
            f"({broad['calls_per_query']:.0f} calls per query against "
            f"{routed['calls_per_query']:.2f}). The peers share this machine's cores, so the "
            f"ensemble's calls queue for them; with one machine per peer (modelled: router "
            f"time plus the slowest call) the ratio would be {modelled:.2f}.",
        )
    )

    cpu = routed["cpu_s_per_1000"] / broad["cpu_s_per_1000"]
    out.append(
        _target(
            "routed_cpu_vs_broadcast",
            "routed CPU cost <= 0.3 x broadcast ensemble",
            cpu,
            0.3,
            cpu <= 0.3,
            f"{routed['cpu_s_per_1000']:.1f} vs {broad['cpu_s_per_1000']:.1f} CPU-s per 1,000 "
            f"queries: the cascade made {routed['calls_per_query']:.2f} calls per query, the "
            f"ensemble {broad['calls_per_query']:.0f}; both pay one query embedding for routing.",
        )
    )

    share = routed["accuracy"] / central["accuracy"] if central["accuracy"] > 0 else 0.0
    oracle_share = oracle["accuracy"] / central["accuracy"] if central["accuracy"] > 0 else 0.0
    out.append(
        _target(
            "federated_vs_centralized",
            "federated (shared plus personalised) accuracy >= 97% of centralized",
            share,
            0.97,
            share >= 0.97,
            f"routed over the shared and personalised adapters {routed['accuracy']:.1%} vs "
            f"centralized {central['accuracy']:.1%} ({share:.1%}); with oracle routing "
            f"{oracle['accuracy']:.1%} ({oracle_share:.1%})."
            + (
                f" The router's first choice serves the query's data set for "
                f"{confusion['first_choice_on_own_dataset']:.1%} of queries, so most of the "
                "gap to the oracle comes from which of that data set's adapters answers."
                if confusion
                else ""
            ),
        )
    )

    fractions = communication["upload_fraction_of_base_per_client_per_round"]
    worst = max(fractions.values()) if fractions else math.inf
    over = sorted(c for c, f in fractions.items() if f > 0.005)
    detail = ", ".join(f"{c} (rank {ranks.get(c, '?')}) {f:.3%}" for c, f in fractions.items())
    out.append(
        _target(
            "upload_per_round",
            "bytes uploaded per client per round <= 0.5% of the full base model",
            worst if math.isfinite(worst) else None,
            0.005,
            bool(fractions) and not over,
            f"per client: {detail}."
            + (
                f" Over the bound: {', '.join(over)}: LoRA bytes grow with the rank, and the "
                "last round also carries the DP sketch."
                if over
                else ""
            ),
        )
    )

    ratio_all, later = overhead.get("ratio"), overhead.get("ratio_after_round_1")
    out.append(
        _target(
            "flower_overhead",
            "Flower overhead ratio <= 1.15",
            ratio_all,
            1.15,
            ratio_all is not None and ratio_all <= 1.15,
            f"round wall times {overhead.get('wall_s', 0):.1f} s against "
            f"{overhead.get('client_work_s', 0):.1f} s, the shortest the clients' own work "
            "(their handlers: set-up, training, DP, sketch, evaluation) could take with "
            f"{overhead.get('clients_at_once')} client(s) at a time (per phase: max(sum / k, "
            "longest)). The rest is the framework's (messages, serialisation, scheduling, "
            "aggregation) and waiting on an uneven split of clients over workers; "
            + (
                f"after round 1 the ratio is {later:.2f}."
                if later is not None
                else "there is no later round."
            ),
        )
    )
    return out


def _fedavg_weights(row: Mapping[str, Any]) -> str:
    weights = row.get("fedavg_weight_by_dataset")
    if not weights:
        return ""
    shares = ", ".join(f"{d} {w:.0%}" for d, w in weights.items())
    return (
        f" FedAvg weights each client by its training examples ({shares}), so the one union "
        "head leans to the data set with the most examples."
    )


def _by(row: Mapping[str, Any]) -> str:
    return ", ".join(f"{d} {a:.1%}" for d, a in row["accuracy_by_dataset"].items())


def _walk(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield from _walk(v, f"{path}.{k}")
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            yield from _walk(v, f"{path}[{i}]")
    else:
        yield path, value


def non_finite(report: Mapping[str, Any]) -> list[str]:
    """Paths of every number in ``report`` that is NaN or infinite."""
    return [path for path, v in _walk(report, "$") if isinstance(v, float) and not math.isfinite(v)]


def check_report(report: Mapping[str, Any]) -> list[str]:
    """Every way ``report`` departs from the schema (empty when it conforms)."""
    problems = [f"missing key `{k}`" for k in REPORT_KEYS if k not in report]
    if report.get("schema") != SCHEMA:
        problems.append(f"`schema` must be {SCHEMA!r}, got {report.get('schema')!r}")
    keys = [r.get("key") for r in report.get("rows", [])]
    if keys != [k for k, _ in ROWS]:
        problems.append(f"rows must be {[k for k, _ in ROWS]}, got {keys}")
    for row in report.get("rows", []):
        problems += [f"row {row.get('key')} lacks `{k}`" for k in ROW_KEYS if k not in row]
    for t in report.get("targets", []):
        problems += [f"target {t.get('key')} lacks `{k}`" for k in TARGET_KEYS if k not in t]
        if not isinstance(t.get("met"), bool):
            problems.append(f"target {t.get('key')}: `met` must be a bool")
    if len(report.get("targets", [])) != 6:
        problems.append(f"expected 6 targets, got {len(report.get('targets', []))}")
    problems += [f"{p} is not finite" for p in non_finite(report)]
    return problems
