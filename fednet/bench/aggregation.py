"""Aggregation benchmark: exact vs FedIT aggregation, and attacks with and without defences.

``fednet bench-aggregation`` runs real simulations of a preset and writes
``aggregation-<time>.json`` and ``.md`` under the output directory:

- one row per ``strategy.rank-aggregation`` method: mean client accuracy after
  the last round and the LoRA/head bytes sent up per client and round;
- one row per (attack, ``strategy.robust``), with one client of the federation
  malicious, and a clean reference row.

The malicious client is simulated by :class:`AttackMod`, a ClientApp mod that
rewrites its training replies after they pass the wire allowlist, so the server
sees a well-formed reply:

``norm-x100``
    the update (reply minus what the client received) scaled by 100;
``sign-flip``
    the update negated;
``gaussian-noise``
    the reply plus Gaussian noise of 10 times the update's RMS per coordinate.

The data-poisoning attacks run honest training code on bad data: the
malicious client's ``attack`` is set (``label-flip`` or ``backdoor``, see
:mod:`fednet.data.poison`), so it is named in every such run's ``summary.json``.

Every row also reports the attacked task's accuracy and the backdoor success
of the final shared model (:func:`fednet.bench.backdoor.measure_backdoor`),
the fraction of held-out spam texts with the trigger that it labels ham, when
the malicious client's task is a spam/ham task. The report is rewritten after
every row, so an interrupted benchmark keeps the rows it finished.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import torch
from flwr.app import ArrayRecord, Context, Message, MessageType

from fednet import protocol as P
from fednet.config import ClientAttack, FederationConfig, load_preset

__all__ = [
    "ATTACKS",
    "DATA_ATTACKS",
    "UPDATE_ATTACKS",
    "AttackMod",
    "bench_preset",
    "run_aggregation_bench",
    "targets",
]

logger = logging.getLogger(__name__)

UPDATE_ATTACKS = ("norm-x100", "sign-flip", "gaussian-noise")
"""Attacks that rewrite the malicious client's reply (:class:`AttackMod`)."""

DATA_ATTACKS = ("label-flip", "backdoor")
"""Attacks that poison the malicious client's training data (``clients.attack``)."""

ATTACKS = UPDATE_ATTACKS + DATA_ATTACKS


class AttackMod:
    """ClientApp mod: the client of partition ``partition`` sends a poisoned update.

    Parameters
    ----------
    attack : str
        One of :data:`UPDATE_ATTACKS`.
    partition : int
        The malicious node's ``partition-id`` (its index in the preset).
    seed : int
        Seed of the ``gaussian-noise`` attack.
    """

    def __init__(self, attack: str, *, partition: int = 0, seed: int = 0) -> None:
        if attack not in UPDATE_ATTACKS:
            raise ValueError(f"attack must be one of {', '.join(UPDATE_ATTACKS)}, got {attack!r}")
        self.attack = attack
        self.partition = partition
        self.seed = seed

    def __call__(self, msg: Message, context: Context, call_next: Any) -> Message:
        reply: Message = call_next(msg, context)
        if (
            reply.has_error()
            or msg.metadata.message_type != MessageType.TRAIN
            or int(context.node_config.get("partition-id", -1)) != self.partition
        ):
            return reply
        for name in (P.LORA, P.HEAD):
            if name not in reply.content.array_records or name not in msg.content.array_records:
                continue
            got = reply.content.array_records[name].to_torch_state_dict()
            sent = msg.content.array_records[name].to_torch_state_dict()
            reply.content[name] = ArrayRecord(
                {k: self._poison(v, sent.get(k)).to(v.dtype) for k, v in got.items()}
            )
        return reply

    def _poison(self, value: torch.Tensor, received: torch.Tensor | None) -> torch.Tensor:
        v = value.double()
        r = (
            received.double()
            if received is not None and received.shape == value.shape
            else torch.zeros_like(v)
        )
        delta = v - r
        if self.attack == "norm-x100":
            return r + 100.0 * delta
        if self.attack == "sign-flip":
            return r - delta
        rms = float(delta.pow(2).mean().sqrt()) or 1e-3
        gen = torch.Generator().manual_seed(self.seed)
        return v + 10.0 * rms * torch.randn(v.shape, generator=gen, dtype=torch.float64)


