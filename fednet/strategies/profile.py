"""What the server knows about each connected client: its public profile."""

from __future__ import annotations

from dataclasses import dataclass

from flwr.app import ConfigRecord

__all__ = ["ClientProfile"]


@dataclass(frozen=True)
class ClientProfile:
    """A client's public facts, sent once in reply to a ``query`` message.

    It names the client's task and model shape, never its data.
    """

    node_id: int
    client_id: str
    base_model: str
    task: str
    label_names: tuple[str, ...]
    rank: int
    lora_alpha: float
    num_examples: int | None
    """None when the client keeps its example count to itself (under privacy)."""

    @property
    def weight(self) -> int:
        """Aggregation weight: the example count, or 1 (uniform) when it is not known."""
        return 1 if self.num_examples is None else self.num_examples

    def lora_group(self, grouping: str) -> str:
        """Key of this client's LoRA group under ``grouping`` (see :mod:`.state`)."""
        from fednet.strategies.state import lora_group

        return lora_group(self.base_model, self.task, grouping)

    @classmethod
    def from_record(cls, node_id: int, record: ConfigRecord) -> ClientProfile:
        """Parse a ``profile`` ConfigRecord, naming any missing or bad field."""
        try:
            profile = cls(
                node_id=node_id,
                client_id=str(record["client-id"]),
                base_model=str(record["base-model"]),
                task=str(record["task"]),
                label_names=tuple(str(x) for x in record["label-names"]),  # type: ignore[union-attr]
                rank=int(record["lora-rank"]),  # type: ignore[arg-type]
                lora_alpha=float(record["lora-alpha"]),  # type: ignore[arg-type]
                num_examples=(
                    int(record["num-examples"])  # type: ignore[arg-type]
                    if "num-examples" in record
                    else None
                ),
            )
        except KeyError as e:
            raise ValueError(f"profile from node {node_id} lacks {e}") from None
        if (
            profile.rank < 1
            or len(profile.label_names) < 2
            or (profile.num_examples is not None and profile.num_examples < 1)
        ):
            raise ValueError(f"profile from node {node_id} is invalid: {profile}")
        return profile
