"""Logging set-up for the programs: the ``fednet`` command, ``flower-server``,
``flower-client``, the benchmark entry points and the Flower ServerApp.

Library modules never import this; they only log through
``logging.getLogger(__name__)`` under the ``fednet`` root, which carries a
``NullHandler`` until a program calls :func:`setup_logging`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

__all__ = ["log_to_file", "setup_logging"]

_TIME = "%H:%M:%S"


class _Stderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when the record is emitted (pytest swaps it)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


class _File(logging.FileHandler):
    """The log file handler this module installed (so a second call replaces it)."""


def setup_logging(
    verbose: bool = False, log_file: str | Path | None = None, *, prog: str | None = None
) -> None:
    """Show ``fednet.*`` records on stderr and quiet third-party chatter.

    Parameters
    ----------
    verbose : bool
        DEBUG instead of INFO for ``fednet.*``.
    log_file : str or Path or None
        Also append every record, fednet's and other libraries' (those that
        reach Python's root logger), to this file; its directory is created.
    prog : str or None
        Program name shown in each stderr line, ``HH:MM:SS prog LEVEL message``.

    It owns the handlers of the ``fednet`` logger: a call replaces every one
    but the library's ``NullHandler``, so a second call never doubles a line.
    Environment defaults (set only when unset): ``HF_HUB_OFFLINE=1``, ``FLWR_TELEMETRY_ENABLED=0``,
    ``TOKENIZERS_PARALLELISM=false``, ``HF_DATASETS_DISABLE_PROGRESS_BARS=1``;
    they reach every child process too.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="torch")

    root = logging.getLogger("fednet")
    level = logging.DEBUG if verbose else logging.INFO
    stderr = _Stderr()
    prefix = f"{prog} " if prog else ""
    stderr.setFormatter(logging.Formatter(f"%(asctime)s {prefix}%(levelname)s %(message)s", _TIME))
    root.handlers = [h for h in root.handlers if isinstance(h, logging.NullHandler)]
    root.addHandler(stderr)
    root.setLevel(level)
    root.propagate = False

    py_root = logging.getLogger()
    for h in [h for h in py_root.handlers if isinstance(h, _File)]:
        py_root.removeHandler(h)
        h.close()
    if log_file is not None:
        path = Path(log_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = _File(path, encoding="utf-8")
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s", _TIME)
        )
        root.addHandler(handler)  # fednet records do not propagate to the root
        py_root.addHandler(handler)


@contextlib.contextmanager
def log_to_file(path: Path, verbose: bool = False) -> Iterator[None]:
    """While open, send library and framework output to the log file ``path``.

    fednet's records, Flower's (``flwr``) and Python warnings go to ``path``.
    Without ``verbose`` the terminal keeps only fednet's warnings and errors and
    Flower's errors, so that a command's own display stays readable. Everything
    is as before once the block ends.
    """
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s", _TIME))
    loggers = [logging.getLogger(n) for n in ("fednet", "flwr", "py.warnings")]
    warnings_logger = loggers[2]
    propagate = warnings_logger.propagate
    quieted: dict[logging.Handler, int] = {}
    if not verbose:
        quieted.update((h, h.level) for h in loggers[0].handlers if isinstance(h, _Stderr))
        quieted.update(
            (h, h.level)
            for h in loggers[1].handlers
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
        )
    for h in quieted:
        h.setLevel(logging.WARNING if h in loggers[0].handlers else logging.ERROR)
    for lg in loggers:
        lg.addHandler(handler)
    warnings_logger.propagate = False
    logging.captureWarnings(True)
    try:
        yield
    finally:
        logging.captureWarnings(False)
        warnings_logger.propagate = propagate
        for lg in loggers:
            lg.removeHandler(handler)
        handler.close()
        for h, level in quieted.items():
            h.setLevel(level)
