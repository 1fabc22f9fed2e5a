"""Knowledge transfer to a small client: alone, with cross-model prototypes, federated.

Part 3 of ``fednet bench-representation`` (see :mod:`fednet.bench.representation`).
A small client (``small_examples`` examples of ``transfer_task``) on the network
space's model trains LoRA and a head for ``steps`` steps:

- alone;
- with FedProto alignment (Tan et al., AAAI 2022) to DP prototypes released by
  ``other_clients`` clients of the same task on ``other_model`` (frozen-encoder
  embeddings mapped by the ridge map, one exchange) and by itself;
- in a one-model federation: FedAvg of LoRA and heads over ``rounds`` rounds with
  ``other_clients`` clients of the same task on its own model (the same total steps).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import torch

from fednet.bench.representation_setup import EmbeddingCache, Progress, RepresentationBenchConfig

__all__ = ["transfer", "transfer_baselines", "transfer_data"]


def transfer_data(cfg: RepresentationBenchConfig) -> dict[str, Any]:
    from fednet.data import load_dataset

    ds = load_dataset(cfg.transfer_task)
    gen = torch.Generator().manual_seed(cfg.seed + 17)
    order = torch.randperm(len(ds), generator=gen).tolist()
    texts, labels = ds["text"], ds["label"]

    def take(start: int, n: int) -> tuple[list[str], list[int]]:
        idx = order[start : start + n]
        return [texts[i] for i in idx], [int(labels[i]) for i in idx]

    at = 0
    small = take(at, cfg.small_examples)
    at += cfg.small_examples
    test = take(at, cfg.test_examples)
    at += cfg.test_examples
    others = []
    for _ in range(2 * cfg.other_clients):  # disjoint shares: other model, then own model
        others.append(take(at, cfg.other_examples))
        at += cfg.other_examples
    return {
        "small": small,
        "test": test,
        "other_model": others[: cfg.other_clients],
        "own_model": others[cfg.other_clients :],
        "num_labels": len(ds.features["label"].names),
    }


def _classifier(cfg: RepresentationBenchConfig, model: str, num_labels: int) -> Any:
    from fednet.models.classifier import build_classifier
    from fednet.models.registry import get_base_model_spec

    spec = get_base_model_spec(model)
    return build_classifier(
        model,
        rank=cfg.lora_rank,
        lora_alpha=2.0 * cfg.lora_rank,
        lora_dropout=0.0,
        target_modules=getattr(spec, "lora_targets", ("query", "value")),
        num_labels=num_labels,
        seed=cfg.seed,
    )


def _train(
    cfg: RepresentationBenchConfig,
    model: Any,
    data: tuple[list[str], list[int]],
    steps: int,
    *,
    seed: int,
    align: Any = None,
) -> float:
    from fednet.models.registry import load_tokenizer
    from fednet.training import batches, train_steps

    tokenizer = load_tokenizer(cfg.reference)
    stream = batches(
        data[0], data[1], tokenizer, batch_size=cfg.batch_size, max_length=cfg.max_length, seed=seed
    )
    return train_steps(model, stream, steps=steps, learning_rate=cfg.learning_rate, align=align)


def _accuracy(
    cfg: RepresentationBenchConfig, model: Any, test: tuple[list[str], list[int]]
) -> float:
    from fednet.models.registry import load_tokenizer
    from fednet.training import evaluate

    tokenizer = load_tokenizer(cfg.reference)
    return evaluate(model, test[0], test[1], tokenizer, max_length=cfg.max_length).accuracy


def transfer_baselines(
    cfg: RepresentationBenchConfig, data: dict[str, Any], cache_dir: Path, progress: Progress
) -> dict[str, Any]:
    """The small client alone and in a one-model federation (cached by settings).

    Neither needs another model, so ``--parts transfer-baselines`` can run them
    while the other model's embeddings are still being computed.
    """
    from fednet.representation.corpus import corpus_digest

    settings = {
        k: v
        for k, v in dataclasses.asdict(cfg).items()
        if k not in ("parts", "threads", "models", "methods", "prototype_weight")
    }
    key = corpus_digest([json.dumps(settings, sort_keys=True)])[:20]
    path = cache_dir / f"transfer-baselines-{key}.json"
    if path.exists():
        progress(f"  baselines from {path}")
        return dict(json.loads(path.read_text()))
    n_labels = data["num_labels"]
    result: dict[str, Any] = {}
    t0 = time.perf_counter()
    alone = _classifier(cfg, cfg.reference, n_labels)
    _train(cfg, alone, data["small"], cfg.steps, seed=cfg.seed)
    result["alone"] = _accuracy(cfg, alone, data["test"])
    progress(f"  alone: {result['alone']:.3f} ({time.perf_counter() - t0:.0f} s)")

    # one-model federation: FedAvg of LoRA and heads with same-task clients on its model
    t0 = time.perf_counter()
    members = [data["small"], *data["own_model"]]
    models = [_classifier(cfg, cfg.reference, n_labels) for _ in members]
    per_round = max(1, cfg.steps // cfg.rounds)
    weights = torch.tensor([len(m[0]) for m in members], dtype=torch.float64)
    weights = weights / weights.sum()
    for r in range(cfg.rounds):
        for i, (model, share) in enumerate(zip(models, members, strict=True)):
            _train(cfg, model, share, per_round, seed=cfg.seed + 31 * r + i)
        lora = [m.lora_state() for m in models]
        heads = [m.head_state() for m in models]
        mean_lora = {
            k: sum(float(w) * s[k] for w, s in zip(weights, lora, strict=True)) for k in lora[0]
        }
        mean_head = {
            k: sum(float(w) * s[k] for w, s in zip(weights, heads, strict=True)) for k in heads[0]
        }
        for model in models:
            model.load_lora_state(mean_lora)
            model.load_head_state(mean_head)
    result["one_model_federation"] = _accuracy(cfg, models[0], data["test"])
    result["federation_rounds"] = cfg.rounds
    progress(
        f"  one-model federation: {result['one_model_federation']:.3f} "
        f"({time.perf_counter() - t0:.0f} s)"
    )
    cache_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result))
    return result


def transfer(
    cfg: RepresentationBenchConfig,
    emb: EmbeddingCache,
    maps: dict[str, dict[str, Any]],
    progress: Progress,
    cache_dir: Path,
) -> dict[str, Any]:
    from fednet.privacy.ledger import PrivacyLedger
    from fednet.privacy.randomness import NoiseSource
    from fednet.privacy.sketch import sketch_noise_multiplier
    from fednet.representation.maps import IdentityMap
    from fednet.representation.prototypes import (
        PrototypeAlignment,
        aggregate_prototypes,
        release_prototypes,
    )

    data = transfer_data(cfg)
    n_labels = data["num_labels"]
    result: dict[str, Any] = {
        "task": cfg.transfer_task,
        "small_model": cfg.reference,
        "other_model": cfg.other_model,
        "small_examples": cfg.small_examples,
        "other_clients": cfg.other_clients,
        "other_examples": cfg.other_examples,
        "test_examples": cfg.test_examples,
        "steps": cfg.steps,
        "prototype_weight": cfg.prototype_weight,
        "prototype_epsilon": cfg.prototype_epsilon,
    }

    result.update(transfer_baselines(cfg, data, cache_dir, progress))

    # prototypes: other-model clients (frozen encoders, mapped) and the small client's own
    z = sketch_noise_multiplier(epsilon=cfg.prototype_epsilon, delta=cfg.delta)
    ridge = maps.get(cfg.other_model, {}).get("ridge")
    if ridge is None:
        raise ValueError(f"the transfer needs a ridge map from {cfg.other_model!r}; fit it first")
    releases = []
    emb(cfg.other_model, [t for texts, _ in data["other_model"] for t in texts])
    emb(cfg.reference, data["small"][0])
    for k, (texts, labels) in enumerate(data["other_model"]):
        ledger = PrivacyLedger(f"other-{k}", delta=cfg.delta, budget=10.0)
        releases.append(
            (
                cfg.transfer_task,
                release_prototypes(
                    emb.lookup(cfg.other_model, texts),
                    torch.tensor(labels),
                    num_labels=n_labels,
                    to_network=ridge,
                    clip=1.0,
                    noise_multiplier=z,
                    ledger=ledger,
                    delta=cfg.delta,
                    noise=NoiseSource.seeded(cfg.seed * 100 + k),
                ),
            )
        )
    dim = int(emb.lookup(cfg.reference, data["small"][0][:1]).shape[1])
    identity = IdentityMap(source_dim=dim, target_dim=dim)
    own_ledger = PrivacyLedger("small", delta=cfg.delta, budget=10.0)
    releases.append(
        (
            cfg.transfer_task,
            release_prototypes(
                emb.lookup(cfg.reference, data["small"][0]),
                torch.tensor(data["small"][1]),
                num_labels=n_labels,
                to_network=identity,
                clip=1.0,
                noise_multiplier=z,
                ledger=own_ledger,
                delta=cfg.delta,
                noise=NoiseSource.seeded(cfg.seed * 100 + 99),
            ),
        )
    )
    protos = aggregate_prototypes(releases)[cfg.transfer_task]
    result["small_client_epsilon"] = own_ledger.epsilon
    t0 = time.perf_counter()
    proto_model = _classifier(cfg, cfg.reference, n_labels)
    align = PrototypeAlignment(protos, identity, weight=cfg.prototype_weight)
    _train(cfg, proto_model, data["small"], cfg.steps, seed=cfg.seed, align=align)
    result["with_prototypes"] = _accuracy(cfg, proto_model, data["test"])
    progress(
        f"  with prototypes from {cfg.other_model}: {result['with_prototypes']:.3f} "
        f"({time.perf_counter() - t0:.0f} s)"
    )

    result["gain_over_alone"] = result["with_prototypes"] - result["alone"]
    return result
