"""Fixtures of the benchmark tests: the fake run the inference tests use too."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.inference.fake_run import write_run


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_run(tmp_path_factory.mktemp("fake-run") / "run")
