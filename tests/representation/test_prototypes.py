"""DP class prototypes: clipped, noised, charged; aggregated per task and label; aligned."""

from __future__ import annotations

import math

import pytest
import torch

from fednet.errors import BudgetExhaustedError
from fednet.privacy.accountant import compute_epsilon
from fednet.privacy.ledger import PrivacyLedger
from fednet.privacy.randomness import NoiseSource
from fednet.privacy.sketch import sketch_noise_multiplier
from fednet.representation import IdentityMap, create_map
from fednet.representation.prototypes import (
    PROTOTYPE_KEYS,
    PrototypeAlignment,
    PrototypeRelease,
    aggregate_prototypes,
    release_prototypes,
)

from .conftest import paired

ID4 = IdentityMap(source_dim=4, target_dim=4)


def test_release_is_charged_to_the_ledger_before_it_leaves():
    z = sketch_noise_multiplier(epsilon=1.0, delta=1e-5)
    ledger = PrivacyLedger("c", delta=1e-5, budget=1.1)
    x, labels = torch.randn(50, 4), torch.arange(50) % 2
    release = release_prototypes(
        x,
        labels,
        num_labels=2,
        to_network=ID4,
        clip=1.0,
        noise_multiplier=z,
        ledger=ledger,
        noise=NoiseSource.seeded(0),
    )
    assert [r.kind for r in ledger.releases] == ["prototype"]
    assert ledger.epsilon == pytest.approx(compute_epsilon([(z, 1.0, 1)], delta=1e-5))
    assert release.epsilon == pytest.approx(ledger.epsilon) and release.epsilon <= 1.0
    with pytest.raises(BudgetExhaustedError):  # a second release would pass 1.1
        release_prototypes(
            x, labels, num_labels=2, to_network=ID4, clip=1.0, noise_multiplier=z, ledger=ledger
        )
    assert len(ledger.releases) == 1
    with pytest.raises(BudgetExhaustedError):  # exact prototypes are never within a budget
        release_prototypes(
            x,
            labels,
            num_labels=2,
            to_network=ID4,
            clip=1.0,
            noise_multiplier=0.0,
            ledger=PrivacyLedger("d", delta=1e-5, budget=10.0),
        )


def test_sums_are_clipped_and_noised_at_the_sketch_scale():
    z, clip = 2.0, 0.5
    x, labels = torch.randn(40, 2000) * 10, torch.zeros(40, dtype=torch.long)
    release = release_prototypes(
        x,
        labels,
        num_labels=1,
        to_network=IdentityMap(source_dim=2000, target_dim=2000),
        clip=clip,
        noise_multiplier=z,
        ledger=None,
        noise=NoiseSource.seeded(1),
    )
    exact = release_prototypes(
        x,
        labels,
        num_labels=1,
        to_network=IdentityMap(source_dim=2000, target_dim=2000),
        clip=clip,
        noise_multiplier=0.0,
        ledger=None,
    )
    # each example clipped to `clip` after normalising: the exact sum is at most 40 * clip
    assert float(exact.sums.norm()) <= 40 * clip + 1e-4
    assert math.isinf(exact.epsilon)
    noise_std = float((release.sums - exact.sums).std())
    assert noise_std == pytest.approx(math.sqrt(2) * z * clip, rel=0.1)


def test_mapped_into_the_network_space():
    x, y = paired(300, 24, 16, seed=2)
    m = create_map("procrustes", source_dim=24, target_dim=16).fit(x, y)
    labels = torch.zeros(300, dtype=torch.long)
    release = release_prototypes(
        x, labels, num_labels=1, to_network=m, clip=1.0, noise_multiplier=0.0, ledger=None
    )
    target = torch.nn.functional.normalize(y, dim=1).sum(0)
    assert release.sums.shape == (1, 16)
    assert torch.nn.functional.cosine_similarity(release.sums[0], target, dim=0) > 0.99


def test_server_aggregates_per_task_and_label():
    def rel(sums, counts):
        return PrototypeRelease(
            sums=torch.tensor(sums),
            counts=torch.tensor(counts),
            clip=1.0,
            noise_multiplier=0.0,
            epsilon=math.inf,
            delta=1e-5,
        )

    out = aggregate_prototypes(
        [
            ("a", rel([[2.0, 0.0], [0.0, 0.0]], [2.0, 0.0])),
            ("a", rel([[0.0, 2.0], [0.0, 3.0]], [2.0, 0.4])),
            ("b", rel([[0.0, -1.0]], [1.0])),
        ]
    )
    assert sorted(out) == ["a", "b"]
    s = 2**-0.5
    assert torch.allclose(out["a"].prototypes[0], torch.tensor([s, s]))  # (2,2)/4, normalised
    assert out["a"].usable.tolist() == [True, False]  # label 1: 0.4 examples, no signal
    assert torch.allclose(out["b"].prototypes[0], torch.tensor([0.0, -1.0]))
    with pytest.raises(ValueError, match="disagree on shape"):
        aggregate_prototypes([("a", rel([[1.0, 0.0]], [1.0])), ("a", rel([[1.0]], [1.0]))])


