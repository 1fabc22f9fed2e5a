"""LocalOnly: every client trains alone; the baseline without federation."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict

from fednet import protocol as P
from fednet.strategies.fedlora import FedLoRA
from fednet.strategies.profile import ClientProfile
from fednet.strategies.state import GlobalState

__all__ = ["LocalOnly"]

logger = logging.getLogger(__name__)


class LocalOnly(FedLoRA):
    """No aggregation: each client continues from its own last adapter.

    The server keeps each client's last update and sends it back unchanged, so
    the run is exactly local training with the same steps, data and evaluation
    as a federated run. It exists to measure what federation adds.
    """

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.own: dict[str, GlobalState] = {}

    def payload(self, state: GlobalState, profile: ClientProfile) -> RecordDict:
        own = self.own.get(profile.client_id)
        if own is None:
            return super().payload(state, profile)
        return RecordDict(
            {
                P.LORA: P.to_wire(own.lora[profile.base_model], self.wire_dtype),
                P.HEAD: P.to_wire(own.heads[self.head_of(profile)], self.wire_dtype),
            }
        )

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        accepted = self.accept(server_round, replies)
        for p, lora, head, _ in accepted:
            lora = self.with_frozen_a(p, lora, self._state_for_round)
            self.own[p.client_id] = GlobalState(
                lora={p.base_model: lora}, heads={self.head_of(p): head}
            )
        return None, self._train_metrics(accepted)
