"""What a run leaves behind in ``runs/<run-id>/``.

- ``tb/``: TensorBoard events: per round, per-client and mean accuracy and loss,
  training loss, and bytes sent up and down;
- ``rounds/<r>/<base-model>/<task>/``: the round's aggregated adapter in PEFT
  format with the task head beside it;
- ``personalized/<client-id>/``: each client's personalised adapter and head;
- ``summary.json``: the final metrics and the bytes communicated, each client's
  data figures (rows read, kept, dropped by reason, duplicates, encoding), every
  client that failed with its reasons, and whether enough clients finished
  (``complete``: at least ``strategy.min-clients``, and at least one).
- ``summary.json``: the final metrics, the bytes communicated, and every
  update that was rejected, clipped or down-weighted, with its reason;
- ``progress.json``: how far the run is (stage, round, clients, loss, accuracy,
  ε), rewritten atomically as it goes, for a display that watches the directory;
- ``contributions.json``: the contribution ledger, one row per client and round
  (accepted or not, cosine to the aggregate, contribution estimate and its
  method; see :mod:`fednet.strategies.contribution`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fednet.atomic import write_atomic
from fednet.config import FederationConfig
from fednet.names import check_name
from fednet.strategies.base import RoundOutcome
from fednet.strategies.profile import ClientProfile
from fednet.strategies.state import GlobalState

__all__ = [
    "PROGRESS_FILE",
    "RunRecorder",
    "base_model_nbytes",
    "format_summary",
    "privacy_summary",
    "write_json_atomic",
]

logger = logging.getLogger(__name__)

PROGRESS_FILE = "progress.json"


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` atomically (see :func:`fednet.atomic.write_atomic`)."""
    text = json.dumps(data, indent=2, sort_keys=True, default=float)
    write_atomic(path, text.encode("utf-8"))


def base_model_nbytes(base_model: str) -> int:
    """Bytes of every weight of the full base model (what full FedAvg would send)."""
    from fednet.models import create_base_model

    model = create_base_model(base_model)
    return sum(p.numel() * p.element_size() for p in model.parameters())


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def privacy_summary(cfg: FederationConfig) -> dict[str, Any]:
    """What a run's privacy claims are, truthfully.

    ``updates_private`` is true only when every adapter that leaves a client or
    is published went through a noising DP mechanism: local update noise or
    central DP with ``update-noise-multiplier > 0`` (central-mode personalised
    adapters then stay on the clients unless DP-SGD trained them), or DP-SGD
    with noise. ``epsilon_note`` voids every ε of a run with reproducible noise.
    """
    from fednet.privacy.randomness import NOT_VALID_NOTE

    p = cfg.privacy
    mode = p.update_mode if p.enabled else "none"
    noised_updates = mode in ("local", "central") and p.update_noise_multiplier > 0
    dpsgd = bool(p.enabled and p.dpsgd)
    noised_dpsgd = dpsgd and (p.dpsgd_epsilon is not None or (p.dpsgd_noise_multiplier or 0) > 0)
    out: dict[str, Any] = {
        "delta": p.delta,
        "epsilon_budget": p.epsilon_budget,
        "accountant": p.accountant,
        "update_mode": mode,
        "dpsgd": dpsgd,
        "updates_private": bool(noised_updates or noised_dpsgd),
        "sketch_epsilon": p.sketch_epsilon,
        "reproducible_noise": bool(p.reproducible_noise),
        "epsilon_note": NOT_VALID_NOTE if p.reproducible_noise else None,
    }
    if mode == "central":
        from fednet.strategies.dp_central import ACCOUNTING_RULE

        out["accounting"] = {
            "rule": ACCOUNTING_RULE,
            "sample_rate": cfg.strategy.fraction_train,
            "noise_multiplier": p.update_noise_multiplier,
            "rounds": cfg.rounds,
        }
    return out


