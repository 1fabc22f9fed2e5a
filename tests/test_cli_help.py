"""``fednet --help`` is consistent everywhere, and the shell completes commands and options."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fednet.cli import COMMAND_GROUPS, build_parser, main

ROOT = Path(__file__).resolve().parents[1]


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)


def _walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """Every (command path, parser, one-line help in its parent) below ``parser``."""
    sub = _subparsers(parser)
    if sub is None:
        return
    helps = {a.dest: a.help for a in sub._choices_actions}
    for name, child in sub.choices.items():
        yield (*path, name), child, helps.get(name)
        yield from _walk(child, (*path, name))


COMMANDS = {" ".join(path): (child, line) for path, child, line in _walk(build_parser())}


def test_every_command_group_is_listed():
    top = {path.split()[0] for path in COMMANDS}
    expected = {
        "simulate",
        "config",
        "data",
        "hub",
        "trust",
        "privacy",
        "peer",
        "ask",
        "bench",
        "bench-aggregation",
        "bench-representation",
        "completion",
    }
    assert top == expected
    assert len(COMMAND_GROUPS) == len(set(COMMAND_GROUPS))
    # the nested commands are all still there
    for path in ("hub token create", "hub token ls", "hub token revoke", "hub push", "data check"):
        assert path in COMMANDS
    for path in ("trust remove", "privacy reset-ledger", "privacy bench-ledger", "peer serve"):
        assert path in COMMANDS


@pytest.mark.parametrize("path", ["", *sorted(COMMANDS)])
def test_help_exits_0_with_a_description(capsys, path):
    with pytest.raises(SystemExit) as exit_:
        main([*path.split(), "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: fednet {path}".rstrip())
    parser = COMMANDS[path][0] if path else build_parser()
    assert parser.description and parser.description.strip()
    assert parser.description.split()[0] in out
    if path:
        line = COMMANDS[path][1]
        assert line and "\n" not in line, f"`fednet {path}` needs a one-line help"


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_every_argument_has_help_and_shows_its_default(path):
    parser = COMMANDS[path][0]
    text = parser.format_help()
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        assert action.help, f"`fednet {path}` {action.dest} has no help"
        default = action.default
        if default is None or default is False or default == "":
            continue
        # a default is shown, by the formatter (which may wrap it, even at a hyphen) or by
        # the help text itself
        flat, shown = "".join(text.split()), "".join(f"(default: {default})".split())
        assert shown in flat or "default" in action.help, (path, action.dest)


def test_defaults_are_shown_in_help(capsys):
    with pytest.raises(SystemExit):
        main(["ask", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "(default: cascade)" in out and "(default: 0.8)" in out
    assert "(default: None)" not in out and "(default: False)" not in out


def _complete(line: str, tmp_path: Path) -> list[str]:
    """What argcomplete answers a shell that asks to complete ``line``."""
    out = tmp_path / "completions.txt"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "_ARGCOMPLETE": "1",
        "_ARGCOMPLETE_IFS": "\n",
        "_ARGCOMPLETE_STDOUT_FILENAME": str(out),
        "COMP_LINE": line,
        "COMP_POINT": str(len(line)),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "fednet.cli"], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return [c.strip() for c in out.read_text().splitlines()]


def test_completion_of_commands_subcommands_and_choices(tmp_path):
    top = _complete("fednet ", tmp_path)
    assert {"simulate", "hub", "ask", "bench-aggregation", "completion"} <= set(top)
    assert set(_complete("fednet hub ", tmp_path)) >= {"serve", "token", "ls", "push", "verify"}
    assert set(_complete("fednet hub token ", tmp_path)) >= {"create", "ls", "revoke"}
    assert _complete("fednet bench-a", tmp_path) == ["bench-aggregation"]
    assert set(_complete("fednet ask --mode ", tmp_path)) == {"cascade", "ensemble"}
    assert "--run-dir" in _complete("fednet simulate --r", tmp_path)


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completes_through_the_printed_shell_code(tmp_path):
    """``eval "$(fednet completion bash)"`` makes bash complete ``fednet hu<TAB>``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "fednet"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m fednet.cli "$@"\n')
    script.chmod(0o755)
    code = subprocess.run(
        [str(script), "completion", "bash"],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "complete" in code and "fednet" in code
    probe = (
        code
        + '\nCOMP_LINE="fednet hu"; COMP_POINT=${#COMP_LINE}; COMP_WORDS=(fednet hu); COMP_CWORD=1'
        + '\n_python_argcomplete fednet hu fednet; printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    proc = subprocess.run(
        ["bash", "-c", probe], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.stdout.split() == ["hub"], proc.stderr


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_shell_code(capsys, shell):
    assert main(["completion", shell]) == 0
    assert "fednet" in capsys.readouterr().out


def test_completion_rejects_an_unknown_shell(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["completion", "csh"])
    assert exit_.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_closed_pipe_is_no_traceback(tmp_path):
    """``fednet completion bash | head -1``: the reader leaves early; no traceback."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "fednet.cli", "completion", "bash"],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    proc.stdout.close()  # nothing reads what it prints
    _, err = proc.communicate(timeout=60)
    assert b"Traceback" not in err
    assert proc.returncode == 141
