"""The benchmark report as Markdown: tables, targets with reasons, figures, sections."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["render_markdown", "human_bytes"]


def human_bytes(n: float | None) -> str:
    """``1536`` -> ``"1.5 KiB"``."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def _num(value: Any, fmt: str = ".2f") -> str:
    return "-" if value is None else format(value, fmt)


def _epsilon(row: Mapping[str, Any]) -> str:
    if row["epsilon_max"] is None:
        return "∞"
    return f"{row['epsilon_max']:.2f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def _target_value(t: Mapping[str, Any]) -> str:
    v, threshold, key = t["value"], t["threshold"], t["key"]
    if v is None:
        return "-"
    if key == "routed_accuracy_vs_generalist":
        return f"{v:+.1f} points (needs ≥ +{threshold:.1f})"
    if key == "federated_vs_centralized":
        return f"{v:.1%} (needs ≥ {threshold:.0%})"
    if key == "upload_per_round":
        return f"{v:.3%} (needs ≤ {threshold:.1%})"
    return f"{v:.2f} (needs ≤ {threshold:.2f})"


def _results(report: Mapping[str, Any]) -> list[str]:
    rows = report["rows"]
    lines = ["## Results", ""]
    lines += _table(
        [
            "way of answering",
            "accuracy",
            "p50 latency",
            "p95 latency",
            "CPU-s / 1,000 queries",
            "calls / query",
            "bytes shared / client",
            "ε / client (max)",
        ],
        [
            [
                r["name"],
                f"{r['accuracy']:.1%}",
                f"{r['latency_p50_ms']:.1f} ms",
                f"{r['latency_p95_ms']:.1f} ms",
                f"{r['cpu_s_per_1000']:.1f}",
                f"{r['calls_per_query']:.2f}",
                human_bytes(r["bytes_shared_per_client"]),
                _epsilon(r),
            ]
            for r in rows
        ],
    )
    lines += ["", "Privacy of each row:", ""]
    lines += [f"- {r['name']}: {r['privacy']}." for r in rows]
    datasets = report["queries"]["datasets"]
    lines += ["", "Accuracy by data set:", ""]
    lines += _table(
        ["way of answering", *datasets],
        [
            [r["name"], *(f"{r['accuracy_by_dataset'].get(d, 0):.1%}" for d in datasets)]
            for r in rows
        ],
    )
    return lines


def _targets(report: Mapping[str, Any]) -> list[str]:
    targets = report["targets"]
    met = sum(t["met"] for t in targets)
    lines = ["## Targets", "", f"{met} of {len(targets)} met.", ""]
    lines += _table(
        ["target", "value", "met", "why"],
        [
            [t["target"], _target_value(t), "met" if t["met"] else "**not met**", t["why"]]
            for t in targets
        ],
    )
    return lines


def _overhead(report: Mapping[str, Any]) -> list[str]:
    fed = report["overhead"]["fednet"]
    lines = [
        "## Flower overhead",
        "",
        "Round wall time against the shortest time the clients' own work could take "
        f"with {fed['clients_at_once']} client(s) running at a time (per phase, training "
        "then evaluation: max(sum / k, longest); fednet run):",
        "",
    ]
    lines += _table(
        ["round", "wall", "clients' work", "ratio"],
        [
            [
                str(r["round"]),
                f"{r['wall_s']:.1f} s",
                f"{r['client_work_s']:.1f} s",
                _num(r["ratio"]),
            ]
            for r in fed["rounds"]
        ],
    )
    lines += [
        "",
        "All runs: "
        + "; ".join(
            f"{name} {_num(o['ratio'])} (after round 1: {_num(o['ratio_after_round_1'])})"
            for name, o in report["overhead"].items()
        )
        + ".",
    ]
    return lines


def _communication(report: Mapping[str, Any]) -> list[str]:
    comm = report["communication"]
    lines = ["## Communication per round (fednet run)", ""]
    lines += _table(
        ["round", "clients", "up", "down", "full-model FedAvg, each way", "up / full"],
        [
            [
                str(r["round"]),
                str(r["clients"]),
                human_bytes(r["bytes_up"]),
                human_bytes(r["bytes_down"]),
                human_bytes(r["full_fedavg_bytes_up"]),
                f"{r['bytes_up'] / max(r['full_fedavg_bytes_up'], 1):.3%}",
            ]
            for r in comm["rounds"]
        ],
    )
    return lines


def _routing(section: Mapping[str, Any]) -> list[str]:
    lines = ["### Routing benchmark (`fednet.bench.routing`)", ""]
    if "modes" not in section:
        return [*lines, f"Not run: {section.get('skipped') or section.get('error')}.", ""]
    lines += _table(
        ["mode", "accuracy", "p50", "p95", "CPU-s / 1,000", "calls / query"],
        [
            [
                name,
                f"{m['accuracy']:.1%}",
                f"{m['latency_p50_ms']:.1f} ms",
                f"{m['latency_p95_ms']:.1f} ms",
                f"{m['cpu_s_per_1000']:.1f}",
                f"{m.get('calls_per_query', 0):.2f}",
            ]
            for name, m in section["modes"].items()
        ],
    )
    lines += [
        "",
        "Targets: " + ", ".join(f"{k} = {v}" for k, v in section.get("targets", {}).items()) + ".",
    ]
    if "hot_swap" in section:
        swap = section["hot_swap"]
        lines += [
            "",
            "Adapter hot-swap: "
            + ", ".join(f"{k} {v:.1f}" for k, v in swap.items() if k.endswith("_ms_median"))
            + ".",
        ]
    return [*lines, ""]


