"""Split a training set across federated clients, and a client's share into train/test.

Partitioning methods are registered by name, so a run config selects one with a
string (``"iid"``, ``"dirichlet"``) and a new method is one
:func:`register_partitioner` call. The built-in ones wrap
:mod:`flwr_datasets.partitioner`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
from datasets import Dataset, DatasetDict

from fednet.checks import check_int
from fednet.data.data_utils import (
    LABEL_COLUMN,
    TEXT_COLUMN,
    check_fraction,
    check_seed,
    label_ids,
)
from fednet.data.grouped import group_split_indices
from fednet.registry import Registry

if TYPE_CHECKING:
    # flwr_datasets pulls in matplotlib; import it only when a partition is built.
    from flwr_datasets.partitioner import Partitioner

__all__ = [
    "PartitionerFactory",
    "register_partitioner",
    "create_partitioner",
    "available_partitioners",
    "partition_dataset",
    "local_split",
]

logger = logging.getLogger(__name__)

_ROW = "__fednet_group__"


class PartitionerFactory(Protocol):
    """Build a partitioner that already holds ``dataset``."""

    def __call__(
        self,
        dataset: Dataset,
        *,
        num_partitions: int,
        alpha: float,
        seed: int,
        min_partition_size: int,
    ) -> Partitioner: ...


@dataclass(frozen=True)
class _Method:
    factory: PartitionerFactory
    uses_alpha: bool


PARTITIONERS: Registry[_Method] = Registry("partition method")


def register_partitioner(
    name: str, factory: PartitionerFactory, *, uses_alpha: bool = False, overwrite: bool = False
) -> None:
    """Register a partitioning method.

    Parameters
    ----------
    name : str
        Method name used in run configs, e.g. ``"dirichlet"``.
    factory : PartitionerFactory
        Returns a :class:`flwr_datasets.partitioner.Partitioner` with its
        ``dataset`` assigned.
    uses_alpha : bool, optional
        Whether ``alpha`` matters to the method (it is then shown in errors).
    overwrite : bool, optional
        Replace an existing method instead of raising. Default ``False``.

    Raises
    ------
    TypeError
        If ``name`` is not a non-empty str or ``factory`` is not callable.
    ValueError
        If ``name`` is taken and ``overwrite`` is false.
    """
    if not callable(factory):
        raise TypeError(f"`factory` for partition method {name!r} must be callable")
    PARTITIONERS.register(
        name, _Method(factory=factory, uses_alpha=uses_alpha), overwrite=overwrite
    )


def available_partitioners() -> list[str]:
    """Return the registered partition method names, sorted."""
    return PARTITIONERS.names()


def _get_method(name: str) -> _Method:
    return PARTITIONERS.get(name)


def _check_alpha(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"`alpha` must be a float > 0, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"`alpha` must be a finite float > 0, got {value!r}")
    return float(value)


def create_partitioner(
    name: str,
    dataset: Dataset,
    *,
    num_partitions: int,
    alpha: float = 0.5,
    seed: int = 0,
    min_partition_size: int = 0,
) -> Partitioner:
    """Build the partitioner registered as ``name`` over ``dataset``.

    Parameters are as in :func:`partition_dataset`.

    Raises
    ------
    ValueError
        If ``name`` is unknown (the message lists the valid names) or an
        argument is out of range.
    """
    method = _get_method(name)
    num_partitions = check_int("num_partitions", num_partitions, minimum=1)
    min_partition_size = check_int("min_partition_size", min_partition_size, minimum=0)
    alpha = _check_alpha(alpha)
    seed = check_seed(seed)
    if num_partitions > dataset.num_rows:
        raise ValueError(
            f"`num_partitions` must be <= the {dataset.num_rows} rows of "
            f"{_dataset_name(dataset)!r}, got {num_partitions}"
        )
    return method.factory(
        dataset,
        num_partitions=num_partitions,
        alpha=alpha,
        seed=seed,
        min_partition_size=min_partition_size,
    )


def _dataset_name(ds: Dataset) -> str:
    return ds.info.dataset_name or "dataset"


def partition_dataset(
    ds: Dataset,
    *,
    method: str,
    num_partitions: int,
    partition_id: int,
    alpha: float = 0.5,
    seed: int = 0,
    min_partition_size: int = 0,
) -> Dataset:
    """Return one client's share of ``ds``.

    Every client calls this with the same arguments but its own
    ``partition_id``; the partitions are disjoint and together cover ``ds``.
    The method divides the distinct texts, and every copy of a text goes with
    it, so no text is in two partitions.

    Parameters
    ----------
    ds : datasets.Dataset
        The (training) set to divide; needs a ``label`` column.
    method : str
        ``"iid"`` (shuffled equal shards) or ``"dirichlet"`` (label skew: each
        class is spread over the partitions in Dirichlet(``alpha``)
        proportions, after Yurochkin et al., https://arxiv.org/abs/1905.12022),
        or any name from :func:`available_partitioners`.
    num_partitions : int
        Number of clients, >= 1 and <= the number of distinct texts.
    partition_id : int
        This client's index, in ``[0, num_partitions)``.
    alpha : float, optional
        Dirichlet concentration, > 0; smaller is more skewed. Default 0.5.
    seed : int, optional
        Seed of the shuffle and the Dirichlet draws. Default 0.
    min_partition_size : int, optional
        Smallest acceptable partition; ``"dirichlet"`` redraws (up to 10
        times) until every partition has at least this many rows. Default 0.

    Returns
    -------
    datasets.Dataset
        The rows of partition ``partition_id``.

    Raises
    ------
    ValueError
        If an argument is out of range, or the partition is empty or smaller
        than ``min_partition_size``.
    """
    num_partitions = check_int("num_partitions", num_partitions, minimum=1)
    partition_id = check_int("partition_id", partition_id, minimum=0)
    if partition_id >= num_partitions:
        raise ValueError(
            f"`partition_id` must be in [0, {num_partitions}) for "
            f"num_partitions={num_partitions}, got {partition_id}"
        )
    # Every copy of a text goes to one partition: partition one row per distinct
    # text, then bring the copies along, so no client holds out what another trains on.
    groups: dict[str, list[int]] = {}
    for i, text in enumerate(ds[TEXT_COLUMN]):
        groups.setdefault(text, []).append(i)
    members = list(groups.values())
    repeated = len(members) < ds.num_rows
    if repeated:
        ds_or_groups = ds.select([m[0] for m in members]).add_column(
            _ROW, list(range(len(members)))
        )
    else:
        ds_or_groups = ds
    partitioner = create_partitioner(
        method,
        ds_or_groups,
        num_partitions=num_partitions,
        alpha=alpha,
        seed=seed,
        min_partition_size=min_partition_size,
    )
    detail = f"{method}, alpha={alpha}" if _get_method(method).uses_alpha else method
    where = f"partition {partition_id} of {_dataset_name(ds)!r} ({detail})"
    try:
        part = partitioner.load_partition(partition_id)
    except ValueError as e:
        raise ValueError(
            f"cannot build {where} with min_partition_size={min_partition_size}: {e}"
        ) from e
    if repeated:
        part = ds.select([i for r in part[_ROW] for i in members[r]])
    if part.num_rows == 0:
        raise ValueError(f"{where} is empty")
    if part.num_rows < min_partition_size:
        raise ValueError(
            f"{where} has {part.num_rows} rows, fewer than min_partition_size={min_partition_size}"
        )
    logger.debug("%s has %d rows", where, part.num_rows)
    return part


def local_split(ds: Dataset, *, seed: int, test_fraction: float) -> DatasetDict:
    """Split a client's partition into its own train and held-out test set.

    Every copy of a text lands on one side (:mod:`fednet.data.grouped`). The
    split is stratified by label when every class present has at least two
    rows and both halves can hold one row of each class; otherwise (typical
    under strong label skew) it is a plain seeded random split of the texts.

    Parameters
    ----------
    ds : datasets.Dataset
        The client's partition, with a ``ClassLabel`` ``label`` column.
    seed : int
        Seed of the split.
    test_fraction : float
        Fraction of rows (rounded up) held out, in (0, 1).

    Returns
    -------
    datasets.DatasetDict
        ``"train"`` and ``"test"``.

    Raises
    ------
    ValueError
        If ``ds`` is too small to leave a row on each side, or holds one
        distinct text only.
    """
    seed = check_seed(seed)
    test_fraction = check_fraction(test_fraction, key="test_fraction")
    n = ds.num_rows
    n_test = math.ceil(test_fraction * n)
    if n < 2 or n - n_test < 1:
        raise ValueError(
            f"{_dataset_name(ds)!r} has {n} rows, too few for a local split with "
            f"test_fraction={test_fraction}"
        )
    counts = np.unique(label_ids(ds), return_counts=True)[1]
    n_classes = len(counts)
    stratify = bool(counts.min() >= 2 and n_test >= n_classes and n - n_test >= n_classes)
    if not stratify:
        logger.debug(
            "%s: %d rows, class counts %s; splitting without stratification",
            _dataset_name(ds),
            n,
            counts.tolist(),
        )
    try:
        train, test = group_split_indices(
            list(ds[TEXT_COLUMN]),
            label_ids(ds).tolist(),
            test_fraction=test_fraction,
            seed=seed,
            stratify=stratify,
        )
    except ValueError as e:
        raise ValueError(f"{_dataset_name(ds)!r}: {e}") from None
    return DatasetDict({"train": ds.select(train), "test": ds.select(test)})


# --- built-in methods ---------------------------------------------------------


def _iid(
    dataset: Dataset, *, num_partitions: int, alpha: float, seed: int, min_partition_size: int
) -> Partitioner:
    """Equal contiguous shards of a seeded shuffle (IidPartitioner does not shuffle)."""
    from flwr_datasets.partitioner import IidPartitioner

    del alpha, min_partition_size
    partitioner = IidPartitioner(num_partitions=num_partitions)
    partitioner.dataset = dataset.shuffle(seed=seed)
    return partitioner


def _dirichlet(
    dataset: Dataset, *, num_partitions: int, alpha: float, seed: int, min_partition_size: int
) -> Partitioner:
    """Label skew with per-class Dirichlet(alpha) proportions."""
    from flwr_datasets.partitioner import DirichletPartitioner

    partitioner = DirichletPartitioner(
        num_partitions=num_partitions,
        partition_by=LABEL_COLUMN,
        alpha=alpha,
        min_partition_size=min_partition_size,
        self_balancing=False,
        shuffle=True,
        seed=seed,
    )
    partitioner.dataset = dataset
    return partitioner


register_partitioner("iid", _iid)
register_partitioner("dirichlet", _dirichlet, uses_alpha=True)
