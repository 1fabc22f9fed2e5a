"""Combining peers' answers: a cascade with early exit, or a weighted ensemble.

- :class:`Cascade` asks the routed candidates one at a time, best first, and
  stops at the first answer whose confidence reaches the threshold; otherwise
  it returns the most confident answer it got.
- :class:`Ensemble` asks all routed candidates in parallel and takes a vote in
  which each answer weighs its confidence times the router's accuracy estimate
  for its candidate (so an out-of-domain peer's confident answer counts little).

A candidate that fails (timeout, refusal, malformed answer) is logged and
recorded in the provenance, and the combiner goes on with the others. Only when
every candidate fails does it raise :class:`~fednet.errors.PeerError`.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, ClassVar

from fednet.errors import FednetError, PeerError
from fednet.inference.transport import PeerReply
from fednet.registry import Registry
from fednet.routing import Decision, Scored

__all__ = [
    "PeerCall",
    "Answer",
    "Combiner",
    "Cascade",
    "Ensemble",
    "register_combiner",
    "create_combiner",
    "available_combiners",
]

logger = logging.getLogger(__name__)

Call = Callable[[Scored], PeerReply]
"""Asks one scored candidate; raises on failure."""


@dataclass(frozen=True)
class PeerCall:
    """Provenance of one call to a candidate."""

    peer_id: str
    adapter: str
    endpoint: str | None
    ok: bool
    latency_s: float
    cost: float
    label: str | None = None
    confidence: float | None = None
    error: str | None = None
    reply: PeerReply | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record."""
        return {
            "peer_id": self.peer_id,
            "adapter": self.adapter,
            "endpoint": self.endpoint,
            "ok": self.ok,
            "label": self.label,
            "confidence": self.confidence,
            "latency_s": self.latency_s,
            "cost": self.cost,
            "error": self.error,
        }


