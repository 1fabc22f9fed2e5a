"""The ``fednet`` command line.

``fednet simulate`` runs a federation on this machine with Flower's Simulation
Engine. Errors in configs or arguments print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from fednet.errors import FednetError

__all__ = ["main", "build_parser", "register_command"]

logger = logging.getLogger("fednet.cli")

_COMMANDS: dict[str, Callable[[argparse._SubParsersAction], None]] = {}


def register_command(name: str) -> Callable:
    """Register a function that adds subcommand ``name`` to the parser."""
    def deco(fn: Callable[[argparse._SubParsersAction], None]) -> Callable:
        _COMMANDS[name] = fn
        return fn
    return deco


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of the record."""

    @property  # type: ignore[override]
    def stream(self):  # type: ignore[no-untyped-def]
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:  # type: ignore[no-untyped-def]
        pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def setup_logging(verbose: bool = False) -> None:
    """Human-readable progress on stderr; quiet third-party chatter."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="torch")
    root = logging.getLogger("fednet")
    if not root.handlers:
        h = _StderrHandler()
        h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
        root.addHandler(h)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False


@register_command("simulate")
def _add_simulate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("simulate", help="run a federation with Flower's Simulation Engine")
    p.add_argument("--config", default="configs/default.toml", help="TOML preset")
    p.add_argument("--rounds", type=int, default=None, help="override federation.rounds")
    p.add_argument("--run-dir", default=None, help="output directory (default runs/<time>)")
    p.add_argument("--strategy", default=None, help="override strategy.name (e.g. local)")
    p.set_defaults(func=cmd_simulate)


def _positive(name: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise FednetError(f"`{name}` must be >= 1, got {value}")


def cmd_simulate(args: argparse.Namespace) -> int:
    """Load and check the preset, then run it in simulation."""
    import dataclasses

    from fednet.config import load_preset
    from fednet.federation.apps import new_run_dir
    from fednet.federation.preflight import check_federation

    _positive("--rounds", args.rounds)
    cfg = load_preset(args.config)
    if args.rounds:
        cfg = cfg.with_overrides(rounds=args.rounds)
    if args.strategy:
        cfg = cfg.with_overrides(strategy=dataclasses.replace(cfg.strategy, name=args.strategy))
    check_federation(cfg)
    run_dir = Path(args.run_dir) if args.run_dir else new_run_dir()
    if run_dir.exists() and any(run_dir.iterdir()):
        raise FednetError(f"`--run-dir` {str(run_dir)!r} exists and is not empty")
    from fednet.federation.simulation import simulate

    summary = simulate(cfg, run_dir)
    final = summary["final"]
    print(f"run: {run_dir}")
    print(f"final accuracy: weighted {final.get('accuracy', float('nan')):.4f}, "
          f"mean of clients {final.get('accuracy-mean', float('nan')):.4f}")
    for task, t in sorted(summary["tasks"].items()):
        pers = t["personalized"]
        print(f"  {task:<20} shared {t['accuracy']:.4f}"
              + (f"  personalised {pers:.4f}" if pers is not None else ""))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fednet", description="Federated LoRA co-fine-tuning and joint "
                     "inference over a network of models.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add in _COMMANDS.values():
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fednet`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    try:
        return int(args.func(args) or 0)
    except (FednetError, ValueError, TypeError, FileNotFoundError) as e:
        print(f"fednet: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fednet: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
