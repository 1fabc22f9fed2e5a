"""Privacy benchmark: accuracy against epsilon, and the utility of DP sketches.

For each target ε the reduced preset ``configs/bench-privacy.toml`` is run as a
real Flower simulation with sample-level DP-SGD (Opacus) calibrated so that each
client's whole run, DP-SGD steps and its capability sketch composed, stays
within ε (three quarters of it for DP-SGD, one quarter for the sketch; the
ledger composes both with RDP, so the reported ε is at most the target).
ε = ∞ is the same run without DP. Sketch utility: for queries from the three
data sets' held-out catalogue test splits, the nearest sketch (cosine, in the
frozen base encoder's space) must belong to a client trained on the query's
data set.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

from fednet.config import FederationConfig, load_preset
from fednet.privacy.config import PrivacyConfig

__all__ = ["EPSILONS", "privacy_config_for", "run_privacy_bench", "sketch_utility"]

logger = logging.getLogger(__name__)

EPSILONS = (1.0, 4.0, 8.0, math.inf)
SKETCH_SHARE = 0.25


def privacy_config_for(epsilon: float, *, sample_rate: float, delta: float = 1e-5) -> PrivacyConfig:
    """DP-SGD (at the public ``sample_rate``) plus sketch, together within ``epsilon``
    (no DP for ∞)."""
    if math.isinf(epsilon):
        return PrivacyConfig(
            enabled=False, epsilon_budget=math.inf, delta=delta, sketch_epsilon=8.0 * SKETCH_SHARE
        )
    return PrivacyConfig(
        enabled=True,
        epsilon_budget=epsilon,
        delta=delta,
        dpsgd=True,
        dpsgd_epsilon=epsilon * (1 - SKETCH_SHARE),
        dpsgd_max_grad_norm=1.0,
        dpsgd_sample_rate=sample_rate,
        sketch_epsilon=epsilon * SKETCH_SHARE,
    )


def sketch_utility(
    cfg: FederationConfig, run_dir: Path, *, per_dataset: int = 200
) -> dict[str, Any]:
    """Share of held-out queries whose nearest sketch is a client of their data set."""
    import torch
    from safetensors.torch import load_file

    from fednet.data import load_splits
    from fednet.models import create_base_model, load_tokenizer, mean_pool
    from fednet.privacy import Sketch
    from fednet.training import embed_texts

    sketches = {}
    for c in cfg.clients:
        path = run_dir / "sketches" / c.id / "sketch.safetensors"
        if path.is_file():
            sketches[c.id] = Sketch.from_tensors(load_file(str(path)))
    if not sketches:
        raise RuntimeError(f"no sketches under {run_dir / 'sketches'}")
    dataset_of = {c.id: c.dataset for c in cfg.clients}
    base_name = cfg.clients[0].base_model
    base, tok = create_base_model(base_name), load_tokenizer(base_name)

    def encode(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return mean_pool(base(input_ids=ids, attention_mask=mask).last_hidden_state, mask)

    per: dict[str, float] = {}
    hits = total = 0
    for dataset in sorted({c.dataset for c in cfg.clients}):
        test = load_splits(dataset, seed=cfg.seed, test_fraction=cfg.test_fraction)["test"]
        test = test.shuffle(seed=cfg.seed).select(range(min(per_dataset, len(test))))
        q = embed_texts(encode, list(test["text"]), tok, max_length=cfg.max_length)
        ids = sorted(sketches)
        scores = torch.stack([sketches[i].score(q) for i in ids], dim=1)
        chosen = [ids[j] for j in scores.argmax(1).tolist()]
        ok = sum(dataset_of[c] == dataset for c in chosen)
        per[dataset] = ok / len(chosen)
        hits, total = hits + ok, total + len(chosen)
    return {
        "accuracy": hits / total,
        "per_dataset": per,
        "queries": total,
        "sketch_epsilon": {cid: float(s.epsilon) for cid, s in sketches.items()},
    }


def _core_share(clients: int) -> float:
    """Cores per client so that every client trains at once (at most one each).

    Three clients on two cores finish a round in 1.5 client-times instead of 2.
    Rounded down, so Ray fits all of them.
    """
    cpus = os.cpu_count() or 1
    return min(1.0, math.floor(1000 * cpus / clients) / 1000)


def own_evaluations(state_dir: Path, client_ids: list[str]) -> dict[str, dict[str, float]]:
    """Each client's last evaluation from its own record (``metrics.jsonl``).

    Under privacy a client's accuracy does not leave it; in a benchmark the
    data owner is the benchmark itself, which reads the clients' own records.
    """
    out: dict[str, dict[str, float]] = {}
    for cid in client_ids:
        path = state_dir / cid / "metrics.jsonl"
        if not path.is_file():
            continue
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        evals = [r for r in rows if r.get("kind") == "evaluate"]
        if evals:
            out[cid] = max(evals, key=lambda r: r.get("round", 0))["metrics"]
    return out


def run_privacy_bench(
    out_dir: str | Path, *, quick: bool = False, preset: str = "configs/bench-privacy.toml"
) -> dict[str, Any]:
    """Run the benchmark; write ``privacy.json`` into ``out_dir`` and return it."""
    from fednet.federation.simulation import simulate

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    base = load_preset("configs/tiny.toml" if quick else preset)
    if quick:
        base = dataclasses.replace(base, rounds=1, personalize_steps=0)
    rows = []
    utility: dict[str, Any] | None = None
    # DP-SGD's sampling rate is public: the benchmark declares the median of the clients'
    # batch-size / n, as a federation would from the sizes it plans for
    from fednet.federation.client_data import load_client_data

    rates = sorted(
        min(1.0, c.batch_size / len(load_client_data(base, c).train_texts)) for c in base.clients
    )
    sample_rate = rates[len(rates) // 2]
    for eps in EPSILONS:
        label = "inf" if math.isinf(eps) else f"{eps:g}"
        run_dir = out_dir.parent / f"{out_dir.name}-work" / f"eps-{label}"
        # each row is a fresh federation on the same data: a budget of its own
        state = run_dir.parent / f"state-eps-{label}"
        cfg = dataclasses.replace(
            base, privacy=privacy_config_for(eps, sample_rate=sample_rate), state_dir=str(state)
        )
        logger.info("privacy bench: epsilon %s", label)
        t0 = time.time()
        summary = simulate(cfg, run_dir, num_cpus_per_client=_core_share(len(cfg.clients)))
        clients = summary["clients"]
        own = own_evaluations(state, sorted(clients))
        acc = {k: own.get(k, {}).get("accuracy", v["accuracy"]) for k, v in clients.items()}
        known = [a for a in acc.values() if a is not None]
        rows.append(
            {
                "target_epsilon": None if math.isinf(eps) else eps,
                "accuracy_mean": summary["final"].get("accuracy-mean")
                or (sum(known) / len(known) if known else None),
                "accuracy_weighted": summary["final"].get("accuracy"),
                "per_client_accuracy": acc,
                "per_client_epsilon": {k: v["epsilon"] for k, v in clients.items()},
                "refused": {k: v["refused"] for k, v in clients.items() if v["refused"]},
                "wall_s": time.time() - t0,
            }
        )
        if eps == 8.0:
            utility = sketch_utility(cfg, run_dir, per_dataset=50 if quick else 200)
    nondp = rows[-1]["accuracy_mean"]
    at8 = next(r for r in rows if r["target_epsilon"] == 8.0)["accuracy_mean"]
    report = {
        "preset": "configs/tiny.toml (quick)" if quick else preset,
        "delta": base.privacy.delta,
        "mechanism": "DP-SGD (Opacus, RDP) for 3/4 of epsilon + DP sketch for 1/4, per client",
        "rows": rows,
        "sketch_utility_at_eps_8": utility,
        "targets": {
            "eps8_within_5_points_of_nondp": {
                "value": None if at8 is None or nondp is None else nondp - at8,
                "met": at8 is not None and nondp is not None and nondp - at8 <= 0.05,
            },
            "sketch_nearest_is_own_dataset_90pct": {
                "value": utility["accuracy"] if utility else None,
                "met": bool(utility and utility["accuracy"] >= 0.9),
            },
        },
    }
    (out_dir / "privacy.json").write_text(json.dumps(report, indent=2, default=float))
    return report


def main() -> None:
    """``python -m fednet.bench.privacy [--quick] [--out DIR]``."""
    import argparse

    from fednet.logs import setup_logging

    parser = argparse.ArgumentParser(prog="python -m fednet.bench.privacy")
    parser.add_argument("--quick", action="store_true", help="tiny-bert, one round")
    parser.add_argument("--out", default=f"bench/results/privacy-{time.strftime('%Y%m%d-%H%M%S')}")
    args = parser.parse_args()
    setup_logging()
    report = run_privacy_bench(args.out, quick=args.quick)
    for row in report["rows"]:
        eps = row["target_epsilon"]
        print(
            f"epsilon {'inf' if eps is None else eps:>5}: mean accuracy "
            f"{row['accuracy_mean']:.4f}  ledger epsilon "
            f"{max(v for v in row['per_client_epsilon'].values() if v is not None):.3f}"
        )
    print(f"sketch utility at epsilon 8: {report['sketch_utility_at_eps_8']['accuracy']:.3f}")
    print(f"written: {Path(args.out) / 'privacy.json'}")


if __name__ == "__main__":
    main()
