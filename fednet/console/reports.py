"""The latest network benchmark report in a results directory, and its plots.

Only the figures the report itself lists are offered, and only as plain ``.png``
file names of regular files in the report's directory: a report (or anyone who
can write one) cannot name a file outside it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fednet.hub.manifest import check_filename

__all__ = ["BenchReport", "latest_report"]

_REPORT_RE = re.compile(r"^\d{8}-\d{6}\.json$")
"""Names of the network benchmark's reports: ``<YYYYmmdd-HHMMSS>.json``."""


@dataclass(frozen=True)
class BenchReport:
    """The latest network benchmark report in a results directory.

    Parameters
    ----------
    path : Path
        The report's ``<stamp>.json``.
    created, preset : str
        When it ran and on which preset.
    quick : bool
        Whether it was ``--quick``.
    plots : dict[str, str]
        Figure name to PNG file name, each checked to be a plain file name of
        an existing regular file in the report's directory.
    missing : tuple[str, ...]
        Figures the report names that are not there (or not plain names).
    """

    path: Path
    created: str
    preset: str
    quick: bool
    plots: dict[str, str]
    missing: tuple[str, ...] = ()


def _plain_png(directory: Path, filename: object) -> Path | None:
    """``directory / filename`` if it is a plain ``.png`` name of a regular file inside."""
    try:
        check_filename("plot", filename)
    except (TypeError, ValueError):
        return None
    assert isinstance(filename, str)
    if not filename.endswith(".png"):
        return None
    path = directory / filename
    if path.is_symlink() or not path.is_file():
        return None
    root = directory.resolve()
    if path.resolve().parent != root:
        return None
    return path


def latest_report(bench_dir: str | Path) -> tuple[BenchReport | None, str]:
    """The newest ``<stamp>.json`` report in ``bench_dir`` that reads, and a note.

    Returns ``(None, why)`` when there is none. Only figures the report itself
    lists, as plain ``.png`` file names of regular files in ``bench_dir``, are
    offered (nothing outside the directory can be named).
    """
    directory = Path(bench_dir)
    if not directory.is_dir():
        return None, f"no benchmark directory {str(directory)!r}: run `make bench`"
    stamps = sorted((p for p in directory.iterdir() if _REPORT_RE.match(p.name)), reverse=True)
    skipped: list[str] = []
    for path in stamps:
        try:
            data: Any = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as e:
            skipped.append(f"{path.name} ({e})")
            continue
        if not isinstance(data, dict) or not str(data.get("schema", "")).startswith("fednet-bench"):
            skipped.append(f"{path.name} (not a fednet-bench report)")
            continue
        listed = data.get("plots")
        plots: dict[str, str] = {}
        missing: list[str] = []
        for name, filename in listed.items() if isinstance(listed, dict) else []:
            if _plain_png(directory, filename) is None:
                missing.append(str(name))
            else:
                plots[str(name)] = filename
        report = BenchReport(
            path=path,
            created=str(data.get("created", "")),
            preset=str(data.get("preset", "")),
            quick=bool(data.get("quick", False)),
            plots=plots,
            missing=tuple(missing),
        )
        note = f"skipped newer unreadable reports: {', '.join(skipped)}" if skipped else ""
        return report, note
    why = f"no benchmark report (<time>.json) in {str(directory)!r}: run `make bench`"
    if skipped:
        why += f"; unreadable: {', '.join(skipped)}"
    return None, why
