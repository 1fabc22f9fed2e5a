"""Fixed, seeded, stratified train/test splits of a catalogue set or a local file.

Every copy of a text lands on the same side (:mod:`fednet.data.grouped`), so
the server's test set shares no text with any client's training data.

Clients and the server call :func:`load_splits` many times per run (every round,
every client); the loaded and split data is cached per process so only the
first call reads files.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from datasets import Dataset, DatasetDict

from fednet.data.catalog import (
    DatasetLoader,
    available_datasets,
    clear_catalog_cache,
    create_dataset,
    get_dataset_loader,
)
from fednet.data.data_utils import (
    LABEL_COLUMN,
    TEXT_COLUMN,
    check_fraction,
    check_seed,
    label_ids,
)
from fednet.data.data_utils import (
    label_names as dataset_label_names,
)
from fednet.data.grouped import group_split_indices
from fednet.data.local import SUPPORTED_SUFFIXES, read_local_file
from fednet.data.report import LoadReport, duplicate_figures

if TYPE_CHECKING:
    from fednet.config import ClientConfig, FederationConfig

__all__ = ["load_splits", "load_report", "clear_data_cache"]

logger = logging.getLogger(__name__)


FileKey = tuple[str, int, int, str, str, str, tuple[str, ...]]
"""(resolved path, mtime_ns, size, text column, label column, encoding, label names)."""


@functools.lru_cache(maxsize=4)
def _load_file_cached(
    path: str,
    mtime_ns: int,
    size: int,
    text_column: str,
    label_column: str,
    encoding: str,
    label_names: tuple[str, ...] = (),
) -> tuple[Dataset, LoadReport]:
    """Load a local file once per (path, modification time, size, columns, encoding,
    label names)."""
    del mtime_ns, size  # only part of the cache key: an edited file is re-read
    return read_local_file(
        path,
        text_column=text_column,
        label_column=label_column,
        label_names=list(label_names) or None,
        encoding=encoding or None,
    )


def _materialise(ds: Dataset) -> Dataset:
    """Copy the rows behind an indices mapping into a contiguous in-memory table.

    A split is a view (an indices mapping) on the full set; every later column
    read and partitioning pass would go through that mapping again. The split
    is cached and partitioned many times, so it pays to copy it once.
    """
    return Dataset.from_dict(
        ds.with_format("arrow")[:].to_pydict(),
        features=ds.features,
        info=ds.info.copy(),
        split=ds.split,
    )


def _split(ds: Dataset, *, seed: int, test_fraction: float) -> DatasetDict:
    """Seeded split that keeps the class proportions and every copy of a text on one side."""
    ids = label_ids(ds)
    counts = np.bincount(ids)
    try:
        if (counts[counts > 0] < 2).any():
            raise ValueError("a class has fewer than 2 rows, so one side would lack it")
        train, test = group_split_indices(
            list(ds[TEXT_COLUMN]),
            ids.tolist(),
            test_fraction=test_fraction,
            seed=seed,
            stratify=True,
        )
    except ValueError as e:
        names = dataset_label_names(ds)
        by_name = {names[i]: int(n) for i, n in enumerate(counts) if n}
        raise ValueError(
            f"cannot split {ds.info.dataset_name!r} ({ds.num_rows} rows, class counts "
            f"{by_name}) with test_fraction={test_fraction} stratified by label: {e}"
        ) from e
    splits = DatasetDict(
        {"train": _materialise(ds.select(train)), "test": _materialise(ds.select(test))}
    )
    logger.debug(
        "split %s with seed %d: %d train, %d test",
        ds.info.dataset_name,
        seed,
        splits["train"].num_rows,
        splits["test"].num_rows,
    )
    return splits


@functools.lru_cache(maxsize=16)
def _split_catalog(
    name: str, loader: DatasetLoader, seed: int, test_fraction: float
) -> DatasetDict:
    """Split a catalogue set; the loader is in the key so re-registering misses."""
    del loader
    return _split(create_dataset(name), seed=seed, test_fraction=test_fraction)


@functools.lru_cache(maxsize=16)
def _split_file(file_key: FileKey, seed: int, test_fraction: float) -> DatasetDict:
    """Split a local file identified by its :data:`FileKey`."""
    return _split(_load_file_cached(*file_key)[0], seed=seed, test_fraction=test_fraction)


def _file_key(
    name_or_path: str | os.PathLike[str],
    text_column: str,
    label_column: str,
    encoding: str = "",
    label_names: Sequence[str] | None = None,
) -> FileKey:
    """Resolve a path to a hashable key that changes when the file changes."""
    path = Path(name_or_path).expanduser()
    if not path.exists() and path.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise ValueError(
            f"{str(name_or_path)!r} is neither a registered data set "
            f"{available_datasets()!r} nor a file with a suffix in {list(SUPPORTED_SUFFIXES)!r}"
        )
    if not path.is_file():
        raise FileNotFoundError(f"data file {str(path)!r} does not exist or is not a file")
    stat = path.stat()
    return (
        str(path.resolve()),
        stat.st_mtime_ns,
        stat.st_size,
        text_column,
        label_column,
        encoding,
        tuple(label_names or ()),
    )


def client_splits(cfg: FederationConfig, client: ClientConfig) -> DatasetDict:
    """:func:`load_splits` of ``client``'s data set, with the preset's seed and test fraction
    and the client's columns and encoding: the split every part of a run agrees on."""
    return load_splits(
        client.dataset,
        seed=cfg.seed,
        test_fraction=cfg.test_fraction,
        text_column=client.text_column,
        label_column=client.label_column,
        encoding=client.encoding,
        label_names=client.label_names or None,
    )


