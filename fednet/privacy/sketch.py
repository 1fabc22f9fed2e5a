"""Differentially private capability sketches: noisy per-label centroids of embeddings.

A client describes what it is good at by the centroids of its (L2-normalised,
clipped) example embeddings per label, released with the Gaussian mechanism.
Routers compare a query embedding with these centroids.

Sensitivity and noise
---------------------
Adjacent data sets differ by adding or removing one example (the adjacency of
opacus's accountant). After clipping to norm ``C`` one example changes exactly
one per-label sum ``S_l`` by at most ``C`` and one count ``N_l`` by 1, so the
raw release ``(S, N)`` has joint L2 sensitivity ``sqrt(C**2 + 1)``. The sketch
releases the rescaled vector ``(S / C, N)``, whose two parts have unit
sensitivity each and joint sensitivity ``sqrt(2)``. Gaussian noise of std
``z * sqrt(2)`` on every coordinate of it is therefore the Gaussian mechanism
with noise multiplier ``z``; scaled back that is std ``sqrt(2) * z * C`` on each
sum coordinate and ``sqrt(2) * z`` on each count. One sketch is charged to a
ledger as ``(z, sample_rate=1, steps=releases)``. Rescaling keeps the noise on
the sums proportional to ``C``, which isotropic noise of std
``z * sqrt(C**2 + 1)`` would not for ``C < 1``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from fednet.privacy._checks import (
    check_delta,
    check_float_tensor,
    check_non_negative,
    check_positive,
)
from fednet.privacy.accountant import compute_epsilon
from fednet.privacy.mechanisms import calibrate_noise_multiplier, clip_by_norm, gaussian_noise_like
from fednet.privacy.randomness import NoiseSource, secure_source

__all__ = [
    "SKETCH_KEYS",
    "Sketch",
    "build_sketch",
    "noisy_sums_and_counts",
    "sketch_noise_multiplier",
]

logger = logging.getLogger(__name__)

SKETCH_KEYS: tuple[str, ...] = (
    "sketch.centroids",
    "sketch.counts",
    "sketch.params",
    "sketch.label_names",
)
"""Tensor names of a sketch on the wire and on disk."""

_PARAMS = ("clip", "noise_multiplier", "epsilon", "delta", "releases")
_TINY = 1e-12


@dataclass(frozen=True, eq=False)
class Sketch:
    """A released capability sketch.

    Parameters
    ----------
    centroids : torch.Tensor
        ``[K, d]`` noisy centroids (labels first, then any k-means clusters).
    counts : torch.Tensor
        ``[K]`` noisy counts; a row whose count is <= 0 carries no signal.
    label_names : tuple[str, ...]
        One name per row.
    clip : float
        L2 bound ``C`` the embeddings were clipped to.
    noise_multiplier : float
        ``z`` of each release (see the module notes).
    epsilon : float
        ε of this sketch at ``delta`` (``math.inf`` without noise).
    delta : float
        δ of ``epsilon``.
    releases : int
        Gaussian releases composed in this sketch (1, plus one per k-means round).
    """

    centroids: torch.Tensor
    counts: torch.Tensor
    label_names: tuple[str, ...]
    clip: float
    noise_multiplier: float
    epsilon: float
    delta: float
    releases: int = 1

    def __post_init__(self) -> None:
        check_float_tensor("centroids", self.centroids)
        check_float_tensor("counts", self.counts)
        if self.centroids.dim() != 2:
            raise ValueError(f"centroids must be [K, d], got shape {tuple(self.centroids.shape)}")
        rows = self.centroids.shape[0]
        if tuple(self.counts.shape) != (rows,):
            raise ValueError(f"counts must have shape ({rows},), got {tuple(self.counts.shape)}")
        if len(self.label_names) != rows:
            raise ValueError(f"label_names must have {rows} names, got {len(self.label_names)}")
        object.__setattr__(self, "label_names", tuple(str(n) for n in self.label_names))

    def ledger_charge(self) -> dict[str, float | int]:
        """Keyword arguments charging this sketch to a ledger (add ``kind="sketch"``)."""
        return {
            "noise_multiplier": self.noise_multiplier,
            "sample_rate": 1.0,
            "steps": self.releases,
        }

    def similarities(self, query_embeddings: torch.Tensor) -> torch.Tensor:
        """Cosine similarity of each query (``[d]`` or ``[m, d]``) to each centroid: ``[m, K]``."""
        check_float_tensor("query_embeddings", query_embeddings)
        query = query_embeddings.reshape(1, -1) if query_embeddings.dim() == 1 else query_embeddings
        if query.dim() != 2 or query.shape[1] != self.centroids.shape[1]:
            raise ValueError(
                f"query_embeddings must be [m, {self.centroids.shape[1]}], "
                f"got shape {tuple(query_embeddings.shape)}"
            )
        q = _unit(query.to(self.centroids.dtype))
        return q @ _unit(self.centroids).T

    def score(self, query_embeddings: torch.Tensor, *, min_count: float = 0.0) -> torch.Tensor:
        """Capability score of each query: max cosine similarity to a usable centroid.

        Rows whose noisy count is ``<= min_count`` are ignored; a count near zero
        means the label is absent or drowned in noise. A sketch with no usable
        row scores -1 (the lowest cosine) for every query.

        Returns
        -------
        torch.Tensor
            ``[m]`` scores in [-1, 1], or a 0-d tensor for a ``[d]`` query.
        """
        sims = self.similarities(query_embeddings)
        usable = self.counts > min_count
        if not bool(usable.any()):
            scores = torch.full((sims.shape[0],), -1.0, dtype=sims.dtype)
        else:
            scores = sims[:, usable].max(dim=1).values
        return scores[0] if query_embeddings.dim() == 1 else scores

    def to_tensors(self) -> dict[str, torch.Tensor]:
        """Tensors named by :data:`SKETCH_KEYS`, for an ``ArrayRecord`` or safetensors."""
        params = [float(getattr(self, name)) for name in _PARAMS]
        names = json.dumps(list(self.label_names)).encode("utf-8")
        return {
            "sketch.centroids": self.centroids.detach().contiguous().clone(),
            "sketch.counts": self.counts.detach().contiguous().clone(),
            "sketch.params": torch.tensor(params, dtype=torch.float64),
            "sketch.label_names": torch.tensor(list(names), dtype=torch.uint8),
        }

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, torch.Tensor]) -> Sketch:
        """Rebuild a sketch from :meth:`to_tensors` output; other ``sketch.*`` keys are refused."""
        unknown = sorted(k for k in tensors if k.startswith("sketch.") and k not in SKETCH_KEYS)
        missing = [k for k in SKETCH_KEYS if k not in tensors]
        if unknown or missing:
            raise ValueError(f"sketch tensors: missing {missing}, unknown {unknown}")
        params = tensors["sketch.params"].tolist()
        if len(params) != len(_PARAMS):
            raise ValueError(f"sketch.params must hold {len(_PARAMS)} values, got {len(params)}")
        values = dict(zip(_PARAMS, params, strict=True))
        raw = bytes(tensors["sketch.label_names"].to(torch.uint8).tolist())
        try:
            names = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"sketch.label_names is not UTF-8 JSON: {e}") from e
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError(f"sketch.label_names must be a JSON list of strings, got {names!r}")
        return cls(
            centroids=tensors["sketch.centroids"],
            counts=tensors["sketch.counts"],
            label_names=tuple(names),
            clip=values["clip"],
            noise_multiplier=values["noise_multiplier"],
            epsilon=values["epsilon"],
            delta=values["delta"],
            releases=int(values["releases"]),
        )


def sketch_noise_multiplier(*, epsilon: float, delta: float, releases: int = 1) -> float:
    """Noise multiplier ``z`` of a sketch whose charge ``(z, 1, releases)`` costs ``epsilon``.

    ``releases`` is 1 for a label sketch and ``1 + kmeans_iters`` when k-means
    centroids are added.
    """
    return calibrate_noise_multiplier(epsilon=epsilon, delta=delta, sample_rate=1.0, steps=releases)


def noisy_sums_and_counts(
    x: torch.Tensor,
    groups: torch.Tensor,
    *,
    num_groups: int,
    clip: float,
    noise_multiplier: float,
    noise: NoiseSource | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One Gaussian release of per-group sums and counts of clipped rows.

    Rows of ``x`` are clipped to norm ``clip`` here; noise std is
    ``sqrt(2) * noise_multiplier * clip`` on sums and ``sqrt(2) * noise_multiplier``
    on counts (see the module notes).

    Returns
    -------
    sums : torch.Tensor
        ``[num_groups, d]`` noisy sums.
    counts : torch.Tensor
        ``[num_groups]`` noisy counts.
    """
    z = check_non_negative("noise_multiplier", noise_multiplier)
    clipped = clip_by_norm(x, max_norm=clip)
    sums = torch.zeros(num_groups, x.shape[1], dtype=x.dtype).index_add_(0, groups, clipped)
    counts = torch.bincount(groups, minlength=num_groups).to(x.dtype)
    scale = math.sqrt(2.0) * z
    sums = sums + gaussian_noise_like(sums, std=scale * clip, noise=noise)
    counts = counts + gaussian_noise_like(counts, std=scale, noise=noise)
    return sums, counts


