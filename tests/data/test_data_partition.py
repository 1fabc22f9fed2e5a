"""IID and Dirichlet partitions, their errors, and a client's local split."""

from __future__ import annotations

import math
import re
import warnings
from collections import Counter

import numpy as np
import pytest
from datasets import Dataset

from fednet.data import (
    available_partitioners,
    label_ids,
    load_splits,
    local_split,
    partition_dataset,
    register_partitioner,
    to_text_label_dataset,
)


def _label_distribution(ds: Dataset, num_classes: int) -> np.ndarray:
    counts = np.bincount(label_ids(ds), minlength=num_classes)
    return counts / counts.sum()


def _all_partitions(ds: Dataset, **kwargs: object) -> list[Dataset]:
    n = int(kwargs["num_partitions"])  # type: ignore[call-overload]
    return [partition_dataset(ds, partition_id=i, **kwargs) for i in range(n)]  # type: ignore[arg-type]


def _mean_total_variation(parts: list[Dataset], whole: Dataset, num_classes: int) -> float:
    """Mean total-variation distance of each partition's labels from the whole's."""
    global_dist = _label_distribution(whole, num_classes)
    return float(
        np.mean(
            [0.5 * np.abs(_label_distribution(p, num_classes) - global_dist).sum() for p in parts]
        )
    )


def test_builtin_methods_are_registered() -> None:
    assert {"iid", "dirichlet"} <= set(available_partitioners())


def test_iid_partitions_cover_disjointly_with_equal_sizes(sorted_synthetic: Dataset) -> None:
    parts = _all_partitions(sorted_synthetic, method="iid", num_partitions=7, seed=0)
    sizes = [p.num_rows for p in parts]
    assert sum(sizes) == 1000
    assert max(sizes) - min(sizes) <= 1
    texts = [t for p in parts for t in p["text"]]
    assert len(set(texts)) == 1000  # disjoint and complete


def test_iid_shuffles_label_sorted_data(sorted_synthetic: Dataset) -> None:
    # The input is sorted by label; plain contiguous shards would give each
    # partition one or two classes. Shuffled shards follow the global mix.
    parts = _all_partitions(sorted_synthetic, method="iid", num_partitions=4, seed=0)
    assert all(len(set(label_ids(p).tolist())) == 4 for p in parts)
    assert _mean_total_variation(parts, sorted_synthetic, 4) < 0.1


def test_iid_is_seeded(sorted_synthetic: Dataset) -> None:
    def first(seed: int) -> list[str]:
        kwargs = {"method": "iid", "num_partitions": 4, "partition_id": 0, "seed": seed}
        return partition_dataset(sorted_synthetic, **kwargs)["text"]  # type: ignore[arg-type]

    assert first(1) == first(1)
    assert set(first(1)) != set(first(2))


def test_dirichlet_small_alpha_is_label_skewed(sorted_synthetic: Dataset) -> None:
    skewed = _all_partitions(
        sorted_synthetic, method="dirichlet", num_partitions=5, alpha=0.1, seed=0
    )
    texts = [t for p in skewed for t in p["text"]]
    assert len(texts) == len(set(texts)) == 1000  # disjoint and complete

    even = _all_partitions(
        sorted_synthetic, method="dirichlet", num_partitions=5, alpha=1000.0, seed=0
    )
    tv_skewed = _mean_total_variation(skewed, sorted_synthetic, 4)
    tv_even = _mean_total_variation(even, sorted_synthetic, 4)
    assert tv_skewed > 0.3
    assert tv_even < 0.1
    # Under strong skew partitions lean on one class far more than under weak skew.
    dominant_skewed = np.mean([_label_distribution(p, 4).max() for p in skewed])
    dominant_even = np.mean([_label_distribution(p, 4).max() for p in even])
    assert dominant_skewed > dominant_even + 0.2


def test_dirichlet_is_seeded(sorted_synthetic: Dataset) -> None:
    def sizes(seed: int) -> list[int]:
        parts = _all_partitions(
            sorted_synthetic, method="dirichlet", num_partitions=4, alpha=0.5, seed=seed
        )
        return [p.num_rows for p in parts]

    assert sizes(3) == sizes(3)
    assert sizes(3) != sizes(4)


def test_dirichlet_on_real_training_split() -> None:
    train = load_splits("bbc-news", seed=0)["train"]
    parts = _all_partitions(train, method="dirichlet", num_partitions=4, alpha=0.3, seed=0)
    assert sum(p.num_rows for p in parts) == train.num_rows
    assert _mean_total_variation(parts, train, 5) > 0.2


def test_empty_partition_names_partition_and_method() -> None:
    tiny = to_text_label_dataset([f"t{i}" for i in range(20)], ["a", "b"] * 10, dataset_name="tiny")
    sizes: list[int] = []
    empty: list[int] = []
    for pid in range(10):
        try:
            part = partition_dataset(
                tiny, method="dirichlet", num_partitions=10, partition_id=pid, alpha=0.05, seed=0
            )
        except ValueError as e:
            assert re.fullmatch(
                rf"partition {pid} of 'tiny' \(dirichlet, alpha=0\.05\) is empty", str(e)
            )
            empty.append(pid)
        else:
            sizes.append(part.num_rows)
    assert empty  # 20 rows over 10 partitions at alpha=0.05 leaves some empty
    assert sum(sizes) == 20


