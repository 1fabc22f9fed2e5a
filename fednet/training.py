"""Local optimisation and evaluation of a :class:`~fednet.models.LoraClassifier`."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

__all__ = [
    "Batch",
    "balanced_class_weights",
    "batches",
    "train_steps",
    "evaluate",
    "predict",
    "embed_texts",
    "EvalResult",
]

logger = logging.getLogger(__name__)

Batch = dict[str, torch.Tensor]


def _tokenize(tokenizer, texts: Sequence[str], max_length: int) -> Batch:
    enc = tokenizer(
        list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt"
    )
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


def batches(
    texts: Sequence[str],
    labels: Sequence[int],
    tokenizer,
    *,
    batch_size: int,
    max_length: int,
    seed: int,
) -> Iterator[Batch]:
    """An endless stream of shuffled, tokenized mini-batches (reshuffled every epoch)."""
    if not texts:
        raise ValueError("cannot draw batches from an empty data set")
    gen = torch.Generator().manual_seed(seed)
    n = len(texts)
    while True:
        order = torch.randperm(n, generator=gen).tolist()
        for i in range(0, n, batch_size):
            idx = order[i : i + batch_size]
            batch = _tokenize(tokenizer, [texts[j] for j in idx], max_length)
            batch["labels"] = torch.tensor([labels[j] for j in idx], dtype=torch.long)
            yield batch


def balanced_class_weights(labels: Sequence[int], num_labels: int) -> torch.Tensor:
    """Cross-entropy weight per label: ``n / (K * n_label)`` over the labels present.

    scikit-learn's ``compute_class_weight("balanced")`` (King & Zeng 2001),
    with ``K`` the number of labels present; a label absent from ``labels``
    gets weight 0 (it never occurs in a batch).

    Returns
    -------
    torch.Tensor
        ``[num_labels]`` float32 weights.

    Raises
    ------
    ValueError
        If ``labels`` is empty or holds a label outside ``[0, num_labels)``.
    """
    from sklearn.utils.class_weight import compute_class_weight

    values = [int(y) for y in labels]
    if not values:
        raise ValueError("balanced class weights need at least one label")
    bad = sorted({y for y in values if not 0 <= y < num_labels})
    if bad:
        raise ValueError(f"labels {bad} are outside [0, {num_labels})")
    present = sorted(set(values))
    weights = compute_class_weight("balanced", classes=np.array(present), y=np.array(values))
    out = torch.zeros(num_labels, dtype=torch.float32)
    out[present] = torch.tensor(weights, dtype=torch.float32)
    return out


def train_steps(
    model: nn.Module,
    stream: Iterator[Batch],
    *,
    steps: int,
    learning_rate: float,
    on_step: Callable[[int, float], None] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    align: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    class_weights: torch.Tensor | None = None,
) -> float:
    """Run ``steps`` AdamW steps on the trainable parameters; return the mean loss.

    ``class_weights``, if given, is a ``[num_labels]`` weight per label of the
    cross-entropy (see :func:`balanced_class_weights`); the loss is then the
    weighted mean, as in :class:`torch.nn.CrossEntropyLoss`.

    ``align(embeddings, labels)``, if given, is a regulariser on the model's pooled
    embeddings added to the cross-entropy (e.g.
    :class:`~fednet.representation.prototypes.PrototypeAlignment`); the model must
    have ``encode`` and ``head``.
    """
    if steps < 1:
        raise ValueError(f"`local-steps` must be >= 1, got {steps}")
    params = [p for p in model.parameters() if p.requires_grad]
    opt = optimizer or torch.optim.AdamW(params, lr=learning_rate, weight_decay=0.0)
    loss_fn = nn.CrossEntropyLoss(weight=class_weights)
    model.train()
    total = 0.0
    for step in range(steps):
        batch = next(stream)
        if align is None:
            logits = model(batch["input_ids"], batch["attention_mask"])
            loss = loss_fn(logits, batch["labels"])
        else:
            embeddings = model.encode(batch["input_ids"], batch["attention_mask"])  # type: ignore[operator]
            logits = model.head(embeddings)  # type: ignore[operator]
            loss = loss_fn(logits, batch["labels"]) + align(embeddings, batch["labels"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError(f"training loss became {value} at step {step}")
        total += value
        if on_step is not None:
            on_step(step, value)
    model.eval()
    return total / steps


@dataclass(frozen=True)
class EvalResult:
    """Loss, accuracy and the number of examples they cover."""

    loss: float
    accuracy: float
    num_examples: int


@torch.no_grad()
def evaluate(
    model: nn.Module,
    texts: Sequence[str],
    labels: Sequence[int],
    tokenizer,
    *,
    max_length: int,
    batch_size: int = 64,
) -> EvalResult:
    """Mean cross-entropy and accuracy of ``model`` on ``texts``."""
    if not texts:
        raise ValueError("cannot evaluate on an empty data set")
    model.eval()
    loss_sum, correct = 0.0, 0
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    for i in range(0, len(texts), batch_size):
        batch = _tokenize(tokenizer, texts[i : i + batch_size], max_length)
        y = torch.tensor(list(labels[i : i + batch_size]), dtype=torch.long)
        logits = model(batch["input_ids"], batch["attention_mask"])
        loss_sum += float(loss_fn(logits, y))
        correct += int((logits.argmax(-1) == y).sum())
    n = len(texts)
    return EvalResult(loss=loss_sum / n, accuracy=correct / n, num_examples=n)


@torch.no_grad()
def predict(
    model: nn.Module,
    texts: Sequence[str],
    tokenizer,
    *,
    max_length: int,
    batch_size: int = 64,
) -> list[int]:
    """The label ``model`` gives each of ``texts`` (argmax of its logits)."""
    model.eval()
    out: list[int] = []
    for i in range(0, len(texts), batch_size):
        batch = _tokenize(tokenizer, texts[i : i + batch_size], max_length)
        out += model(batch["input_ids"], batch["attention_mask"]).argmax(-1).tolist()
    return out


@torch.no_grad()
def embed_texts(
    encode: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    texts: Sequence[str],
    tokenizer,
    *,
    max_length: int,
    batch_size: int = 64,
    normalize: bool = True,
) -> torch.Tensor:
    """Embed ``texts`` with ``encode(input_ids, attention_mask)``; L2-normalised rows."""
    out = []
    for i in range(0, len(texts), batch_size):
        batch = _tokenize(tokenizer, texts[i : i + batch_size], max_length)
        out.append(encode(batch["input_ids"], batch["attention_mask"]))
    emb = torch.cat(out) if out else torch.empty(0)
    return torch.nn.functional.normalize(emb, dim=-1) if normalize and len(emb) else emb
