"""The representation benchmark's settings and its embedding cache.

Shared by :mod:`fednet.bench.representation` (map fit and routing) and
:mod:`fednet.bench.transfer` (prototype transfer).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = [
    "EmbeddingCache",
    "Progress",
    "RepresentationBenchConfig",
    "paired_difference_interval",
    "wilson_interval",
]

logger = logging.getLogger(__name__)

Progress = Callable[[str], None]


@dataclass(frozen=True)
class RepresentationBenchConfig:
    """Settings of one representation benchmark (see the module notes)."""

    models: tuple[str, ...] = ("minilm-l6", "mpnet-base", "smollm2-135m")
    reference: str = "minilm-l6"
    corpus: str = "mixed"
    methods: tuple[str, ...] = ("procrustes", "ridge", "mlp", "mean")
    fit_texts: int = 6000
    pool: int = 1000
    max_length: int = 32
    routing_datasets: tuple[str, ...] = ("bbc-news", "sms-spam", "tweets-sentiment")
    clients_per_dataset: int = 2
    examples_per_client: int = 200
    queries_per_dataset: int = 200
    sketch_epsilon: float = 1.0
    delta: float = 1e-5
    transfer_task: str = "tweets-sentiment"
    other_model: str = "mpnet-base"
    small_examples: int = 300
    other_clients: int = 2
    other_examples: int = 1500
    test_examples: int = 2000
    steps: int = 20
    rounds: int = 2
    batch_size: int = 16
    learning_rates: tuple[float, ...] = (5e-4, 2e-3, 8e-3)
    validation_fraction: float = 0.2
    lora_rank: int = 8
    prototype_weight: float = 1.0
    prototype_epsilon: float = 1.0
    seed: int = 0
    threads: int = 1
    parts: tuple[str, ...] = ("fit", "routing", "transfer")

    def __post_init__(self) -> None:
        if self.reference not in self.models:
            raise ValueError(
                f"`reference` {self.reference!r} must be one of `models` {self.models}"
            )
        if self.fit_texts < 10 or self.pool < 10:
            raise ValueError("`fit_texts` and `pool` must be >= 10")
        valid = {"fit", "routing", "transfer", "transfer-baselines"}
        unknown = sorted(set(self.parts) - valid)
        if unknown:
            raise ValueError(f"unknown parts {unknown}; valid: {', '.join(sorted(valid))}")
        if not self.learning_rates or any(not lr > 0 for lr in self.learning_rates):
            raise ValueError(f"`learning_rates` must be positive, got {self.learning_rates}")
        if not 0 < self.validation_fraction < 1:
            raise ValueError(
                f"`validation_fraction` must be in (0, 1), got {self.validation_fraction}"
            )
        if "transfer-baselines" in self.parts and len(self.parts) > 1:
            raise ValueError("`transfer-baselines` runs alone (it fills the cache for `transfer`)")


class EmbeddingCache:
    """Frozen-encoder embeddings, cached on disk by model and texts."""

    CHUNK = 50

    def __init__(self, cache_dir: Path, max_length: int, progress: Progress) -> None:
        self.cache_dir = cache_dir
        self.max_length = max_length
        self.progress = progress
        self._rows: dict[str, dict[str, torch.Tensor]] = {}

    def __call__(self, model: str, texts: Sequence[str]) -> torch.Tensor:
        from fednet.representation.corpus import corpus_digest
        from fednet.representation.encode import encode_texts

        texts = list(texts)
        parts = []
        for start in range(0, len(texts), self.CHUNK):  # cached in chunks: work survives a stop
            chunk = texts[start : start + self.CHUNK]
            digest = corpus_digest([model, str(self.max_length), *chunk])[:20]
            path = self.cache_dir / f"emb-{model}-{digest}.pt"
            if path.exists():
                parts.append(torch.load(path))
                continue
            t0 = time.perf_counter()
            parts.append(encode_texts(model, chunk, max_length=self.max_length))
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            torch.save(parts[-1], path)
            self.progress(
                f"  {model}: texts {start}-{start + len(chunk)} of {len(texts)} "
                f"in {time.perf_counter() - t0:.0f} s"
            )
        emb = torch.cat(parts)
        rows = self._rows.setdefault(model, {})
        for text, row in zip(texts, emb, strict=True):
            rows[text] = row
        return emb

    def lookup(self, model: str, texts: Sequence[str]) -> torch.Tensor:
        """Rows of texts embedded before (the router's embedder)."""
        return torch.stack([self._rows[model][t] for t in texts])


# -- 1. map fit ----------------------------------------------------------------------


def wilson_interval(hits: int, n: int, *, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion ``hits / n`` (95% by default).

    Wilson (1927), "Probable inference, the law of succession, and statistical
    inference", JASA 22(158). Returns ``(low, high)`` in [0, 1].

    Raises
    ------
    ValueError
        If ``n < 1`` or ``hits`` is not in ``[0, n]``.
    """
    if n < 1 or not 0 <= hits <= n:
        raise ValueError(f"need 0 <= hits <= n and n >= 1, got hits={hits}, n={n}")
    p = hits / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def paired_difference_interval(
    a: list[bool], b: list[bool], *, resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """95% paired bootstrap interval of ``mean(a) - mean(b)`` over the same items.

    ``a[i]`` and ``b[i]`` are outcomes on item ``i``; items are resampled with
    replacement, ``resamples`` times, with a seeded generator (Efron & Tibshirani
    1993, ch. 13, percentile interval).

    Raises
    ------
    ValueError
        If ``a`` and ``b`` differ in length or are empty.
    """
    if len(a) != len(b) or not a:
        raise ValueError(f"paired outcomes must be non-empty and of one length: {len(a)}, {len(b)}")
    diff = torch.tensor(a, dtype=torch.float64) - torch.tensor(b, dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(len(diff), (resamples, len(diff)), generator=gen)
    means = diff[idx].mean(1).sort().values
    return float(means[int(0.025 * resamples)]), float(means[int(0.975 * resamples) - 1])


# -- 2. routing ------------------------------------------------------------------------
