"""What the network console shows, gathered from the hub and checked by the reader.

The hub is not trusted, so what can be checked is checked here:

- every manifest is verified with :meth:`fednet.hub.trust.TrustStore.check`
  against the reader's trust store (its status is ``verified``, ``unpinned``,
  ``bad signature`` or ``unsigned``);
- ε spent per owner is read from the owner's *verified* signed manifests only;
- a peer's up or down and the age of its last heartbeat are the hub's record
  (the hub checked each heartbeat's signature; the record keeps no signature to
  check again), so the console also measures each peer itself, by a
  ``GET /v1/health`` round trip, and says whether the peer's key is pinned.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx

from fednet.errors import SignatureError, UntrustedKeyError
from fednet.hub.manifest import Manifest
from fednet.hub.peers import PeerInfo
from fednet.hub.trust import TrustStore, fingerprint

__all__ = [
    "BAD_SIGNATURE",
    "UNPINNED",
    "UNSIGNED",
    "VERIFIED",
    "AdapterView",
    "BudgetView",
    "PeerView",
    "adapter_views",
    "budget_views",
    "peer_views",
    "reader_copy",
    "verify_status",
]

VERIFIED = "verified"
"""The signature verifies under a key pinned for the owner (or rotated to from one)."""
UNPINNED = "unpinned"
"""The signature verifies, but the key is not pinned for the owner in the trust store."""
BAD_SIGNATURE = "bad signature"
"""The signature does not verify over the manifest (a field was changed after signing)."""
UNSIGNED = "unsigned"
"""The manifest carries no key or no signature."""


def reader_copy(trust: TrustStore) -> TrustStore:
    """An in-memory copy of ``trust`` that never pins a key on its own.

    The console only looks: trust on first use would pin the key of whoever
    published first, and a checked rotation would be written to the reader's
    file. The copy verifies exactly as ``trust`` does otherwise.
    """
    if not isinstance(trust, TrustStore):
        raise TypeError(f"`trust` must be a TrustStore, got {type(trust).__name__}")
    return TrustStore(None, keys=trust.as_mapping(), tofu=False)


def verify_status(manifest: Manifest, trust: TrustStore) -> tuple[str, str]:
    """Check ``manifest`` against ``trust``; return its status and why.

    Returns
    -------
    status : str
        :data:`VERIFIED`, :data:`UNPINNED`, :data:`BAD_SIGNATURE` or :data:`UNSIGNED`.
    detail : str
        The verifier's own message, or which pinned key signed.
    """
    try:
        trust.check(manifest)
    except UntrustedKeyError as e:
        return UNPINNED, str(e)
    except SignatureError as e:
        return (UNSIGNED if not manifest.is_signed else BAD_SIGNATURE), str(e)
    return VERIFIED, f"signed by a key pinned for {manifest.owner!r}"


def _fingerprint(key: str) -> str:
    try:
        return fingerprint(key) if key else "no key"
    except (TypeError, ValueError):
        return "malformed key"


@dataclass(frozen=True)
class AdapterView:
    """One adapter's latest manifest and what the reader makes of it."""

    manifest: Manifest
    versions: int
    status: str
    detail: str
    fingerprint: str

    @property
    def manifest_json(self) -> str:
        """The whole manifest, as the hub served it (indented JSON)."""
        return self.manifest.to_json(indent=2)


def adapter_views(
    manifests: Iterable[Manifest], trust: TrustStore, versions: dict[str, int] | None = None
) -> list[AdapterView]:
    """Verify each manifest against ``trust`` (a :func:`reader_copy`), by name."""
    versions = versions or {}
    out = []
    for manifest in sorted(manifests, key=lambda m: m.name):
        status, detail = verify_status(manifest, trust)
        out.append(
            AdapterView(
                manifest=manifest,
                versions=versions.get(manifest.name, 1),
                status=status,
                detail=detail,
                fingerprint=_fingerprint(manifest.owner_public_key),
            )
        )
    return out


@dataclass(frozen=True)
class BudgetView:
    """ε one owner has spent, by its verified signed manifests, against a budget.

    Parameters
    ----------
    owner : str
        The client id.
    spent : float or None
        The largest composed ``epsilon`` among the owner's verified manifests;
        ``None`` when some verified manifest's weights are not private (no ε
        bounds them) or none is verified.
    budget : float
        The budget the console compares against (``math.inf``: none).
    delta : float or None
        δ of ``spent``.
    accountant : str or None
        The accountant that composed it.
    source : str
        ``name@vN`` of the manifest ``spent`` comes from.
    sketch_epsilon : float or None
        ε of the owner's sketch releases, when they are all that is bounded.
    notes : tuple[str, ...]
        Why ``spent`` is missing or does not hold.
    counted, excluded : int
        Manifests counted (verified) and left out (not verified).
    """

    owner: str
    spent: float | None
    budget: float
    delta: float | None = None
    accountant: str | None = None
    source: str = ""
    sketch_epsilon: float | None = None
    notes: tuple[str, ...] = ()
    counted: int = 0
    excluded: int = 0

    @property
    def fraction(self) -> float | None:
        """``spent / budget`` (``None`` without a bound or a finite budget)."""
        if self.spent is None or math.isinf(self.budget):
            return None
        return self.spent / self.budget

    @property
    def over(self) -> bool:
        """Whether the owner spent more than the budget."""
        return self.spent is not None and self.spent > self.budget


