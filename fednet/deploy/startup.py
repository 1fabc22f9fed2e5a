"""Measure a client's per-message start-up cost: deployment against simulation.

In deployment Flower starts a fresh ``flwr-clientapp`` process for every
message: it starts Python, imports the ClientApp (and with it torch,
transformers, peft, ...), then builds the client's runtime (data, tokenizer,
base model with LoRA) before it can handle the message. In simulation a Ray
worker keeps the runtime between messages, so only its first message pays.

``python -m fednet.deploy.startup --config configs/deploy-tiny.toml --client spam-0``
times, in fresh interpreters, exactly that path: ``import clients.app`` and one
``query`` message through the real ClientApp, then a second message in the
same process (the warm, simulation-like case). It reports the median of
``--repeats`` runs without and with the local data cache that
``flower-client`` sets up (``--state-dir``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["measure", "main"]

_ROOT = Path(__file__).resolve().parents[2]
_PHASES = ("interpreter", "imports", "first_message", "warm_message", "total")


def _probe(preset: str, client_id: str, state_dir: str | None, spawned_at: float) -> dict:
    """Run in a fresh interpreter: time the ClientApp import and two query messages."""
    t0 = time.time()
    sys.path.insert(0, str(_ROOT))
    import importlib

    app = importlib.import_module("clients.app").app
    from flwr.app import Context, Message, MessageType, RecordDict
    from flwr.supercore.task_identity import TaskIdentity

    t1 = time.time()
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
    node_config: dict[str, str | int | float | bool] = {"client-id": client_id, "preset": preset}
    if state_dir:
        node_config["state-dir"] = state_dir
    context = Context(
        run_id=1,
        node_id=1,
        node_config=node_config,
        state=RecordDict(),
        run_config={"preset": preset, "num-server-rounds": 0, "run-dir": ""},
    )

    def one() -> None:
        msg = Message(RecordDict(), dst_node_id=1, message_type=MessageType.QUERY)
        reply = app(msg, context)
        if reply.has_error() or not reply.content.config_records:
            raise RuntimeError(f"the ClientApp failed the query: {reply.error}")

    one()
    t2 = time.time()
    one()
    t3 = time.time()
    return {
        "interpreter": t0 - spawned_at,
        "imports": t1 - t0,
        "first_message": t2 - t1,
        "warm_message": t3 - t2,
        "total": t2 - spawned_at,
        "modules": sorted({m.split(".")[0] for m in sys.modules}),
    }


def _run_probe(preset: str, client_id: str, state_dir: str | None) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "fednet.deploy.startup",
        "--probe",
        "--config",
        preset,
        "--client",
        client_id,
        "--spawned-at",
        repr(time.time()),
    ]
    if state_dir:
        cmd += ["--state-dir", state_dir]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=_ROOT, timeout=600, env=_env())
    if out.returncode != 0:
        raise RuntimeError(f"start-up probe failed ({out.returncode}): {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _env() -> dict[str, str]:
    import os

    env = dict(os.environ)
    env.update(
        {
            "HF_HUB_OFFLINE": "1",
            "FLWR_TELEMETRY_ENABLED": "0",
            "TOKENIZERS_PARALLELISM": "false",
            "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
        }
    )
    return env


_HEAVY = frozenset({"datasets", "pandas", "pyarrow", "flwr_datasets", "opacus", "matplotlib"})


def measure(preset: str, client_id: str, *, repeats: int = 3) -> dict[str, dict[str, Any]]:
    """Median phase times (seconds) without and with the data cache.

    Each entry also lists ``heavy_modules``: the avoidable heavy packages the
    first message imported.
    """
    from fednet.config import resolve_path

    if repeats < 1:
        raise ValueError(f"`repeats` must be >= 1, got {repeats}")
    preset = str(resolve_path(preset))
    out: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="fednet-startup-") as tmp:
        _run_probe(preset, client_id, tmp)  # fills the cache; not counted
        for label, state_dir in (("no cache", None), ("cached", tmp)):
            runs = [_run_probe(preset, client_id, state_dir) for _ in range(repeats)]
            row: dict[str, Any] = {k: statistics.median(r[k] for r in runs) for k in _PHASES}
            row["heavy_modules"] = sorted(set(runs[0]["modules"]) & _HEAVY)
            out[label] = row
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fednet.deploy.startup``: print the start-up table."""
    p = argparse.ArgumentParser(
        prog="python -m fednet.deploy.startup",
        description="per-message ClientApp start-up, in seconds",
    )
    p.add_argument("--config", default="configs/deploy-tiny.toml")
    p.add_argument("--client", default=None, help="client id (default: the first)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--state-dir", default=None, help=argparse.SUPPRESS)
    p.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--spawned-at", type=float, default=0.0, help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = p.parse_args(argv)
    if args.probe:
        print(json.dumps(_probe(args.config, args.client, args.state_dir, args.spawned_at)))
        return 0
    from fednet.config import load_preset

    client = args.client or load_preset(args.config).clients[0].id
    res = measure(args.config, client, repeats=args.repeats)
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    print(
        f"per-message ClientApp start-up, {args.config}, client {client}, "
        f"median of {args.repeats} (seconds)"
    )
    print(f"{'':34}{'python':>8}{'imports':>9}{'runtime':>9}{'total':>8}")
    for label, r in res.items():
        print(
            f"deployment, {label:<22}{r['interpreter']:8.2f}{r['imports']:9.2f}"
            f"{r['first_message']:9.2f}{r['total']:8.2f}   heavy: "
            f"{', '.join(r['heavy_modules']) or '-'}"
        )
    warm = statistics.median(r["warm_message"] for r in res.values())
    print(f"simulation, warm worker{'':11}{'':8}{'':9}{warm:9.3f}{warm:8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
