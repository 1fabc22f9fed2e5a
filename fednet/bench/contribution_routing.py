"""Does the contribution prior help routing? A small measurement.

One federation is simulated with a malicious client (``clients.attack``) and
personalisation, so that every client publishes two different adapters. The
run is published to a private hub (every manifest signed by its client, with
its contribution score), and one mixed stream of held-out catalogue queries is
answered in local mode by the same router with ``router.contribution-weight``
0 (off) and with each weight given. The report gives, per weight, the routed
accuracy, the share of queries answered by the attacker's adapters and the
backdoor success of the routed network (the fraction of triggered held-out
spam queries it answers ham).

Run it as ``python -m fednet.bench.contribution_routing --preset ... --out ...``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from fednet.config import FederationConfig, LoraGrouping, load_preset

__all__ = ["measure_contribution_routing", "run_contribution_routing"]

logger = logging.getLogger(__name__)


def measure_contribution_routing(
    cfg: FederationConfig,
    run_dir: str | Path,
    work: str | Path,
    *,
    weights: Sequence[float] = (0.0, 0.5, 2.0),
    router: str = "sketch",
    queries_per_dataset: int = 60,
    backdoor_queries: int = 60,
) -> dict[str, Any]:
    """Publish the finished run in ``run_dir`` to a hub under ``work`` and route over it.

    Parameters
    ----------
    cfg : FederationConfig
        The run's federation (its ``attack`` client is the attacker).
    run_dir, work : path
        The finished run, and a directory for the hub, keys and sketches.
    weights : sequence of float
        ``router.contribution-weight`` values; 0 is the router without the prior.
    router : str
        The router.
    queries_per_dataset, backdoor_queries : int
        Held-out queries per data set, and triggered spam queries.
    """
    from fednet.bench.queries import query_streams
    from fednet.bench.routing import stand_in_sketches
    from fednet.data import load_splits
    from fednet.data.poison import insert_trigger
    from fednet.hub.publish import keys_dir_trust, publish_run
    from fednet.hub.store import HubStore
    from fednet.inference.ask import Network
    from fednet.inference.config import AskConfig
    from fednet.routing import RouterConfig

    work = Path(work)
    attackers = {c.id for c in cfg.clients if c.attack}
    sketches = stand_in_sketches(Path(run_dir), cfg, work / "sketches")
    queries = query_streams(cfg, per_dataset=queries_per_dataset, warmup_per_dataset=0).measured
    spam = load_splits("sms-spam", seed=cfg.seed, test_fraction=cfg.test_fraction)["test"]
    spam_id = spam.features["label"].names.index("spam")
    triggered = [
        insert_trigger(t) for t, y in zip(spam["text"], spam["label"], strict=True) if y == spam_id
    ][:backdoor_queries]
    rows = []
    with HubStore(work / "hub") as store:
        # the measured run has an attacker by design; it goes to this temporary hub only
        published = publish_run(
            run_dir, store, vet=None, keys_dir=work / "keys", sketches=sketches, allow_attacked=True
        )
        store.trust = keys_dir_trust(work / "keys")  # the measurement plays every owner
        scores = {m.name: m.contribution for m in published}
        for w in weights:
            config = AskConfig(
                router=RouterConfig(name=router, top_k=1, contribution_weight=float(w)),
                max_length=cfg.max_length,
            )
            t0 = time.time()
            correct, by_attacker = 0, {"shared": 0, "personalized": 0}
            with Network(store, config=config, local=True) as net:
                for q in queries:
                    # a query longer than the network accepts is cut to its limit; the
                    # encoders read only the first `max-length` tokens of it anyway
                    answer = net.ask(q.text[: config.max_query_chars])
                    correct += answer.label == q.label
                    for kind in by_attacker:  # its shared adapter is everyone's in its group
                        by_attacker[kind] += any(
                            c.ok and c.adapter in {f"{a}-{kind}" for a in attackers}
                            for c in answer.calls
                        )
                ham = sum(net.ask(t[: config.max_query_chars]).label == "ham" for t in triggered)
            rows.append(
                {
                    "contribution_weight": float(w),
                    "accuracy": correct / len(queries),
                    "answered_by_attacker_personalized": by_attacker["personalized"] / len(queries),
                    "answered_by_attacker_shared": by_attacker["shared"] / len(queries),
                    "backdoor_success": ham / len(triggered) if triggered else None,
                    "wall_s": time.time() - t0,
                }
            )
            logger.info("contribution-weight %s: %s", w, rows[-1])
    return {
        "router": router,
        "queries": len(queries),
        "triggered_queries": len(triggered),
        "attackers": {c.id: c.attack for c in cfg.clients if c.attack},
        "contribution_scores": scores,
        "rows": rows,
    }


def run_contribution_routing(
    preset: str,
    out_dir: str | Path,
    *,
    attack: str = "label-flip",
    malicious: int | None = None,
    grouping: str = "base-model",
    personalize_steps: int = 10,
    weights: Sequence[float] = (0.0, 1.0, 4.0),
    queries_per_dataset: int = 60,
    num_cpus_per_client: float = 1.0,
) -> dict[str, Any]:
    """Simulate ``preset`` with one attack client, measure routing, write JSON and Markdown.

    ``num_cpus_per_client`` is passed to :func:`~fednet.federation.simulation.simulate`
    (2 on a two-core machine: one client at a time, half the memory).
    """
    from fednet.bench.aggregation import _with_attack, default_malicious
    from fednet.federation.simulation import simulate

    base = load_preset(preset)
    malicious = default_malicious(base) if malicious is None else malicious
    cfg = _with_attack(base, malicious, attack)
    cfg = dataclasses.replace(
        cfg,
        personalize_steps=personalize_steps,
        strategy=dataclasses.replace(cfg.strategy, lora_grouping=cast(LoraGrouping, grouping)),
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="fednet-contribroute-") as work:
        summary = simulate(cfg, Path(work) / "run", num_cpus_per_client=num_cpus_per_client)
        report = measure_contribution_routing(
            cfg,
            Path(work) / "run",
            Path(work) / "net",
            weights=weights,
            queries_per_dataset=queries_per_dataset,
        )
    report.update(
        preset=preset,
        lora_grouping=grouping,
        rounds=cfg.rounds,
        personalize_steps=personalize_steps,
        run_accuracy=summary["final"].get("accuracy"),
        wall_s=time.time() - started,
        command=(
            f"python -m fednet.bench.contribution_routing --preset {preset} --attack {attack} "
            f"--grouping {grouping} --personalize-steps {personalize_steps} "
            f"--weights {','.join(str(w) for w in weights)} "
            f"--queries-per-dataset {queries_per_dataset} --out {out_dir}"
        ),
    )
    (out / f"contribution-routing-{stamp}.json").write_text(json.dumps(report, indent=2))
    (out / f"contribution-routing-{stamp}.md").write_text(markdown(report))
    return report


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown."""
    lines = [
        f"# Contribution prior in routing: {report['preset']}",
        "",
        f'Attack clients: {report["attackers"]}; `lora-grouping = "{report["lora_grouping"]}"`, '
        f"{report['rounds']} round(s), {report['personalize_steps']} personalisation steps; "
        f"router `{report['router']}` (top-1, local mode); {report['queries']} mixed held-out "
        f"queries, {report['triggered_queries']} triggered spam queries; "
        f"{report['wall_s'] / 60:.1f} min. Command:",
        "",
        f"    {report['command']}",
        "",
        "Published contribution scores (mean gradient-projection share): "
        + ", ".join(
            f"`{k}` {v:.3f}" if v is not None else f"`{k}` -"
            for k, v in sorted(report["contribution_scores"].items())
        ),
        "",
        "| contribution-weight | routed accuracy | answered by the attacker's personalised "
        "adapter | by its copy of the shared adapter | backdoor success |",
        "|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        bd = "-" if r["backdoor_success"] is None else f"{r['backdoor_success']:.3f}"
        lines.append(
            f"| {r['contribution_weight']:g} | {r['accuracy']:.3f} | "
            f"{r['answered_by_attacker_personalized']:.3f} | "
            f"{r['answered_by_attacker_shared']:.3f} | {bd} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fednet.bench.contribution_routing``."""
    from fednet.logs import setup_logging

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--preset", default="configs/bench-aggregation-minilm.toml")
    p.add_argument("--attack", default="label-flip", choices=("label-flip", "backdoor"))
    p.add_argument("--grouping", default="base-model", choices=("base-model", "task"))
    p.add_argument("--personalize-steps", type=int, default=10)
    p.add_argument("--weights", default="0,1,4")
    p.add_argument("--queries-per-dataset", type=int, default=60)
    p.add_argument("--out", default="bench/results")
    p.add_argument("--cpus-per-client", type=float, default=1.0)
    args = p.parse_args(argv)
    setup_logging()
    report = run_contribution_routing(
        args.preset,
        args.out,
        attack=args.attack,
        grouping=args.grouping,
        personalize_steps=args.personalize_steps,
        weights=[float(w) for w in args.weights.split(",")],
        queries_per_dataset=args.queries_per_dataset,
        num_cpus_per_client=args.cpus_per_client,
    )
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
