"""Argument checks shared by the privacy modules; each names the key and the value."""

from __future__ import annotations

import math

import torch

__all__ = [
    "as_number",
    "check_positive",
    "check_non_negative",
    "check_delta",
    "check_float_tensor",
]


def as_number(key: str, value: object) -> float:
    """Return ``value`` as a float, or raise ``TypeError`` naming ``key``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{key} must be a number, got {value!r}")
    if math.isnan(value):
        raise ValueError(f"{key} must not be NaN, got {value!r}")
    return float(value)


def check_positive(key: str, value: object, *, allow_inf: bool = False) -> float:
    """Require ``value > 0`` (finite unless ``allow_inf``)."""
    number = as_number(key, value)
    if not number > 0:
        raise ValueError(f"{key} must be > 0, got {value!r}")
    if math.isinf(number) and not allow_inf:
        raise ValueError(f"{key} must be finite, got {value!r}")
    return number


def check_non_negative(key: str, value: object) -> float:
    """Require a finite ``value >= 0``."""
    number = as_number(key, value)
    if not number >= 0 or math.isinf(number):
        raise ValueError(f"{key} must be finite and >= 0, got {value!r}")
    return number


def check_delta(key: str, value: object) -> float:
    """Require ``value`` in the open interval (0, 1)."""
    number = as_number(key, value)
    if not 0 < number < 1:
        raise ValueError(f"{key} must be in (0, 1), got {value!r}")
    return number


def check_float_tensor(key: str, value: object) -> torch.Tensor:
    """Require a floating-point tensor."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{key} must be a torch.Tensor, got {type(value).__name__}")
    if not value.is_floating_point():
        raise TypeError(f"{key} must be a floating-point tensor, got dtype {value.dtype}")
    return value
