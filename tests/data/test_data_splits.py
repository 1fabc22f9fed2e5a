"""Seeded, stratified, cached train/test splits."""

from __future__ import annotations

import math
import os
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from datasets import Dataset

from fednet.data import label_ids, label_names, load_splits


def _counts(ds: Dataset) -> Counter[int]:
    return Counter(label_ids(ds).tolist())


def test_split_sizes_and_exact_cover(bbc: Dataset) -> None:
    splits = load_splits("bbc-news", seed=0)
    assert set(splits) == {"train", "test"}
    assert splits["test"].num_rows == math.ceil(0.2 * 2225)
    assert splits["train"].num_rows + splits["test"].num_rows == 2225
    # Train and test together are exactly the whole set (as a multiset).
    assert Counter(splits["train"]["text"]) + Counter(splits["test"]["text"]) == Counter(
        bbc["text"]
    )
    assert label_names(splits["train"]) == label_names(bbc)


def test_same_seed_same_split_different_seed_different() -> None:
    a = load_splits("bbc-news", seed=1)
    b = load_splits("bbc-news", seed=1)
    c = load_splits("bbc-news", seed=2)
    assert a["test"]["text"] == b["test"]["text"]
    assert set(a["test"]["text"]) != set(c["test"]["text"])


def test_split_is_cached() -> None:
    a = load_splits("sms-spam", seed=3, test_fraction=0.1)
    b = load_splits("sms-spam", seed=3, test_fraction=0.1)
    assert a["train"] is b["train"]
    assert a is not b  # a fresh dict each call, so callers cannot swap entries


@pytest.mark.parametrize("name", ["bbc-news", "sms-spam", "tweets-sentiment"])
def test_split_is_stratified(name: str) -> None:
    splits = load_splits(name, seed=0, test_fraction=0.25)
    whole = _counts(splits["train"]) + _counts(splits["test"])
    test = _counts(splits["test"])
    for label, n in whole.items():
        assert abs(test[label] - 0.25 * n) <= 1.5, (label, test[label], n)


def test_local_file_split_and_reload_after_edit(tmp_path: Path) -> None:
    path = tmp_path / "tiny.csv"
    texts = [f"t{i}" for i in range(40)]
    pd.DataFrame({"text": texts, "label": ["a", "b"] * 20}).to_csv(path, index=False)

    first = load_splits(path, seed=0, test_fraction=0.25)
    assert first["test"].num_rows == 10
    assert Counter(first["test"]["label"]) == {0: 5, 1: 5}
    assert load_splits(str(path), seed=0, test_fraction=0.25)["test"] is first["test"]

    pd.DataFrame({"text": texts + ["extra1", "extra2"], "label": ["a", "b"] * 21}).to_csv(
        path, index=False
    )
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert load_splits(path, seed=0, test_fraction=0.25)["train"].num_rows == 31


def test_local_file_custom_columns(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    pd.DataFrame({"body": [f"t{i}" for i in range(10)], "y": [0, 1] * 5}).to_json(
        path, orient="records", lines=True
    )
    splits = load_splits(path, seed=0, text_column="body", label_column="y")
    assert splits["test"].num_rows == 2
    assert label_names(splits["test"]) == ["0", "1"]


def test_unsplittable_file_names_it_and_its_class_counts(tmp_path: Path) -> None:
    path = tmp_path / "lonely.csv"
    pd.DataFrame({"text": [f"t{i}" for i in range(10)], "label": ["a"] * 9 + ["b"]}).to_csv(
        path, index=False
    )
    with pytest.raises(
        ValueError, match=r"'lonely.csv' \(10 rows, class counts \{'a': 9, 'b': 1\}\)"
    ):
        load_splits(path, seed=0)


def test_unknown_name_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"'bbc' is neither a registered data set.*bbc-news"):
        load_splits("bbc", seed=0)
    with pytest.raises(FileNotFoundError, match="gone.csv"):
        load_splits(tmp_path / "gone.csv", seed=0)
    with pytest.raises(TypeError, match="name_or_path"):
        load_splits(3, seed=0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"seed": 0, "test_fraction": 0.0}, ValueError, r"`test_fraction` must be in \(0, 1\)"),
        ({"seed": 0, "test_fraction": 1.0}, ValueError, "`test_fraction`"),
        ({"seed": 0, "test_fraction": "0.2"}, TypeError, "`test_fraction`"),
        ({"seed": -1}, ValueError, "`seed` must be >= 0, got -1"),
        ({"seed": 1.5}, TypeError, "`seed` must be an int"),
        ({"seed": True}, TypeError, "`seed`"),
    ],
)
def test_invalid_arguments(kwargs: dict[str, object], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        load_splits("sms-spam", **kwargs)  # type: ignore[arg-type]
