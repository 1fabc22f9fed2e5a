"""``fednet completion SHELL``: the shell code that completes ``fednet`` commands and options.

Completion runs through argcomplete (https://github.com/kislyuk/argcomplete): the
shell calls ``fednet`` with the line typed so far in ``COMP_LINE``, and
:func:`fednet.cli.main` answers from the parser before any command runs.
"""

from __future__ import annotations

import argparse

from fednet.cli._common import add_command

__all__ = ["register", "cmd_completion", "SHELLS"]

#: Shells argcomplete writes completion code for.
SHELLS = ("bash", "zsh", "fish", "tcsh", "powershell")


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "completion",
        help="print the shell code that completes fednet commands and options",
        description="Print the shell code that completes fednet commands, subcommands and "
        'options. Load it in the shell\'s start-up file, e.g. eval "$(fednet completion bash)" '
        'in ~/.bashrc, eval "$(fednet completion zsh)" in ~/.zshrc, or '
        "fednet completion fish | source in ~/.config/fish/config.fish.",
    )
    p.add_argument("shell", choices=SHELLS, help="the shell to complete in")
    p.set_defaults(func=cmd_completion)


def cmd_completion(args: argparse.Namespace) -> int:
    """Print argcomplete's shell code for the ``fednet`` executable."""
    import argcomplete

    print(argcomplete.shellcode(["fednet"], shell=args.shell))
    return 0
