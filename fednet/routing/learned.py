"""The learned router: an online logistic model of "this candidate answers correctly".

Two models, both updated by every :class:`~fednet.routing.base.Outcome`:

- a word model over features of a (query, candidate) pair hashed into
  ``2**feature_bits`` weights: a bias, the candidate's adapter, task and kind,
  each query word crossed with the candidate's task and with its adapter, and
  the owner's reported accuracy and the query's length. It needs no query embedding,
  so it costs well under a millisecond;
- a stacked model on top of it, ``z = z_words + beta * log(relevance) + gamma``,
  with the sketch relevance of
  :class:`~fednet.routing.sketch_router.SketchMatcher`, used when an embedder is
  given.

The router pays for the query embedding only while the word model is unsure:
unless its best candidate has probability >= ``sketch_gate`` and every
candidate of another task <= ``1 - sketch_gate``. Before any feedback it is
unsure, so a new router behaves like the sketch router; as outcomes arrive it
embeds less and less. Each step is AdaGrad on the log loss. With
``exploration > 0`` estimates get an upper-confidence bonus that shrinks as a
candidate's features are observed (a diagonal LinUCB), making this a contextual
bandit.

Implementation based on McMahan et al., "Ad Click Prediction: a View from the
Trenches" (KDD 2013, https://research.google.com/pubs/archive/41159.pdf):
hashed features, per-coordinate learning rates.
"""

from __future__ import annotations

import logging
import math
import re
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from fednet.routing.base import Embedder, Outcome, Query, Router
from fednet.routing.candidates import Candidate
from fednet.routing.config import RouterConfig
from fednet.routing.objective import Estimate
from fednet.routing.sketch_router import SketchMatcher

__all__ = ["LearnedRouter", "query_tokens"]

logger = logging.getLogger(__name__)

_TOKEN_RE = re.compile(r"[a-z0-9]+|[@#$£!?]")
_MAX_TOKENS = 64
_PRIORS = {"bias": -1.0, "prior": 4.0}
_STACK_PRIOR = (1.0, 1.0)  # beta on log(relevance), gamma
_MIN_LOG_RELEVANCE = -10.0


def query_tokens(text: str) -> list[str]:
    """Distinct lower-cased words and marker symbols of ``text`` (at most 64)."""
    seen: dict[str, None] = {}
    for token in _TOKEN_RE.findall(text.lower()):
        seen.setdefault(token, None)
        if len(seen) >= _MAX_TOKENS:
            break
    return list(seen)


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))


