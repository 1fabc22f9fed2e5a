"""What ``fednet simulate`` shows a person: one progress display, then where the
results are and what to run next.

It lives in the CLI, since the library never prints. The display reads the
``progress.json`` a run writes into its directory (see
:mod:`fednet.federation.recorder`). On a terminal it is one live line drawn by
``rich``; anywhere else (a pipe, a CI log) it prints one plain line each time
the run moves on. Library and framework output never goes through it: that goes
to the run's log file (``-v`` shows it here too, above the display).
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

__all__ = ["RunDisplay", "format_progress", "next_steps"]

_STAGES = {
    "starting": "starting",
    "training": "training",
    "personalizing": "personalising",
    "finished": "finished",
}


def _num(value: Any, fmt: str = "{:.4f}") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return fmt.format(float(value))


def _time_left(progress: Mapping[str, Any]) -> str:
    """Seconds per finished round so far, times the rounds still to run."""
    done, total = int(progress.get("round", 0)), int(progress.get("rounds", 0))
    if progress.get("stage") == "finished" or (total and done >= total):
        return "0s"
    if done <= 0:
        return "?"
    left = float(progress.get("elapsed_s", 0.0)) / done * (total - done)
    minutes, seconds = divmod(round(left), 60)
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def format_progress(progress: Mapping[str, Any]) -> str:
    """One line: clients, training loss, accuracy, ε and the time left.

    ``progress`` is a ``progress.json`` mapping; a missing metric shows as ``-``.
    """
    return (
        f"clients {progress.get('clients', '-')}/{progress.get('clients_total', '-')}  "
        f"loss {_num(progress.get('loss'))}  "
        f"accuracy {_num(progress.get('accuracy'))}  "
        f"ε {_num(progress.get('epsilon'), '{:.2f}')}  "
        f"left {_time_left(progress)}"
    )


class RunDisplay:
    """The one progress display of a run: round r of R, clients, loss, accuracy, ε, time left.

    Parameters
    ----------
    rounds : int
        Rounds the run will train.
    clients : int
        Clients in the preset.
    console : rich.console.Console, optional
        Where to draw (default: stderr). A console that is not a terminal gets
        plain lines instead of a live bar.
    """

    def __init__(self, *, rounds: int, clients: int, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True, highlight=False)
        self.live = self.console.is_terminal
        self._state: dict[str, Any] = {
            "stage": "starting",
            "round": 0,
            "rounds": rounds,
            "clients": 0,
            "clients_total": clients,
        }
        self._last_plain: str | None = None
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description:<13}"),
            BarColumn(bar_width=24),
            TextColumn("round {task.completed:.0f}/{task.total:.0f}"),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            console=self.console,
            disable=not self.live,
        )
        self._task = self._progress.add_task(
            "starting", total=max(rounds, 1), stats=format_progress(self._state)
        )

    def __enter__(self) -> RunDisplay:
        self._progress.start()
        self._plain()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def update(self, progress: Mapping[str, Any]) -> None:
        """Show a new ``progress.json`` state."""
        self._state.update(progress)
        stage = str(self._state.get("stage", "training"))
        self._progress.update(
            self._task,
            completed=int(self._state.get("round", 0)),
            description=_STAGES.get(stage, stage),
            stats=format_progress(self._state),
        )
        self._plain()

    def echo(self, line: str) -> None:
        """Show one line of framework output above the display (``-v``)."""
        self.console.print(Text.from_ansi(line), soft_wrap=True)

    def _plain(self) -> None:
        if self.live:
            return
        s = self._state
        stage = _STAGES.get(str(s.get("stage")), str(s.get("stage")))
        line = f"{stage:<13} round {s.get('round', 0)}/{s.get('rounds', 0)}  " + format_progress(s)
        if line != self._last_plain:
            self.console.print(line, soft_wrap=True, markup=False)
            self._last_plain = line


def next_steps(run_dir: Path, *, log_path: Path, owner_keys: Mapping[str, Path]) -> list[str]:
    """The closing lines: where the results are and the commands to run next.

    ``owner_keys`` maps each client id that signed the run's adapters to its
    public key file; a reader pins those keys before asking.
    """
    run = shlex.quote(str(run_dir))
    lines = [
        f"results: {run_dir}  (summary.json, tb/, rounds/, personalized/, signed/)",
        f"log:     {log_path}",
        "next:",
        f"  tensorboard --logdir {shlex.quote(str(run_dir / 'tb'))}",
        f"  fednet hub push {run} --hub hub",
    ]
    for cid, pub in owner_keys.items():
        lines.append(f"  fednet trust add {cid} {shlex.quote(str(pub))}")
    lines.append('  fednet ask "free entry to win a prize" --hub hub --local')
    return lines
