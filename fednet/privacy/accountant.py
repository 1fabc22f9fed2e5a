"""Privacy accountants: a registry of opacus accountants and ε of a release history.

A release history is a list of ``(noise_multiplier, sample_rate, steps)``
triples, the format opacus keeps in ``IAccountant.history``. Every mechanism in
``fednet.privacy`` (DP-SGD, sketches, noised updates) is a (sub)sampled Gaussian
mechanism that can be described by one such triple, so one accountant composes
them all.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Iterable

from opacus.accountants import IAccountant, RDPAccountant

from fednet.privacy._checks import as_number, check_delta, check_non_negative
from fednet.registry import Registry

__all__ = [
    "RDP_ORDERS",
    "History",
    "ExtendedRDPAccountant",
    "register_accountant",
    "create_accountant",
    "available_accountants",
    "compute_epsilon",
    "accountant_epsilon",
    "validate_release",
]

logger = logging.getLogger(__name__)

History = list[tuple[float, float, int]]
"""``(noise_multiplier, sample_rate, steps)`` triples, oldest first."""

_EXTRA_ORDERS = (64, 80, 96, 128, 160, 192, 256, 384, 512, 768, 1024)
RDP_ORDERS: tuple[float, ...] = tuple(RDPAccountant.DEFAULT_ALPHAS) + _EXTRA_ORDERS
"""RDP orders of the ``"rdp"`` accountant: opacus's defaults plus larger orders.

A single release at sampling rate 1 with small ε has its optimal order above
opacus's largest (63); without the extra orders an ε below about
``log(1/δ) / 62`` could not be reached at all. Where the optimum lies inside
opacus's grid (as for typical DP-SGD runs) the ε is identical to opacus's.
"""

ACCOUNTANTS: Registry[Callable[[], IAccountant]] = Registry("accountant")


class ExtendedRDPAccountant(RDPAccountant):
    """Opacus ``RDPAccountant`` that searches :data:`RDP_ORDERS`."""

    DEFAULT_ALPHAS = list(RDP_ORDERS)


def register_accountant(
    name: str, factory: Callable[[], IAccountant], *, overwrite: bool = False
) -> None:
    """Register an accountant under ``name``.

    Parameters
    ----------
    name : str
        Registry name, e.g. ``"rdp"``.
    factory : Callable[[], IAccountant]
        Returns a fresh opacus accountant whose ``history`` holds
        ``(noise_multiplier, sample_rate, steps)`` triples and whose
        ``get_epsilon(delta)`` composes every entry of it.
    overwrite : bool
        Replace an existing registration instead of raising.

    Raises
    ------
    ValueError
        If ``name`` is already registered and ``overwrite`` is false.
    TypeError
        If ``factory`` is not callable.
    """
    if not callable(factory):
        raise TypeError(f"accountant factory for {name!r} must be callable, got {factory!r}")
    ACCOUNTANTS.register(name, factory, overwrite=overwrite)


def available_accountants() -> list[str]:
    """Names of the registered accountants, sorted."""
    return ACCOUNTANTS.names()


def create_accountant(name: str) -> IAccountant:
    """Build a fresh accountant registered under ``name``.

    Raises
    ------
    ValueError
        If ``name`` is unknown; the message lists the valid names.
    """
    return ACCOUNTANTS.get(name)()


def validate_release(*, noise_multiplier: float, sample_rate: float, steps: int) -> None:
    """Check one release triple, naming the bad argument and its value.

    Raises
    ------
    TypeError
        If a value has the wrong type.
    ValueError
        If ``noise_multiplier < 0``, ``sample_rate`` is outside (0, 1] or
        ``steps < 1``.
    """
    check_non_negative("noise_multiplier", noise_multiplier)
    rate = as_number("sample_rate", sample_rate)
    if not 0 < rate <= 1:
        raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate!r}")
    if isinstance(steps, bool) or not isinstance(steps, int):
        raise TypeError(f"steps must be an int, got {steps!r}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps!r}")


def compute_epsilon(
    history: Iterable[tuple[float, float, int]], *, delta: float, accountant: str = "rdp"
) -> float:
    """ε spent by a release history at ``delta``.

    An empty history costs 0. A release with ``noise_multiplier == 0`` adds no
    noise, so the history costs ``math.inf``.

    Parameters
    ----------
    history : Iterable[tuple[float, float, int]]
        ``(noise_multiplier, sample_rate, steps)`` triples.
    delta : float
        Target δ, in (0, 1).
    accountant : str
        Registered accountant name.

    Returns
    -------
    float
        The ε the accountant reports for ``history``.
    """
    check_delta("delta", delta)
    entries = [(float(z), float(q), int(s)) for z, q, s in history]
    acc = create_accountant(accountant)
    acc.history = entries
    return accountant_epsilon(acc, delta=delta)


def accountant_epsilon(acc: IAccountant, *, delta: float) -> float:
    """ε an accountant reports for its history, with the edge cases made explicit.

    An empty history costs 0; a release with ``noise_multiplier == 0`` costs
    ``math.inf``.
    """
    check_delta("delta", delta)
    history = list(acc.history)
    if not history:
        return 0.0
    if any(entry[0] == 0 for entry in history):
        return math.inf
    with warnings.catch_warnings(record=True) as caught:
        # opacus warns when the optimal RDP order sits at the edge of its grid;
        # the bound is still valid, only possibly loose, so it is logged, not raised.
        warnings.simplefilter("always")
        eps = float(acc.get_epsilon(delta=delta))
    for w in caught:
        logger.debug("accountant: %s", w.message)
    return eps


register_accountant("rdp", ExtendedRDPAccountant)