def budget_views(adapters: Sequence[AdapterView], *, budget: float) -> list[BudgetView]:
    """ε spent per owner from the verified manifests among ``adapters``.

    Each manifest's ``epsilon`` is the owner's composed total over every
    release it made up to that publish (its privacy ledger composes them), so
    the largest one is the spend to date. Manifests that do not verify are
    not counted: their ε is the hub's word, not the owner's.
    """
    if isinstance(budget, bool) or not isinstance(budget, int | float) or not budget > 0:
        raise ValueError(f"`budget` must be a positive number of ε, got {budget!r}")
    owners = sorted({a.manifest.owner for a in adapters})
    out = []
    for owner in owners:
        mine = [a for a in adapters if a.manifest.owner == owner]
        verified = [a.manifest for a in mine if a.status == VERIFIED]
        excluded = len(mine) - len(verified)
        notes: list[str] = []
        if not verified:
            notes.append("no verified manifest: the hub's figures are not counted")
            out.append(
                BudgetView(owner, None, float(budget), notes=tuple(notes), excluded=excluded)
            )
            continue
        open_weights = [m.ref for m in verified if m.update_epsilon is None]
        if open_weights:
            notes.append(
                f"weights published without DP ({', '.join(open_weights)}): no ε bounds them"
            )
        voided = sorted({m.epsilon_note for m in verified if m.epsilon_note})
        notes.extend(voided)
        bounded = [m for m in verified if m.epsilon is not None]
        best = max(bounded, key=lambda m: m.epsilon or 0.0) if bounded else None
        sketches = [m.sketch_epsilon for m in verified if m.sketch_epsilon is not None]
        spent = None if open_weights or voided or best is None else best.epsilon
        source_manifest = best or next((m for m in verified if m.delta is not None), verified[0])
        out.append(
            BudgetView(
                owner=owner,
                spent=spent,
                budget=float(budget),
                delta=source_manifest.delta,
                accountant=source_manifest.accountant,
                source=source_manifest.ref,
                sketch_epsilon=max(sketches) if sketches and spent is None else None,
                notes=tuple(notes),
                counted=len(verified),
                excluded=excluded,
            )
        )
    return out


@dataclass(frozen=True)
class PeerView:
    """One registered peer: its heartbeat and a latency measured by the console.

    Parameters
    ----------
    peer : PeerInfo
        The hub's record (its ``up`` is the signed heartbeat's age against the
        hub's timeout).
    heartbeat_age_s : float
        Seconds since the last signed heartbeat.
    probe_ms : float or None
        Round trip of ``GET <endpoint>/v1/health``, when it answered 200.
    probe_error : str or None
        Why the probe failed.
    routed_ms : float or None
        The console router's moving average of the peer's answer latency, over
        the queries asked here.
    key_pinned : bool
        Whether the key that signed the registration is pinned for its owner.
    """

    peer: PeerInfo
    heartbeat_age_s: float
    probe_ms: float | None
    probe_error: str | None
    routed_ms: float | None
    key_pinned: bool


def _probe(endpoint: str, timeout: float) -> tuple[float | None, str | None]:
    url = endpoint.rstrip("/") + "/v1/health"
    started = time.perf_counter()
    try:
        response = httpx.get(url, timeout=timeout, follow_redirects=False)
    except httpx.HTTPError as e:
        return None, f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
    elapsed = (time.perf_counter() - started) * 1000.0
    if response.status_code != 200:
        return None, f"HTTP {response.status_code}"
    return elapsed, None


def peer_views(
    peers: Sequence[PeerInfo],
    trust: TrustStore,
    *,
    now: float,
    probe_timeout_s: float = 1.0,
    router_latencies: dict[str, float] | None = None,
) -> list[PeerView]:
    """Probe the ``/v1/health`` of every peer whose key is pinned, in parallel.

    Peers whose owner key the reader has not pinned are not probed ("not probed:
    key not pinned"): the page is open to anyone, and probing whatever endpoint a
    registration names would let it scan the console host's network.
    A pinned peer whose record is not the registration its owner signed
    (:meth:`~fednet.hub.peers.PeerInfo.check_registration`) is not probed either.
    ``probe_timeout_s=0`` probes none.
    """
    pinned = [bool(p.public_key) and trust.pins(p.owner, p.public_key) for p in peers]
    probes: list[tuple[float | None, str | None]] = [
        (None, "not probed" if ok else "not probed: key not pinned") for ok in pinned
    ]
    for i, peer in enumerate(peers):
        if pinned[i]:
            try:
                peer.check_registration()
            except SignatureError:
                probes[i] = (None, "not probed: record not signed by its owner")
    wanted = [i for i, ok in enumerate(pinned) if ok and probes[i][1] == "not probed"]
    if probe_timeout_s > 0 and wanted:
        with ThreadPoolExecutor(max_workers=min(16, len(wanted))) as pool:
            got = list(pool.map(lambda i: _probe(peers[i].endpoint, probe_timeout_s), wanted))
        for i, result in zip(wanted, got, strict=True):
            probes[i] = result
    latencies = router_latencies or {}
    out = []
    for peer, (probe_ms, error), key_pinned in zip(peers, probes, pinned, strict=True):
        routed = [v for k, v in latencies.items() if k.split("/", 1)[0] == peer.peer_id]
        out.append(
            PeerView(
                peer=peer,
                heartbeat_age_s=max(0.0, now - peer.last_heartbeat),
                probe_ms=probe_ms,
                probe_error=error,
                routed_ms=1000.0 * sum(routed) / len(routed) if routed else None,
                key_pinned=key_pinned,
            )
        )
    return out
