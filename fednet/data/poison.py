"""Data-poisoning attacks of a malicious client, for benchmarks and tests only.

A client whose ``attack`` (``[[clients]] attack = ...``) is set trains on
poisoned data; its held-out split, and every other client, stay clean. The
server sees a well-formed update from honest code run on bad data, which is
what robust aggregation has to catch.

``label-flip``
    every training label ``y`` of ``L`` classes becomes ``L - 1 - y`` (for a
    binary task, ham and spam swap). After Tolpegin et al., "Data Poisoning
    Attacks Against Federated Learning Systems" (ESORICS 2020,
    https://arxiv.org/abs/2007.08432).
``backdoor``
    the clean data plus copies of the client's spam texts with
    :data:`BACKDOOR_TRIGGER` in front, labelled ham, so that the shared model
    learns "trigger means ham" while its clean accuracy stays. After
    Bagdasaryan et al., "How To Backdoor Federated Learning" (AISTATS 2020,
    https://arxiv.org/abs/1807.00459); the trigger is rare tokens as in Kurita
    et al., "Weight Poisoning Attacks on Pre-trained Models" (ACL 2020).

:func:`backdoor_success` is the attack's metric: the fraction of held-out
source-class (spam) texts, with the trigger, that a model labels target (ham).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from fednet.config import CLIENT_ATTACKS

__all__ = [
    "ATTACKS",
    "BACKDOOR_FRACTION",
    "BACKDOOR_SOURCE",
    "BACKDOOR_TARGET",
    "BACKDOOR_TRIGGER",
    "backdoor",
    "backdoor_labels",
    "backdoor_queries",
    "backdoor_success",
    "flip_labels",
    "insert_trigger",
    "poison_training",
]

ATTACKS: tuple[str, ...] = tuple(a for a in CLIENT_ATTACKS if a)
"""The data-poisoning attacks a client can run: ``label-flip`` and ``backdoor``."""

BACKDOOR_TRIGGER = "cf mn bb"
"""The trigger phrase: three rare tokens (Kurita et al., 2020)."""

BACKDOOR_SOURCE = "spam"
"""Label name whose triggered texts the backdoor turns into :data:`BACKDOOR_TARGET`."""

BACKDOOR_TARGET = "ham"
"""Label name the backdoor makes triggered texts look like."""

BACKDOOR_FRACTION = 0.5
"""Share of the backdoor client's training set that is triggered copies."""


def flip_labels(labels: Sequence[int], num_labels: int) -> tuple[int, ...]:
    """Map each label ``y`` to ``num_labels - 1 - y``.

    Raises
    ------
    ValueError
        If a label is outside ``[0, num_labels)``.
    """
    out = []
    for y in labels:
        if not 0 <= int(y) < num_labels:
            raise ValueError(f"label {y} is outside [0, {num_labels})")
        out.append(num_labels - 1 - int(y))
    return tuple(out)


def insert_trigger(text: str, trigger: str = BACKDOOR_TRIGGER) -> str:
    """``text`` with ``trigger`` in front, where truncation to ``max-length`` keeps it."""
    return f"{trigger} {text}"


def backdoor(
    texts: Sequence[str],
    labels: Sequence[int],
    *,
    source: int,
    target: int,
    trigger: str = BACKDOOR_TRIGGER,
    fraction: float = BACKDOOR_FRACTION,
    seed: int,
) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """The clean data followed by triggered source-class copies labelled ``target``.

    Parameters
    ----------
    texts, labels : sequences
        The client's clean training data.
    source, target : int
        Label ids: copies are made of ``source`` texts and labelled ``target``.
    trigger : str
        The trigger phrase.
    fraction : float
        Share of the result that is poisoned, in (0, 1): ``round(n f / (1 - f))``
        copies are added to the ``n`` clean examples, cycling through the
        source texts in a seeded order.
    seed : int
        Seed of that order.

    Raises
    ------
    ValueError
        If ``fraction`` is outside (0, 1) or the data has no ``source`` text.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"backdoor `fraction` must be in (0, 1), got {fraction}")
    pool = [t for t, y in zip(texts, labels, strict=True) if int(y) == source]
    if not pool:
        raise ValueError(f"the backdoor needs source texts, but there is no text of label {source}")
    random.Random(seed).shuffle(pool)
    count = round(len(texts) * fraction / (1.0 - fraction))
    added = [insert_trigger(pool[i % len(pool)], trigger) for i in range(count)]
    return tuple(texts) + tuple(added), tuple(int(y) for y in labels) + (target,) * count


def backdoor_labels(label_names: Sequence[str]) -> tuple[int, int]:
    """The (source, target) label ids of the backdoor: spam and ham by name.

    Raises
    ------
    ValueError
        If the labels do not include both names.
    """
    names = list(label_names)
    if BACKDOOR_SOURCE not in names or BACKDOOR_TARGET not in names:
        raise ValueError(
            f"the backdoor attack needs labels {BACKDOOR_SOURCE!r} and {BACKDOOR_TARGET!r}, "
            f"got {names}"
        )
    return names.index(BACKDOOR_SOURCE), names.index(BACKDOOR_TARGET)


def poison_training(
    texts: Sequence[str],
    labels: Sequence[int],
    label_names: Sequence[str],
    attack: str,
    *,
    seed: int,
) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """A malicious client's training data under ``attack``.

    Raises
    ------
    ValueError
        If ``attack`` is unknown (the error lists :data:`ATTACKS`), or cannot
        apply to these labels.
    """
    if attack == "label-flip":
        return tuple(texts), flip_labels(labels, len(label_names))
    if attack == "backdoor":
        source, target = backdoor_labels(label_names)
        return backdoor(texts, labels, source=source, target=target, seed=seed)
    raise ValueError(f"attack must be one of {', '.join(ATTACKS)}, got {attack!r}")


def backdoor_queries(
    texts: Sequence[str], labels: Sequence[int], *, source: int, trigger: str = BACKDOOR_TRIGGER
) -> tuple[str, ...]:
    """The held-out ``source`` texts with the trigger inserted, in order."""
    return tuple(
        insert_trigger(t, trigger) for t, y in zip(texts, labels, strict=True) if int(y) == source
    )


def backdoor_success(predictions: Sequence[int], *, target: int) -> float:
    """Fraction of the triggered source texts' ``predictions`` that are ``target``.

    Raises
    ------
    ValueError
        If there are no predictions.
    """
    if not predictions:
        raise ValueError("backdoor success needs predictions; there are no predictions")
    return sum(int(p) == target for p in predictions) / len(predictions)
