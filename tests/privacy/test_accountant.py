"""Accountant registry and ε of release histories, pinned against opacus."""

from __future__ import annotations

import math

import pytest
from opacus.accountants import RDPAccountant
from opacus.accountants.utils import get_noise_multiplier

from fednet.privacy import (
    PrivacyLedger,
    available_accountants,
    calibrate_noise_multiplier,
    compute_epsilon,
    create_accountant,
    register_accountant,
)
from fednet.privacy import accountant as accountant_module
from fednet.privacy.accountant import validate_release

DELTA = 1e-5
# Computed once with opacus 1.6 RDPAccountant: sigma=1.1, q=0.01, 1000 steps, delta=1e-5.
PINNED_EPS = 1.7117700912203435
# Same for the mixed history MIXED below.
PINNED_MIXED_EPS = 2.2214616413581045
MIXED = [
    (1.1, 0.01, 500, "dpsgd"),
    (5.0, 1.0, 1, "sketch"),
    (2.0, 0.1, 20, "update"),
    (1.1, 0.01, 500, "dpsgd"),
]


def test_pinned_epsilon_matches_opacus_and_ledger() -> None:
    opacus_acc = RDPAccountant()
    for _ in range(1000):
        opacus_acc.step(noise_multiplier=1.1, sample_rate=0.01)
    opacus_eps = opacus_acc.get_epsilon(delta=DELTA)
    assert opacus_eps == pytest.approx(PINNED_EPS, rel=1e-6)

    ledger = PrivacyLedger("client-0", delta=DELTA, budget=10.0)
    ledger.record(noise_multiplier=1.1, sample_rate=0.01, steps=1000, kind="dpsgd")
    assert ledger.epsilon == pytest.approx(opacus_eps, rel=1e-12)
    assert compute_epsilon([(1.1, 0.01, 1000)], delta=DELTA) == pytest.approx(PINNED_EPS, rel=1e-6)


def test_mixed_composition_equals_opacus_with_same_history() -> None:
    ledger = PrivacyLedger("client-0", delta=DELTA)
    previous = 0.0
    for z, q, steps, kind in MIXED:
        eps = ledger.record(noise_multiplier=z, sample_rate=q, steps=steps, kind=kind)
        assert eps > previous  # every release costs something
        previous = eps
    opacus_acc = RDPAccountant()
    opacus_acc.history = [(z, q, s) for z, q, s, _ in MIXED]
    assert ledger.epsilon == pytest.approx(opacus_acc.get_epsilon(delta=DELTA), rel=1e-12)
    assert ledger.epsilon == pytest.approx(PINNED_MIXED_EPS, rel=1e-6)
    assert [r.kind for r in ledger.releases] == [k for *_, k in MIXED]
    # composition is at least as costly as the costliest part, and cheaper than the sum
    parts = [compute_epsilon([(z, q, s)], delta=DELTA) for z, q, s, _ in MIXED]
    assert max(parts) < ledger.epsilon < sum(parts)


def test_edge_histories() -> None:
    assert compute_epsilon([], delta=DELTA) == 0.0
    assert compute_epsilon([(1.0, 0.1, 10), (0.0, 1.0, 1)], delta=DELTA) == math.inf


@pytest.mark.filterwarnings("ignore:Optimal order is the:UserWarning")
def test_extended_orders_reach_small_single_release_epsilon() -> None:
    # With opacus's default orders (up to 63) a single release cannot reach
    # epsilon 0.1 at delta 1e-5; the registered "rdp" searches larger orders.
    with pytest.raises(ValueError, match="too low"):
        get_noise_multiplier(target_epsilon=0.1, target_delta=DELTA, sample_rate=1.0, steps=1)
    z = calibrate_noise_multiplier(epsilon=0.1, delta=DELTA)
    assert 0.1 - 1e-4 <= compute_epsilon([(z, 1.0, 1)], delta=DELTA) <= 0.1
    opacus_acc = RDPAccountant()
    opacus_acc.history = [(z, 1.0, 1)]
    with pytest.warns(UserWarning, match="largest alpha"):
        assert opacus_acc.get_epsilon(delta=DELTA) > 0.1


def test_unknown_accountant_lists_valid_names() -> None:
    with pytest.raises(ValueError, match=r"unknown accountant 'nope'.*rdp"):
        create_accountant("nope")


def test_register_accountant(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(accountant_module, "ACCOUNTANTS", accountant_module.ACCOUNTANTS.copy())
    with pytest.raises(ValueError, match="already registered"):
        register_accountant("rdp", RDPAccountant)
    with pytest.raises(TypeError, match="callable"):
        register_accountant("bad", 3)  # type: ignore[arg-type]
    register_accountant("plain-rdp", RDPAccountant)
    assert "plain-rdp" in available_accountants()
    assert isinstance(create_accountant("plain-rdp"), RDPAccountant)
    ledger = PrivacyLedger("c", delta=DELTA, accountant="plain-rdp")
    ledger.record(noise_multiplier=1.1, sample_rate=0.01, steps=1000, kind="dpsgd")
    assert ledger.epsilon == pytest.approx(PINNED_EPS, rel=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            {"noise_multiplier": -0.1, "sample_rate": 0.1, "steps": 1},
            ValueError,
            "noise_multiplier",
        ),
        ({"noise_multiplier": 1.0, "sample_rate": 0.0, "steps": 1}, ValueError, "sample_rate"),
        ({"noise_multiplier": 1.0, "sample_rate": 1.5, "steps": 1}, ValueError, "sample_rate"),
        ({"noise_multiplier": 1.0, "sample_rate": 0.1, "steps": 0}, ValueError, "steps"),
        ({"noise_multiplier": 1.0, "sample_rate": 0.1, "steps": 1.5}, TypeError, "steps"),
        ({"noise_multiplier": "1", "sample_rate": 0.1, "steps": 1}, TypeError, "noise_multiplier"),
    ],
)
def test_validate_release_names_bad_argument(
    kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        validate_release(**kwargs)  # type: ignore[arg-type]
