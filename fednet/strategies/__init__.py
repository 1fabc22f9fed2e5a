"""Flower strategies for federated LoRA, and their registry."""

from fednet.strategies.base import FednetStrategy, RoundHook, RoundOutcome
from fednet.strategies.fedlora import FedLoRA, validate_update
from fednet.strategies.local import LocalOnly
from fednet.strategies.median import CoordinateMedian
from fednet.strategies.multi_krum import MultiKrum
from fednet.strategies.norm_bound import NormBound
from fednet.strategies.profile import ClientProfile
from fednet.strategies.registry import (
    available_strategies,
    available_wrappers,
    create_strategy,
    create_wrapper,
    register_strategy,
    register_wrapper,
)
from fednet.strategies.robust import RobustWrapper
from fednet.strategies.state import GlobalState
from fednet.strategies.trimmed_mean import TrimmedMean

register_strategy("fedlora", FedLoRA)
register_strategy("local", LocalOnly)
register_wrapper("norm-bound", NormBound)
register_wrapper("trimmed-mean", TrimmedMean)
register_wrapper("median", CoordinateMedian)
register_wrapper("multi-krum", MultiKrum)

__all__ = [
    "ClientProfile",
    "CoordinateMedian",
    "MultiKrum",
    "NormBound",
    "RobustWrapper",
    "TrimmedMean",
    "available_wrappers",
    "create_wrapper",
    "register_wrapper",
    "FedLoRA",
    "FednetStrategy",
    "GlobalState",
    "LocalOnly",
    "RoundHook",
    "RoundOutcome",
    "available_strategies",
    "create_strategy",
    "register_strategy",
    "validate_update",
]
