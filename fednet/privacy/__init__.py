"""Differential privacy for fednet: clipping, Gaussian noise, accounting, sketches, DP-SGD.

Every release a client makes (DP-SGD training, a capability sketch, a noised
update) is a Gaussian mechanism described by ``(noise_multiplier, sample_rate,
steps)`` and charged to the client's :class:`PrivacyLedger`, which composes
them with one RDP accountant and refuses a release past the ε budget.

Every noise sample and every DP sampling decision comes from OS entropy
(:mod:`fednet.privacy.randomness`): never from a generator seeded from the
preset, which would let anyone holding the preset regenerate the noise.
"""

from __future__ import annotations

import importlib
from typing import Any

# Names load on first use, so importing the package (e.g. for PrivacyConfig)
# does not pull in opacus and torch.
_EXPORTS: dict[str, str] = {
    "GRAD_SAMPLE_MODES": "dpsgd",
    "NOT_VALID_NOTE": "randomness",
    "NoiseSource": "randomness",
    "PoissonBatchSampler": "randomness",
    "derive_seed": "randomness",
    "secure_source": "randomness",
    "noise_source": "randomness",
    "PrivacyConfig": "config",
    "PrivacyLedger": "ledger",
    "PrivateTraining": "dpsgd",
    "RDP_ORDERS": "accountant",
    "RELEASE_KINDS": "ledger",
    "Release": "ledger",
    "SKETCH_KEYS": "sketch",
    "Sketch": "sketch",
    "UPDATE_MODES": "config",
    "accountant_epsilon": "accountant",
    "available_accountants": "accountant",
    "build_sketch": "sketch",
    "calibrate_noise_multiplier": "mechanisms",
    "central_noise_std": "update_dp",
    "clip_by_norm": "mechanisms",
    "clip_tree": "mechanisms",
    "clip_update": "update_dp",
    "compute_epsilon": "accountant",
    "create_accountant": "accountant",
    "gaussian_noise_like": "mechanisms",
    "gaussian_sigma": "mechanisms",
    "local_noise_std": "update_dp",
    "make_private": "dpsgd",
    "noise_update": "update_dp",
    "noisy_sums_and_counts": "sketch",
    "privatize_update": "update_dp",
    "register_accountant": "accountant",
    "reset_ledgers": "ledger",
    "time_epsilon_query": "ledger",
    "sketch_noise_multiplier": "sketch",
    "tree_norm": "mechanisms",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fednet.privacy' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"fednet.privacy.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