def build_sketch(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    *,
    num_labels: int,
    clip: float,
    noise_multiplier: float,
    noise: NoiseSource | None = None,
    kmeans: int = 0,
    kmeans_iters: int = 5,
    delta: float = 1e-5,
    label_names: Sequence[str] | None = None,
    normalize: bool = True,
) -> Sketch:
    """Release a capability sketch of one client's examples.

    Parameters
    ----------
    embeddings : torch.Tensor
        ``[n, d]`` example embeddings.
    labels : torch.Tensor
        ``[n]`` integer labels in ``[0, num_labels)``.
    num_labels : int
        Number of labels; every label gets a row, present or not, so the
        sketch's shape reveals nothing about the data.
    clip : float
        L2 bound ``C`` on each (normalised) embedding.
    noise_multiplier : float
        ``z`` of each release, e.g. from :func:`sketch_noise_multiplier`.
    noise : NoiseSource, optional
        Source of the noise and of the k-means initialisation; OS entropy by
        default (see :mod:`fednet.privacy.randomness`).
    kmeans : int
        If > 0, append this many label-free cluster centroids found by DP
        Lloyd iterations over all embeddings; each iteration is one more release.
    kmeans_iters : int
        Lloyd iterations when ``kmeans > 0``.
    delta : float
        δ at which the sketch's ε is reported.
    label_names : Sequence[str], optional
        Row names; default ``"0"``, ``"1"``, ...
    normalize : bool
        L2-normalise each embedding before clipping.

    Returns
    -------
    Sketch
        Centroid of label ``l`` is ``noisy_sum_l / max(noisy_count_l, 1)``.
    """
    check_float_tensor("embeddings", embeddings)
    if embeddings.dim() != 2:
        raise ValueError(f"embeddings must be [n, d], got shape {tuple(embeddings.shape)}")
    if isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 1:
        raise ValueError(f"num_labels must be an int >= 1, got {num_labels!r}")
    _check_labels(labels, n=embeddings.shape[0], num_labels=num_labels)
    bound = check_positive("clip", clip)
    z = check_non_negative("noise_multiplier", noise_multiplier)
    check_delta("delta", delta)
    if isinstance(kmeans, bool) or not isinstance(kmeans, int) or kmeans < 0:
        raise ValueError(f"kmeans must be an int >= 0, got {kmeans!r}")
    if isinstance(kmeans_iters, bool) or not isinstance(kmeans_iters, int) or kmeans_iters < 1:
        raise ValueError(f"kmeans_iters must be an int >= 1, got {kmeans_iters!r}")
    names = [str(i) for i in range(num_labels)] if label_names is None else list(label_names)
    if len(names) != num_labels:
        raise ValueError(f"label_names must have {num_labels} names, got {len(names)}")

    noise = secure_source() if noise is None else noise
    x = embeddings.detach()
    if normalize:
        x = _unit(x)
    x = clip_by_norm(x, max_norm=bound)
    sums, counts = noisy_sums_and_counts(
        x, labels.long(), num_groups=num_labels, clip=bound, noise_multiplier=z, noise=noise
    )
    centroids = sums / counts.clamp_min(1.0).unsqueeze(1)
    releases = 1
    if kmeans > 0:
        cluster_centroids, cluster_counts = _dp_lloyd(
            x, k=kmeans, iters=kmeans_iters, clip=bound, noise_multiplier=z, noise=noise
        )
        centroids = torch.cat([centroids, cluster_centroids])
        counts = torch.cat([counts, cluster_counts])
        names += [f"cluster-{i}" for i in range(kmeans)]
        releases += kmeans_iters
    epsilon = compute_epsilon([(z, 1.0, releases)], delta=delta)
    logger.debug(
        "built sketch: %d rows, noise multiplier %.4g, %d release(s), epsilon %.4g",
        len(names),
        z,
        releases,
        epsilon,
    )
    return Sketch(
        centroids=centroids,
        counts=counts,
        label_names=tuple(names),
        clip=bound,
        noise_multiplier=z,
        epsilon=epsilon,
        delta=float(delta),
        releases=releases,
    )


