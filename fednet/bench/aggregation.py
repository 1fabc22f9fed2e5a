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

Label flipping and backdoor clients (which poison the data, not the reply) are
not simulated here.
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
from typing import Any

import torch
from flwr.app import ArrayRecord, Context, Message, MessageType

from fednet import protocol as P
from fednet.config import FederationConfig, load_preset

__all__ = ["ATTACKS", "AttackMod", "run_aggregation_bench"]

logger = logging.getLogger(__name__)

ATTACKS = ("norm-x100", "sign-flip", "gaussian-noise")


class AttackMod:
    """ClientApp mod: the client of partition ``partition`` sends a poisoned update.

    Parameters
    ----------
    attack : str
        One of :data:`ATTACKS`.
    partition : int
        The malicious node's ``partition-id`` (its index in the preset).
    seed : int
        Seed of the ``gaussian-noise`` attack.
    """

    def __init__(self, attack: str, *, partition: int = 0, seed: int = 0) -> None:
        if attack not in ATTACKS:
            raise ValueError(f"attack must be one of {', '.join(ATTACKS)}, got {attack!r}")
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


def _row(summary: dict[str, Any], **labels: Any) -> dict[str, Any]:
    clients = summary["clients"]
    accs = [c["accuracy"] for c in clients.values() if c["accuracy"] is not None]
    rounds = max(1, int(summary["rounds_completed"]))
    return {
        **labels,
        "accuracy_mean": sum(accs) / len(accs) if accs else math.nan,
        "accuracy_weighted": summary["final"].get("accuracy"),
        "bytes_up_per_client_round": sum(c["bytes_up_total"] for c in clients.values())
        / max(1, len(clients))
        / rounds,
        "updates_rejected": sum(e["status"] == "rejected" for e in summary["update_events"]),
        "updates_clipped_or_down_weighted": sum(
            e["status"] in ("clipped", "down-weighted") for e in summary["update_events"]
        ),
    }


def run_aggregation_bench(
    preset: str,
    out_dir: str | Path,
    *,
    grouping: str = "base-model",
    methods: Sequence[str] = ("fedit", "rank-wise", "svd", "frozen-a"),
    attacks: Sequence[str] = ATTACKS,
    wrappers: Sequence[str] = ("none", "norm-bound", "trimmed-mean", "median", "multi-krum"),
    rounds: int | None = None,
    malicious: int = 0,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the benchmark; return the report (also written as JSON and Markdown).

    Parameters
    ----------
    preset : str
        The federation preset.
    out_dir : path
        Where ``aggregation-<time>.json`` and ``.md`` are written.
    grouping : str
        ``strategy.lora-grouping`` of every run.
    methods, attacks, wrappers : sequences of str
        Rows to run; attacks run with ``rank-aggregation`` from the preset.
    rounds : int, optional
        Override ``federation.rounds``.
    malicious : int
        Index in the preset of the malicious client.
    """
    from fednet.federation.simulation import simulate

    base = load_preset(preset)
    if not 0 <= malicious < len(base.clients):
        raise ValueError(f"`malicious` must be in [0, {len(base.clients)}), got {malicious}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    started = time.time()
    method_rows: list[dict[str, Any]] = []
    attack_rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="fednet-aggbench-") as work:

        def one(label: str, cfg: FederationConfig, mods: tuple = ()) -> dict[str, Any]:
            if progress:
                progress(label)
            t0 = time.time()
            summary = simulate(cfg, Path(work) / label, mods=mods)
            logger.info("%s: %.0fs", label, time.time() - t0)
            return summary

        for m in methods:
            cfg = _with_strategy(base, rounds, rank_aggregation=m, lora_grouping=grouping)
            method_rows.append(_row(one(f"method-{m}", cfg), rank_aggregation=m))
        if attacks:
            cfg = _with_strategy(base, rounds, lora_grouping=grouping)
            attack_rows.append(_row(one("clean", cfg), attack="none", robust="none"))
            for a in attacks:
                for w in wrappers:
                    cfg = _with_strategy(base, rounds, lora_grouping=grouping, robust=w)
                    mod = AttackMod(a, partition=malicious, seed=base.seed)
                    attack_rows.append(
                        _row(one(f"attack-{a}-{w}", cfg, (mod,)), attack=a, robust=w)
                    )
    report = {
        "preset": preset,
        "lora_grouping": grouping,
        "rounds": rounds or base.rounds,
        "clients": len(base.clients),
        "malicious_client": base.clients[malicious].id,
        "methods": method_rows,
        "attacks": attack_rows,
        "wall_s": time.time() - started,
        "command": (
            f"fednet bench-aggregation --config {preset} --grouping {grouping}"
            + (f" --rounds {rounds}" if rounds else "")
            + f" --methods {','.join(methods) or 'none'} --attacks {','.join(attacks) or 'none'}"
            + f" --wrappers {','.join(wrappers)}"
        ),
    }
    json_path = out / f"aggregation-{stamp}.json"
    md_path = out / f"aggregation-{stamp}.md"
    json_path.write_text(json.dumps(report, indent=2, default=float))
    md_path.write_text(markdown(report))
    report["paths"] = {"json": str(json_path), "markdown": str(md_path)}
    return report


def markdown(report: dict[str, Any]) -> str:
    """The report's tables in Markdown."""
    lines = [
        f"# Aggregation benchmark: {report['preset']}",
        "",
        f'`lora-grouping = "{report["lora_grouping"]}"`, {report["rounds"]} rounds, '
        f"{report['clients']} clients; {report['wall_s'] / 60:.1f} min. Command:",
        "",
        f"    {report['command']}",
        "",
    ]
    if report["methods"]:
        lines += [
            "| rank-aggregation | mean accuracy | weighted accuracy | bytes up / client / round |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {r['rank_aggregation']} | {r['accuracy_mean']:.3f} | "
            f"{(r['accuracy_weighted'] or math.nan):.3f} | {r['bytes_up_per_client_round']:.0f} |"
            for r in report["methods"]
        ]
        lines.append("")
    if report["attacks"]:
        lines += [
            f"Malicious client: `{report['malicious_client']}` (1 of {report['clients']}).",
            "",
            "| attack | robust | mean accuracy | rejected | clipped / down-weighted |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['attack']} | {r['robust']} | {r['accuracy_mean']:.3f} | "
            f"{r['updates_rejected']} | {r['updates_clipped_or_down_weighted']} |"
            for r in report["attacks"]
        ]
    return "\n".join(lines) + "\n"
