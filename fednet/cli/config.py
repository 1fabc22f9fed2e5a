"""``fednet config``: the JSON Schema of a preset, and a check of a preset file."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fednet.cli._common import add_command, add_subcommands

__all__ = ["register", "cmd_schema", "cmd_check"]


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "config", help="the JSON Schema of a preset; check a preset")
    config = add_subcommands(p, "config_command")
    schema = add_command(
        config,
        "schema",
        help="write the JSON Schema of a preset (configs/*.toml)",
        description="Write the JSON Schema of a preset: every table, key, type, range and "
        "choice, so an editor completes and checks presets (e.g. Taplo: start the preset "
        "with #:schema ./preset.schema.json).",
    )
    schema.add_argument("-o", "--output", default=None, help="write to FILE (default: stdout)")
    schema.set_defaults(func=cmd_schema)
    check = add_command(
        config,
        "check",
        help="check a preset: every problem, one line each, or a summary",
        description="Load and check a preset as `fednet simulate` does before it runs, "
        "without reading any data: every problem is named at once, one line each.",
    )
    check.add_argument("preset", help="the TOML preset")
    check.set_defaults(func=cmd_check)


def cmd_schema(args: argparse.Namespace) -> int:
    """Print the preset JSON Schema, or write it to ``--output``."""
    from fednet.config import preset_schema

    text = json.dumps(preset_schema(), indent=2) + "\n"
    if args.output is None:
        sys.stdout.write(text)
        return 0
    from fednet.atomic import write_atomic

    write_atomic(Path(args.output), text.encode("utf-8"), mode=0o644)
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Load ``args.preset``; print a one-line summary (errors go through ``main``)."""
    from fednet.config import load_preset

    cfg = load_preset(args.preset)
    print(
        f"{cfg.source}: ok: {len(cfg.clients)} clients, {cfg.rounds} rounds, "
        f"strategy {cfg.strategy.name} ({cfg.strategy.rank_aggregation})"
    )
    return 0
