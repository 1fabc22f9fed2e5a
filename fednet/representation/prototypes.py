"""DP class prototypes in the network space: knowledge transfer across base models.

Implementation based on FedProto (Tan et al., "FedProto: Federated Prototype
Learning across Heterogeneous Clients", AAAI 2022,
https://arxiv.org/abs/2105.00243): clients of one task share class prototypes,
not weights, so clients on different base models can learn from each other;
the server averages the prototypes per task and label, and every client adds a
term pulling its embeddings towards the global prototype of their label.
FedTGP (Zhang et al., AAAI 2024, https://arxiv.org/abs/2401.03230) trains the
global prototypes on the server instead; here they are count-weighted means.
FedProto also classifies by the distance of an embedding to the global
prototypes; :func:`prototype_head` turns that rule into the starting weights of a
client's linear head, so a client with little data starts from what its peers
know instead of from a random head.

Privacy
-------
A client embeds its examples with its own encoder, maps them into the network
space (:class:`~fednet.representation.space.NetworkSpace`), L2-normalises and
clips each to norm ``C``, and releases per-label sums and counts with the
Gaussian mechanism of :func:`fednet.privacy.sketch.noisy_sums_and_counts` (the
sensitivity argument of the sketch module holds unchanged: one example moves one
sum by at most ``C`` and one count by 1). One release is charged to the
client's ledger as ``(z, 1, 1)`` of kind ``"prototype"`` before anything leaves.
Aggregation and the alignment term only read released prototypes.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from fednet.privacy._checks import check_non_negative, check_positive
from fednet.privacy.accountant import compute_epsilon
from fednet.privacy.ledger import PrivacyLedger
from fednet.privacy.randomness import NoiseSource, secure_source
from fednet.privacy.sketch import noisy_sums_and_counts
from fednet.representation.maps import EmbeddingMap

__all__ = [
    "PROTOTYPE_KEYS",
    "PrototypeRelease",
    "GlobalPrototypes",
    "release_prototypes",
    "aggregate_prototypes",
    "own_prototypes",
    "PrototypeAlignment",
    "prototype_head",
]

logger = logging.getLogger(__name__)

PROTOTYPE_KEYS: tuple[str, ...] = ("proto.sums", "proto.counts", "proto.params")
"""Tensor names of a prototype release on the wire: the only ones allowed."""

_PARAMS = ("clip", "noise_multiplier", "epsilon", "delta")


@dataclass(frozen=True, eq=False)
class PrototypeRelease:
    """One client's released prototypes in the network space.

    Parameters
    ----------
    sums : torch.Tensor
        ``[L, d]`` noisy sums of clipped, normalised, mapped embeddings per label.
    counts : torch.Tensor
        ``[L]`` noisy counts.
    clip, noise_multiplier, epsilon, delta : float
        How it was released; ``epsilon`` is ``math.inf`` without noise.
    """

    sums: torch.Tensor
    counts: torch.Tensor
    clip: float
    noise_multiplier: float
    epsilon: float
    delta: float

    def __post_init__(self) -> None:
        if self.sums.dim() != 2 or tuple(self.counts.shape) != (self.sums.shape[0],):
            raise ValueError(
                f"prototype sums must be [L, d] and counts [L], got "
                f"{tuple(self.sums.shape)} and {tuple(self.counts.shape)}"
            )
        if not self.sums.is_floating_point() or not self.counts.is_floating_point():
            raise TypeError("prototype sums and counts must be float tensors")
        if not bool(torch.isfinite(self.sums).all() and torch.isfinite(self.counts).all()):
            raise ValueError("prototype sums and counts must be finite")

    def to_tensors(self) -> dict[str, torch.Tensor]:
        """Tensors named by :data:`PROTOTYPE_KEYS`."""
        params = [float(getattr(self, k)) for k in _PARAMS]
        return {
            "proto.sums": self.sums.detach().float().contiguous().clone(),
            "proto.counts": self.counts.detach().float().contiguous().clone(),
            "proto.params": torch.tensor(params, dtype=torch.float64),
        }

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, torch.Tensor]) -> PrototypeRelease:
        """Rebuild from :meth:`to_tensors`; any other key is refused."""
        unknown = sorted(set(tensors) - set(PROTOTYPE_KEYS))
        missing = [k for k in PROTOTYPE_KEYS if k not in tensors]
        if unknown or missing:
            raise ValueError(f"prototype tensors: missing {missing}, unknown {unknown}")
        params = tensors["proto.params"].tolist()
        if len(params) != len(_PARAMS):
            raise ValueError(f"proto.params must hold {len(_PARAMS)} values, got {len(params)}")
        values = dict(zip(_PARAMS, params, strict=True))
        return cls(
            sums=tensors["proto.sums"].float(), counts=tensors["proto.counts"].float(), **values
        )


def release_prototypes(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    *,
    num_labels: int,
    to_network: EmbeddingMap,
    clip: float,
    noise_multiplier: float,
    ledger: PrivacyLedger | None,
    delta: float = 1e-5,
    noise: NoiseSource | None = None,
) -> PrototypeRelease:
    """Release one client's DP class prototypes in the network space.

    Parameters
    ----------
    embeddings : torch.Tensor
        ``[n, d_model]`` pooled embeddings by the client's encoder.
    labels : torch.Tensor
        ``[n]`` labels in ``[0, num_labels)``.
    num_labels : int
        Labels of the task; every label gets a row, present or not.
    to_network : EmbeddingMap
        The client's map into the network space (identity on the reference model).
    clip : float
        L2 bound ``C`` on each mapped, normalised embedding.
    noise_multiplier : float
        ``z``; 0 releases exact prototypes (ε = inf, refused by a finite budget).
    ledger : PrivacyLedger or None
        Charged ``(z, 1, 1)``, kind ``"prototype"``, before the release; a
        charge past the budget raises :class:`~fednet.errors.BudgetExhaustedError`
        and nothing is released. None only where privacy is off.
    delta : float
        δ at which ε is reported.
    noise : NoiseSource, optional
        Noise source; OS entropy by default.
    """
    if embeddings.dim() != 2 or labels.dim() != 1 or labels.shape[0] != embeddings.shape[0]:
        raise ValueError(
            f"embeddings must be [n, d] and labels [n], got {tuple(embeddings.shape)} "
            f"and {tuple(labels.shape)}"
        )
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_labels):
        raise ValueError(f"labels must be in [0, {num_labels})")
    bound = check_positive("clip", clip)
    z = check_non_negative("noise_multiplier", noise_multiplier)
    if ledger is not None:
        ledger.charge(noise_multiplier=z, sample_rate=1.0, steps=1, kind="prototype")
    with torch.no_grad():
        mapped = nn.functional.normalize(to_network(embeddings.detach().float()), dim=1)
    sums, counts = noisy_sums_and_counts(
        mapped,
        labels.long(),
        num_groups=num_labels,
        clip=bound,
        noise_multiplier=z,
        noise=secure_source() if noise is None else noise,
    )
    epsilon = compute_epsilon([(z, 1.0, 1)], delta=delta) if z > 0 else math.inf
    return PrototypeRelease(
        sums=sums, counts=counts, clip=bound, noise_multiplier=z, epsilon=epsilon, delta=delta
    )


@dataclass(frozen=True, eq=False)
class GlobalPrototypes:
    """The server's prototypes of one task: ``[L, d]`` and which labels carry signal."""

    prototypes: torch.Tensor
    counts: torch.Tensor
    usable: torch.Tensor


