"""Logging for people at a terminal: ``fednet.*`` records on stderr, third-party chatter off,
or (:func:`log_to_file`) in a run's log file."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

__all__ = ["log_to_file", "setup_logging"]


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the record."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def setup_logging(verbose: bool = False) -> None:
    """Human-readable progress on stderr; quiet third-party chatter."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="torch")
    root = logging.getLogger("fednet")
    if not any(isinstance(h, _StderrHandler) for h in root.handlers):
        h = _StderrHandler()
        h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
        root.addHandler(h)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False


@contextlib.contextmanager
def log_to_file(path: Path, verbose: bool = False) -> Iterator[None]:
    """While open, send library and framework output to the log file ``path``.

    fednet's records, Flower's (``flwr``) and Python warnings go to ``path``.
    Without ``verbose`` the terminal keeps only fednet's warnings and errors and
    Flower's errors, so that a command's own display stays readable. Everything
    is as before once the block ends.
    """
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s", "%H:%M:%S")
    )
    loggers = [logging.getLogger(n) for n in ("fednet", "flwr", "py.warnings")]
    warnings_logger = loggers[2]
    propagate = warnings_logger.propagate
    quieted: dict[logging.Handler, int] = {}
    if not verbose:
        quieted.update((h, h.level) for h in loggers[0].handlers if isinstance(h, _StderrHandler))
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
