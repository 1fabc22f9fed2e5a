"""Routing candidates: one adapter, served by one peer (or run locally).

Candidates are built from the hub: every latest manifest (with its DP sketch,
when it has one) crossed with the live peers that serve it. A candidate carries
what the router and the objective need: task and labels, the owner's reported
accuracy, the sketch, an expected latency and a cost per query.
"""

from __future__ import annotations

import builtins
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors

from fednet.errors import HubError, SignatureError
from fednet.hub.manifest import Manifest, VersionSpec
from fednet.hub.peers import PeerInfo
from fednet.hub.trust import TrustStore
from fednet.privacy.sketch import SKETCH_KEYS, Sketch

__all__ = [
    "LOCAL_PEER",
    "Candidate",
    "HubReader",
    "candidates_from_hub",
    "sketch_from_bytes",
]

logger = logging.getLogger(__name__)

LOCAL_PEER = "local"
"""Peer id of candidates run in-process (local mode)."""


class HubReader(Protocol):
    """The read side of :class:`~fednet.hub.HubStore` and :class:`~fednet.hub.HubClient`."""

    def list(self) -> builtins.list[Manifest]: ...

    def read_file(self, name: str, version: VersionSpec, filename: str) -> bytes: ...

    def peers(self, alive_within: float | None = None) -> builtins.list[PeerInfo]: ...


@dataclass(frozen=True, eq=False, kw_only=True)
class Candidate:
    """One way to answer a query: an adapter on a peer.

    Parameters
    ----------
    adapter : str
        Hub adapter name.
    version : int
        Adapter version.
    base_model : str
        Base model the adapter runs on.
    task : str
        Task of the adapter's head.
    label_names : tuple[str, ...]
        Labels the head outputs.
    owner : str
        Client that published the adapter.
    kind : str
        ``shared`` or ``personalized``.
    peer_id : str
        Peer serving it, or :data:`LOCAL_PEER` in local mode.
    endpoint : str or None
        Base URL of the peer; ``None`` in local mode.
    metrics : Mapping[str, float]
        The manifest's metrics (``accuracy`` is used as a prior).
    sketch : Sketch or None
        The owner's DP capability sketch.
    latency_s : float or None
        Expected latency; ``None`` lets the router use its default.
    cost : float
        Cost of one query (arbitrary units, e.g. CPU-seconds or credits).
    contribution : float or None
        The owner's signed contribution score from its manifest (its mean
        share of the federation's aggregate update); the objective's optional
        prior (``router.contribution-weight``). None when not published.
    """

    adapter: str
    version: int
    base_model: str
    task: str
    label_names: tuple[str, ...]
    owner: str
    kind: str = "shared"
    peer_id: str = LOCAL_PEER
    endpoint: str | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    sketch: Sketch | None = None
    latency_s: float | None = None
    cost: float = 1.0
    contribution: float | None = None

    def __post_init__(self) -> None:
        for key in ("adapter", "base_model", "task", "owner", "peer_id"):
            value = getattr(self, key)
            if not isinstance(value, str) or not value:
                raise ValueError(f"candidate `{key}` must be a non-empty string, got {value!r}")
        if not self.label_names:
            raise ValueError(f"candidate {self.adapter!r} must have label names")
        if self.latency_s is not None and not (
            isinstance(self.latency_s, int | float) and 0 <= self.latency_s < math.inf
        ):
            raise ValueError(f"candidate `latency_s` must be >= 0 or None, got {self.latency_s!r}")
        if isinstance(self.cost, bool) or not isinstance(self.cost, int | float):
            raise TypeError(f"candidate `cost` must be a number, got {self.cost!r}")
        if not 0 <= self.cost < math.inf:
            raise ValueError(f"candidate `cost` must be finite and >= 0, got {self.cost!r}")
        if self.contribution is not None and (
            isinstance(self.contribution, bool)
            or not isinstance(self.contribution, int | float)
            or not math.isfinite(self.contribution)
        ):
            raise ValueError(
                "candidate `contribution` must be a finite number or None, "
                f"got {self.contribution!r}"
            )

    @property
    def key(self) -> str:
        """Stable identity ``<peer>/<adapter>`` used for feedback and latency."""
        return f"{self.peer_id}/{self.adapter}"

    @property
    def accuracy(self) -> float | None:
        """The owner's reported accuracy, if any."""
        value = self.metrics.get("accuracy")
        return None if value is None else float(value)

    def with_latency(self, latency_s: float) -> Candidate:
        """A copy with a new expected latency."""
        return replace(self, latency_s=float(latency_s))

    def describe(self) -> dict[str, object]:
        """JSON-ready identity of the candidate (no tensors)."""
        return {
            "adapter": self.adapter,
            "version": self.version,
            "peer_id": self.peer_id,
            "endpoint": self.endpoint,
            "task": self.task,
            "kind": self.kind,
            "owner": self.owner,
            "contribution": self.contribution,
        }