class RunRecorder:
    """Writes TensorBoard scalars, round adapters and the run summary."""

    def __init__(
        self,
        run_dir: Path,
        cfg: FederationConfig,
        profiles: dict[int, ClientProfile],
        *,
        head_of: Callable[[ClientProfile], str] | None = None,
    ) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.run_dir = Path(run_dir)
        self.cfg = cfg
        # the strategy's head key (FedLoRA.head_of): task and base model by default
        self.head_of: Callable[[ClientProfile], str] = head_of or (lambda p: p.head_group)
        for c in cfg.clients:
            if c.attack:
                logger.warning("ATTACK CLIENT %s: %s (benchmark setting)", c.id, c.attack)
        self.profiles = {p.client_id: p for p in profiles.values()}
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.writer = SummaryWriter(log_dir=str(self.run_dir / "tb"))
        self.history: list[dict[str, Any]] = []
        self.started = time.time()
        for p in self.profiles.values():
            if p.data:
                logger.info("client %s data: %s", p.client_id, p.data_report())
        self.write_progress("training")

    def write_progress(self, stage: str) -> None:
        """Rewrite ``progress.json``: the stage, the last finished round of
        ``rounds``, the clients it counted of those in the preset, its weighted
        training loss and accuracy, the largest ε a client reported (``None``
        without privacy) and the seconds since the recorder started."""
        last: dict[str, Any] = self.history[-1] if self.history else {}
        train, ev = last.get("train", {}), last.get("evaluate", {})
        eps = [float(v) for k, v in train.items() if k.endswith("/epsilon")]
        write_json_atomic(
            self.run_dir / PROGRESS_FILE,
            {
                "stage": stage,
                "round": int(last.get("round", 0)),
                "rounds": int(self.cfg.rounds),
                "clients": int(train.get("clients", len(self.profiles))),
                "clients_total": len(self.cfg.clients),
                "loss": train.get("train-loss"),
                "accuracy": ev.get("accuracy"),
                "epsilon": max(eps) if eps else None,
                "elapsed_s": time.time() - self.started,
            },
        )

    def save_state(self, out: Path, state: GlobalState) -> list[Path]:
        """Write one PEFT adapter dir per (base model, task) in ``state``.

        Each is saved at the largest rank of that task's clients on that base model:
        the LoRA group may be wider (with ``lora-grouping = "base-model"`` another
        task's clients may train higher ranks), and the slices beyond the task's own
        ranks hold only the other tasks' training. The saved adapter is what the
        task's widest client receives (:func:`fednet.lora.truncate_rank`).
        """
        from fednet.lora import truncate_rank
        from fednet.models import lora_targets, save_adapter

        task_rank: dict[tuple[str, str], int] = {}
        for q in self.profiles.values():
            key = (q.base_model, q.task)
            task_rank[key] = max(task_rank.get(key, 0), q.rank)
        written = []
        for p in {(p.base_model, p.task): p for p in self.profiles.values()}.values():
            group = p.lora_group(self.cfg.strategy.lora_grouping)
            if group not in state.lora or self.head_of(p) not in state.heads:
                continue
            rank = min(state.rank_of(group), task_rank[(p.base_model, p.task)])
            written.append(
                save_adapter(
                    out / check_name("base-model", p.base_model) / check_name("task", p.task),
                    lora_state=truncate_rank(state.lora[group], rank),
                    base_model=p.base_model,
                    rank=rank,
                    lora_alpha=self.cfg.lora_alpha(rank),
                    lora_dropout=self.cfg.lora.dropout,
                    target_modules=lora_targets(p.base_model, self.cfg.lora.target_modules),
                    head_state=state.heads[self.head_of(p)],
                    label_names=p.label_names,
                    task=p.task,
                )
            )
        return written

    def on_round(self, outcome: RoundOutcome) -> None:
        """Record one finished round."""
        r = outcome.server_round
        w = self.writer
        ev = dict(outcome.evaluate_metrics or {})
        tr = dict(outcome.train_metrics or {})
        for key, value in ev.items():
            if "/" in key:
                client, metric = key.split("/", 1)
                w.add_scalar(f"{metric}/{client}", value, r)
            else:
                w.add_scalar(f"{key}/weighted" if key in ("accuracy", "loss") else key, value, r)
        for key, value in tr.items():
            if "/" in key:
                client, metric = key.split("/", 1)
                w.add_scalar(f"{metric}/{client}", value, r)
        if "train-loss" in tr:
            w.add_scalar("train-loss/weighted", tr["train-loss"], r)
        for client, n in outcome.bytes_up.items():
            w.add_scalar(f"bytes-up/{client}", n, r)
        for client, n in outcome.bytes_down.items():
            w.add_scalar(f"bytes-down/{client}", n, r)
        w.add_scalar("bytes-up/total", sum(outcome.bytes_up.values()), r)
        w.add_scalar("bytes-down/total", sum(outcome.bytes_down.values()), r)
        for key, value in outcome.diagnostics.items():  # e.g. svd-energy/<group>
            w.add_scalar(key, value, r)
        for status in ("rejected", "clipped", "down-weighted"):
            w.add_scalar(
                f"updates-{status}/total",
                sum(e["status"] == status for e in outcome.events),
                r,
            )
        for e in outcome.events:
            w.add_scalar(f"updates-{e['status']}/{e['client']}", 1.0, r)
            w.add_text(f"update-events/{e['client']}", f"{e['stage']}: {e.get('detail', '')}", r)
        for row in outcome.contributions:
            if row.get("contribution") is not None:
                w.add_scalar(f"contribution/{row['client']}", row["contribution"], r)
            if row.get("cosine") is not None:
                w.add_scalar(f"cosine-to-aggregate/{row['client']}", row["cosine"], r)
        w.flush()
        self.save_state(
            self.run_dir / "rounds" / str(r), GlobalState.from_arrayrecord(outcome.arrays)
        )
        self.history.append(
            {
                "round": r,
                "evaluate": ev,
                "train": tr,
                "bytes_up": outcome.bytes_up,
                "bytes_down": outcome.bytes_down,
                "wall_s": outcome.wall_s,
                "events": outcome.events,
                "diagnostics": outcome.diagnostics,
                "contributions": outcome.contributions,
            }
        )
        write_json_atomic(self.run_dir / "contributions.json", self.contribution_ledger())
        self.write_progress("training" if r < self.cfg.rounds else "personalizing")
        logger.info(
            "round %s: accuracy %.4f (weighted), %.4f (mean of clients)",
            r,
            ev.get("accuracy", float("nan")),
            ev.get("accuracy-mean", float("nan")),
        )

    def contribution_ledger(self) -> dict[str, Any]:
        """Every round's contribution rows, as ``contributions.json`` holds them."""
        return {
            "method": "gradient-projection",
            "rows": [row for h in self.history for row in h.get("contributions", [])],
        }

    def epsilon_of(
        self, client_id: str, personalized: dict[str, dict[str, float]], key: str = "epsilon"
    ) -> float | None:
        """The last ε the client reported (its ledger composes every release).

        ``key`` is ``"epsilon"`` (all releases), ``"update-epsilon"`` (DP-SGD and
        update releases) or ``"sketch-epsilon"``.
        """
        if key in personalized.get(client_id, {}):
            return personalized[client_id][key]
        for h in reversed(self.history):
            if f"{client_id}/{key}" in h["train"]:
                return float(h["train"][f"{client_id}/{key}"])
        return None

    def finish(
        self,
        personalized: dict[str, dict[str, float]],
        refusals: dict[str, str] | None = None,
        failures: dict[str, list[dict[str, Any]]] | None = None,
        finished: list[str] | None = None,
    ) -> dict[str, Any]:
        """Write ``summary.json`` and close TensorBoard; return the summary.

        ``failures`` maps a client id (or ``"node <id>"``) to its failures
        (``round``, ``stage``, ``reason``); ``finished`` lists the clients that
        finished. Without ``finished`` every profiled client counts as finished.
        """
        failures = failures or {}
        done = sorted(self.profiles) if finished is None else sorted(finished)
        last: dict[str, Any] = self.history[-1] if self.history else {"evaluate": {}, "round": 0}
        ev = last["evaluate"]
        rounds = max(1, len(self.history))
        events = [e for h in self.history for e in h.get("events", [])]
        clients: dict[str, Any] = {}
        for cid, p in sorted(self.profiles.items()):
            up = sum(h["bytes_up"].get(cid, 0) for h in self.history)
            down = sum(h["bytes_down"].get(cid, 0) for h in self.history)
            clients[cid] = {
                "base_model": p.base_model,
                "task": p.task,
                "rank": p.rank,
                "num_examples": p.num_examples,
                "accuracy": ev.get(f"{cid}/accuracy"),
                "loss": ev.get(f"{cid}/loss"),
                "personalized_accuracy": personalized.get(cid, {}).get("accuracy"),
                "bytes_up_total": up,
                "bytes_down_total": down,
                "bytes_up_per_round": up / rounds,
                "epsilon": self.epsilon_of(cid, personalized),
                "update_epsilon": self.epsilon_of(cid, personalized, "update-epsilon"),
                "sketch_epsilon": self.epsilon_of(cid, personalized, "sketch-epsilon"),
                "refused": (refusals or {}).get(cid),
                "data": p.data_report(),
                "finished": cid in done,
                "failures": failures.get(cid, []),
                "updates_rejected": sum(
                    e["client"] == cid and e["status"] == "rejected" for e in events
                ),
                "contribution_mean": _mean(
                    [
                        r["contribution"]
                        for h in self.history
                        for r in h.get("contributions", [])
                        if r["client"] == cid and r.get("contribution") is not None
                    ]
                ),
            }
        for c in self.cfg.clients:
            if c.id not in clients:
                clients[c.id] = {
                    "base_model": c.base_model,
                    "task": c.task,
                    "finished": False,
                    "failures": failures.get(c.id)
                    or [{"round": 0, "stage": "profile", "reason": "no valid profile received"}],
                }
        clients = dict(sorted(clients.items()))
        need = max(1, self.cfg.strategy.min_clients)
        if len(done) < need:
            logger.error(
                "%d of %d clients finished (%s), fewer than strategy.min-clients %d; failed: %s",
                len(done),
                len(self.cfg.clients),
                ", ".join(done) or "none",
                need,
                "; ".join(f"{w}: {f[-1]['reason']}" for w, f in sorted(failures.items())) or "none",
            )
        bases = sorted({p.base_model for p in self.profiles.values()})
        full = {b: base_model_nbytes(b) for b in bases}
        tasks: dict[str, Any] = {}
        for cid, c in clients.items():
            t = tasks.setdefault(
                c["task"], {"clients": [], "accuracy": [], "personalized": [], "base_models": {}}
            )
            t["clients"].append(cid)
            if c.get("accuracy") is not None:
                t["accuracy"].append(c["accuracy"])
                t["base_models"].setdefault(c["base_model"], []).append(c["accuracy"])
            if c.get("personalized_accuracy") is not None:
                t["personalized"].append(c["personalized_accuracy"])
        for t in tasks.values():
            t["accuracy"] = sum(t["accuracy"]) / len(t["accuracy"]) if t["accuracy"] else None
            t["personalized"] = (
                sum(t["personalized"]) / len(t["personalized"]) if t["personalized"] else None
            )
            # mean accuracy of the task's clients on each base model (each has its own head)
            t["base_models"] = {b: sum(a) / len(a) for b, a in sorted(t["base_models"].items())}
        summary = {
            "federation": self.cfg.name,
            "preset": self.cfg.source,
            "strategy": self.cfg.strategy.name,
            "rounds_completed": last["round"],
            "final": {k: v for k, v in ev.items() if "/" not in k},
            "tasks": tasks,
            "clients": clients,
            "base_model_bytes": full,
            "upload_fraction_of_base_per_round": {
                cid: c["bytes_up_per_round"] / full[c["base_model"]]
                for cid, c in clients.items()
                if "bytes_up_per_round" in c
            },
            "clients_finished": done,
            "min_clients": need,
            "complete": len(done) >= need,
            "failed_clients": {w: f for w, f in sorted(failures.items())},
            "privacy": privacy_summary(self.cfg),
            "refusals": dict(refusals or {}),  # also nodes that refused to join
            "robust": self.cfg.strategy.robust,
            # benchmark attack clients (clients.attack): never silent
            "attacks": {c.id: c.attack for c in self.cfg.clients if c.attack},
            "rank_aggregation": self.cfg.strategy.rank_aggregation,
            "update_events": events,
            "history": self.history,
            "wall_s": time.time() - self.started,
        }
        write_json_atomic(self.run_dir / "summary.json", summary)
        self.write_progress("finished")
        self.writer.close()
        return summary