def load_splits(
    name_or_path: str | os.PathLike[str],
    *,
    seed: int,
    test_fraction: float = 0.2,
    text_column: str = TEXT_COLUMN,
    label_column: str = LABEL_COLUMN,
    encoding: str = "",
    label_names: Sequence[str] | None = None,
) -> DatasetDict:
    """Load a data set and split it into a fixed, stratified train and test set.

    The same ``seed`` gives the same split on every machine, and every copy of
    a text is on one side, so the server's test set never overlaps any
    client's training data.

    Parameters
    ----------
    name_or_path : str or os.PathLike
        A name from :func:`fednet.data.available_datasets` or a local file
        accepted by :func:`fednet.data.load_local_file`.
    seed : int
        Seed of the shuffle behind the split.
    test_fraction : float, optional
        Fraction of rows (rounded up) in the test split, in (0, 1). Default 0.2.
    text_column, label_column : str, optional
        Columns of a local file; ignored for catalogue names.
    encoding : str, optional
        Codec of a local text file (see :func:`fednet.data.load_local_file`).
    label_names : sequence of str, optional
        The label set of a local file, in id order (see
        :func:`fednet.data.load_local_file`); ignored for catalogue names.

    Returns
    -------
    datasets.DatasetDict
        ``"train"`` and ``"test"``, each with the class proportions of the
        whole (to within the size of the repeated texts). Cached per process:
        treat the datasets as read-only.

    Raises
    ------
    ValueError
        If ``name_or_path`` is neither a registered name nor a supported file,
        or an argument is out of range.
    FileNotFoundError
        If it names a supported file type that does not exist.
    """
    seed = check_seed(seed)
    test_fraction = check_fraction(test_fraction, key="test_fraction")
    if isinstance(name_or_path, str) and name_or_path in available_datasets():
        loader = get_dataset_loader(name_or_path)
        cached = _split_catalog(name_or_path, loader, seed, test_fraction)
    elif isinstance(name_or_path, (str, os.PathLike)):
        key = _file_key(name_or_path, text_column, label_column, encoding, label_names)
        cached = _split_file(key, seed, test_fraction)
    else:
        raise TypeError(
            f"`name_or_path` must be a data set name or a file path, got {name_or_path!r}"
        )
    return DatasetDict({"train": cached["train"], "test": cached["test"]})


def load_report(
    name_or_path: str | os.PathLike[str],
    *,
    text_column: str = TEXT_COLUMN,
    label_column: str = LABEL_COLUMN,
    encoding: str = "",
    label_names: Sequence[str] | None = None,
) -> LoadReport:
    """The :class:`~fednet.data.report.LoadReport` of the load behind :func:`load_splits`.

    For a catalogue name the figures describe the catalogue's rows (its own
    loader already chose them); for a file, every row the file holds.
    """
    if isinstance(name_or_path, str) and name_or_path in available_datasets():
        ds = create_dataset(name_or_path)
        ids = label_ids(ds).tolist()
        rows, texts, conflicting = duplicate_figures(list(ds[TEXT_COLUMN]), ids)
        names = dataset_label_names(ds)
        counts = np.bincount(np.asarray(ids, dtype=np.int64), minlength=len(names))
        return LoadReport(
            source=name_or_path,
            rows_read=ds.num_rows,
            rows_kept=ds.num_rows,
            label_counts={names[i]: int(n) for i, n in enumerate(counts)},
            duplicate_rows=rows,
            duplicate_texts=texts,
            conflicting_texts=conflicting,
            encoding="utf-8",
            encoding_source="catalogue",
        )
    key = _file_key(name_or_path, text_column, label_column, encoding, label_names)
    return _load_file_cached(*key)[1]


def clear_data_cache() -> None:
    """Forget every cached load and split (catalogue sets, files and splits)."""
    _split_catalog.cache_clear()
    _split_file.cache_clear()
    _load_file_cached.cache_clear()
    clear_catalog_cache()