def _dp_lloyd(
    x: torch.Tensor,
    *,
    k: int,
    iters: int,
    clip: float,
    noise_multiplier: float,
    noise: NoiseSource,
) -> tuple[torch.Tensor, torch.Tensor]:
    """DP k-means: Lloyd rounds whose sums and counts are each a Gaussian release.

    The start is random and data-independent; assignments in round ``t`` use
    only the released centroids of round ``t - 1``, so the rounds compose as
    ``iters`` adaptive releases.
    """
    centers = noise.normal((k, x.shape[1]), std=1.0, dtype=x.dtype)
    counts = torch.zeros(k, dtype=x.dtype)
    for _ in range(iters):
        groups = (_unit(x) @ _unit(centers).T).argmax(dim=1)
        sums, counts = noisy_sums_and_counts(
            x,
            groups,
            num_groups=k,
            clip=clip,
            noise_multiplier=noise_multiplier,
            noise=noise,
        )
        alive = counts > 0
        updated = sums / counts.clamp_min(1.0).unsqueeze(1)
        centers = torch.where(alive.unsqueeze(1), updated, centers)
    return centers, counts


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / torch.linalg.vector_norm(x, dim=-1, keepdim=True).clamp_min(_TINY)


def _check_labels(labels: object, *, n: int, num_labels: int) -> None:
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"labels must be a torch.Tensor, got {type(labels).__name__}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"labels must be an integer tensor, got dtype {labels.dtype}")
    if tuple(labels.shape) != (n,):
        raise ValueError(f"labels must have shape ({n},), got {tuple(labels.shape)}")
    if n and (int(labels.min()) < 0 or int(labels.max()) >= num_labels):
        raise ValueError(
            f"labels must be in [0, {num_labels}), got range "
            f"[{int(labels.min())}, {int(labels.max())}]"
        )
