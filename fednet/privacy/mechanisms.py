"""Clipping and the Gaussian mechanism.

Calibration goes through the same RDP accountant the ledger uses: a release
with noise multiplier ``z`` (noise std ``z * sensitivity``), sample rate ``q``
and ``steps`` compositions is charged to a :class:`~fednet.privacy.ledger.PrivacyLedger`
as ``(z, q, steps)``, and :func:`calibrate_noise_multiplier` returns the
smallest such ``z`` (to a tolerance) whose charge is at most the target ε.
A single release is the case ``q = 1, steps = 1``.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping

import torch
from opacus.accountants.utils import get_noise_multiplier

from fednet.privacy._checks import (
    check_delta,
    check_float_tensor,
    check_non_negative,
    check_positive,
)
from fednet.privacy.accountant import RDP_ORDERS
from fednet.privacy.randomness import NoiseSource, secure_source

__all__ = [
    "clip_by_norm",
    "clip_tree",
    "tree_norm",
    "gaussian_noise_like",
    "calibrate_noise_multiplier",
    "gaussian_sigma",
]

logger = logging.getLogger(__name__)

_TINY = 1e-12


def clip_by_norm(x: torch.Tensor, *, max_norm: float) -> torch.Tensor:
    """Scale each row of ``x`` down to L2 norm at most ``max_norm``.

    A vector is one row; for a tensor of rank >= 2 every vector along the last
    dimension is a row (an ``[n, d]`` matrix has ``n`` rows). Rows already
    inside the ball are unchanged.

    Parameters
    ----------
    x : torch.Tensor
        Floating-point tensor of rank >= 1.
    max_norm : float
        The clipping bound ``C > 0``.

    Returns
    -------
    torch.Tensor
        A new tensor of the same shape and dtype.
    """
    check_float_tensor("x", x)
    bound = check_positive("max_norm", max_norm)
    if x.dim() == 0:
        raise ValueError("x must have rank >= 1, got a scalar tensor")
    norms = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
    factor = (bound / norms.clamp_min(_TINY)).clamp(max=1.0)
    return x * factor


def tree_norm(tensors: Mapping[str, torch.Tensor]) -> float:
    """L2 norm of all tensors flattened and concatenated (computed in float64)."""
    total = 0.0
    for key, value in tensors.items():
        check_float_tensor(f"tensors[{key!r}]", value)
        total += float(torch.linalg.vector_norm(value.detach().double()) ** 2)
    return math.sqrt(total)


def clip_tree(
    tensors: Mapping[str, torch.Tensor], *, max_norm: float
) -> tuple[dict[str, torch.Tensor], float]:
    """Clip a dict of tensors as one flattened vector to L2 norm ``max_norm``.

    Parameters
    ----------
    tensors : Mapping[str, torch.Tensor]
        Named floating-point tensors, e.g. one client's update.
    max_norm : float
        The clipping bound ``C > 0``.

    Returns
    -------
    clipped : dict[str, torch.Tensor]
        New tensors, each multiplied by ``scale``; the inputs are not modified.
    scale : float
        ``min(1, C / ||tensors||)``; 1.0 when the norm is already within ``C``.
    """
    bound = check_positive("max_norm", max_norm)
    norm = tree_norm(tensors)
    scale = 1.0 if norm <= bound else bound / norm
    clipped = {key: value * scale for key, value in tensors.items()}
    return clipped, scale


def gaussian_noise_like(
    x: torch.Tensor, *, std: float, noise: NoiseSource | None = None
) -> torch.Tensor:
    """Gaussian noise with the shape, dtype and device of ``x``.

    Parameters
    ----------
    x : torch.Tensor
        Floating-point template tensor.
    std : float
        Standard deviation, ``>= 0``; 0 returns zeros.
    noise : NoiseSource, optional
        Where the samples come from; ``None`` draws them from OS entropy
        (:func:`~fednet.privacy.randomness.secure_source`). A seeded source is
        for tests only: its noise can be regenerated and gives no privacy.
    """
    check_float_tensor("x", x)
    sigma = check_non_negative("std", std)
    if sigma == 0:
        return torch.zeros_like(x)
    source = secure_source() if noise is None else noise
    return source.normal(x.shape, std=sigma, dtype=x.dtype, device=x.device)


def calibrate_noise_multiplier(
    *,
    epsilon: float,
    delta: float,
    sample_rate: float = 1.0,
    steps: int = 1,
    accountant: str = "rdp",
    epsilon_tolerance: float | None = None,
) -> float:
    """Noise multiplier whose ``(z, sample_rate, steps)`` charge costs at most ``epsilon``.

    Wraps opacus ``get_noise_multiplier``, so the returned ``z`` charged to a
    ledger that uses the same accountant reports an ε in
    ``[epsilon - epsilon_tolerance, epsilon]``.

    Parameters
    ----------
    epsilon : float
        Target ε > 0; ``math.inf`` returns 0 (no noise).
    delta : float
        Target δ in (0, 1).
    sample_rate : float
        Poisson sampling rate in (0, 1]; 1 for a release over the whole data set.
    steps : int
        Number of compositions.
    accountant : str
        Opacus accounting mechanism name.
    epsilon_tolerance : float, optional
        Bisection tolerance on ε; defaults to ``min(0.01, epsilon / 1000)``.

    Returns
    -------
    float
        The noise multiplier ``z``.

    Raises
    ------
    ValueError
        If an argument is out of range or ``epsilon`` is too small to reach.
    """
    eps = check_positive("epsilon", epsilon, allow_inf=True)
    check_delta("delta", delta)
    rate = check_positive("sample_rate", sample_rate)
    if rate > 1:
        raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    if math.isinf(eps):
        return 0.0
    tol = min(0.01, eps / 1000) if epsilon_tolerance is None else epsilon_tolerance
    check_positive("epsilon_tolerance", tol)
    # The registered "rdp" accountant searches RDP_ORDERS; calibrate on the same grid.
    extra: dict[str, object] = {"alphas": list(RDP_ORDERS)} if accountant == "rdp" else {}
    try:
        with warnings.catch_warnings(record=True) as caught:
            # edge-of-grid warnings from opacus during the search; logged like the ledger's
            warnings.simplefilter("always")
            z = get_noise_multiplier(
                target_epsilon=eps,
                target_delta=delta,
                sample_rate=rate,
                steps=steps,
                accountant=accountant,
                epsilon_tolerance=tol,
                **extra,
            )
    except ValueError as e:
        raise ValueError(
            f"cannot calibrate noise for epsilon={epsilon!r}, delta={delta!r}, "
            f"sample_rate={sample_rate!r}, steps={steps!r}: {e}"
        ) from e
    if caught:
        logger.debug("calibration: %s", caught[-1].message)
    logger.debug(
        "calibrated noise multiplier %.6g for epsilon %g, delta %g, q %g, steps %d",
        z,
        eps,
        delta,
        rate,
        steps,
    )
    return float(z)


def gaussian_sigma(*, epsilon: float, delta: float, sensitivity: float) -> float:
    """Noise std of a single Gaussian release that is (ε, δ)-DP.

    Returns ``z * sensitivity`` with ``z`` from :func:`calibrate_noise_multiplier`
    at ``sample_rate=1, steps=1``, so charging the release as ``(z, 1, 1)``
    reports at most ``epsilon``. Under RDP the single-release bound is slightly
    looser than the analytic Gaussian mechanism (Balle & Wang, 2018), in
    exchange for composing exactly with every other release on the ledger.

    Parameters
    ----------
    epsilon : float
        Target ε > 0 (``math.inf`` gives 0).
    delta : float
        Target δ in (0, 1).
    sensitivity : float
        L2 sensitivity of the released quantity, > 0.
    """
    sens = check_positive("sensitivity", sensitivity)
    return calibrate_noise_multiplier(epsilon=epsilon, delta=delta) * sens