def test_min_partition_size(sorted_synthetic: Dataset) -> None:
    with pytest.raises(ValueError, match=r"partition 0 of 'synthetic' \(iid\) has 250 rows"):
        partition_dataset(
            sorted_synthetic, method="iid", num_partitions=4, partition_id=0, min_partition_size=300
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # flwr-datasets warns on every redraw
        with pytest.raises(ValueError, match=r"cannot build partition 1 of 'synthetic'"):
            partition_dataset(
                sorted_synthetic,
                method="dirichlet",
                num_partitions=10,
                partition_id=1,
                alpha=0.01,
                min_partition_size=99,
            )
        part = partition_dataset(
            sorted_synthetic,
            method="dirichlet",
            num_partitions=4,
            partition_id=0,
            alpha=5.0,
            min_partition_size=150,
        )
    assert part.num_rows >= 150


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            {"method": "shards"},
            ValueError,
            r"unknown partition method 'shards'; valid: .*dirichlet.*iid",
        ),
        ({"num_partitions": 0}, ValueError, "`num_partitions` must be >= 1, got 0"),
        ({"num_partitions": 2.0}, TypeError, "`num_partitions` must be an int"),
        ({"num_partitions": 5000}, ValueError, r"`num_partitions` must be <= the 1000 rows"),
        ({"partition_id": -1}, ValueError, "`partition_id` must be >= 0, got -1"),
        ({"partition_id": 4}, ValueError, r"`partition_id` must be in \[0, 4\).*got 4"),
        ({"partition_id": True}, TypeError, "`partition_id`"),
        ({"alpha": 0.0}, ValueError, "`alpha` must be a finite float > 0, got 0.0"),
        ({"alpha": -1.0}, ValueError, "`alpha`"),
        ({"alpha": float("nan")}, ValueError, "`alpha`"),
        ({"alpha": "0.5"}, TypeError, "`alpha`"),
        ({"seed": -3}, ValueError, "`seed` must be >= 0"),
        ({"min_partition_size": -1}, ValueError, "`min_partition_size` must be >= 0"),
    ],
)
def test_invalid_arguments(
    sorted_synthetic: Dataset, kwargs: dict[str, object], error: type, match: str
) -> None:
    args: dict[str, object] = {
        "method": "dirichlet",
        "num_partitions": 4,
        "partition_id": 0,
        "alpha": 0.5,
        "seed": 0,
    }
    args.update(kwargs)
    with pytest.raises(error, match=match):
        partition_dataset(sorted_synthetic, **args)  # type: ignore[arg-type]


@pytest.mark.usefixtures("scratch_registries")
def test_register_custom_method(sorted_synthetic: Dataset) -> None:
    from flwr_datasets.partitioner import IidPartitioner, Partitioner

    def contiguous(
        dataset: Dataset, *, num_partitions: int, alpha: float, seed: int, min_partition_size: int
    ) -> Partitioner:
        partitioner = IidPartitioner(num_partitions=num_partitions)
        partitioner.dataset = dataset
        return partitioner

    register_partitioner("contiguous", contiguous)
    assert "contiguous" in available_partitioners()
    part = partition_dataset(
        sorted_synthetic, method="contiguous", num_partitions=4, partition_id=1
    )
    assert part["text"] == [f"row-{i}" for i in range(250, 500)]
    with pytest.raises(ValueError, match="'contiguous' is already registered"):
        register_partitioner("contiguous", contiguous)


def test_local_split_is_stratified_and_seeded(sorted_synthetic: Dataset) -> None:
    part = sorted_synthetic.select(range(0, 1000, 10))  # 100 rows, 25 per class
    a = local_split(part, seed=0, test_fraction=0.2)
    assert a["test"].num_rows == 20
    assert Counter(label_ids(a["test"]).tolist()) == {0: 5, 1: 5, 2: 5, 3: 5}
    assert set(a["train"]["text"]).isdisjoint(a["test"]["text"])
    assert local_split(part, seed=0, test_fraction=0.2)["test"]["text"] == a["test"]["text"]
    assert set(local_split(part, seed=1, test_fraction=0.2)["test"]["text"]) != set(
        a["test"]["text"]
    )


def test_local_split_falls_back_to_plain_split_for_singleton_class() -> None:
    ds = to_text_label_dataset([f"t{i}" for i in range(11)], ["a"] * 10 + ["b"])
    splits = local_split(ds, seed=0, test_fraction=0.3)
    assert splits["test"].num_rows == math.ceil(0.3 * 11)
    assert splits["train"].num_rows + splits["test"].num_rows == 11


def test_local_split_falls_back_when_test_cannot_hold_every_class() -> None:
    ds = to_text_label_dataset([f"t{i}" for i in range(12)], ["a", "b", "c", "d"] * 3)
    splits = local_split(ds, seed=0, test_fraction=0.1)  # 2 test rows, 4 classes
    assert splits["test"].num_rows == 2


def test_local_split_rejects_tiny_partitions_and_bad_fraction() -> None:
    one = to_text_label_dataset(["only"], ["a"], dataset_name="one")
    with pytest.raises(ValueError, match="'one' has 1 rows, too few"):
        local_split(one, seed=0, test_fraction=0.2)
    two = to_text_label_dataset(["x", "y"], ["a", "b"])
    with pytest.raises(ValueError, match="`test_fraction`"):
        local_split(two, seed=0, test_fraction=1.2)
