# PYTHON_ARGCOMPLETE_OK
"""The ``fednet`` command line: one module per command group, assembled here.

``fednet simulate`` runs a federation on this machine with Flower's Simulation
Engine. Errors in configs or arguments print one line and exit with status 2.
``fednet completion bash|zsh|fish`` prints the shell code that completes
commands and options (argcomplete). The CLI is thin: each command parses its
arguments, calls the library and prints for people.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence

from fednet.cli._common import Parser, add_subcommands
from fednet.errors import FednetError
from fednet.logs import setup_logging
from fednet.registry import Registry

__all__ = ["COMMAND_GROUPS", "main", "build_parser", "register_command"]

#: Modules of ``fednet.cli``, one per command group, in the order ``fednet --help``
#: lists them. Each has ``register(subparsers)``, which adds its commands.
COMMAND_GROUPS = (
    "simulate",
    "config",
    "data",
    "hub",
    "trust",
    "privacy",
    "peer",
    "ask",
    "bench",
    "completion",
)

_EXTRA: Registry[Callable[[argparse._SubParsersAction], None]] = Registry("command")


def register_command(name: str) -> Callable:
    """Register a function that adds subcommand ``name`` after the built-in groups."""

    def deco(fn: Callable[[argparse._SubParsersAction], None]) -> Callable:
        _EXTRA.register(name, fn, overwrite=True)
        return fn

    return deco


def build_parser() -> argparse.ArgumentParser:
    """The ``fednet`` parser with every command group's commands."""
    parser = Parser(
        prog="fednet",
        description="Federated LoRA co-fine-tuning and joint inference over a network of models.",
        epilog='Shell completion: eval "$(fednet completion bash)" (or zsh, fish).',
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = add_subcommands(parser, "command")
    for group in COMMAND_GROUPS:
        importlib.import_module(f"{__name__}.{group}").register(sub)
    for name in _EXTRA:
        _EXTRA.get(name)(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fednet`` command."""
    import argcomplete

    parser = build_parser()
    argcomplete.autocomplete(parser)  # answers and exits only when a shell asks for completions
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
    except BrokenPipeError:
        # The reader stopped reading (``fednet hub ls | head``): no traceback, and no
        # second error when Python flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports a command a closed pipe stopped
