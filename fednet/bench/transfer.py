"""Knowledge transfer to a small client: alone, with cross-model prototypes, federated.

Part 3 of ``fednet bench-representation`` (see :mod:`fednet.bench.representation`).
A small client (``small_examples`` examples of ``transfer_task``) on the network
space's model trains LoRA and a head for ``steps`` steps:

- alone, two ways: with a random head and plain cross-entropy; and with
  FedProto's recipe on its own data only (its head starts as the nearest rule
  of its own exact class prototypes, :func:`~fednet.representation.prototypes.own_prototypes`,
  and its loss adds the alignment term to them), what a client alone would do;
- the ablation: the same recipe on the client's own DP prototype release alone,
  the very release the prototype arm aggregates with the peers'. It differs from
  the prototype arm only in lacking the peers' prototypes;
- with DP prototypes released by ``other_clients`` peers of the same task on
  ``other_model`` (``other_examples`` each; frozen-encoder embeddings mapped by
  the map chosen on held-out public text, one exchange) and by itself: its head
  starts as FedProto's nearest-prototype rule
  (:func:`~fednet.representation.prototypes.prototype_head`) and its loss adds
  FedProto's alignment term (Tan et al., AAAI 2022);
- in a one-model federation: FedAvg of LoRA and heads over ``rounds`` rounds with
  the same peers' data on its own model (the same total steps).

Every arm gets the same selection: the small client holds out
``validation_fraction`` of its examples, trains on the rest with each of
``learning_rates``, and keeps the model with the best accuracy on its held-out
share. The test texts are read once per arm, by the kept model. The gain over
each alone arm comes with a 95% paired bootstrap interval over the test texts;
the target is judged against the better of the two on the test texts, the
harder comparison for the prototype arm.
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
    peers = []
    for _ in range(cfg.other_clients):  # disjoint shares of the same task
        peers.append(take(at, cfg.other_examples))
        at += cfg.other_examples
    if at > len(order):
        raise ValueError(
            f"data set {cfg.transfer_task} has {len(order)} examples, the transfer needs {at}"
        )
    return {
        "small": small,
        "test": test,
        # the same peers' data on the other model (prototypes) and on the small
        # client's own model (one-model federation): like is compared with like
        "other_model": peers,
        "own_model": peers,
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
    learning_rate: float,
    align: Any = None,
) -> float:
    from fednet.models.registry import load_tokenizer
    from fednet.training import batches, train_steps

    tokenizer = load_tokenizer(cfg.reference)
    stream = batches(
        data[0], data[1], tokenizer, batch_size=cfg.batch_size, max_length=cfg.max_length, seed=seed
    )
    return train_steps(model, stream, steps=steps, learning_rate=learning_rate, align=align)


def _correct(
    cfg: RepresentationBenchConfig, model: Any, data: tuple[list[str], list[int]]
) -> list[bool]:
    from fednet.models.registry import load_tokenizer
    from fednet.training import predict

    tokenizer = load_tokenizer(cfg.reference)
    pred = predict(model, data[0], tokenizer, max_length=cfg.max_length)
    return [p == y for p, y in zip(pred, data[1], strict=True)]


def split_validation(
    cfg: RepresentationBenchConfig, data: tuple[list[str], list[int]]
) -> tuple[tuple[list[str], list[int]], tuple[list[str], list[int]]]:
    """The small client's own ``(train, validation)`` split (the last share validates)."""
    n_val = max(1, round(len(data[0]) * cfg.validation_fraction))
    if n_val >= len(data[0]):
        raise ValueError(f"{len(data[0])} examples leave none to train on after validation")
    cut = len(data[0]) - n_val
    return (data[0][:cut], data[1][:cut]), (data[0][cut:], data[1][cut:])


def select_and_test(
    cfg: RepresentationBenchConfig,
    build: Any,
    validation: tuple[list[str], list[int]],
    test: tuple[list[str], list[int]],
    progress: Progress,
    label: str,
) -> dict[str, Any]:
    """Train ``build(lr)`` for each learning rate; test the best on ``validation``.

    ``build(lr)`` returns a trained model; the selection reads the small client's
    own validation share only, ties going to the first learning rate.
    """
    best: tuple[float, float, Any] | None = None
    tried = {}
    for lr in cfg.learning_rates:
        t0 = time.perf_counter()
        model = build(lr)
        val = sum(_correct(cfg, model, validation)) / len(validation[0])
        tried[str(lr)] = val
        progress(f"  {label}, lr {lr:g}: validation {val:.3f} ({time.perf_counter() - t0:.0f} s)")
        if best is None or val > best[0]:
            best = (val, lr, model)
    assert best is not None
    correct = _correct(cfg, best[2], test)
    return {
        "accuracy": sum(correct) / len(correct),
        "correct": correct,
        "learning_rate": best[1],
        "validation": tried,
    }


def _fedavg(models: list[Any], weights: torch.Tensor) -> None:
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