class LearnedRouter(Router):
    """Online logistic (contextual bandit) router; see the module notes.

    Parameters
    ----------
    config : RouterConfig, optional
        ``learning_rate``, ``l2``, ``exploration``, ``feature_bits``,
        ``sketch_gate`` and the objective.
    embedder : Embedder, optional
        Enables the sketch relevance signal; without it the router uses words
        and candidate identity only.
    """

    name = "learned"

    def __init__(self, config: RouterConfig | None = None, *, embedder: Embedder | None = None):
        super().__init__(config, embedder=embedder)
        size = 1 << self.config.feature_bits
        self._mask = size - 1
        self.weights = torch.zeros(size, dtype=torch.float64)
        self.sq_grad = torch.zeros(size, dtype=torch.float64)
        self.counts = torch.zeros(size, dtype=torch.float64)
        for feature, value in _PRIORS.items():
            self.weights[self._index(feature)] = value
        self.stack = torch.tensor(_STACK_PRIOR, dtype=torch.float64)
        self.stack_sq_grad = torch.zeros(2, dtype=torch.float64)
        self.updates = 0
        self.embedded = 0
        self.estimated = 0
        self.matcher = None if embedder is None else SketchMatcher(embedder, self.config)
        self._last: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor, float | None]] = {}

    def _index(self, feature: str) -> int:
        return zlib.crc32(feature.encode("utf-8")) & self._mask

    def features(
        self, tokens: Sequence[str], candidate: Candidate
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Hashed indices and values of the pair's word-model features."""
        names = [
            "bias",
            f"adapter={candidate.adapter}",
            f"task={candidate.task}",
            f"kind={candidate.kind}",
        ]
        values = [1.0] * len(names)
        length = f"len={min(6, len(tokens).bit_length())}"
        names += [f"{length}|task={candidate.task}", f"{length}|adapter={candidate.adapter}"]
        values += [1.0, 1.0]
        scale = 1.0 / math.sqrt(max(1, len(tokens)))
        for token in tokens:
            names.append(f"w={token}|task={candidate.task}")
            names.append(f"w={token}|adapter={candidate.adapter}")
            values += [scale, scale]
        prior = candidate.accuracy
        names.append("prior")
        values.append((self.config.default_accuracy if prior is None else prior) - 0.5)
        index = torch.tensor([self._index(n) for n in names], dtype=torch.long)
        return index, torch.tensor(values, dtype=torch.float64)

    def _word_logit(self, index: torch.Tensor, values: torch.Tensor) -> float:
        return float((self.weights[index] * values).sum())

    def _stacked_logit(self, word_logit: float, log_relevance: float) -> float:
        beta, gamma = self.stack.tolist()
        return word_logit + beta * log_relevance + gamma

    def _sure(self, candidates: Sequence[Candidate], logits: Sequence[float]) -> bool:
        gate = self.config.sketch_gate
        best = max(range(len(logits)), key=logits.__getitem__)
        if _sigmoid(logits[best]) < gate:
            return False
        task = candidates[best].task
        return all(
            _sigmoid(z) <= 1.0 - gate
            for c, z in zip(candidates, logits, strict=True)
            if c.task != task
        )

    def estimate(self, query: Query, candidates: Sequence[Candidate]) -> list[Estimate]:
        tokens = query_tokens(query.text)
        feats = [self.features(tokens, c) for c in candidates]
        logits = [self._word_logit(i, v) for i, v in feats]
        log_rel: list[float | None] = [None] * len(candidates)
        self.estimated += 1
        if self.matcher is not None and not self._sure(candidates, logits):
            self.embedded += 1
            log_rel = [
                max(_MIN_LOG_RELEVANCE, math.log(max(m.relevance, 1e-300)))
                for m in self.matcher.match(query, candidates)
            ]
        out = []
        for candidate, (index, values), z_words, lr in zip(
            candidates, feats, logits, log_rel, strict=True
        ):
            self._last[(query.text, candidate.key)] = (index, values, lr)
            z = z_words if lr is None else self._stacked_logit(z_words, lr)
            bonus = 0.0
            if self.config.exploration > 0:
                bonus = self.config.exploration * float(
                    torch.sqrt((values**2 / (1.0 + self.counts[index])).sum())
                )
            signals = {"word_logit": z_words, "logit": z, "bonus": bonus}
            if lr is not None:
                signals["relevance"] = math.exp(lr)
            out.append(Estimate(accuracy=_sigmoid(z + bonus), signals=signals))
        if len(self._last) > 8192:  # features are kept only for recent decisions
            self._last = dict(list(self._last.items())[-2048:])
        return out

    @property
    def embed_rate(self) -> float:
        """Share of estimates that computed a query embedding."""
        return self.embedded / self.estimated if self.estimated else 0.0

    def update(self, outcome: Outcome) -> None:
        """One AdaGrad step of each model on ``outcome`` (and track its latency)."""
        super().update(outcome)
        target = outcome.target(use_confidence=self.config.confidence_feedback)
        if target is None:
            return
        cached = self._last.get((outcome.query, outcome.candidate.key))
        if cached is None:
            index, values = self.features(query_tokens(outcome.query), outcome.candidate)
            log_rel = None
        else:
            index, values, log_rel = cached
        lr, l2 = self.config.learning_rate, self.config.l2
        z_words = self._word_logit(index, values)
        grad = (_sigmoid(z_words) - target) * values + l2 * self.weights[index]
        self.sq_grad.index_add_(0, index, grad**2)  # repeated hashed indices accumulate
        self.weights.index_add_(0, index, -lr * grad / torch.sqrt(self.sq_grad[index] + 1e-8))
        self.counts.index_add_(0, index, torch.ones_like(values))
        if log_rel is not None:
            error = _sigmoid(self._stacked_logit(z_words, log_rel)) - target
            stack_grad = error * torch.tensor([log_rel, 1.0], dtype=torch.float64)
            self.stack_sq_grad += stack_grad**2
            self.stack -= lr * stack_grad / torch.sqrt(self.stack_sq_grad + 1e-8)
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(
            weights=self.weights.clone(),
            sq_grad=self.sq_grad.clone(),
            counts=self.counts.clone(),
            stack=self.stack.clone(),
            stack_sq_grad=self.stack_sq_grad.clone(),
            updates=self.updates,
            feature_bits=self.config.feature_bits,
        )
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output.

        Raises
        ------
        ValueError
            If a key is missing or a tensor has the wrong shape.
        """
        keys = ("weights", "sq_grad", "counts", "stack", "stack_sq_grad", "updates")
        missing = [k for k in keys if k not in state]
        if missing:
            raise ValueError(f"learned router state is missing {missing}")
        bits = state.get("feature_bits", self.config.feature_bits)
        if bits != self.config.feature_bits:
            raise ValueError(
                f"state has feature_bits={bits!r}, router has {self.config.feature_bits}"
            )
        size = 1 << self.config.feature_bits
        shapes = {"weights": size, "sq_grad": size, "counts": size, "stack": 2, "stack_sq_grad": 2}
        tensors = {}
        for key, length in shapes.items():
            value = state[key]
            if not isinstance(value, torch.Tensor) or tuple(value.shape) != (length,):
                shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value)
                raise ValueError(
                    f"state `{key}` must be a tensor of shape ({length},), got {shape}"
                )
            tensors[key] = value.to(torch.float64).clone()
        super().load_state_dict(state)
        self.weights, self.sq_grad, self.counts = (
            tensors["weights"],
            tensors["sq_grad"],
            tensors["counts"],
        )
        self.stack, self.stack_sq_grad = tensors["stack"], tensors["stack_sq_grad"]
        self.updates = int(state["updates"])
        self._last.clear()
