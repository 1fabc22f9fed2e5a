"""The benchmark's query stream: held-out catalogue test texts of every data set.

Clients partition only the ``train`` part of each catalogue split, so the
``test`` part was never seen in training by any row of the benchmark. The
measured stream and the router's warm-up stream are disjoint slices of one
seeded order per data set, shuffled together into one mixed stream.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field

from fednet.config import UNION_TASK, FederationConfig

__all__ = ["BenchQuery", "QueryStreams", "query_streams", "is_correct", "task_of_dataset"]


@dataclass(frozen=True)
class BenchQuery:
    """A held-out text, the data set it comes from and its true label."""

    text: str
    dataset: str
    label: str


@dataclass(frozen=True)
class QueryStreams:
    """The router's warm-up stream and the measured stream (disjoint)."""

    warmup: tuple[BenchQuery, ...]
    measured: tuple[BenchQuery, ...]
    datasets: tuple[str, ...]
    duplicates_dropped: dict[str, int] = field(default_factory=dict)
    """Test texts left out per data set because the same text is in its training split."""

    @property
    def max_chars(self) -> int:
        """Characters of the longest query (the peers and the client must accept it)."""
        return max((len(q.text) for q in (*self.warmup, *self.measured)), default=1)


def query_streams(
    cfg: FederationConfig, *, per_dataset: int, warmup_per_dataset: int, seed: int = 0
) -> QueryStreams:
    """Draw ``warmup_per_dataset`` then ``per_dataset`` test texts of each data set.

    A test text whose exact text also occurs in the catalogue's training split
    (the corpora hold duplicate messages) is left out, so no query was ever
    seen in training.

    Raises
    ------
    ValueError
        If a data set's test split has fewer texts than both streams need.
    """
    from fednet.data import client_splits

    datasets = tuple(dict.fromkeys(c.dataset for c in cfg.clients))
    client = {c.dataset: c for c in cfg.clients}
    warmup: list[BenchQuery] = []
    measured: list[BenchQuery] = []
    dropped: dict[str, int] = {}
    for name in datasets:
        splits = client_splits(cfg, client[name])
        test = splits["test"]
        trained = set(splits["train"]["text"])
        unseen = [i for i, t in enumerate(test["text"]) if t not in trained]
        dropped[name] = len(test) - len(unseen)
        need = warmup_per_dataset + per_dataset
        if len(unseen) < need:
            raise ValueError(
                f"data set {name!r} has {len(unseen)} test texts not also in its training split; "
                f"the benchmark needs {need} (`queries_per_dataset` {per_dataset} + "
                f"`warmup_per_dataset` {warmup_per_dataset})"
            )
        names = test.features["label"].names
        order = unseen
        random.Random(f"{cfg.seed + seed}-{name}").shuffle(order)
        rows = test.select(order[:need])
        queries = [
            BenchQuery(t, name, names[y]) for t, y in zip(rows["text"], rows["label"], strict=True)
        ]
        warmup += queries[:warmup_per_dataset]
        measured += queries[warmup_per_dataset:]
    random.Random(cfg.seed + seed).shuffle(warmup)
    random.Random(cfg.seed + seed + 1).shuffle(measured)
    return QueryStreams(tuple(warmup), tuple(measured), datasets, dropped)


def task_of_dataset(cfg: FederationConfig) -> dict[str, str]:
    """The task whose head answers each data set's queries (its clients' task)."""
    return {c.dataset: c.task for c in cfg.clients}


def is_correct(task: str, label: str, query: BenchQuery, tasks: Mapping[str, str]) -> bool:
    """Whether an answer ``label`` of ``task`` is the query's true label.

    An answer of another task is wrong; an answer in the union label space
    must name the query's data set and label.
    """
    if task == UNION_TASK:
        from fednet.federation.labels import union_label

        return label == union_label(query.dataset, query.label)
    return task == tasks.get(query.dataset) and label == query.label