def sketch_from_bytes(data: bytes, *, label_names: Sequence[str] = ()) -> Sketch:
    """Parse a ``sketch.safetensors`` file.

    Files written by :meth:`Sketch.to_tensors` are read as such; a bare file
    with ``centroids`` and ``counts`` tensors is accepted too, with
    ``label_names`` (or row numbers) naming its rows.

    Raises
    ------
    ValueError
        If the bytes are not safetensors or hold neither layout.
    """
    try:
        tensors = load_safetensors(data)
    except (SafetensorError, ValueError) as e:
        raise ValueError(f"sketch is not a safetensors file: {e}") from e
    if all(k in tensors for k in SKETCH_KEYS):
        return Sketch.from_tensors(tensors)
    centroids = tensors.get("sketch.centroids", tensors.get("centroids"))
    counts = tensors.get("sketch.counts", tensors.get("counts"))
    if centroids is None or counts is None:
        raise ValueError(
            f"sketch has tensors {sorted(tensors)}; expected {list(SKETCH_KEYS)} "
            "or 'centroids' and 'counts'"
        )
    rows = int(centroids.shape[0]) if centroids.dim() == 2 else 0
    names = list(label_names)[:rows]
    names += [str(i) for i in range(len(names), rows)]
    return Sketch(
        centroids=centroids.float(),
        counts=counts.float(),
        label_names=tuple(names),
        clip=1.0,
        noise_multiplier=0.0,
        epsilon=math.inf,
        delta=0.0,
    )


def _load_sketch(hub: HubReader, manifest: Manifest) -> Sketch | None:
    if not manifest.sketch:
        return None
    try:
        data = hub.read_file(manifest.name, manifest.version, manifest.sketch)
        return sketch_from_bytes(data, label_names=manifest.label_names)
    except (HubError, ValueError) as e:
        logger.warning("ignoring the sketch of %s: %s", manifest.ref, e)
        return None


def candidates_from_hub(
    hub: HubReader,
    *,
    local: bool = False,
    base_models: Iterable[str] | None = None,
    costs: Mapping[str, float] | None = None,
    latencies: Mapping[str, float] | None = None,
    with_sketches: bool = True,
    manifests: Sequence[Manifest] | None = None,
    trust: TrustStore | None = None,
) -> list[Candidate]:
    """Build the candidates of a hub.

    Parameters
    ----------
    hub : HubReader
        A :class:`~fednet.hub.HubStore` or :class:`~fednet.hub.HubClient`.
    local : bool
        One candidate per adapter, run in-process (peers are not consulted);
        otherwise one per (live peer, adapter it serves).
    base_models : iterable of str, optional
        Keep only adapters of these base models.
    costs : mapping, optional
        Cost per query by peer id (default 1.0).
    latencies : mapping, optional
        Expected latency in seconds by candidate key ``<peer>/<adapter>``.
    with_sketches : bool
        Download and parse each manifest's sketch.
    manifests : sequence of Manifest, optional
        Use these instead of ``hub.list()``.
    trust : TrustStore, optional
        The reader's pinned owner keys. A peer is a candidate for an adapter
        only if it is registered by the adapter's owner and, with ``trust``,
        under a key pinned for that owner: a peer that claims another owner's
        adapter never receives its queries.

    Returns
    -------
    list[Candidate]
        Sorted by peer id then adapter name.
    """
    wanted = None if base_models is None else set(base_models)
    listed = list(hub.list() if manifests is None else manifests)
    usable = [m for m in listed if m.label_names and (wanted is None or m.base_model in wanted)]
    by_name = {m.name: m for m in usable}
    sketches = {m.name: _load_sketch(hub, m) if with_sketches else None for m in usable}
    costs = dict(costs or {})
    latencies = dict(latencies or {})
    out: list[Candidate] = []

    def make(m: Manifest, peer_id: str, endpoint: str | None) -> Candidate:
        key = f"{peer_id}/{m.name}"
        return Candidate(
            adapter=m.name,
            version=m.version,
            base_model=m.base_model,
            task=m.task,
            label_names=m.label_names,
            owner=m.owner,
            kind=m.kind,
            peer_id=peer_id,
            endpoint=endpoint,
            metrics=dict(m.metrics),
            sketch=sketches[m.name],
            latency_s=latencies.get(key),
            cost=float(costs.get(peer_id, 1.0)),
            contribution=m.contribution,
        )

    if local:
        out = [make(m, LOCAL_PEER, None) for m in usable]
    else:
        for peer in hub.peers():
            if not peer.up:
                logger.debug("peer %s is down; not a candidate", peer.peer_id)
                continue
            for name in peer.adapters:
                manifest = by_name.get(name)
                if manifest is None or manifest.base_model != peer.base_model:
                    continue
                if not _serves_for_owner(peer, manifest, trust):
                    continue
                out.append(make(manifest, peer.peer_id, peer.endpoint))
    out.sort(key=lambda c: (c.peer_id, c.adapter))
    logger.debug("%d candidates from %d manifests", len(out), len(usable))
    return out


def _serves_for_owner(peer: PeerInfo, manifest: Manifest, trust: TrustStore | None) -> bool:
    """Whether ``peer`` may answer for ``manifest``: registered by its owner, under a
    key the reader pinned for that owner, and (with ``trust``) its record is the
    registration the owner signed (:meth:`PeerInfo.check_registration`): a hub
    that rewrites a peer's endpoint cannot send queries elsewhere."""
    if peer.owner != manifest.owner:
        logger.warning(
            "peer %s (owner %r) lists %s of owner %r; not a candidate",
            peer.peer_id,
            peer.owner,
            manifest.name,
            manifest.owner,
        )
        return False
    if trust is not None and not trust.pins(manifest.owner, peer.public_key):
        logger.warning(
            "peer %s is registered under a key not pinned for owner %r; not a candidate",
            peer.peer_id,
            manifest.owner,
        )
        return False
    if trust is not None:
        try:
            peer.check_registration()
        except SignatureError as e:
            logger.warning("%s; not a candidate", e)
            return False
    return True