def _with_strategy(cfg: FederationConfig, rounds: int | None, **changes: Any) -> FederationConfig:
    out = dataclasses.replace(cfg, strategy=dataclasses.replace(cfg.strategy, **changes))
    return out.with_overrides(rounds=rounds) if rounds else out


def _with_attack(cfg: FederationConfig, malicious: int, attack: str) -> FederationConfig:
    """``cfg`` with client ``malicious`` running data attack ``attack``."""
    clients = list(cfg.clients)
    # replace() validates again: an unknown attack is refused by name
    clients[malicious] = dataclasses.replace(clients[malicious], attack=cast(ClientAttack, attack))
    return dataclasses.replace(cfg, clients=tuple(clients))


def _row(summary: dict[str, Any], task: str, **labels: Any) -> dict[str, Any]:
    clients = summary["clients"]
    accs = [c["accuracy"] for c in clients.values() if c["accuracy"] is not None]
    rounds = max(1, int(summary["rounds_completed"]))
    return {
        **labels,
        "accuracy_mean": sum(accs) / len(accs) if accs else math.nan,
        "accuracy_weighted": summary["final"].get("accuracy"),
        "task_accuracy": summary["tasks"].get(task, {}).get("accuracy"),
        "bytes_up_per_client_round": sum(c["bytes_up_total"] for c in clients.values())
        / max(1, len(clients))
        / rounds,
        "updates_rejected": sum(e["status"] == "rejected" for e in summary["update_events"]),
        "updates_clipped_or_down_weighted": sum(
            e["status"] in ("clipped", "down-weighted") for e in summary["update_events"]
        ),
        # who was acted on, per round: "<round>:<client>:<status>"
        "update_events": [
            f"{e.get('round')}:{e.get('client')}:{e.get('status')}"
            for e in summary["update_events"]
            if e.get("status") in ("rejected", "clipped", "down-weighted")
        ],
        "attacks_in_summary": summary.get("attacks", {}),
        # a client that failed (e.g. its worker was killed) makes the row invalid
        "clients_failed": sorted(
            cid for cid, c in clients.items() if c.get("failures") or not c.get("finished", True)
        ),
    }


def bench_preset(preset: str) -> FederationConfig:
    """The preset every row starts from: ``preset`` without its personalisation round.

    The benchmark measures the shared (global) model, which the personalisation
    after the last round does not touch.
    """
    return load_preset(preset).with_overrides(personalize_steps=0)


def _spam_task(cfg: FederationConfig, task: str) -> bool:
    """Whether ``task``'s labels include spam and ham (the backdoor can be measured)."""
    from fednet.data import client_splits
    from fednet.data.poison import backdoor_labels

    client = next(c for c in cfg.clients if c.task == task)
    names = client_splits(cfg, client)["test"]
    try:
        backdoor_labels(names.features["label"].names)
    except ValueError:
        return False
    return True


def default_malicious(cfg: FederationConfig) -> int:
    """Index of the first client on ``sms-spam`` (the backdoor's task), else 0."""
    return next((i for i, c in enumerate(cfg.clients) if c.dataset == "sms-spam"), 0)