def linear_probe(
    x: torch.Tensor, y: torch.Tensor, *, num_labels: int, weight_decay: float = 1e-4
) -> torch.nn.Linear:
    """Multinomial logistic regression on frozen embeddings ``x`` ``[n, d]`` (L-BFGS, seeded)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        probe = torch.nn.Linear(x.shape[1], num_labels)
    opt = torch.optim.LBFGS(probe.parameters(), max_iter=200)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(probe(x), y)
        loss = loss + weight_decay * (probe.weight**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return probe


def _ceilings(
    cfg: RepresentationBenchConfig,
    emb: EmbeddingCache,
    data: dict[str, Any],
    train: tuple[list[str], list[int]],
    protos: Any,
    to_network: Any,
) -> dict[str, float]:
    """What the frozen network space can carry to the small client (diagnostics).

    Test accuracy of the nearest-prototype rule with the released global
    prototypes (no training), and of linear probes on frozen, L2-normalised
    network-space embeddings: the small client's own training share; the peers'
    examples mapped from their model; the peers' examples embedded by the small
    client's own model (no map). The probes on peer data are non-private upper
    bounds on what one linear head could carry across, not part of the system.
    """
    from fednet.representation.prototypes import prototype_head

    n_labels = data["num_labels"]
    test = emb(cfg.reference, data["test"][0])
    y_test = torch.tensor(data["test"][1])
    own = emb(cfg.reference, train[0])
    peers_y = torch.tensor([label for _, labels in data["other_model"] for label in labels])
    peer_texts = [t for texts, _ in data["other_model"] for t in texts]
    mapped = torch.nn.functional.normalize(
        to_network(emb.lookup(cfg.other_model, peer_texts)), dim=1
    )
    native = emb(cfg.reference, peer_texts)

    def accuracy(logits: torch.Tensor) -> float:
        return float((logits.argmax(1) == y_test).float().mean())

    head = prototype_head(protos, own)
    with torch.no_grad():
        return {
            "nearest_prototype": accuracy(test @ head["head.weight"].T),
            "probe_own": accuracy(
                linear_probe(own, torch.tensor(train[1]), num_labels=n_labels)(test)
            ),
            "probe_peers_mapped": accuracy(
                linear_probe(mapped, peers_y, num_labels=n_labels)(test)
            ),
            "probe_peers_native": accuracy(
                linear_probe(native, peers_y, num_labels=n_labels)(test)
            ),
        }


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
    key = corpus_digest(["selected-by-validation", json.dumps(settings, sort_keys=True)])[:20]
    path = cache_dir / f"transfer-baselines-{key}.json"
    if path.exists():
        progress(f"  baselines from {path}")
        return dict(json.loads(path.read_text()))
    n_labels = data["num_labels"]
    train, validation = split_validation(cfg, data["small"])
    result: dict[str, Any] = {}

    def alone(lr: float) -> Any:
        model = _classifier(cfg, cfg.reference, n_labels)
        _train(cfg, model, train, cfg.steps, seed=cfg.seed, learning_rate=lr)
        return model

    picked = select_and_test(cfg, alone, validation, data["test"], progress, "alone")
    result["alone"] = picked["accuracy"]
    result["alone_detail"] = picked
    progress(f"  alone: {result['alone']:.3f} (lr {picked['learning_rate']:g})")

    # one-model federation: FedAvg of LoRA and heads with the same peers on its model
    members = [train, *data["own_model"]]
    weights = torch.tensor([len(m[0]) for m in members], dtype=torch.float64)
    weights = weights / weights.sum()
    per_round = max(1, cfg.steps // cfg.rounds)

    def federation(lr: float) -> Any:
        models = [_classifier(cfg, cfg.reference, n_labels) for _ in members]
        for r in range(cfg.rounds):
            for i, (model, share) in enumerate(zip(models, members, strict=True)):
                _train(cfg, model, share, per_round, seed=cfg.seed + 31 * r + i, learning_rate=lr)
            _fedavg(models, weights)
        return models[0]

    picked = select_and_test(cfg, federation, validation, data["test"], progress, "federation")
    result["one_model_federation"] = picked["accuracy"]
    result["one_model_federation_detail"] = picked
    result["federation_rounds"] = cfg.rounds
    progress(f"  one-model federation: {result['one_model_federation']:.3f}")
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
    from fednet.bench.representation_setup import paired_difference_interval, wilson_interval
    from fednet.models.registry import load_tokenizer
    from fednet.privacy.ledger import PrivacyLedger
    from fednet.privacy.randomness import NoiseSource
    from fednet.privacy.sketch import sketch_noise_multiplier
    from fednet.representation.maps import IdentityMap
    from fednet.representation.prototypes import (
        PrototypeAlignment,
        aggregate_prototypes,
        own_prototypes,
        prototype_head,
        release_prototypes,
    )
    from fednet.training import embed_texts

    data = transfer_data(cfg)
    n_labels = data["num_labels"]
    train, validation = split_validation(cfg, data["small"])
    to_network = maps.get(cfg.other_model, {}).get("selected")
    if to_network is None:
        raise ValueError(f"the transfer needs a map from {cfg.other_model!r}; fit it first")
    result: dict[str, Any] = {
        "task": cfg.transfer_task,
        "small_model": cfg.reference,
        "other_model": cfg.other_model,
        "map": to_network.method,
        "small_examples": cfg.small_examples,
        "small_train": len(train[0]),
        "small_validation": len(validation[0]),
        "other_clients": cfg.other_clients,
        "other_examples": cfg.other_examples,
        "test_examples": cfg.test_examples,
        "steps": cfg.steps,
        "learning_rates": list(cfg.learning_rates),
        "prototype_weight": cfg.prototype_weight,
        "prototype_epsilon": cfg.prototype_epsilon,
    }

    result.update(transfer_baselines(cfg, data, cache_dir, progress))

    # prototypes: the peers' (frozen encoders, mapped) and the small client's own
    # (its training share only: its validation share stays out of what it learns from)
    z = sketch_noise_multiplier(epsilon=cfg.prototype_epsilon, delta=cfg.delta)
    releases = []
    emb(cfg.other_model, [t for texts, _ in data["other_model"] for t in texts])
    emb(cfg.reference, train[0])
    for k, (texts, labels) in enumerate(data["other_model"]):
        ledger = PrivacyLedger(f"other-{k}", delta=cfg.delta, budget=10.0)
        releases.append(
            (
                cfg.transfer_task,
                release_prototypes(
                    emb.lookup(cfg.other_model, texts),
                    torch.tensor(labels),
                    num_labels=n_labels,
                    to_network=to_network,
                    clip=1.0,
                    noise_multiplier=z,
                    ledger=ledger,
                    delta=cfg.delta,
                    noise=NoiseSource.seeded(cfg.seed * 100 + k),
                ),
            )
        )
    dim = int(emb.lookup(cfg.reference, train[0][:1]).shape[1])
    identity = IdentityMap(source_dim=dim, target_dim=dim)
    own_ledger = PrivacyLedger("small", delta=cfg.delta, budget=10.0)
    releases.append(
        (
            cfg.transfer_task,
            release_prototypes(
                emb.lookup(cfg.reference, train[0]),
                torch.tensor(train[1]),
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
    result["peer_epsilon"] = cfg.prototype_epsilon
    tokenizer = load_tokenizer(cfg.reference)

    def fedproto(prototypes: Any) -> Any:
        """FedProto's recipe on ``prototypes``: their nearest rule as the head, their pull."""

        def build(lr: float) -> Any:
            model = _classifier(cfg, cfg.reference, n_labels)
            own = embed_texts(
                model.encode, train[0], tokenizer, max_length=cfg.max_length, normalize=False
            )
            model.load_head_state(prototype_head(prototypes, own))
            align = PrototypeAlignment(prototypes, identity, weight=cfg.prototype_weight)
            _train(cfg, model, train, cfg.steps, seed=cfg.seed, learning_rate=lr, align=align)
            return model

        return build

    own_exact = own_prototypes(
        emb.lookup(cfg.reference, train[0]), torch.tensor(train[1]), num_labels=n_labels
    )
    own_released = aggregate_prototypes([releases[-1]])[cfg.transfer_task]
    for arm, prototypes, label in (
        ("alone_prototypes", own_exact, "alone, own prototypes"),
        ("own_release_only", own_released, "own DP release only"),
        ("with_prototypes", protos, f"with prototypes from {cfg.other_model}"),
    ):
        t0 = time.perf_counter()
        picked = select_and_test(
            cfg, fedproto(prototypes), validation, data["test"], progress, label
        )
        result[arm] = picked["accuracy"]
        result[f"{arm}_detail"] = picked
        progress(f"  {label}: {result[arm]:.3f} ({time.perf_counter() - t0:.0f} s)")
    result["diagnostics"] = _ceilings(cfg, emb, data, train, protos, to_network)
    progress(f"  diagnostics: {result['diagnostics']}")
    arms = ("alone", "alone_prototypes", "own_release_only", "with_prototypes")
    for arm in (*arms, "one_model_federation"):
        hits = result[f"{arm}_detail"]["correct"]
        result[f"{arm}_ci95"] = list(wilson_interval(sum(hits), len(hits)))
    for arm, key in (
        ("alone", "gain_over_alone"),
        ("alone_prototypes", "gain_over_own"),
        ("own_release_only", "gain_from_peers"),
    ):
        result[key] = result["with_prototypes"] - result[arm]
        result[f"{key}_ci95"] = list(
            paired_difference_interval(
                result["with_prototypes_detail"]["correct"],
                result[f"{arm}_detail"]["correct"],
                seed=cfg.seed,
            )
        )
    # the target's comparison: the stronger alone arm on the test texts
    strongest = max(("alone", "alone_prototypes"), key=lambda arm: result[arm])
    result["target_baseline"] = strongest
    result["gain"] = result["with_prototypes"] - result[strongest]
    key = "gain_over_alone" if strongest == "alone" else "gain_over_own"
    result["gain_ci95"] = result[f"{key}_ci95"]
    return result
