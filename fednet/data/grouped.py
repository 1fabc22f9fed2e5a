"""Seeded train/test splits that keep every copy of a text on one side.

A text that occurs several times is one group: all its rows go to the training
side or all to the test side, so held-out accuracy is never partly training
accuracy (the group split of scikit-learn's ``GroupShuffleSplit``, here with
per-class targets so the split stays stratified).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["group_split_indices"]


def _targets(sizes: dict[int, int], n_test: int) -> dict[int, int]:
    """Split ``n_test`` over the classes in proportion to their sizes (largest remainder)."""
    total = sum(sizes.values())
    exact = {k: n_test * v / total for k, v in sizes.items()}
    out = {k: math.floor(x) for k, x in exact.items()}
    short = n_test - sum(out.values())
    for k in sorted(exact, key=lambda k: (out[k] - exact[k], k))[:short]:
        out[k] += 1
    return out


def group_split_indices(
    texts: Sequence[str],
    labels: Sequence[int],
    *,
    test_fraction: float,
    seed: int,
    stratify: bool,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Row indices of a train and a test side that share no text.

    Parameters
    ----------
    texts, labels : Sequence
        The rows' texts and class ids.
    test_fraction : float
        Target fraction of rows on the test side, in (0, 1); the test side gets
        ``ceil(test_fraction * n)`` rows when the groups allow it.
    seed : int
        Seed of the group order.
    stratify : bool
        Fill the test side class by class (a group whose copies carry several
        labels counts in each) so both sides keep the class proportions.

    Returns
    -------
    tuple[numpy.ndarray, numpy.ndarray]
        Train and test row indices, each in a seeded shuffled order.

    Raises
    ------
    ValueError
        If one side would be empty (e.g. every row holds the same text).
    """
    n = len(texts)
    groups: dict[str, list[int]] = {}
    for i, t in enumerate(texts):
        groups.setdefault(t, []).append(i)
    members = list(groups.values())
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(members))
    n_test = math.ceil(test_fraction * n)
    # Per-class rows of each group (one pseudo-class without stratification).
    content: list[Counter[int]] = [
        Counter(int(labels[i]) if stratify else 0 for i in m) for m in members
    ]
    sizes: Counter[int] = Counter()
    for c in content:
        sizes.update(c)
    target = _targets(dict(sizes), n_test)
    filled: Counter[int] = Counter()
    test: list[int] = []
    train: list[int] = []
    for g in order.tolist():
        if all(filled[k] + n <= target[k] for k, n in content[g].items()):
            filled.update(content[g])
            test += members[g]
        else:
            train += members[g]
    if not test and len(members) > 1:
        # Every group is larger than its class's room: the smallest one goes to test.
        first = min(order.tolist(), key=lambda g: len(members[g]))
        test = list(members[first])
        moved = set(test)
        train = [i for i in train if i not in moved]
    if not test or not train:
        raise ValueError(
            f"cannot split {n} rows holding {len(members)} distinct texts with "
            f"test_fraction={test_fraction} so that no text is on both sides"
        )
    test_idx = np.asarray(test, dtype=np.int64)
    train_idx = np.asarray(train, dtype=np.int64)
    return rng.permutation(train_idx), rng.permutation(test_idx)
