"""The programs' logging set-up: fednet's progress on stderr, everything in the log file."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from fednet.logs import setup_logging


@pytest.fixture(autouse=True)
def _restore_handlers() -> Iterator[None]:
    fednet, root = logging.getLogger("fednet"), logging.getLogger()
    saved = (list(fednet.handlers), fednet.level, fednet.propagate, list(root.handlers))
    yield
    for h in set(fednet.handlers + root.handlers) - set(saved[0] + saved[3]):
        h.close()
    fednet.handlers, fednet.level, fednet.propagate, root.handlers = saved


def test_fednet_records_reach_stderr_once_with_the_program_name(capsys) -> None:
    setup_logging(prog="flower-server")
    setup_logging(prog="flower-server")  # a second call replaces, never doubles
    logging.getLogger("fednet.strategies.fedlora").info("round %s: loss %.4f", 1, 0.5)
    logging.getLogger("fednet.x").debug("hidden detail")
    err = capsys.readouterr().err.splitlines()
    assert [line.split(" ", 1)[1] for line in err] == ["flower-server INFO round 1: loss 0.5000"]
    assert logging.getLogger("fednet").handlers[0].__class__ is logging.NullHandler


def test_verbose_shows_debug(capsys) -> None:
    setup_logging(verbose=True)
    logging.getLogger("fednet.x").debug("a detail")
    assert "DEBUG a detail" in capsys.readouterr().err


def test_log_file_gets_fednet_and_framework_records_the_terminal_does_not(
    tmp_path: Path, capsys
) -> None:
    log = tmp_path / "run" / "fednet.log"
    setup_logging(log_file=log)
    logging.getLogger("fednet.federation.server").info("round 1 done")
    logging.getLogger("urllib3.connectionpool").warning("DEPRECATED: a pool")
    err = capsys.readouterr().err
    assert "round 1 done" in err and "DEPRECATED" not in err
    text = log.read_text(encoding="utf-8")
    assert "fednet.federation.server INFO round 1 done" in text
    assert "urllib3.connectionpool WARNING DEPRECATED: a pool" in text

    setup_logging()  # a later call without a file stops writing to it
    logging.getLogger("urllib3.connectionpool").warning("after")
    assert "after" not in log.read_text(encoding="utf-8")
