"""Differential privacy for fednet: clipping, Gaussian noise, accounting, sketches, DP-SGD.

Every release a client makes (DP-SGD training, a capability sketch, a noised
update) is a Gaussian mechanism described by ``(noise_multiplier, sample_rate,
steps)`` and charged to the client's :class:`PrivacyLedger`, which composes
them with one RDP accountant and refuses a release past the ε budget.
"""

from fednet.privacy.accountant import (
    RDP_ORDERS,
    accountant_epsilon,
    available_accountants,
    compute_epsilon,
    create_accountant,
    register_accountant,
)
from fednet.privacy.config import UPDATE_MODES, PrivacyConfig
from fednet.privacy.dpsgd import GRAD_SAMPLE_MODES, PrivateTraining, make_private
from fednet.privacy.ledger import RELEASE_KINDS, PrivacyLedger, Release
from fednet.privacy.mechanisms import (
    calibrate_noise_multiplier,
    clip_by_norm,
    clip_tree,
    gaussian_noise_like,
    gaussian_sigma,
    tree_norm,
)
from fednet.privacy.sketch import (
    SKETCH_KEYS,
    Sketch,
    build_sketch,
    noisy_sums_and_counts,
    sketch_noise_multiplier,
)
from fednet.privacy.update_dp import (
    central_noise_std,
    clip_update,
    local_noise_std,
    noise_update,
    privatize_update,
)

__all__ = [
    "GRAD_SAMPLE_MODES",
    "RDP_ORDERS",
    "RELEASE_KINDS",
    "SKETCH_KEYS",
    "UPDATE_MODES",
    "PrivacyConfig",
    "PrivacyLedger",
    "PrivateTraining",
    "Release",
    "Sketch",
    "accountant_epsilon",
    "available_accountants",
    "build_sketch",
    "calibrate_noise_multiplier",
    "central_noise_std",
    "clip_by_norm",
    "clip_tree",
    "clip_update",
    "compute_epsilon",
    "create_accountant",
    "gaussian_noise_like",
    "gaussian_sigma",
    "local_noise_std",
    "make_private",
    "noise_update",
    "noisy_sums_and_counts",
    "privatize_update",
    "register_accountant",
    "sketch_noise_multiplier",
    "tree_norm",
]
