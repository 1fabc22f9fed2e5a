"""Shared fixtures for the data tests: catalogue sets are loaded once per session."""

from __future__ import annotations

import pytest
from datasets import Dataset

from fednet.data import catalog, load_dataset, partition, to_text_label_dataset


@pytest.fixture(scope="session")
def bbc() -> Dataset:
    return load_dataset("bbc-news")


@pytest.fixture(scope="session")
def sms() -> Dataset:
    return load_dataset("sms-spam")


@pytest.fixture(scope="session")
def tweets() -> Dataset:
    return load_dataset("tweets-sentiment")


@pytest.fixture
def sorted_synthetic() -> Dataset:
    """1,000 unique texts in 4 classes of 250, stored sorted by label."""
    labels = [f"c{i // 250}" for i in range(1000)]
    texts = [f"row-{i}" for i in range(1000)]
    return to_text_label_dataset(texts, labels, dataset_name="synthetic")


@pytest.fixture
def scratch_registries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let a test register data sets and methods without leaking them to others."""
    monkeypatch.setattr(catalog, "DATASETS", catalog.DATASETS.copy())
    monkeypatch.setattr(partition, "PARTITIONERS", partition.PARTITIONERS.copy())
