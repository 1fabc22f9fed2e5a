"""Flower strategies for federated LoRA, and their registry."""

from fednet.strategies.base import FednetStrategy, RoundHook, RoundOutcome
from fednet.strategies.fedlora import FedLoRA, validate_update
from fednet.strategies.local import LocalOnly
from fednet.strategies.profile import ClientProfile
from fednet.strategies.registry import available_strategies, create_strategy, register_strategy
from fednet.strategies.state import GlobalState

register_strategy("fedlora", FedLoRA)
register_strategy("local", LocalOnly)

__all__ = [
    "ClientProfile",
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
