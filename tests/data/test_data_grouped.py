"""Repeated texts never sit on both sides of a split."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from fednet.data import load_report, load_splits, local_split, to_text_label_dataset
from fednet.data.grouped import group_split_indices


def _dupes(path: Path) -> Path:
    texts = [f"t{i % 60}" for i in range(300)]  # 60 texts, each 5 times
    labels = [("a", "b", "c")[i % 60 % 3] for i in range(300)]
    pd.DataFrame({"text": texts, "label": labels}).to_csv(path, index=False)
    return path


def test_load_splits_keeps_every_copy_of_a_text_on_one_side(tmp_path: Path) -> None:
    path = _dupes(tmp_path / "dupes.csv")
    for seed in range(5):
        splits = load_splits(path, seed=seed, test_fraction=0.2)
        train, test = set(splits["train"]["text"]), set(splits["test"]["text"])
        assert not train & test
        assert splits["train"].num_rows + splits["test"].num_rows == 300
        assert splits["test"].num_rows == 60
    report = load_report(path)
    assert (report.duplicate_rows, report.duplicate_texts) == (240, 60)


def test_catalogue_split_has_no_text_on_both_sides() -> None:
    splits = load_splits("sms-spam", seed=0)
    assert not set(splits["train"]["text"]) & set(splits["test"]["text"])
    assert load_report("sms-spam").duplicate_rows > 0  # the set has repeats to keep apart


def test_local_split_keeps_copies_together() -> None:
    texts = [f"x{i % 10}" for i in range(50)]
    ds = to_text_label_dataset(texts, [i % 10 % 2 for i in range(50)], dataset_name="d")
    for seed in range(5):
        parts = local_split(ds, seed=seed, test_fraction=0.2)
        assert not set(parts["train"]["text"]) & set(parts["test"]["text"])
        assert parts["test"].num_rows == 10


def test_one_distinct_text_cannot_be_split() -> None:
    with pytest.raises(ValueError, match="no text is on both sides"):
        group_split_indices(["same"] * 4, [0, 1, 0, 1], test_fraction=0.5, seed=0, stratify=False)


@pytest.mark.parametrize("method", ["iid", "dirichlet"])
def test_partitions_keep_every_copy_of_a_text_with_one_client(method: str) -> None:
    from fednet.data import partition_dataset

    texts = [f"x{i % 40}" for i in range(200)]
    ds = to_text_label_dataset(texts, [i % 40 % 2 for i in range(200)], dataset_name="d")
    parts = [
        partition_dataset(ds, method=method, num_partitions=4, partition_id=p, seed=1)
        for p in range(4)
    ]
    assert sum(p.num_rows for p in parts) == 200
    seen: set[str] = set()
    for p in parts:
        mine = set(p["text"])
        assert not mine & seen
        seen |= mine
        assert p.column_names == ["text", "label"]