def _num(value: float | None) -> str:
    """A metric for people: four decimals, or ``-`` when there is none."""
    return "-" if value is None else f"{value:.4f}"


def format_summary(summary: dict[str, Any], run_dir: Path) -> str:
    """The lines ``fednet simulate`` prints: accuracy per task (and per base model when a
    task's clients are on several), and every failed client."""
    final = summary["final"]
    lines = [
        f"run: {run_dir}",
        f"final accuracy: weighted {_num(final.get('accuracy'))}, "
        f"mean of clients {_num(final.get('accuracy-mean'))}",
    ]
    for task, t in sorted(summary["tasks"].items()):
        pers = t["personalized"]
        lines.append(
            f"  {task:<20} shared {_num(t['accuracy'])}"
            + (f"  personalised {_num(pers)}" if pers is not None else "")
        )
        by_base = t.get("base_models", {})
        if len(by_base) > 1:
            lines += [f"    on {base:<17} shared {_num(acc)}" for base, acc in by_base.items()]
    for who, attack in sorted(summary.get("attacks", {}).items()):
        lines.append(f"  ATTACK CLIENT: {who} trains on {attack}-poisoned data")
    for who, failures in sorted(summary.get("failed_clients", {}).items()):
        last = failures[-1]
        lines.append(f"  failed: {who} (round {last['round']}, {last['stage']}): {last['reason']}")
    if not summary.get("complete", True):
        lines.append(
            f"only {len(summary['clients_finished'])} clients finished, fewer than "
            f"strategy.min-clients ({summary['min_clients']})"
        )
    return "\n".join(lines)
