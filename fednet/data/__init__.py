"""Offline text-classification data: catalogue, local files, splits and partitions.

Every loader returns a :class:`datasets.Dataset` with exactly the columns
``text`` (string) and ``label`` (:class:`datasets.ClassLabel`, names sorted).

Examples
--------
>>> from fednet.data import load_splits, partition_dataset, local_split
>>> splits = load_splits("bbc-news", seed=0)
>>> mine = partition_dataset(
...     splits["train"], method="dirichlet", num_partitions=6, partition_id=2, alpha=0.5
... )
>>> local = local_split(mine, seed=0, test_fraction=0.1)
"""

from fednet.data.catalog import (
    DatasetLoader,
    available_datasets,
    clear_catalog_cache,
    create_dataset,
    get_dataset_loader,
    load_dataset,
    register_dataset,
)
from fednet.data.data_utils import (
    LABEL_COLUMN,
    TEXT_COLUMN,
    build_text_label_dataset,
    check_text_label_dataset,
    label_ids,
    label_names,
    to_text_label_dataset,
)
from fednet.data.local import SUPPORTED_SUFFIXES, load_local_file, read_local_file
from fednet.data.partition import (
    PartitionerFactory,
    available_partitioners,
    create_partitioner,
    local_split,
    partition_dataset,
    register_partitioner,
)
from fednet.data.report import DROP_REASONS, LoadReport
from fednet.data.splits import clear_data_cache, client_splits, load_report, load_splits

__all__ = [
    "DROP_REASONS",
    "LABEL_COLUMN",
    "LoadReport",
    "SUPPORTED_SUFFIXES",
    "TEXT_COLUMN",
    "DatasetLoader",
    "PartitionerFactory",
    "available_datasets",
    "available_partitioners",
    "build_text_label_dataset",
    "check_text_label_dataset",
    "clear_catalog_cache",
    "clear_data_cache",
    "create_dataset",
    "create_partitioner",
    "get_dataset_loader",
    "label_ids",
    "label_names",
    "load_dataset",
    "load_local_file",
    "load_report",
    "load_splits",
    "client_splits",
    "local_split",
    "partition_dataset",
    "read_local_file",
    "register_dataset",
    "register_partitioner",
    "to_text_label_dataset",
]
