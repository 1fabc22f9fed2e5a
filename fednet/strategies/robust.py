"""Robust aggregation wrappers around a :class:`~fednet.strategies.FedLoRA`.

In the style of Flower's ``DifferentialPrivacyServerSideFixedClipping``, each
defence wraps a strategy and keeps its selection, messages and evaluation. A
wrapper acts at one or both of two points of a training round:

- ``filter``: after the inner strategy has validated the replies (malformed
  ones are already rejected), it may clip updates (``norm-bound``) or drop them
  (``multi-krum``);
- ``aggregate``: it may replace the weighted mean by a coordinate-wise rule
  (``trimmed-mean``, ``median``).

Every update a wrapper drops or shrinks is logged with its reason in the
strategy's round events, which reach ``summary.json``, ``contributions.json``
and TensorBoard.

Composition with central DP: a wrapper presents FedLoRA's interface, so
``CentralDP(NormBound(FedLoRA(...)))`` clips and filters before DP's own
clipping and noise. Only the filtering wrappers (``norm-bound``,
``multi-krum``) compose with it: central DP replaces the aggregation, so a
coordinate-wise rule under it would silently not apply, and
:func:`fednet.federation.server.build_strategy` refuses that combination. A
wrapper refuses to wrap ``CentralDP`` itself, which would bypass its noise.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Result, Strategy

from fednet.config import StrategyConfig
from fednet.strategies.base import FednetStrategy
from fednet.strategies.fedlora import FedLoRA
from fednet.strategies.robust_utils import Accepted
from fednet.strategies.state import GlobalState

__all__ = ["RobustWrapper"]

logger = logging.getLogger(__name__)


class RobustWrapper(Strategy):
    """Base of the robust wrappers: delegation, and the filter-then-aggregate round.

    Parameters
    ----------
    strategy : FedLoRA
        The strategy (or another robust wrapper) to protect.
    """

    name = "none"
    composes_with_central_dp = False
    """Every robust rule decides from all clients' raw updates (their median norm, their
    distances, their coordinates), so one client's update changes what the others
    contribute: the sensitivity central DP is calibrated to would not hold."""

    def __init__(self, strategy: FedLoRA) -> None:
        if not isinstance(strategy, FedLoRA):
            raise TypeError(
                f"{type(self).__name__} wraps a FedLoRA strategy (put CentralDP outside it), "
                f"got {type(strategy).__name__}"
            )
        own = type(strategy).aggregate_train
        if not isinstance(strategy, RobustWrapper) and own is not FedLoRA.aggregate_train:
            raise TypeError(
                f"{type(self).__name__} cannot wrap {type(strategy).__name__}: its own "
                'aggregate_train would be bypassed (e.g. `strategy.name = "local"` '
                'aggregates nothing); use `strategy.robust = "none"`'
            )
        self.strategy = strategy

    @classmethod
    def from_config(cls, strategy: FedLoRA, cfg: StrategyConfig) -> RobustWrapper:
        """The wrapper with its parameters from ``[strategy]``."""
        return cls(strategy)

    def __getattr__(self, name: str) -> Any:
        # profiles, events, payload, group_of, _state_for_round ... are the inner's
        if name == "strategy":
            raise AttributeError(name)
        return getattr(self.strategy, name)

    def summary(self) -> None:
        logger.info("%s around:", type(self).__name__)
        self.strategy.summary()

    def start(self, *args: Any, **kwargs: Any) -> Result:
        """The fednet round loop, with this wrapper's filter and aggregation."""
        return FednetStrategy.start(self, *args, **kwargs)  # type: ignore[arg-type]

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        return self.strategy.configure_train(server_round, arrays, config, grid)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        return self.strategy.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        return self.strategy.aggregate_evaluate(server_round, replies)

    # -- the two points a defence acts at ----------------------------------------
    def accept(self, server_round: int, replies: Iterable[Message]) -> list[Accepted]:
        """The inner strategy's validated updates, then this wrapper's filter."""
        accepted = self.strategy.accept(server_round, replies)
        return self.filter(server_round, self._state_for_round, accepted)

    def filter(
        self, server_round: int, state: GlobalState, accepted: list[Accepted]
    ) -> list[Accepted]:
        """Clip or drop updates (log each with its reason); the default keeps all."""
        return accepted

    def flag(
        self,
        server_round: int,
        client_id: str,
        status: str,
        reason: str,
        detail: str,
        **info: object,
    ) -> None:
        """Log one update this wrapper rejected, clipped or down-weighted, and record it
        in the round's events (``summary.json``, ``contributions.json``, TensorBoard)."""
        logger.warning(
            "round %s: %s %s by %s: %s", server_round, client_id, status, self.name, detail
        )
        self.log_event(
            server_round, client_id, status, self.name, reasons=[reason], detail=detail, **info
        )

    def aggregate(self, state: GlobalState, accepted: list[Accepted]) -> GlobalState:
        """The new global state; the default is the inner strategy's aggregation."""
        return self.strategy.aggregate(state, accepted)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        self._round = server_round
        accepted = self.accept(server_round, replies)
        if not self.enough(len(accepted)):
            logger.warning(
                "round %s: %d updates left after %s; global state unchanged",
                server_round,
                len(accepted),
                self.name,
            )
            return None, self._train_metrics(accepted)
        new = self.aggregate(self._state_for_round, accepted)
        return new.to_arrayrecord(), self._train_metrics(accepted)


FedLoRA.register(RobustWrapper)  # a wrapper offers FedLoRA's interface (CentralDP wraps it)
