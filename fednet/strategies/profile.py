"""What the server knows about each connected client: its public profile.

A profile comes from the client over the wire, so the server trusts none of
it: its client id, task and base model become directory names and group keys
(each a checked safe name, :mod:`fednet.names`), its rank sizes tensors, its
example count weighs the average. Each field is checked for type and bounds,
and, when the server has the preset, against the preset's entry for that
client: the values must be the preset's own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flwr.app import ConfigRecord

from fednet.federation.protocol import DATA_COUNT_KEYS, DATA_ENCODING_KEY, DATA_PREFIX
from fednet.names import check_name

if TYPE_CHECKING:
    from fednet.config import FederationConfig

__all__ = [
    "ClientProfile",
    "MAX_LABELS",
    "MAX_LABEL_CHARS",
    "MAX_NUM_EXAMPLES",
    "MAX_RANK",
]

MAX_RANK = 1024
"""Largest LoRA rank a profile may announce."""

MAX_NUM_EXAMPLES = 100_000_000
"""Largest training-set size a profile may announce (it weighs the average)."""

MAX_LABELS = 1000
"""Most class labels a profile may announce."""

MAX_LABEL_CHARS = 200
"""Longest label name."""


def _name(node_id: int, key: str, value: Any) -> str:
    try:
        return check_name(key, value)
    except (TypeError, ValueError) as e:
        raise ValueError(f"profile from node {node_id}: {e}"[:400]) from None


def _int(node_id: int, key: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(
            f"profile from node {node_id}: `{key}` must be an int, got "
            f"{type(value).__name__} {value!r:.80}"
        )
    if not low <= value <= high:
        raise ValueError(
            f"profile from node {node_id}: `{key}` must be in [{low}, {high}], got {value}"
        )
    return value


def _label_name(node_id: int, i: int, value: object) -> str:
    if (
        not isinstance(value, str)
        or not value.strip()
        or len(value) > MAX_LABEL_CHARS
        or any(ord(ch) < 32 for ch in value)
    ):
        raise ValueError(
            f"profile from node {node_id}: label names must be 1-{MAX_LABEL_CHARS} characters "
            f"without control characters; `label-names[{i}]` is {value!r:.80}"
        )
    return value


@dataclass(frozen=True)
class ClientProfile:
    """A client's public facts, sent once in reply to a ``query`` message.

    It names the client's task and model shape, and counts of its data load
    (``data``: rows read, kept, dropped by reason, duplicates, encoding), never
    its data. Under privacy the example count and the load report stay on the
    client (``num_examples`` is then None and ``data`` empty).
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

    @property
    def head_group(self) -> str:
        """Key of this client's head: its task on its base model (see :mod:`.state`)."""
        from fednet.strategies.state import head_group

        return head_group(self.base_model, self.task)

    def data_report(self) -> dict[str, int | str]:
        """The ``data-*`` figures without the prefix, e.g. ``{"rows-read": 120}``."""
        return {k.removeprefix(DATA_PREFIX): v for k, v in self.data}

    @classmethod
    def from_record(
        cls,
        node_id: int,
        record: ConfigRecord | Mapping[str, Any],
        *,
        preset: FederationConfig | None = None,
    ) -> ClientProfile:
        """Parse and check a ``profile`` ConfigRecord.

        Parameters
        ----------
        node_id : int
            The Flower node that sent it.
        record : ConfigRecord
            Keys ``client-id``, ``base-model``, ``task``, ``label-names``,
            ``lora-rank``, ``lora-alpha``, optionally ``num-examples`` and the
            ``data-*`` load figures.
        preset : FederationConfig, optional
            The federation's preset. With it, the client id must be one of
            its clients and the base model, task, rank and LoRA alpha must be
            exactly that client's.

        Raises
        ------
        ValueError
            Naming the node, the field and the bad value: a missing field, a
            wrong type, a value out of bounds (:data:`MAX_RANK`,
            :data:`MAX_NUM_EXAMPLES`, :data:`MAX_LABELS`), a name that is not
            a safe name, data of a single class, or a value that differs from
            the preset.
        """
        try:
            raw: dict[str, Any] = {k: record[k] for k in _KEYS}
        except KeyError as e:
            raise ValueError(f"profile from node {node_id} lacks {e}") from None
        _name(node_id, "client-id", raw["client-id"])
        who = f"profile from node {node_id} ({raw['client-id']})"
        _name(node_id, "task", raw["task"])
        _name(node_id, "base-model", raw["base-model"])
        labels = raw["label-names"]
        if isinstance(labels, str) or not isinstance(labels, list | tuple):
            raise ValueError(f"{who}: `label-names` must be a list of str")
        names = tuple(_label_name(node_id, i, x) for i, x in enumerate(labels))
        if not 2 <= len(names) <= MAX_LABELS:
            why = "; its data has a single class" if len(names) == 1 else ""
            raise ValueError(
                f"{who}: `label-names` must hold 2 to {MAX_LABELS} labels, got {len(names)}{why}"
            )
        if len(set(names)) != len(names):
            raise ValueError(f"{who}: `label-names` repeat a name")
        alpha = raw["lora-alpha"]
        if isinstance(alpha, bool) or not isinstance(alpha, int | float):
            raise ValueError(f"{who}: `lora-alpha` must be a number")
        if not (math.isfinite(alpha) and 0 < alpha <= 16 * MAX_RANK):
            raise ValueError(f"{who}: `lora-alpha` must be in (0, {16 * MAX_RANK}], got {alpha!r}")
        count = record.get("num-examples")
        if count is None and preset is not None and not preset.privacy.enabled:
            raise ValueError(f"profile from node {node_id} lacks 'num-examples'")
        profile = cls(
            node_id=node_id,
            client_id=raw["client-id"],
            base_model=raw["base-model"],
            task=raw["task"],
            label_names=names,
            rank=_int(node_id, "lora-rank", raw["lora-rank"], 1, MAX_RANK),
            lora_alpha=float(alpha),
            num_examples=(
                None if count is None else _int(node_id, "num-examples", count, 1, MAX_NUM_EXAMPLES)
            ),
            data=_data_fields(node_id, record),
        )
        if preset is not None:
            profile._check_preset(preset)
        return profile

    def _check_preset(self, preset: FederationConfig) -> None:
        known = {c.id: c for c in preset.clients}
        client = known.get(self.client_id)
        if client is None:
            raise ValueError(
                f"profile from node {self.node_id} names client {self.client_id!r}, which is not "
                f"in the preset (clients: {sorted(known)})"
            )
        expected = {
            "base-model": (self.base_model, client.base_model),
            "task": (self.task, client.task),
            "lora-rank": (self.rank, client.lora_rank),
        }
        problems = [
            f"`{key}` is {got!r}, the preset says {want!r}"
            for key, (got, want) in expected.items()
            if got != want
        ]
        alpha = preset.lora_alpha(client.lora_rank)
        if not math.isclose(self.lora_alpha, alpha, rel_tol=1e-9):
            problems.append(f"`lora-alpha` is {self.lora_alpha!r}, the preset says {alpha!r}")
        if problems:
            raise ValueError(
                f"profile of {self.client_id!r} from node {self.node_id} does not match the "
                "preset: " + "; ".join(problems)
            )


_KEYS = (
    "client-id",
    "base-model",
    "task",
    "label-names",
    "lora-rank",
    "lora-alpha",
)


def _data_fields(
    node_id: int, record: ConfigRecord | Mapping[str, Any]
) -> tuple[tuple[str, int | str], ...]:
    out: list[tuple[str, int | str]] = []
    for key in sorted(k for k in record if k.startswith(DATA_PREFIX)):
        value = record[key]
        if key == DATA_ENCODING_KEY:
            out.append((key, _name(node_id, key, value)))
        elif key in DATA_COUNT_KEYS and isinstance(value, int) and not isinstance(value, bool):
            out.append((key, _int(node_id, key, value, 0, MAX_NUM_EXAMPLES)))
        else:
            raise ValueError(f"profile from node {node_id}: unexpected `{key}` = {value!r:.80}")
    return tuple(out)