def aggregate_prototypes(
    releases: Sequence[tuple[str, PrototypeRelease]], *, min_count: float = 1.0
) -> dict[str, GlobalPrototypes]:
    """Aggregate released prototypes per task and label (count-weighted means).

    Parameters
    ----------
    releases : sequence of (task, PrototypeRelease)
        Every client's release with its task; releases of one task must agree
        on the number of labels and the dimension.
    min_count : float
        A label whose summed noisy count is below this carries no usable prototype.

    Returns
    -------
    dict[str, GlobalPrototypes]
        Per task: ``sum_k S_k[l] / sum_k N_k[l]``, L2-normalised.
    """
    by_task: dict[str, list[PrototypeRelease]] = {}
    for task, release in releases:
        by_task.setdefault(task, []).append(release)
    out: dict[str, GlobalPrototypes] = {}
    for task, items in by_task.items():
        shapes = {tuple(r.sums.shape) for r in items}
        if len(shapes) != 1:
            raise ValueError(
                f"task {task!r}: prototype releases disagree on shape: {sorted(shapes)}"
            )
        sums = torch.stack([r.sums for r in items]).sum(0)
        counts = torch.stack([r.counts for r in items]).sum(0)
        usable = counts >= min_count
        protos = nn.functional.normalize(sums / counts.clamp_min(1.0).unsqueeze(1), dim=1)
        out[task] = GlobalPrototypes(prototypes=protos, counts=counts, usable=usable)
    return out


