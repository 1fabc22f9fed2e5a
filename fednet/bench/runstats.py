"""Figures read from a finished run's ``summary.json``.

Per round: accuracy per data set, ε per client, bytes up and down against
full-model FedAvg, and the round's wall time against the clients' own work
(the Flower overhead ratio).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from fednet.config import FederationConfig

__all__ = [
    "accuracy_per_round",
    "epsilon_per_round",
    "communication",
    "flower_overhead",
    "client_epsilons",
]


def _rounds(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    return sorted(summary.get("history", []), key=lambda h: h["round"])


def accuracy_per_round(summary: Mapping[str, Any], cfg: FederationConfig) -> dict[str, Any]:
    """Mean held-out accuracy of each data set's clients after every round."""
    rounds = _rounds(summary)
    out: dict[str, list[float | None]] = {}
    for dataset in dict.fromkeys(c.dataset for c in cfg.clients):
        ids = [c.id for c in cfg.clients if c.dataset == dataset]
        series: list[float | None] = []
        for h in rounds:
            values = [
                h["evaluate"][f"{cid}/accuracy"]
                for cid in ids
                if f"{cid}/accuracy" in h["evaluate"]
            ]
            series.append(sum(values) / len(values) if values else None)
        out[dataset] = series
    return {"rounds": [h["round"] for h in rounds], "by_dataset": out}


def epsilon_per_round(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The ε each client's ledger had reached after every round (``None`` if unreported)."""
    rounds = _rounds(summary)
    out: dict[str, list[float | None]] = {}
    for cid in sorted(summary.get("clients", {})):
        last: float | None = None
        series: list[float | None] = []
        for h in rounds:
            value = h["train"].get(f"{cid}/epsilon")
            last = float(value) if value is not None else last
            series.append(last)
        out[cid] = series
    return {"rounds": [h["round"] for h in rounds], "by_client": out}


def client_epsilons(summary: Mapping[str, Any]) -> dict[str, float | None]:
    """Each client's final ε (its ledger composes every release)."""
    out: dict[str, float | None] = {}
    for cid, c in sorted(summary.get("clients", {}).items()):
        value = c.get("epsilon")
        ok = isinstance(value, int | float) and math.isfinite(value)
        out[cid] = float(value) if ok else None
    return out


def communication(summary: Mapping[str, Any]) -> dict[str, Any]:
    """Bytes each round moved, and what full-model FedAvg would have moved.

    Full-model FedAvg sends every weight of the base model once per taking-part
    client in each direction (its task head is left out, so the figure is a
    lower bound).
    """
    clients = summary.get("clients", {})
    base_bytes: Mapping[str, int] = summary.get("base_model_bytes", {})
    rows = []
    for h in _rounds(summary):
        up, down = h.get("bytes_up", {}), h.get("bytes_down", {})
        full = sum(base_bytes[clients[cid]["base_model"]] for cid in up if cid in clients)
        rows.append(
            {
                "round": h["round"],
                "clients": len(up),
                "bytes_up": int(sum(up.values())),
                "bytes_down": int(sum(down.values())),
                "full_fedavg_bytes_up": int(full),
                "full_fedavg_bytes_down": int(full),
            }
        )
    per_client = {cid: float(c["bytes_up_per_round"]) for cid, c in sorted(clients.items())}
    fraction = {
        cid: float(v)
        for cid, v in sorted(summary.get("upload_fraction_of_base_per_round", {}).items())
    }
    return {
        "rounds": rows,
        "base_model_bytes": dict(base_bytes),
        "bytes_up_per_client_per_round": per_client,
        "upload_fraction_of_base_per_client_per_round": fraction,
        "bytes_up_total_by_client": {
            cid: int(c["bytes_up_total"]) for cid, c in sorted(clients.items())
        },
    }


def _phase(walls: list[float], lanes: int) -> float:
    """Shortest time ``walls`` can take on ``lanes`` workers (the makespan lower bound)."""
    return max(sum(walls) / lanes, max(walls)) if walls else 0.0


def flower_overhead(summary: Mapping[str, Any], *, clients_at_once: int) -> dict[str, Any]:
    """Each round's wall time against the clients' own time on its critical path.

    A round has two phases, training then evaluation, each ending when its last
    reply is in. A client's own time in a phase is what its handler took
    (``wall-s`` of its train reply, ``eval-wall-s`` of its evaluation reply):
    model and data set-up, training, DP, sketch, evaluation. With ``k`` clients
    running at once a phase cannot end sooner than ``max(sum / k, longest)``;
    the round's ``client_work_s`` is that bound summed over both phases, so the
    ratio charges the framework (messages, serialisation, scheduling,
    aggregation) and any imbalance between the workers. Rounds whose clients
    reported no wall time are left out.
    """
    rows = []
    for h in _rounds(summary):
        train = [float(v) for k, v in h["train"].items() if k.endswith("/wall-s")]
        evals = [float(v) for k, v in h["evaluate"].items() if k.endswith("/eval-wall-s")]
        if not train:
            continue
        work = _phase(train, clients_at_once) + _phase(evals, clients_at_once)
        rows.append(
            {
                "round": h["round"],
                "wall_s": float(h["wall_s"]),
                "client_work_s": work,
                "ratio": float(h["wall_s"]) / work if work > 0 else None,
            }
        )
    wall = sum(r["wall_s"] for r in rows)
    work = sum(r["client_work_s"] for r in rows)
    later = [r for r in rows if r["round"] > 1]
    later_work = sum(r["client_work_s"] for r in later)
    return {
        "clients_at_once": clients_at_once,
        "rounds": rows,
        "wall_s": wall,
        "client_work_s": work,
        "ratio": wall / work if work > 0 else None,
        "ratio_after_round_1": (
            sum(r["wall_s"] for r in later) / later_work if later_work > 0 else None
        ),
    }
