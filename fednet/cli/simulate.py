"""``fednet simulate``: run a federation on this machine."""

from __future__ import annotations

import argparse
from pathlib import Path

from fednet.cli._common import add_command, check_positive
from fednet.errors import FednetError

__all__ = ["register", "cmd_simulate"]


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "simulate",
        help="run a federation with Flower's Simulation Engine",
        description="Load and check a preset, then run its federation on this machine with "
        "Flower's Simulation Engine. Exits 1 when fewer clients than strategy.min-clients "
        "finish, 2 on a bad preset or argument.",
    )
    p.add_argument("--config", default="configs/default.toml", help="TOML preset")
    p.add_argument("--rounds", type=int, default=None, help="override federation.rounds")
    p.add_argument("--run-dir", default=None, help="output directory (default: runs/<time>)")
    p.add_argument("--strategy", default=None, help="override strategy.name (e.g. local)")
    p.set_defaults(func=cmd_simulate)


def cmd_simulate(args: argparse.Namespace) -> int:
    """Load and check the preset, then run it in simulation."""
    import dataclasses

    from fednet.config import load_preset
    from fednet.federation.apps import new_run_dir
    from fednet.federation.preflight import check_federation

    check_positive("--rounds", args.rounds)
    cfg = load_preset(args.config)
    if args.rounds:
        cfg = cfg.with_overrides(rounds=args.rounds)
    if args.strategy:
        cfg = cfg.with_overrides(strategy=dataclasses.replace(cfg.strategy, name=args.strategy))
    check_federation(cfg)
    run_dir = Path(args.run_dir) if args.run_dir else new_run_dir()
    if run_dir.exists() and any(run_dir.iterdir()):
        raise FednetError(f"`--run-dir` {str(run_dir)!r} exists and is not empty")
    from fednet.federation.recorder import format_summary
    from fednet.federation.simulation import simulate

    summary = simulate(cfg, run_dir)
    print(format_summary(summary, run_dir))
    return 0 if summary.get("complete", True) else 1
