"""Progress lines on stderr for ``flower-server`` and ``flower-client``."""

from __future__ import annotations

import logging
import sys

__all__ = ["setup_logging"]


class _Stderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when the record is emitted."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def setup_logging(prog: str, verbose: bool = False) -> None:
    """Log ``fednet.*`` records to stderr as ``HH:MM:SS prog LEVEL message``.

    Besides the library's ``NullHandler``, one stream handler is added once.
    """
    from fednet.cli import setup_logging as cli_setup

    cli_setup(verbose)  # environment defaults and warning filters
    root = logging.getLogger("fednet")
    if not any(isinstance(h, _Stderr) for h in root.handlers):
        handler = _Stderr()
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s {prog} %(levelname)s %(message)s", "%H:%M:%S")
        )
        root.handlers = [h for h in root.handlers if isinstance(h, logging.NullHandler)]
        root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False
