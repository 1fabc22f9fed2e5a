"""Shared fixtures: quiet, offline, deterministic."""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
warnings.filterwarnings("ignore", category=FutureWarning)
# clients' privacy ledgers outlive runs; tests keep theirs out of the user's home
os.environ.setdefault("FEDNET_STATE_DIR", tempfile.mkdtemp(prefix="fednet-test-state-"))


@pytest.fixture(autouse=True)
def _own_trust_store(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Every test reads its own (empty) trust store file, never the user's."""
    path = tmp_path_factory.mktemp("trust") / "trust.json"
    monkeypatch.setenv("FEDNET_TRUST_FILE", str(path))
    return path


@pytest.fixture(autouse=True)
def _own_state_dir(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Every test's clients keep their ledgers and keys in a fresh state directory: a
    budget spent by one test's clients is not another test's."""
    path = tmp_path_factory.mktemp("state")
    monkeypatch.setenv("FEDNET_STATE_DIR", str(path))
    return path
