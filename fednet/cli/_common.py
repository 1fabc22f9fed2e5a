"""What every ``fednet`` command shares: the parser class, the help format and checks."""

from __future__ import annotations

import argparse
from typing import Any

from fednet.errors import FednetError

__all__ = ["Parser", "HelpFormatter", "add_command", "add_subcommands", "check_positive"]


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: X)`` after an option's help when X says something.

    Subcommands are listed under "commands", one line of help each.

    ``None``, ``False`` and ``""`` are left out (they mean "not given" or a flag
    that is off), and so is a default the help text already names.
    """

    def __init__(self, prog: str, **kwargs: Any) -> None:
        kwargs.setdefault("max_help_position", 32)
        super().__init__(prog, **kwargs)

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        unsaid = default is None or default is False or default in ("", argparse.SUPPRESS)
        if unsaid or "default" in text:
            return text
        return super()._get_help_string(action)

    def _iter_indented_subactions(self, action: argparse.Action):
        # Subcommands line up with options (argparse indents them past its help column).
        yield from getattr(action, "_get_subactions", list)()

    def _format_action(self, action: argparse.Action) -> str:
        text = super()._format_action(action)
        if isinstance(action, argparse._SubParsersAction):
            # Drop the line of the bare metavar (``COMMAND``); the usage line has it.
            text = text.split("\n", 1)[1]
        return text


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors exit with status 2 and one line."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def _sentence(text: str) -> str:
    text = text.strip()
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def add_command(
    sub: argparse._SubParsersAction, name: str, *, help: str, description: str | None = None
) -> argparse.ArgumentParser:
    """Add command ``name`` with a one-line ``help`` (in the parent's list) and a description.

    The description, shown by ``NAME --help``, defaults to ``help`` as a sentence.
    """
    return sub.add_parser(name, help=help, description=description or _sentence(help))


def add_subcommands(parser: argparse.ArgumentParser, dest: str) -> argparse._SubParsersAction:
    """Add a required choice of subcommands, stored in ``args.<dest>``."""
    return parser.add_subparsers(
        dest=dest, required=True, parser_class=Parser, metavar="COMMAND", title="commands"
    )


def check_positive(name: str, value: int | None) -> None:
    """Raise :class:`FednetError` if ``value`` is given and below 1."""
    if value is not None and value < 1:
        raise FednetError(f"`{name}` must be >= 1, got {value}")