def _privacy(section: Mapping[str, Any]) -> list[str]:
    lines = ["### Privacy benchmark (`fednet.bench.privacy`)", ""]
    if "rows" not in section:
        return [*lines, f"Not run: {section.get('skipped') or section.get('error')}.", ""]
    lines += _table(
        ["target ε", "mean accuracy", "largest ledger ε"],
        [
            [
                "∞" if r["target_epsilon"] is None else f"{r['target_epsilon']:g}",
                _num(r.get("accuracy_mean"), ".1%"),
                _num(
                    max(
                        (v for v in r["per_client_epsilon"].values() if v is not None), default=None
                    ),
                    ".3f",
                ),
            ]
            for r in section["rows"]
        ],
    )
    lines += [
        "",
        "Targets: "
        + ", ".join(
            f"{k}: {'met' if v.get('met') else 'not met'} ({_num(v.get('value'), '.3f')})"
            for k, v in section.get("targets", {}).items()
        )
        + ".",
    ]
    return [*lines, ""]


def _method(report: Mapping[str, Any]) -> list[str]:
    central = report["runs"]["centralized"]
    return [
        "## How each row was produced",
        "",
        "- Every model is published to a hub and served by a loopback peer in this process; "
        "every query goes through `Network.ask`, so each call pays one HTTP hop and the "
        "CPU-seconds cover the asking client and its peers.",
        "- local-only: the preset under the `local` strategy (a Flower simulation); each "
        "query goes to the personalised adapter of the client an oracle picks: the client "
        "of the query's data set whose training data holds the largest share of the query's "
        "true label (row 6 uses the same rule on the fednet adapters).",
        f"- The local-only and generalist runs evaluate each round on at most "
        f"{report['config']['baseline_eval_examples']} held-out texts per client and build "
        f"their (unused) DP sketches from {report['config']['baseline_sketch_examples']} "
        "texts; their training is the preset's.",
        f"- centralized: trained here on the pooled training splits of every client, "
        f"{central['steps']} steps of batch {central['batch_size']} (the federation's "
        f"training rounds together), union label head, rank {central['rank']}.",
        '- single generalist: the preset with `federation.label-space = "union"`: FedAvg '
        "of one LoRA and one union head over every client (a Flower simulation).",
        "- broadcast, routed, oracle: the fednet run; every peer serves its client's "
        "personalised and shared adapters. The routed cascade uses the learned router "
        f"(top-{report['config']['top_k']}, confidence threshold "
        f"{report['config']['confidence_threshold']}) after "
        f"{report['queries']['warmup']} warm-up queries with their true labels; the "
        "broadcast ensemble asks every peer's personalised adapter; the oracle asks the "
        "personalised adapter the oracle picks.",
        "- Latency is the wall time of one query end to end; p50 and p95 over the stream.",
        "",
    ]


def render_markdown(report: Mapping[str, Any]) -> str:
    """The whole report as Markdown (figures referenced by file name)."""
    q, m = report["queries"], report["machine"]
    mode = "quick" if report["quick"] else "full"
    lines = [
        f"# fednet network benchmark ({mode}), {report['created']}",
        "",
        f"Preset `{report['preset']}`; {q['measured']} measured queries ({q['per_dataset']} "
        f"from each held-out catalogue test split: {', '.join(q['datasets'])}), "
        f"{q['warmup']} further warm-up queries for the learned router. Test texts that "
        f"repeat a training text are left out ("
        + ", ".join(f"{d}: {n}" for d, n in q["duplicates_of_training_texts_dropped"].items())
        + ").",
        f"Machine: {m['cpus']} CPUs, torch {m['torch']} with {m['torch_threads']} threads; "
        f"load average {m['load_average_at_start'][0]:.1f} at the start, "
        f"{m['load_average_at_end'][0]:.1f} at the end. "
        + (
            f"The stages took {report['stages_s'] / 60:.1f} min in all; those marked reused "
            f"below were run by an earlier invocation in `{report['config']['reuse']}` and "
            f"show its recorded times (this invocation: {report['wall_s'] / 60:.1f} min)."
            if report.get("reused_stages")
            else f"Total wall time {report['wall_s'] / 60:.1f} min."
        ),
        "",
    ]
    lines += _results(report) + [""] + _targets(report) + [""]
    lines += _overhead(report) + [""] + _communication(report) + [""]
    lines += ["## Figures", ""]
    lines += [f"![{name}]({path})" for name, path in report["plots"].items()] + [""]
    lines += ["## Sections", ""]
    lines += _routing(report["sections"].get("routing_bench", {"skipped": "absent"}))
    lines += _privacy(report["sections"].get("privacy_bench", {"skipped": "absent"}))
    lines += _method(report)
    lines += ["## Stage timings", ""]
    reused = set(report.get("reused_stages", []))
    lines += _table(
        ["stage", "wall", ""],
        [[k, f"{v:.0f} s", "reused" if k in reused else ""] for k, v in report["timings"].items()],
    )
    return "\n".join(lines) + "\n"
