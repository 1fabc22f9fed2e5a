"""summary.json's privacy claims: private only when every released adapter was noised."""

from __future__ import annotations

import dataclasses

import pytest

from fednet.config import load_preset
from fednet.federation.recorder import privacy_summary
from fednet.privacy import NOT_VALID_NOTE, PrivacyConfig


@pytest.mark.parametrize(
    ("privacy", "private"),
    [
        ({}, False),
        ({"enabled": True}, False),  # sketch only
        ({"enabled": True, "update_mode": "local", "update_noise_multiplier": 1.0}, True),
        (
            {
                "enabled": True,
                "epsilon_budget": float("inf"),
                "update_mode": "local",
                "update_noise_multiplier": 0.0,
            },
            False,  # no noise: never reported as private
        ),
        ({"enabled": True, "update_mode": "central", "update_noise_multiplier": 1.0}, True),
        ({"enabled": True, "update_mode": "central", "update_noise_multiplier": 0.0}, False),
        (
            {
                "enabled": True,
                "dpsgd": True,
                "dpsgd_noise_multiplier": 0.0,
                "dpsgd_sample_rate": 0.1,
            },
            False,
        ),
        ({"enabled": True, "dpsgd": True, "dpsgd_epsilon": 4.0, "dpsgd_sample_rate": 0.1}, True),
    ],
)
def test_updates_private_is_truthful(privacy, private):
    cfg = dataclasses.replace(load_preset("configs/tiny.toml"), privacy=PrivacyConfig(**privacy))
    summary = privacy_summary(cfg)
    assert summary["updates_private"] is private
    assert summary["epsilon_note"] is None


def test_central_mode_records_its_accounting_rule_and_reproducible_noise_voids_epsilon():
    base = load_preset("configs/tiny.toml")
    cfg = dataclasses.replace(
        base,
        strategy=dataclasses.replace(base.strategy, fraction_train=0.5),
        privacy=PrivacyConfig(
            enabled=True,
            update_mode="central",
            update_noise_multiplier=1.0,
            reproducible_noise=True,
        ),
    )
    summary = privacy_summary(cfg)
    assert summary["accounting"] == {
        "rule": "poisson-every-round",
        "sample_rate": 0.5,
        "noise_multiplier": 1.0,
        "rounds": cfg.rounds,
    }
    assert summary["epsilon_note"] == NOT_VALID_NOTE