def own_prototypes(
    embeddings: torch.Tensor, labels: torch.Tensor, *, num_labels: int
) -> GlobalPrototypes:
    """A client's class prototypes of its own data, exact: nothing is released.

    The per-label means of the L2-normalised ``embeddings``, normalised again,
    as :func:`aggregate_prototypes` forms them from releases but without noise.
    For a client that trains alone with FedProto's recipe (the nearest-prototype
    head of :func:`prototype_head` and :class:`PrototypeAlignment`): the control
    that tells what the peers' prototypes add.

    Parameters
    ----------
    embeddings : torch.Tensor
        ``[n, d]`` the client's embeddings in the space the prototypes are used in.
    labels : torch.Tensor
        ``[n]`` integer labels in ``[0, num_labels)``.
    num_labels : int
        Number of labels; a label without examples gets an unusable zero row.

    Raises
    ------
    ValueError
        If the shapes disagree or a label is out of range.
    """
    if embeddings.dim() != 2 or labels.shape != (embeddings.shape[0],):
        raise ValueError(
            f"embeddings must be [n, d] and labels [n], got {tuple(embeddings.shape)} "
            f"and {tuple(labels.shape)}"
        )
    if labels.numel() and not bool(((labels >= 0) & (labels < num_labels)).all()):
        raise ValueError(f"labels must be in [0, {num_labels})")
    x = nn.functional.normalize(embeddings.detach().float(), dim=1)
    sums = torch.zeros(num_labels, x.shape[1]).index_add_(0, labels.long(), x)
    counts = torch.bincount(labels.long(), minlength=num_labels).float()
    protos = nn.functional.normalize(sums / counts.clamp_min(1.0).unsqueeze(1), dim=1)
    return GlobalPrototypes(prototypes=protos, counts=counts, usable=counts >= 1)


class PrototypeAlignment:
    """FedProto's regulariser: ``weight * mean_i ||u(map(f_i)) - p_{y_i}||^2`` over usable labels.

    ``u`` is L2 normalisation, ``f_i`` the client's pooled embedding of example
    ``i`` (gradients flow through the encoder's LoRA and through the frozen
    map) and ``p_y`` the global prototype of label ``y`` in the network space.

    Parameters
    ----------
    prototypes : GlobalPrototypes
        The task's global prototypes.
    to_network : EmbeddingMap
        The client's map into the network space.
    weight : float
        ``lambda`` of FedProto; >= 0.
    """

    def __init__(self, prototypes: GlobalPrototypes, to_network: EmbeddingMap, *, weight: float):
        self.prototypes = prototypes
        self.to_network = to_network
        self.weight = check_non_negative("weight", weight)

    def __call__(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        usable = self.prototypes.usable[labels]
        if self.weight == 0 or not bool(usable.any()):
            return embeddings.sum() * 0.0
        mapped = self.to_network.differentiable(embeddings[usable])
        mapped = nn.functional.normalize(mapped, dim=1)
        target = self.prototypes.prototypes[labels[usable]].to(mapped.dtype)
        return self.weight * ((mapped - target) ** 2).sum(1).mean()


def prototype_head(
    prototypes: GlobalPrototypes, embeddings: torch.Tensor
) -> dict[str, torch.Tensor]:
    """A linear head that classifies by cosine to the centred global prototypes.

    FedProto's inference rule (Tan et al., AAAI 2022, sec. 4): label ``l`` scores
    ``<u(f), p_l - p_mean>`` where ``u`` is L2 normalisation, ``p_l`` the global
    prototype of ``l`` and ``p_mean`` the mean over usable labels (centring removes
    the direction every text shares in an anisotropic space). The head takes the
    client's unnormalised pooled embedding ``f``, so the weights are divided by the
    mean norm ``r`` of ``f``, and scaled by ``s`` so that the initial logits have
    unit standard deviation over ``embeddings``. Labels without a usable prototype
    get zero rows. The argmax equals the cosine rule for every ``f``.

    For a client on the network space's own model (its map is the identity); the
    scale reads only the client's own embeddings, so nothing is released.

    Parameters
    ----------
    prototypes : GlobalPrototypes
        The task's global prototypes ``[L, d]``.
    embeddings : torch.Tensor
        ``[n, d]`` the client's own pooled (unnormalised) embeddings, n >= 2.

    Returns
    -------
    dict[str, torch.Tensor]
        ``head.weight`` ``[L, d]`` and ``head.bias`` ``[L]`` (zeros).

    Raises
    ------
    ValueError
        If the dimensions differ, fewer than 2 embeddings or 2 usable labels are given.
    """
    protos = prototypes.prototypes.float()
    if embeddings.dim() != 2 or embeddings.shape[1] != protos.shape[1]:
        raise ValueError(
            f"embeddings must be [n, {protos.shape[1]}] (the network space), "
            f"got {tuple(embeddings.shape)}"
        )
    if embeddings.shape[0] < 2:
        raise ValueError("prototype_head needs at least 2 embeddings to set its scale")
    usable = prototypes.usable.bool()
    if int(usable.sum()) < 2:
        raise ValueError("prototype_head needs at least 2 labels with usable prototypes")
    f = embeddings.detach().float()
    weight = protos - protos[usable].mean(0)
    weight[~usable] = 0.0
    logits = nn.functional.normalize(f, dim=1) @ weight[usable].T
    scale = 1.0 / float(logits.std()) if float(logits.std()) > 0 else 1.0
    norm = float(f.norm(dim=1).mean().clamp_min(1e-12))
    return {
        "head.weight": weight * (scale / norm),
        "head.bias": torch.zeros(protos.shape[0]),
    }
