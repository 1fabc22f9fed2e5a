"""One client's private data: loaded, split and partitioned as its preset says.

It never leaves the client. :mod:`fednet.federation.cache` keeps it between
the processes of one client; :mod:`fednet.federation.client` trains on it.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass, field
from typing import Any

from fednet.config import ClientConfig, FederationConfig

__all__ = ["ClientData", "client_seed", "load_client_data"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClientData:
    """One client's private split; it never leaves the client.

    ``report`` holds the figures of the load (:meth:`fednet.data.LoadReport.to_dict`
    plus ``train_examples`` and ``test_examples``); only its counts and encoding
    leave, in the profile.
    """

    train_texts: tuple[str, ...]
    train_labels: tuple[int, ...]
    test_texts: tuple[str, ...]
    test_labels: tuple[int, ...]
    label_names: tuple[str, ...]
    report: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


def client_seed(cfg: FederationConfig, client_id: str) -> int:
    """The seed of ``client_id``'s own train/held-out split and of its training."""
    return (cfg.seed * 1_000_003 + zlib.crc32(client_id.encode())) % (2**31)


def load_client_data(cfg: FederationConfig, client: ClientConfig) -> ClientData:
    """Load, split and partition ``client``'s data exactly as the preset says.

    The catalogue split's ``train`` part is partitioned among the clients of a
    data set; each partition is split again into the client's own training and
    held-out data. The catalogue's ``test`` part stays out of training, for
    routing and benchmark queries. With ``federation.label-space = "union"`` the
    labels are mapped into the union label space (:mod:`fednet.federation.labels`).
    """
    from fednet.data import client_splits, load_report, local_split, partition_dataset

    splits = client_splits(cfg, client)
    report = load_report(
        client.dataset,
        text_column=client.text_column,
        label_column=client.label_column,
        encoding=client.encoding,
        label_names=client.label_names or None,
    ).to_dict()
    part = partition_dataset(
        splits["train"],
        method=client.partitioner,
        num_partitions=client.num_partitions,
        partition_id=client.partition,
        alpha=client.dirichlet_alpha,
        seed=cfg.seed,
    )
    local = local_split(part, seed=client_seed(cfg, client.id), test_fraction=cfg.test_fraction)
    names = tuple(local["train"].features["label"].names)
    test = local["test"]
    if len(test) > cfg.eval_examples:
        test = test.select(range(cfg.eval_examples))
    train_labels, test_labels = tuple(local["train"]["label"]), tuple(test["label"])
    if cfg.label_space == "union":
        from fednet.federation.labels import to_union, union_label_names

        union = union_label_names(cfg)
        train_labels = to_union(train_labels, names, client.dataset, union)
        test_labels = to_union(test_labels, names, client.dataset, union)
        names = union
    report.update(train_examples=len(train_labels), test_examples=len(test_labels))
    logger.debug(
        "client %s data: %d rows read, %d kept, dropped %s, %d duplicate rows, encoding %s; "
        "%d training and %d held-out examples",
        client.id,
        report["rows_read"],
        report["rows_kept"],
        report["dropped"] or "none",
        report["duplicate_rows"],
        report["encoding"],
        len(train_labels),
        len(test_labels),
    )
    return ClientData(
        train_texts=tuple(local["train"]["text"]),
        train_labels=train_labels,
        test_texts=tuple(test["text"]),
        test_labels=test_labels,
        label_names=names,
        report=report,
    )
