"""PrivacyConfig validation."""

from __future__ import annotations

import dataclasses
import math

import pytest

from fednet.errors import ConfigError
from fednet.privacy import PrivacyConfig


def test_defaults_are_valid() -> None:
    cfg = PrivacyConfig()
    assert not cfg.enabled
    assert (cfg.epsilon_budget, cfg.delta, cfg.update_mode, cfg.accountant) == (
        8.0,
        1e-5,
        "none",
        "rdp",
    )


def test_infinite_budget_and_int_coercion() -> None:
    cfg = PrivacyConfig(epsilon_budget=math.inf, sketch_clip=2, update_noise_multiplier=1)
    assert cfg.epsilon_budget == math.inf
    assert isinstance(cfg.sketch_clip, float) and cfg.sketch_clip == 2.0
    assert isinstance(cfg.update_noise_multiplier, float)


def test_frozen() -> None:  # a pydantic dataclass, frozen as a stdlib one
    with pytest.raises(dataclasses.FrozenInstanceError):
        PrivacyConfig().delta = 0.1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value", "key"),
    [
        ("epsilon_budget", 0.0, "privacy.epsilon-budget"),
        ("epsilon_budget", -1.0, "privacy.epsilon-budget"),
        ("delta", 0.0, "privacy.delta"),
        ("delta", 1.0, "privacy.delta"),
        ("delta", 1.5, "privacy.delta"),
        ("sketch_epsilon", 0.0, "privacy.sketch-epsilon"),
        ("sketch_epsilon", math.inf, "privacy.sketch-epsilon"),
        ("dpsgd_epsilon", -2.0, "privacy.dpsgd-epsilon"),
        ("sketch_clip", 0.0, "privacy.sketch-clip"),
        ("update_clip", -1.0, "privacy.update-clip"),
        ("dpsgd_max_grad_norm", 0.0, "privacy.dpsgd-max-grad-norm"),
        ("update_noise_multiplier", -0.1, "privacy.update-noise-multiplier"),
        ("dpsgd_noise_multiplier", -1.0, "privacy.dpsgd-noise-multiplier"),
        ("update_mode", "global", "privacy.update-mode"),
        ("accountant", "moments", "privacy.accountant"),
    ],
)
def test_bad_value_names_key_and_value(field: str, value: object, key: str) -> None:
    with pytest.raises(ValueError) as info:
        PrivacyConfig(**{field: value})  # type: ignore[arg-type]
    message = str(info.value)
    assert key in message
    assert repr(value) in message


@pytest.mark.parametrize(
    ("field", "value", "key"),
    [
        ("epsilon_budget", "8", "privacy.epsilon-budget"),
        ("delta", True, "privacy.delta"),
        ("enabled", "yes", "privacy.enabled"),
        ("dpsgd", 1, "privacy.dpsgd"),
    ],
)
def test_wrong_type_names_key(field: str, value: object, key: str) -> None:
    with pytest.raises(ConfigError, match=f"`{key}` must be (a number|true or false), got "):
        PrivacyConfig(**{field: value})  # type: ignore[arg-type]


def test_dpsgd_needs_exactly_one_noise_source() -> None:
    with pytest.raises(ValueError, match="exactly one of `privacy.dpsgd-epsilon`"):
        PrivacyConfig(dpsgd=True)
    with pytest.raises(ValueError, match="exactly one"):
        PrivacyConfig(dpsgd=True, dpsgd_epsilon=2.0, dpsgd_noise_multiplier=1.0)
    assert PrivacyConfig(dpsgd=True, dpsgd_epsilon=2.0).dpsgd_epsilon == 2.0
    assert PrivacyConfig(dpsgd=True, dpsgd_noise_multiplier=0.8).dpsgd_noise_multiplier == 0.8


def test_enabled_cross_checks() -> None:
    with pytest.raises(ValueError, match="`privacy.dpsgd-epsilon` must not exceed"):
        PrivacyConfig(enabled=True, dpsgd=True, dpsgd_epsilon=9.0, epsilon_budget=8.0)
    with pytest.raises(ValueError, match="`privacy.update-noise-multiplier` must be > 0"):
        PrivacyConfig(enabled=True, update_mode="local")
    assert PrivacyConfig(enabled=True, update_mode="local", update_noise_multiplier=1.0)
    assert PrivacyConfig(enabled=True, update_mode="central")  # server may clip only


def test_reproducible_noise_and_state_dir_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    from fednet.config import parse_preset
    from fednet.errors import ConfigError

    preset = {
        "federation": {"state-dir": "/tmp/fednet-state"},
        "privacy": {"reproducible-noise": True},
        "clients": [{"id": "a", "dataset": "sms-spam"}],
    }
    cfg = parse_preset(preset)
    assert cfg.privacy.reproducible_noise is True and cfg.state_dir == "/tmp/fednet-state"
    with pytest.raises(ConfigError, match="reproducible-noise"):
        parse_preset({**preset, "privacy": {"reproducible-noise": "yes"}})
    with pytest.raises(ConfigError, match="state-dir"):
        parse_preset({**preset, "federation": {"state-dir": " "}})
    monkeypatch.setenv("FEDNET_STATE_DIR", "/srv/state")
    assert parse_preset({"clients": preset["clients"]}).state_dir == "/srv/state"
    assert PrivacyConfig().reproducible_noise is False
