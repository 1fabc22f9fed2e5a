"""User-level DP for model updates (DP-FedAvg).

Implementation based on McMahan et al., "Learning Differentially Private
Recurrent Language Models" (https://arxiv.org/abs/1710.06963).

Each client's whole update ``delta`` (new weights minus the weights it received)
is clipped to L2 norm ``C``, so one user changes a sum of updates by at most
``C``. Two placements of the noise:

* **central**: the server averages ``n`` clipped updates and adds noise of std
  ``z * C / n`` to the average (:func:`central_noise_std`), as Flower's
  ``DifferentialPrivacyServerSideFixedClipping`` does with ``compute_stdv``.
  The average has sensitivity ``C / n``, so this is the Gaussian mechanism with
  multiplier ``z``; the server accounts it per round as
  ``(z, sample_rate=n / N, steps=1)`` for ``N`` clients in the population.
* **local**: each client adds noise of std ``2 * z * C`` to its own clipped
  update (:func:`local_noise_std`, :func:`privatize_update`) and charges its own
  ledger ``(z, sample_rate=1, steps=1)`` per round. The release is the client's
  own update, always sent: one example more or less in its data can turn the
  whole update around, so two neighbouring data sets give clipped updates up
  to ``2 * C`` apart (not ``C``: no sum over other users dilutes one example
  here). Noise ``2 * z * C`` makes that the Gaussian mechanism with multiplier
  ``z``, which is what the charge says.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import torch

from fednet.privacy._checks import check_float_tensor, check_non_negative, check_positive
from fednet.privacy.mechanisms import clip_tree, gaussian_noise_like
from fednet.privacy.randomness import NoiseSource

__all__ = [
    "clip_update",
    "noise_update",
    "central_noise_std",
    "local_noise_std",
    "privatize_update",
]

logger = logging.getLogger(__name__)


def clip_update(delta: Mapping[str, torch.Tensor], *, max_norm: float) -> dict[str, torch.Tensor]:
    """Clip a whole update, all tensors flattened together, to L2 norm ``max_norm``.

    Returns new tensors; ``delta`` is not modified.
    """
    clipped, scale = clip_tree(delta, max_norm=max_norm)
    if scale < 1.0:
        logger.debug("update clipped by factor %.4g to norm %g", scale, max_norm)
    return clipped


def noise_update(
    delta: Mapping[str, torch.Tensor], *, std: float, noise: NoiseSource | None = None
) -> dict[str, torch.Tensor]:
    """Add independent Gaussian noise of std ``std`` to every coordinate of ``delta``.

    ``noise`` defaults to OS entropy (see :mod:`fednet.privacy.randomness`).
    """
    check_non_negative("std", std)
    noisy: dict[str, torch.Tensor] = {}
    for key, value in delta.items():
        check_float_tensor(f"delta[{key!r}]", value)
        noisy[key] = value + gaussian_noise_like(value, std=std, noise=noise)
    return noisy


def central_noise_std(*, noise_multiplier: float, clip: float, num_clients: int) -> float:
    """Noise std ``z * C / n`` for the average of ``n`` updates each clipped to ``C``."""
    z = check_non_negative("noise_multiplier", noise_multiplier)
    bound = check_positive("clip", clip)
    if isinstance(num_clients, bool) or not isinstance(num_clients, int) or num_clients < 1:
        raise ValueError(f"num_clients must be an int >= 1, got {num_clients!r}")
    return z * bound / num_clients


def local_noise_std(*, noise_multiplier: float, clip: float) -> float:
    """Noise std ``2 * z * C`` a client adds to its own update clipped to ``C``.

    The sensitivity of one client's clipped update is ``2 * C`` (see the module
    notes), so this is the Gaussian mechanism with multiplier ``z``.
    """
    z = check_non_negative("noise_multiplier", noise_multiplier)
    return 2.0 * z * check_positive("clip", clip)


def privatize_update(
    delta: Mapping[str, torch.Tensor],
    *,
    clip: float,
    noise_multiplier: float,
    noise: NoiseSource | None = None,
) -> dict[str, torch.Tensor]:
    """Local-mode release: clip ``delta`` to ``clip``, then add noise of std ``2 * z * clip``.

    Charge the client's ledger ``(noise_multiplier, sample_rate=1, steps=1)``
    with ``kind="update"`` for each release.
    """
    std = local_noise_std(noise_multiplier=noise_multiplier, clip=clip)
    return noise_update(clip_update(delta, max_norm=clip), std=std, noise=noise)
