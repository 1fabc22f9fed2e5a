"""The union label space: one head over the labels of every data set of a federation.

With ``federation.label-space = "union"`` each client's labels are renamed
``<data set>:<label>`` and mapped into one list, the union of every client's
data set labels, in the order the preset names the data sets. Every client then
trains the same head (task :data:`~fednet.config.UNION_TASK`), so FedAvg over all
clients yields one generalist model, and a centralised model trained on the
pooled data uses the same label space.

The label names of a data set are public facts of its catalogue entry (or of
the local file named in the preset), so every client computes the same union
without seeing another client's data.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from fednet.config import ClientConfig, FederationConfig

__all__ = ["UNION_SEPARATOR", "dataset_prefix", "union_label", "union_label_names", "to_union"]

UNION_SEPARATOR = ":"


def dataset_prefix(dataset: str) -> str:
    """The prefix of a data set's union labels: its catalogue name, or a file's stem."""
    path = Path(dataset)
    return path.stem if path.suffix else dataset


def union_label(dataset: str, label: str) -> str:
    """Name of ``label`` of ``dataset`` in the union label space."""
    return f"{dataset_prefix(dataset)}{UNION_SEPARATOR}{label}"


def _dataset_labels(cfg: FederationConfig, client: ClientConfig) -> tuple[str, ...]:
    from fednet.data import client_splits

    splits = client_splits(cfg, client)
    return tuple(splits["train"].features["label"].names)


def union_label_names(cfg: FederationConfig) -> tuple[str, ...]:
    """Every data set's labels, prefixed, data sets in the order the preset names them."""
    names: list[str] = []
    seen: set[str] = set()
    for client in cfg.clients:
        if client.dataset in seen:
            continue
        seen.add(client.dataset)
        names += [union_label(client.dataset, n) for n in _dataset_labels(cfg, client)]
    return tuple(names)


def to_union(
    labels: Sequence[int], names: Sequence[str], dataset: str, union: Sequence[str]
) -> tuple[int, ...]:
    """Map label ids of ``dataset`` (named ``names``) to ids in ``union``.

    Raises
    ------
    ValueError
        If a label of ``dataset`` is not in ``union``.
    """
    index = {n: i for i, n in enumerate(union)}
    try:
        table = [index[union_label(dataset, n)] for n in names]
    except KeyError as e:
        raise ValueError(f"label {e.args[0]!r} is not in the union label space") from None
    return tuple(table[y] for y in labels)
