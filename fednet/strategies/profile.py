"""What the server knows about each connected client: its public profile."""

from __future__ import annotations

import math
from dataclasses import dataclass

from flwr.app import ConfigRecord

from fednet.federation.protocol import DATA_COUNT_KEYS, DATA_ENCODING_KEY, DATA_PREFIX
from fednet.names import check_name

__all__ = ["ClientProfile"]

_MAX_LABEL_CHARS = 256


def _label_name(node_id: int, i: int, value: object) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > _MAX_LABEL_CHARS:
        raise ValueError(
            f"profile from node {node_id}: `label-names[{i}]` must be a non-empty str of at "
            f"most {_MAX_LABEL_CHARS} characters, got {value!r}"
        )
    if any(ord(ch) < 32 for ch in value):
        raise ValueError(
            f"profile from node {node_id}: `label-names[{i}]` holds a control character: {value!r}"
        )
    return value


@dataclass(frozen=True)
class ClientProfile:
    """A client's public facts, sent once in reply to a ``query`` message.

    It names the client's task and model shape, and counts of its data load
    (``data``: rows read, kept, dropped by reason, duplicates, encoding), never
    its data. ``client_id``, ``base_model`` and ``task`` become directory names
    on the server, so each is a checked safe name (:mod:`fednet.names`).
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
    data: tuple[tuple[str, int | str], ...] = ()

    @property
    def weight(self) -> int:
        """Aggregation weight: the example count, or 1 (uniform) when it is not known."""
        return 1 if self.num_examples is None else self.num_examples

    def lora_group(self, grouping: str) -> str:
        """Key of this client's LoRA group under ``grouping`` (see :mod:`.state`)."""
        from fednet.strategies.state import lora_group

        return lora_group(self.base_model, self.task, grouping)

    def data_report(self) -> dict[str, int | str]:
        """The ``data-*`` figures without the prefix, e.g. ``{"rows-read": 120}``."""
        return {k.removeprefix(DATA_PREFIX): v for k, v in self.data}

    @classmethod
    def from_record(cls, node_id: int, record: ConfigRecord) -> ClientProfile:
        """Parse a ``profile`` ConfigRecord, naming any missing or bad field."""
        try:
            names = record["label-names"]
            if not isinstance(names, list):
                raise ValueError(f"profile from node {node_id}: `label-names` must be a list")
            profile = cls(
                node_id=node_id,
                client_id=str(record["client-id"]),
                base_model=str(record["base-model"]),
                task=str(record["task"]),
                label_names=tuple(_label_name(node_id, i, x) for i, x in enumerate(names)),
                rank=int(record["lora-rank"]),  # type: ignore[arg-type]
                lora_alpha=float(record["lora-alpha"]),  # type: ignore[arg-type]
                num_examples=(
                    int(record["num-examples"])  # type: ignore[arg-type]
                    if "num-examples" in record
                    else None
                ),
                data=_data_fields(node_id, record),
            )
        except KeyError as e:
            raise ValueError(f"profile from node {node_id} lacks {e}") from None
        except TypeError as e:
            raise ValueError(f"profile from node {node_id}: {e}") from None
        who = f"profile from node {node_id}"
        for key, value in (
            ("client-id", record["client-id"]),
            ("base-model", record["base-model"]),
            ("task", record["task"]),
        ):
            try:
                check_name(key, value)
            except (TypeError, ValueError) as e:
                raise ValueError(f"{who}: {e}") from None
        if len(set(profile.label_names)) != len(profile.label_names):
            raise ValueError(f"{who} ({profile.client_id}): `label-names` repeat a name")
        if len(profile.label_names) < 2:
            raise ValueError(
                f"{who} ({profile.client_id}): its data has {len(profile.label_names)} class "
                f"{list(profile.label_names)}; a classifier needs at least 2"
            )
        if (
            profile.rank < 1
            or (profile.num_examples is not None and profile.num_examples < 1)
            or not (math.isfinite(profile.lora_alpha) and profile.lora_alpha > 0)
        ):
            raise ValueError(f"{who} ({profile.client_id}) is invalid: {profile}")
        return profile


def _data_fields(node_id: int, record: ConfigRecord) -> tuple[tuple[str, int | str], ...]:
    out: list[tuple[str, int | str]] = []
    for key in sorted(k for k in record if k.startswith(DATA_PREFIX)):
        value = record[key]
        if key == DATA_ENCODING_KEY:
            try:
                out.append((key, check_name(key, value)))
            except (TypeError, ValueError) as e:
                raise ValueError(f"profile from node {node_id}: {e}") from None
        elif key in DATA_COUNT_KEYS and isinstance(value, int) and not isinstance(value, bool):
            if value < 0:
                raise ValueError(f"profile from node {node_id}: `{key}` must be >= 0, got {value}")
            out.append((key, value))
        else:
            raise ValueError(f"profile from node {node_id}: unexpected `{key}` = {value!r}")
    return tuple(out)