@dataclass(frozen=True, eq=False)
class Answer:
    """The network's answer to a query, with its provenance.

    Parameters
    ----------
    query : str
        The query.
    label : str
        The answer.
    confidence : float
        The answering adapter's probability (cascade) or the vote share
        (ensemble).
    task : str
        Task of the answer's label.
    mode : str
        ``cascade`` or ``ensemble``.
    calls : tuple[PeerCall, ...]
        Every call made, failed ones included, in order.
    decision : Decision
        The router's decision with every candidate's scores.
    latency_s : float
        End-to-end wall time (routing included).
    fallbacks : tuple[str, ...]
        Human-readable notes of what went wrong and was worked around.
    votes : dict[str, float]
        Ensemble vote weights by label (empty for a cascade).
    """

    query: str
    label: str
    confidence: float
    task: str
    mode: str
    calls: tuple[PeerCall, ...]
    decision: Decision
    latency_s: float = 0.0
    fallbacks: tuple[str, ...] = ()
    votes: dict[str, float] = field(default_factory=dict)

    @property
    def answered_by(self) -> list[str]:
        """``peer/adapter`` of every successful call."""
        return [f"{c.peer_id}/{c.adapter}" for c in self.calls if c.ok]

    @property
    def cost(self) -> float:
        """Total cost of the calls made."""
        return sum(c.cost for c in self.calls)

    @property
    def router_s(self) -> float:
        """Seconds the router spent."""
        return self.decision.overhead_s

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready answer and provenance."""
        return {
            "query": self.query,
            "label": self.label,
            "confidence": self.confidence,
            "task": self.task,
            "mode": self.mode,
            "latency_s": self.latency_s,
            "router_s": self.router_s,
            "cost": self.cost,
            "answered_by": self.answered_by,
            "calls": [c.to_dict() for c in self.calls],
            "fallbacks": list(self.fallbacks),
            "votes": dict(self.votes),
            "decision": self.decision.to_dict(),
        }


def _attempt(call: Call, scored: Scored) -> PeerCall:
    c = scored.candidate
    started = time.perf_counter()
    try:
        reply = call(scored)
    except (FednetError, OSError, ValueError) as e:
        logger.warning("%s failed: %s", c.key, e)
        elapsed = time.perf_counter() - started
        return PeerCall(c.peer_id, c.adapter, c.endpoint, False, elapsed, c.cost, error=str(e))
    return PeerCall(
        c.peer_id,
        c.adapter,
        c.endpoint,
        True,
        reply.latency_s,
        c.cost,
        label=reply.label,
        confidence=reply.confidence,
        reply=reply,
    )


def _fallbacks(calls: Sequence[PeerCall]) -> tuple[str, ...]:
    return tuple(f"skipped {c.peer_id}/{c.adapter}: {c.error}" for c in calls if not c.ok)


def _all_failed(query: str, calls: Sequence[PeerCall]) -> PeerError:
    detail = "; ".join(f"{c.peer_id}/{c.adapter}: {c.error}" for c in calls) or "none asked"
    return PeerError(f"no peer answered {query[:40]!r}: {detail}")


class Combiner(ABC):
    """Asks the routed candidates and combines their answers."""

    name: ClassVar[str] = "combiner"

    def __init__(self, *, confidence_threshold: float = 0.8) -> None:
        self.confidence_threshold = float(confidence_threshold)

    @abstractmethod
    def combine(self, query: str, decision: Decision, call: Call) -> Answer:
        """Ask ``decision.chosen`` through ``call`` and combine the replies."""


class Cascade(Combiner):
    """Best candidate first; stop at ``confidence_threshold`` (see the module notes)."""

    name = "cascade"

    def combine(self, query: str, decision: Decision, call: Call) -> Answer:
        calls: list[PeerCall] = []
        for scored in decision.chosen:
            record = _attempt(call, scored)
            calls.append(record)
            if record.ok and (record.confidence or 0.0) >= self.confidence_threshold:
                break
        answered = [c for c in calls if c.ok]
        if not answered:
            raise _all_failed(query, calls)
        best = max(answered, key=lambda c: c.confidence or 0.0)
        assert best.reply is not None and best.label is not None
        notes = list(_fallbacks(calls))
        if (best.confidence or 0.0) < self.confidence_threshold:
            notes.append(
                f"no answer reached confidence {self.confidence_threshold}; "
                f"kept the most confident ({best.peer_id}/{best.adapter})"
            )
        return Answer(
            query=query,
            label=best.label,
            confidence=float(best.confidence or 0.0),
            task=best.reply.task,
            mode=self.name,
            calls=tuple(calls),
            decision=decision,
            fallbacks=(*decision.notes, *notes),
        )


class Ensemble(Combiner):
    """Ask every routed candidate in parallel; confidence-weighted vote."""

    name = "ensemble"

    def combine(self, query: str, decision: Decision, call: Call) -> Answer:
        chosen = list(decision.chosen)
        with ThreadPoolExecutor(max_workers=max(1, len(chosen))) as pool:
            calls = list(pool.map(lambda s: _attempt(call, s), chosen))
        votes: dict[str, float] = {}
        tasks: dict[str, str] = {}
        for scored, record in zip(chosen, calls, strict=True):
            if not record.ok or record.label is None or record.reply is None:
                continue
            weight = (record.confidence or 0.0) * max(scored.estimate.accuracy, 1e-6)
            votes[record.label] = votes.get(record.label, 0.0) + weight
            tasks.setdefault(record.label, record.reply.task)
        if not votes:
            raise _all_failed(query, calls)
        label = max(sorted(votes), key=votes.__getitem__)
        total = sum(votes.values())
        return Answer(
            query=query,
            label=label,
            confidence=votes[label] / total if total > 0 else 0.0,
            task=tasks[label],
            mode=self.name,
            calls=tuple(calls),
            decision=decision,
            fallbacks=(*decision.notes, *_fallbacks(calls)),
            votes=votes,
        )


COMBINERS: Registry[type[Combiner]] = Registry("combiner")


def register_combiner(name: str, cls: type[Combiner]) -> None:
    """Register combiner class ``cls`` under ``name``."""
    COMBINERS.register(name, cls)


def available_combiners() -> list[str]:
    """Names of the registered combiners."""
    return COMBINERS.names()


def create_combiner(name: str, *, confidence_threshold: float = 0.8) -> Combiner:
    """Build combiner ``name``; an unknown name lists the valid ones."""
    return COMBINERS.get(name)(confidence_threshold=confidence_threshold)


register_combiner(Cascade.name, Cascade)
register_combiner(Ensemble.name, Ensemble)