def run_aggregation_bench(
    preset: str,
    out_dir: str | Path,
    *,
    grouping: str = "base-model",
    methods: Sequence[str] = ("fedit", "rank-wise", "svd", "frozen-a"),
    attacks: Sequence[str] = ATTACKS,
    wrappers: Sequence[str] = ("none", "norm-bound", "trimmed-mean", "median", "multi-krum"),
    rounds: int | None = None,
    malicious: int | None = None,
    clean: bool = True,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the benchmark; return the report (also written as JSON and Markdown).

    Parameters
    ----------
    preset : str
        The federation preset.
    out_dir : path
        Where ``aggregation-<time>.json`` and ``.md`` are written; both are
        rewritten after every row (``complete`` is false until the last).
    grouping : str
        ``strategy.lora-grouping`` of every run.
    methods, attacks, wrappers : sequences of str
        Rows to run; attacks run with ``rank-aggregation`` from the preset.
    rounds : int, optional
        Override ``federation.rounds``.
    malicious : int, optional
        Index in the preset of the malicious client; by default the first
        ``sms-spam`` client (:func:`default_malicious`), so that the backdoor
        has its task.
    clean : bool
        Run the clean reference row of the attack table (reused from the
        methods' row of the preset's ``rank-aggregation`` when there is one);
        False when another report of the same settings already holds it.
    """
    from fednet.bench.backdoor import measure_backdoor
    from fednet.federation.simulation import simulate

    base = bench_preset(preset)
    malicious = default_malicious(base) if malicious is None else malicious
    if not 0 <= malicious < len(base.clients):
        raise ValueError(f"`malicious` must be in [0, {len(base.clients)}), got {malicious}")
    bad = [a for a in attacks if a not in ATTACKS]
    if bad:
        raise ValueError(f"unknown attack {bad[0]!r}; valid: {', '.join(ATTACKS)}")
    task, bad_id = base.clients[malicious].task, base.clients[malicious].id
    preset_method = base.strategy.rank_aggregation
    spam = _spam_task(base, task)
    if "backdoor" in attacks and not spam:
        raise ValueError(
            f"the backdoor attack needs a spam/ham task, but the malicious client "
            f"{base.clients[malicious].id} has task {task!r}"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    started = time.time()
    json_path = out / f"aggregation-{stamp}.json"
    md_path = out / f"aggregation-{stamp}.md"
    report: dict[str, Any] = {
        "preset": preset,
        "lora_grouping": grouping,
        "rounds": rounds or base.rounds,
        "local_steps": sorted({c.local_steps for c in base.clients}),
        "eval_examples": base.eval_examples,
        "clients": len(base.clients),
        "malicious_client": base.clients[malicious].id,
        "attacked_task": task,
        "methods": [],
        "attacks": [],
        "complete": False,
        "wall_s": 0.0,
        "command": (
            f"fednet bench-aggregation --config {preset} --grouping {grouping}"
            + (f" --rounds {rounds}" if rounds else "")
            + f" --methods {','.join(methods) or 'none'} --attacks {','.join(attacks) or 'none'}"
            + f" --wrappers {','.join(wrappers)} --malicious {malicious}"
            + ("" if clean else " --no-clean")
        ),
    }

    def write() -> None:
        report["wall_s"] = time.time() - started
        report["targets"] = targets(report)
        json_path.write_text(json.dumps(report, indent=2, default=float))
        md_path.write_text(markdown(report))

    with tempfile.TemporaryDirectory(prefix="fednet-aggbench-") as work:

        def one(
            label: str, cfg: FederationConfig, mods: tuple = (), **labels: Any
        ) -> dict[str, Any]:
            if progress:
                progress(label)
            t0 = time.time()
            run_dir = Path(work) / label
            row = _row(simulate(cfg, run_dir, mods=mods), task, **labels)
            bd = measure_backdoor(cfg, run_dir, task=task, exclude=(bad_id,)) if spam else {}
            for key in ("backdoor_success", "spam_recall", "backdoor_success_on_detected"):
                row[key] = bd.get(key)
            row["wall_s"] = time.time() - t0
            logger.info("%s: %.0fs", label, row["wall_s"])
            return row

        for m in methods:
            cfg = _with_strategy(base, rounds, rank_aggregation=m, lora_grouping=grouping)
            report["methods"].append(one(f"method-{m}", cfg, rank_aggregation=m))
            write()
        if attacks and clean:
            same = [r for r in report["methods"] if r["rank_aggregation"] == preset_method]
            if same and base.strategy.robust == "none":  # the very same run: not run twice
                reused = {k: v for k, v in same[0].items() if k != "rank_aggregation"}
                report["attacks"].append({"attack": "none", "robust": "none", **reused})
            else:
                cfg = _with_strategy(base, rounds, lora_grouping=grouping)
                report["attacks"].append(one("clean", cfg, attack="none", robust="none"))
            write()
        for a in attacks:
            for w in wrappers:
                cfg = _with_strategy(base, rounds, lora_grouping=grouping, robust=w)
                mods: tuple = ()
                if a in DATA_ATTACKS:
                    cfg = _with_attack(cfg, malicious, a)
                else:
                    mods = (AttackMod(a, partition=malicious, seed=base.seed),)
                report["attacks"].append(one(f"attack-{a}-{w}", cfg, mods, attack=a, robust=w))
                write()
    report["complete"] = True
    write()
    report["paths"] = {"json": str(json_path), "markdown": str(md_path)}
    return report


def _num(value: Any, digits: int = 3) -> str:
    return (
        "-"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else (f"{value:.{digits}f}")
    )


def _failed(row: dict[str, Any]) -> str:
    """A mark on a row some of whose clients failed: its figures are not comparable."""
    failed = row.get("clients_failed")
    return f" (INVALID: {', '.join(failed)} failed)" if failed else ""


ACCURACY_TOLERANCE = 0.02
"""Target: the best wrapper keeps mean accuracy within this of the clean run (2 points)."""

BACKDOOR_CEILING = 0.10
"""Target: the best wrapper keeps backdoor success below this (10%)."""


def _invalid(target: str, row: dict[str, Any]) -> dict[str, Any]:
    """The target entry of a row that failed clients make invalid: named, never met."""
    failed = ", ".join(row["clients_failed"])
    return {
        "target": target,
        "met": False,
        "detail": f"not judged: the row is invalid, clients {failed} failed",
    }


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The benchmark's targets, each judged from the report's own rows.

    - Per attack: is there a wrapper that keeps mean accuracy within
      :data:`ACCURACY_TOLERANCE` of the clean row (attack ``none``, wrapper
      ``none``) and, for the backdoor, backdoor success below
      :data:`BACKDOOR_CEILING`? The best wrapper is the one that meets both,
      else the one with the lowest backdoor success (backdoor) or the highest
      accuracy (other attacks).
    - With ``lora-grouping = "base-model"``: is ``svd`` or ``frozen-a`` at
      least as accurate (mean accuracy) as ``fedit``?

    Returns
    -------
    list of dict
        ``target``, ``met`` (bool) and ``detail`` (a sentence with the figures).
    """
    out: list[dict[str, Any]] = []
    every = report.get("attacks", [])
    out += [
        _invalid(f"{r['attack']} under {r['robust']}", r) for r in every if r.get("clients_failed")
    ]
    rows = [r for r in every if not r.get("clients_failed")]
    clean = next((r for r in rows if r["attack"] == "none" and r["robust"] == "none"), None)
    if clean is None and any(r["attack"] != "none" for r in rows):
        out.append(
            {
                "target": "one malicious client contained",
                "met": False,
                "detail": "not judged: no valid clean row (attack none, wrapper none)",
            }
        )
    for attack in dict.fromkeys(r["attack"] for r in rows if r["attack"] != "none"):
        defended = [r for r in rows if r["attack"] == attack and r["robust"] != "none"]
        if clean is None or not defended:
            continue
        backdoor = attack == "backdoor"

        def ok(r: dict[str, Any], backdoor: bool = backdoor) -> bool:
            acc = r["accuracy_mean"] >= clean["accuracy_mean"] - ACCURACY_TOLERANCE - 1e-12
            bs = r.get("backdoor_success")
            return acc and (not backdoor or (bs is not None and bs < BACKDOOR_CEILING))

        def rank(r: dict[str, Any], backdoor: bool = backdoor) -> tuple[float, float]:
            bs = r.get("backdoor_success")
            return (
                (-(bs if bs is not None else 1.0) if backdoor else r["accuracy_mean"]),
                r["accuracy_mean"],
            )

        met = [r for r in defended if ok(r)]
        best = max(met or defended, key=rank)
        gap = 100 * (best["accuracy_mean"] - clean["accuracy_mean"])
        detail = f"best wrapper {best['robust']}: mean accuracy {gap:+.1f} points vs clean"
        if backdoor:
            detail += f", backdoor success {_num(best.get('backdoor_success'))}"
            detail += f" (clean run {_num(clean.get('backdoor_success'))})"
        out.append(
            {
                "target": f"{attack}: one malicious client contained",
                "met": bool(met),
                "detail": detail,
            }
        )
    out += [
        _invalid(f"rank-aggregation {r['rank_aggregation']}", r)
        for r in report.get("methods", [])
        if r.get("clients_failed")
    ]
    if report.get("lora_grouping") == "base-model":
        acc = {
            r["rank_aggregation"]: r["accuracy_mean"]
            for r in report.get("methods", [])
            if not r.get("clients_failed")
        }
        exact = {m: acc[m] for m in ("svd", "frozen-a") if m in acc}
        if "fedit" in acc and exact:
            m = max(exact, key=exact.__getitem__)
            out.append(
                {
                    "target": "svd or frozen-a at least as accurate as fedit",
                    "met": exact[m] >= acc["fedit"],
                    "detail": f"{m} {_num(exact[m])} vs fedit {_num(acc['fedit'])}",
                }
            )
    return out


def markdown(report: dict[str, Any]) -> str:
    """The report's tables in Markdown."""
    task = report.get("attacked_task", "")
    lines = [
        f"# Aggregation benchmark: {report['preset']}",
        "",
        f'`lora-grouping = "{report["lora_grouping"]}"`, {report["rounds"]} rounds, '
        f"local steps {report.get('local_steps')}, {report.get('eval_examples')} evaluation "
        f"examples per client, {report['clients']} clients; {report['wall_s'] / 60:.1f} min"
        + ("" if report.get("complete", True) else " (INCOMPLETE: rows still to run)")
        + ". Command:",
        "",
        f"    {report['command']}",
        "",
        f"Backdoor success: the fraction of the held-out spam texts of `{task}` with the "
        "trigger that the final shared model, as the honest clients of that task receive it, "
        "labels ham. Spam recall: the fraction of the same texts without the trigger that it "
        "labels spam (a model that labels everything ham has backdoor success 1 with no attack); "
        "backdoor success on detected spam counts only the texts it labels spam without the "
        "trigger. Personalisation is off in every row: it does not touch the shared model.",
        "",
    ]
    judged = targets(report)
    if judged:
        lines += ["## Targets", ""]
        lines += [
            f"- {t['target']}: {'met' if t['met'] else 'NOT met'}; {t['detail']}." for t in judged
        ]
        lines.append("")
    if report["methods"]:
        lines += [
            f"| rank-aggregation | mean accuracy | weighted accuracy | {task} accuracy "
            "| backdoor success | spam recall | bytes up / client / round |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['rank_aggregation']}{_failed(r)} | {_num(r['accuracy_mean'])} | "
            f"{_num(r['accuracy_weighted'])} | {_num(r.get('task_accuracy'))} | "
            f"{_num(r.get('backdoor_success'))} | {_num(r.get('spam_recall'))} | "
            f"{r['bytes_up_per_client_round']:.0f} |"
            for r in report["methods"]
        ]
        lines.append("")
    if report["attacks"]:
        lines += [
            f"Malicious client: `{report['malicious_client']}` (1 of {report['clients']}).",
            "",
            f"| attack | robust | mean accuracy | {task} accuracy | backdoor success "
            "| spam recall | backdoor success on detected spam | rejected "
            "| clipped / down-weighted |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['attack']} | {r['robust']}{_failed(r)} | {_num(r['accuracy_mean'])} | "
            f"{_num(r.get('task_accuracy'))} | {_num(r.get('backdoor_success'))} | "
            f"{_num(r.get('spam_recall'))} | {_num(r.get('backdoor_success_on_detected'))} | "
            f"{r['updates_rejected']} | {r['updates_clipped_or_down_weighted']} |"
            for r in report["attacks"]
        ]
    return "\n".join(lines) + "\n"