def test_wire_tensors_round_trip_and_refuse_other_keys():
    release = release_prototypes(
        torch.randn(10, 4),
        torch.arange(10) % 2,
        num_labels=2,
        to_network=ID4,
        clip=1.0,
        noise_multiplier=1.0,
        ledger=None,
        noise=NoiseSource.seeded(3),
    )
    tensors = release.to_tensors()
    assert tuple(sorted(tensors)) == tuple(sorted(PROTOTYPE_KEYS))
    again = PrototypeRelease.from_tensors(tensors)
    assert torch.equal(again.sums, release.sums) and again.epsilon == release.epsilon
    with pytest.raises(ValueError, match=r"unknown \['proto.embeddings'\]"):
        PrototypeRelease.from_tensors({**tensors, "proto.embeddings": torch.zeros(1)})


def test_alignment_pulls_embeddings_towards_their_prototypes():
    protos = aggregate_prototypes(
        [
            (
                "t",
                PrototypeRelease(
                    sums=torch.eye(4)[:2] * 5,
                    counts=torch.tensor([5.0, 5.0]),
                    clip=1.0,
                    noise_multiplier=0.0,
                    epsilon=math.inf,
                    delta=1e-5,
                ),
            )
        ]
    )["t"]
    align = PrototypeAlignment(protos, ID4, weight=2.0)
    labels = torch.tensor([0, 1])
    assert float(align(torch.eye(4)[:2] * 3, labels)) == pytest.approx(0.0, abs=1e-6)
    emb = torch.randn(2, 4, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    opt = torch.optim.SGD([emb], lr=0.5)
    before = float(align(emb, labels).detach())
    for _ in range(300):
        opt.zero_grad()
        align(emb, labels).backward()
        opt.step()
    assert float(align(emb, labels)) < 0.1 * before
    assert float(PrototypeAlignment(protos, ID4, weight=0.0)(emb, labels)) == 0.0


def _clusters(n_per: int, *, seed: int):
    """Three labelled clusters around a shared offset (an anisotropic space)."""
    gen = torch.Generator().manual_seed(seed)
    centres = torch.nn.functional.normalize(torch.randn(3, 8, generator=gen), dim=1)
    shared = 3.0 * torch.nn.functional.normalize(torch.randn(8, generator=gen), dim=0)
    labels = torch.arange(3).repeat_interleave(n_per)
    x = shared + centres[labels] + 0.15 * torch.randn(len(labels), 8, generator=gen)
    return 5.0 * x, labels  # unnormalised pooled embeddings


def test_prototype_head_classifies_by_the_nearest_centred_prototype():
    from fednet.representation.prototypes import prototype_head

    x, labels = _clusters(40, seed=0)
    release = release_prototypes(
        x,
        labels,
        num_labels=3,
        to_network=IdentityMap(source_dim=8, target_dim=8),
        clip=1.0,
        noise_multiplier=0.0,
        ledger=None,
    )
    protos = aggregate_prototypes([("t", release)])["t"]
    head = prototype_head(protos, x)
    logits = x @ head["head.weight"].T + head["head.bias"]
    assert float((logits.argmax(1) == labels).float().mean()) > 0.95
    # the cosine rule itself: the argmax ignores each embedding's norm
    rule = (
        torch.nn.functional.normalize(x, dim=1) @ (protos.prototypes - protos.prototypes.mean(0)).T
    )
    assert torch.equal(logits.argmax(1), rule.argmax(1))
    # initial logits have unit spread over the client's own embeddings
    assert (
        abs(
            float(
                (
                    torch.nn.functional.normalize(x, dim=1)
                    @ head["head.weight"].T
                    * x.norm(dim=1).mean()
                ).std()
            )
            - 1.0
        )
        < 1e-4
    )


def test_prototype_head_gives_unusable_labels_zero_rows_and_checks_shapes():
    from fednet.representation.prototypes import GlobalPrototypes, prototype_head

    x, _ = _clusters(5, seed=1)
    protos = GlobalPrototypes(
        prototypes=torch.nn.functional.normalize(torch.randn(3, 8), dim=1),
        counts=torch.tensor([5.0, 0.0, 5.0]),
        usable=torch.tensor([True, False, True]),
    )
    head = prototype_head(protos, x)
    assert torch.equal(head["head.weight"][1], torch.zeros(8))
    assert head["head.weight"].shape == (3, 8) and head["head.bias"].shape == (3,)
    with pytest.raises(ValueError, match=r"\[n, 8\]"):
        prototype_head(protos, torch.randn(4, 5))
    with pytest.raises(ValueError, match="2 labels"):
        prototype_head(
            GlobalPrototypes(protos.prototypes, protos.counts, torch.tensor([True, False, False])),
            x,
        )


def test_own_prototypes_are_the_exact_normalised_class_means():
    from fednet.representation.prototypes import own_prototypes

    x = torch.tensor([[3.0, 0.0], [0.0, 2.0], [1.0, 1.0], [0.0, 5.0]])
    y = torch.tensor([0, 1, 0, 1])
    own = own_prototypes(x, y, num_labels=3)
    unit = torch.nn.functional.normalize(x, dim=1)
    expected = torch.nn.functional.normalize(
        torch.stack([unit[[0, 2]].mean(0), unit[[1, 3]].mean(0)]), dim=1
    )
    assert torch.allclose(own.prototypes[:2], expected)
    assert own.counts.tolist() == [2.0, 2.0, 0.0]
    assert own.usable.tolist() == [True, True, False]
    assert torch.equal(own.prototypes[2], torch.zeros(2))
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\)"):
        own_prototypes(x, torch.tensor([0, 1, 3, 1]), num_labels=3)
    with pytest.raises(ValueError, match="embeddings must be"):
        own_prototypes(x, y[:3], num_labels=3)
