"""Asking the network: route a query, call peers (or run locally), combine.

:class:`Network` keeps the hub connection, the candidates, the router and the
peer connections between queries; :func:`ask` is the one-shot form. In local
mode the chosen adapters are pulled from the hub and run in this process, so
the query never leaves the machine.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch

from fednet.errors import PeerError, SignatureError, UntrustedKeyError
from fednet.hub.client import HubClient, as_trust_store, open_hub
from fednet.hub.manifest import Manifest
from fednet.hub.store import HubStore
from fednet.hub.trust import TrustStore
from fednet.inference.combine import Answer, create_combiner
from fednet.inference.config import AskConfig
from fednet.inference.engine import AdapterEngine
from fednet.inference.transport import LocalBackend, PeerClient, PeerReply, check_reply
from fednet.routing import (
    Candidate,
    Embedder,
    Outcome,
    Router,
    Scored,
    candidates_from_hub,
    create_router,
)

__all__ = ["FrozenEncoder", "Network", "ask", "check_query"]

logger = logging.getLogger(__name__)


def check_query(text: object, *, max_chars: int) -> str:
    """Return ``text`` if it is a non-empty query of at most ``max_chars`` characters.

    Raises
    ------
    TypeError
        If ``text`` is not a string.
    ValueError
        If it is empty (or only whitespace) or too long.
    """
    if not isinstance(text, str):
        raise TypeError(f"query must be a str, got {type(text).__name__}")
    if not text.strip():
        raise ValueError("query is empty")
    if len(text) > max_chars:
        raise ValueError(
            f"query has {len(text)} characters; the maximum is {max_chars} (`hub.max-query-chars`)"
        )
    return text


class FrozenEncoder:
    """The router's embedder: frozen base encoders, each loaded on first use.

    Parameters
    ----------
    max_length : int
        Tokens per text.
    """

    def __init__(self, *, max_length: int = 64) -> None:
        self.max_length = max_length
        self._models: dict[str, torch.nn.Module] = {}
        self._lock = threading.Lock()

    def __call__(self, base_model: str, texts: Sequence[str]) -> torch.Tensor:
        from fednet.models import create_base_model, load_tokenizer, mean_pool

        with self._lock:
            if base_model not in self._models:
                self._models[base_model] = create_base_model(base_model)
            model = self._models[base_model]
        batch = load_tokenizer(base_model)(
            list(texts),
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        with torch.inference_mode():
            hidden = model(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
            ).last_hidden_state
            pooled = mean_pool(hidden, batch["attention_mask"])
        return torch.nn.functional.normalize(pooled, dim=-1)


class Network:
    """A client of the network of peers (or, in local mode, of the hub alone).

    Parameters
    ----------
    hub : HubStore, HubClient, str or Path
        The hub; a string is a URL or a store directory.
    config : AskConfig, optional
        Router, combiner, limits and timeouts.
    local : bool
        Pull adapters and run them in-process instead of calling peers.
    token : str, optional
        Read token of a URL hub.
    cache_dir : str or Path, optional
        Where local mode caches adapters.
    router : Router, optional
        A ready router (e.g. a learned one restored from ``state_dict``).
    embedder : Embedder, optional
        Query embeddings for the router (default: frozen base encoders,
        shared with the local engines in local mode).
    costs : mapping, optional
        Cost per query by peer id.
    trust : TrustStore, optional
        Owner keys this network trusts (default: the hub's ``trust``, else the
        trust store file). Adapters signed by other keys are never routed to,
        and every peer's reply is checked against the signed manifest of the
        adapter it claims; a reply that does not match is dropped and shown
        in the answer's provenance as a failed call.
    peer_token : str, optional
        Bearer token for peers that require one.
    """

    def __init__(
        self,
        hub: HubStore | HubClient | str | Path,
        *,
        config: AskConfig | None = None,
        local: bool = False,
        token: str | None = None,
        cache_dir: str | Path | None = None,
        router: Router | None = None,
        embedder: Embedder | None = None,
        costs: Mapping[str, float] | None = None,
        trust: TrustStore | None = None,
        peer_token: str | None = None,
    ) -> None:
        self.config = config or AskConfig()
        self._owns_hub = isinstance(hub, str | Path)
        if trust is None and not isinstance(hub, str | Path):
            trust = getattr(hub, "trust", None)
        self.trust = as_trust_store(trust)
        self.hub = (
            open_hub(hub, token=token, timeout=self.config.hub_timeout_s, trust=self.trust)
            if isinstance(hub, str | Path)
            else hub
        )
        self.peer_token = peer_token
        self.manifests: dict[str, Manifest] = {}
        self.untrusted: dict[str, str] = {}
        self.local = local
        self.cache_dir = cache_dir
        self.costs = dict(costs or {})
        self._engines: dict[str, AdapterEngine] = {}
        self._clients: dict[str, PeerClient] = {}
        self._down: dict[str, float] = {}
        self._lock = threading.RLock()
        if embedder is None:
            embedder = (
                self._engine_embed if local else FrozenEncoder(max_length=self.config.max_length)
            )
        self.embedder = embedder
        self.router = router or create_router(config=self.config.router, embedder=embedder)
        self.candidates: list[Candidate] | None = None
        self._refreshed = 0.0

    # -- plumbing ---------------------------------------------------------------------

    def engine(self, base_model: str) -> AdapterEngine:
        """The in-process engine of ``base_model`` (local mode), built on first use."""
        with self._lock:
            if base_model not in self._engines:
                cache = None if self.cache_dir is None else Path(self.cache_dir) / base_model
                self._engines[base_model] = AdapterEngine(
                    base_model,
                    source=self.hub,
                    cache_dir=cache,
                    max_length=self.config.max_length,
                    trust=self.trust,
                )
            return self._engines[base_model]

    def _engine_embed(self, base_model: str, texts: Sequence[str]) -> torch.Tensor:
        return self.engine(base_model).embed(texts)

    def _client(self, endpoint: str) -> PeerClient:
        with self._lock:
            if endpoint not in self._clients:
                self._clients[endpoint] = PeerClient(
                    endpoint, timeout=self.config.peer_timeout_s, token=self.peer_token
                )
            return self._clients[endpoint]

    def refresh(self) -> list[Candidate]:
        """Re-read manifests, sketches and live peers from the hub.

        Only adapters whose manifests verify under a trusted key become
        candidates; the others are logged and kept in :attr:`untrusted`.

        Raises
        ------
        UntrustedKeyError
            If the hub lists adapters but none of them is trusted (the error
            names each owner and key fingerprint).
        """
        trusted: list[Manifest] = []
        untrusted: dict[str, str] = {}
        for manifest in self.hub.list():
            try:
                self.trust.check(manifest)
            except SignatureError as e:
                untrusted[manifest.name] = str(e)
                logger.warning("not routing to %s: %s", manifest.ref, e)
                continue
            trusted.append(manifest)
        self.untrusted = untrusted
        if untrusted and not trusted:
            raise _none_trusted(untrusted)
        self.manifests = {m.name: m for m in trusted}
        self.candidates = candidates_from_hub(
            self.hub, local=self.local, costs=self.costs, manifests=trusted, trust=self.trust
        )
        self._refreshed = time.monotonic()
        logger.info(
            "%d candidates (%s mode)", len(self.candidates), "local" if self.local else "peer"
        )
        return self.candidates

    def _call(self, candidate: Candidate, text: str) -> PeerReply:
        if self.local:
            backend = LocalBackend(self.engine(candidate.base_model))
            return backend.classify(text, candidate.adapter)
        if candidate.endpoint is None:
            raise PeerError(f"candidate {candidate.key} has no endpoint")
        reply = self._client(candidate.endpoint).classify(
            text, candidate.adapter, timeout=self.config.peer_timeout_s
        )
        return check_reply(reply, self._manifest(candidate, reply), where=f"peer {candidate.key}")

    def _manifest(self, candidate: Candidate, reply: PeerReply) -> Manifest:
        """The trusted manifest of the adapter a candidate serves, at the reply's version."""
        manifest = self.manifests.get(candidate.adapter)
        if manifest is None or manifest.version != reply.version:
            if reply.adapter != candidate.adapter:
                manifest = manifest or self.hub.resolve(candidate.adapter)
            else:
                manifest = self.hub.resolve(candidate.adapter, reply.version)
            try:
                self.trust.check(manifest)
            except SignatureError as e:
                raise PeerError(f"peer {candidate.key} answered with untrusted {e}") from e
        return manifest

    def _observed_call(self, text: str) -> Callable[[Scored], PeerReply]:
        """A call that reports every outcome to the router and benches failed peers."""

        def call(scored: Scored) -> PeerReply:
            candidate = scored.candidate
            try:
                reply = self._call(candidate, text)
            except Exception:
                with self._lock:
                    self._down[candidate.key] = time.monotonic() + self.config.peer_cooldown_s
                    self.router.update(Outcome(query=text, candidate=candidate, failed=True))
                raise
            with self._lock:
                self.router.update(
                    Outcome(
                        query=text,
                        candidate=candidate,
                        confidence=reply.confidence,
                        latency_s=reply.latency_s,
                    )
                )
            return reply

        return call

    # -- asking -----------------------------------------------------------------------

    def ask(
        self,
        text: str,
        *,
        mode: str | None = None,
        k: int | None = None,
        candidates: Sequence[Candidate] | None = None,
    ) -> Answer:
        """Route ``text``, ask the chosen candidates and combine their answers.

        A candidate whose call fails is left out of routing for
        ``config.peer_cooldown_s`` seconds; the hub is asked for candidates
        again when they are older than ``config.candidates_ttl_s``.

        Parameters
        ----------
        text : str
            The query.
        mode : str, optional
            ``cascade`` or ``ensemble`` (default ``config.mode``).
        k : int, optional
            Candidates to route to (default ``config.router.top_k``).
        candidates : sequence of Candidate, optional
            Route among these instead of the hub's.

        Raises
        ------
        ValueError
            If the query is empty or too long, or there is no candidate.
        HubError
            If the hub is unreachable.
        PeerError
            If every routed candidate failed.
        """
        check_query(text, max_chars=self.config.max_query_chars)
        started = time.perf_counter()
        now = time.monotonic()
        if candidates is None:
            stale = now - self._refreshed > self.config.candidates_ttl_s
            candidates = self.refresh() if self.candidates is None or stale else self.candidates
        usable = [c for c in candidates if self._down.get(c.key, 0.0) <= now]
        if not usable and candidates:
            logger.warning("every candidate failed recently; trying them all again")
            usable = list(candidates)
        decision = self.router.route(text, usable, k=k)
        combiner = create_combiner(
            mode or self.config.mode, confidence_threshold=self.config.confidence_threshold
        )
        answer = combiner.combine(text, decision, self._observed_call(text))
        return dataclasses.replace(answer, latency_s=time.perf_counter() - started)

    def feedback(self, answer: Answer, *, true_label: str, true_task: str | None = None) -> None:
        """Tell the router which label (of which task) was right for ``answer``'s query.

        Every asked candidate learns whether its label was right. Every other
        ranked candidate that could not have been right (another task, or no
        such label) learns that too, without being asked.
        """
        asked = {f"{c.peer_id}/{c.adapter}": c for c in answer.calls}
        with self._lock:
            for scored in answer.decision.ranked:
                candidate = scored.candidate
                call = asked.get(candidate.key)
                possible = true_label in candidate.label_names and (
                    true_task is None or candidate.task == true_task
                )
                if call is not None and not call.ok:
                    continue  # failures were reported when they happened
                if call is not None:
                    correct = possible and call.label == true_label
                elif not possible:
                    correct = False
                else:
                    continue
                self.router.update(
                    Outcome(
                        query=answer.query,
                        candidate=candidate,
                        correct=correct,
                        confidence=None if call is None else call.confidence,
                    )
                )

    def close(self) -> None:
        """Close peer connections (and the hub, if this network opened it)."""
        for client in self._clients.values():
            client.close()
        self._clients.clear()
        if self._owns_hub:
            self.hub.close()

    def __enter__(self) -> Network:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _none_trusted(untrusted: Mapping[str, str]) -> UntrustedKeyError:
    """One error listing every refused adapter, with its owner and key fingerprint."""
    return UntrustedKeyError(
        "no adapter on the hub is signed by a trusted key: "
        + "; ".join(f"{name}: {why}" for name, why in sorted(untrusted.items()))
    )


def ask(
    text: str,
    *,
    hub: HubStore | HubClient | str | Path,
    local: bool = False,
    mode: str | None = None,
    config: AskConfig | None = None,
    token: str | None = None,
    trust: TrustStore | None = None,
) -> Answer:
    """Ask the network once; see :meth:`Network.ask` (``trust``: see :class:`Network`)."""
    with Network(hub, config=config, local=local, token=token, trust=trust) as network:
        return network.ask(text, mode=mode)
