"""``fednet simulate``: run a federation on this machine."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fednet.cli._common import add_command, check_positive
from fednet.errors import FednetError

__all__ = ["register", "cmd_simulate"]


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "simulate",
        help="run a federation with Flower's Simulation Runtime (flwr run, local SuperLink)",
        description="Load and check a preset, then run its federation on this machine: "
        "`flwr run` on a local SuperLink in simulation mode. The terminal shows one progress "
        "display; Flower's, Ray's and the libraries' output goes to <run-dir>/run.log "
        "(-v shows it too). Exits 1 when the run fails or fewer clients than "
        "strategy.min-clients finish, 2 on a bad preset or argument.",
    )
    p.add_argument("--config", default="configs/default.toml", help="TOML preset")
    p.add_argument("--rounds", type=int, default=None, help="override federation.rounds")
    p.add_argument("--run-dir", default=None, help="output directory (default: runs/<time>)")
    p.add_argument("--strategy", default=None, help="override strategy.name (e.g. local)")
    p.set_defaults(func=cmd_simulate)


def cmd_simulate(args: argparse.Namespace) -> int:
    """Load and check the preset, then run it with ``flwr run`` on a local SuperLink.

    The terminal shows one progress display and, at the end, where the results
    are and what to run next; everything Flower, Ray and the libraries say goes
    to ``<run-dir>/run.log`` (``-v`` shows it here too). Exit status 1 when the
    run failed or fewer clients finished than ``strategy.min-clients``.
    """
    import dataclasses

    from fednet.cli._display import RunDisplay, next_steps
    from fednet.config import load_preset
    from fednet.deploy.simulate import LOG_FILE, simulate_local
    from fednet.errors import ConfigError
    from fednet.federation.apps import client_key_dir, new_run_dir
    from fednet.federation.preflight import check_federation
    from fednet.federation.recorder import format_summary
    from fednet.logs import log_to_file

    check_positive("--rounds", args.rounds)
    cfg = load_preset(args.config)
    if args.rounds:
        cfg = cfg.with_overrides(rounds=args.rounds)
    if args.strategy:
        cfg = cfg.with_overrides(strategy=dataclasses.replace(cfg.strategy, name=args.strategy))
    check_federation(cfg)
    attackers = [c.id for c in cfg.clients if c.attack]
    if attackers:  # flwr run reads the preset with from_run_config, which refuses them
        raise ConfigError(
            f"`clients[{attackers[0]}].attack` is a benchmark setting: run it with "
            f"`fednet bench-aggregation --attacks ...`, not `fednet simulate` ({cfg.source})"
        )
    run_dir = Path(args.run_dir) if args.run_dir else new_run_dir()
    if run_dir.exists() and any(run_dir.iterdir()):
        raise FednetError(f"`--run-dir` {str(run_dir)!r} exists and is not empty")
    run_dir.mkdir(parents=True, exist_ok=True)
    preset = Path(cfg.source)
    if args.strategy:  # the apps read a preset file: this run's, with the strategy replaced
        preset = _write_preset(preset, run_dir / "preset.toml", strategy=args.strategy)
    with (
        log_to_file(run_dir / LOG_FILE, args.verbose),
        RunDisplay(rounds=cfg.rounds, clients=len(cfg.clients)) as display,
    ):
        run = simulate_local(
            preset,
            run_dir,
            num_supernodes=len(cfg.clients),
            rounds=args.rounds or 0,
            on_progress=display.update,
            on_line=display.echo if args.verbose else None,
        )
    summary = run.summary
    if summary is None or run.status != "finished:completed":
        print(
            f"fednet: the run ended with status {run.status}"
            + ("" if summary is not None else " without writing summary.json")
            + f"; see {run.log_path}",
            file=sys.stderr,
        )
        return 1
    print(format_summary(summary, run_dir))
    owners = sorted(m for m in summary.get("clients_finished", []))
    keys = {cid: client_key_dir(cfg, cid) / f"{cid}.pub" for cid in owners}
    print("\n".join(next_steps(run_dir, log_path=run.log_path, owner_keys=keys)))
    return 0 if summary.get("complete", True) else 1


def _write_preset(source: Path, dest: Path, *, strategy: str) -> Path:
    """Copy the TOML preset ``source`` to ``dest`` with ``strategy.name`` replaced."""
    import tomllib

    import tomli_w

    data = tomllib.loads(source.read_text(encoding="utf-8"))
    data.setdefault("strategy", {})["name"] = strategy
    dest.write_text(tomli_w.dumps(data), encoding="utf-8")
    return dest
