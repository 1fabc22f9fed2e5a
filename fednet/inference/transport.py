"""Calling a peer: over HTTP (:class:`PeerClient`) or in-process (:class:`LocalBackend`).

Both return a :class:`PeerReply` for one text, or raise
:class:`~fednet.errors.PeerError` for anything that is not a well-formed answer:
a refused connection, a timeout, an HTTP error, JSON that does not parse or
does not have the expected shape.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from fednet.errors import FednetError, PeerError
from fednet.hub.manifest import Manifest
from fednet.inference.engine import AdapterEngine

__all__ = [
    "PeerReply",
    "Backend",
    "PeerClient",
    "LocalBackend",
    "check_reply",
    "parse_reply",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PeerReply:
    """One peer's answer to one text.

    Parameters
    ----------
    label : str
        Most probable label.
    confidence : float
        Its probability.
    probabilities : dict[str, float]
        Every label's probability.
    adapter : str
        Adapter that answered.
    version : int
        Its version.
    task : str
        Its task.
    peer_id : str
        Peer that answered.
    latency_s : float
        Wall time of the call, seen by the caller.
    batch_requests : int
        Requests that shared the peer's forward pass.
    """

    label: str
    confidence: float
    probabilities: dict[str, float]
    adapter: str
    version: int
    task: str
    peer_id: str
    latency_s: float
    batch_requests: int = 1


class Backend(Protocol):
    """Anything that classifies one text with a named adapter."""

    def classify(self, text: str, adapter: str, *, timeout: float) -> PeerReply: ...


def _number(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PeerError(f"peer answer has a non-numeric `{key}`: {value!r}")
    return float(value)


def parse_reply(body: Any, *, latency_s: float, where: str) -> PeerReply:
    """Validate a ``/v1/classify`` answer for one text.

    Raises
    ------
    PeerError
        Naming what is missing or malformed.
    """
    if not isinstance(body, dict):
        raise PeerError(f"{where} answered {type(body).__name__}, not a JSON object")
    try:
        names = body["label_names"]
        labels, probabilities = body["labels"], body["probabilities"]
        adapter, version, task = body["adapter"], body["version"], body["task"]
        peer_id = body.get("peer_id", "")
    except KeyError as e:
        raise PeerError(f"{where} answered without {e.args[0]!r}") from None
    if not (isinstance(names, list) and names and all(isinstance(n, str) for n in names)):
        raise PeerError(f"{where} answered malformed `label_names`: {names!r}")
    if not (isinstance(labels, list) and len(labels) == 1 and labels[0] in names):
        raise PeerError(f"{where} answered malformed `labels`: {labels!r}")
    if not (
        isinstance(probabilities, list)
        and len(probabilities) == 1
        and isinstance(probabilities[0], list)
        and len(probabilities[0]) == len(names)
    ):
        raise PeerError(f"{where} answered malformed `probabilities`")
    probs = {n: _number(p, "probabilities") for n, p in zip(names, probabilities[0], strict=True)}
    if not isinstance(adapter, str) or not isinstance(task, str) or not isinstance(version, int):
        raise PeerError(f"{where} answered malformed adapter fields")
    return PeerReply(
        label=labels[0],
        confidence=probs[labels[0]],
        probabilities=probs,
        adapter=adapter,
        version=version,
        task=task,
        peer_id=str(peer_id),
        latency_s=latency_s,
        batch_requests=int(body.get("batch_requests", 1)),
    )


def check_reply(reply: PeerReply, manifest: Manifest, *, where: str) -> PeerReply:
    """Return ``reply`` if it matches the signed ``manifest`` of the adapter it claims.

    The adapter name, the task and the label names (in order) must be the
    manifest's; a peer cannot answer for an adapter it does not serve, nor
    with another task's labels.

    Raises
    ------
    PeerError
        Naming each field that does not match.
    """
    problems = []
    if reply.adapter != manifest.name:
        problems.append(f"adapter {reply.adapter!r} != {manifest.name!r}")
    if reply.task != manifest.task:
        problems.append(f"task {reply.task!r} != {manifest.task!r}")
    if tuple(reply.probabilities) != tuple(manifest.label_names):
        problems.append(f"labels {list(reply.probabilities)} != {list(manifest.label_names)}")
    if problems:
        raise PeerError(
            f"{where} answered for {reply.adapter}@v{reply.version}, which does not match "
            f"the signed manifest {manifest.ref} (owner {manifest.owner!r}): " + "; ".join(problems)
        )
    return reply


class PeerClient:
    """HTTP client of one peer's ``/v1/classify``.

    Parameters
    ----------
    endpoint : str
        Base URL of the peer.
    timeout : float
        Default seconds before the call is abandoned.
    token : str, optional
        Bearer token for peers that require one.
    transport : httpx.BaseTransport, optional
        Custom transport (tests).
    """

    def __init__(
        self,
        endpoint: str,
        *,
        timeout: float = 5.0,
        token: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not isinstance(endpoint, str) or not endpoint.startswith(("http://", "https://")):
            raise ValueError(f"`endpoint` must start with http:// or https://, got {endpoint!r}")
        self.endpoint = endpoint.rstrip("/")
        self.timeout = float(timeout)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=self.endpoint, timeout=self.timeout, headers=headers, transport=transport
        )

    def classify(self, text: str, adapter: str, *, timeout: float | None = None) -> PeerReply:
        """Ask the peer; ``PeerError`` on any failure (see the module notes)."""
        limit = self.timeout if timeout is None else float(timeout)
        where = f"peer {self.endpoint} ({adapter})"
        started = time.perf_counter()
        try:
            response = self._http.post(
                "/v1/classify", json={"texts": [text], "adapter": adapter}, timeout=limit
            )
        except httpx.TimeoutException as e:
            raise PeerError(f"{where} did not answer within {limit}s") from e
        except httpx.TransportError as e:
            raise PeerError(f"{where} is unreachable: {e}") from e
        latency = time.perf_counter() - started
        try:
            body = response.json()
        except ValueError as e:
            raise PeerError(
                f"{where} answered {response.status_code} with malformed JSON: "
                f"{response.text[:200]!r}"
            ) from e
        if response.status_code >= 400:
            message = body.get("error", body) if isinstance(body, dict) else body
            raise PeerError(f"{where} refused ({response.status_code}): {message}")
        return parse_reply(body, latency_s=latency, where=where)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()


class LocalBackend:
    """Run adapters in this process on an :class:`AdapterEngine` (local mode)."""

    def __init__(self, engine: AdapterEngine, *, peer_id: str = "local") -> None:
        self.engine = engine
        self.peer_id = peer_id

    def classify(self, text: str, adapter: str, *, timeout: float | None = None) -> PeerReply:
        """Classify ``text`` with ``adapter``, fetching it from the hub if needed."""
        started = time.perf_counter()
        try:
            loaded = self.engine.ensure(adapter)
            probs = self.engine.classify([text], loaded)[0]
        except FednetError:
            raise
        except (ValueError, RuntimeError) as e:
            raise PeerError(f"local adapter {adapter} failed: {e}") from e
        names = loaded.label_names
        values = probs.tolist()
        best = max(range(len(values)), key=values.__getitem__)
        return PeerReply(
            label=names[best],
            confidence=values[best],
            probabilities=dict(zip(names, values, strict=True)),
            adapter=loaded.manifest.name,
            version=loaded.manifest.version,
            task=loaded.manifest.task,
            peer_id=self.peer_id,
            latency_s=time.perf_counter() - started,
        )
