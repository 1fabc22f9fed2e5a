"""What the server knows about each connected client: its public profile.

A profile comes from the client over the wire, so the server trusts none of
it: its client id, task and base model become directory names and group keys
(each a checked safe name, :mod:`fednet.names`), its rank sizes tensors, its
example count weighs the average. Each field is checked for type and bounds,
and, when the server has the preset, against the preset's entry for that
client: the values must be the preset's own (:class:`ProfileRecord`; one error
names every problem).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from flwr.app import ConfigRecord
from pydantic import AfterValidator, Strict, ValidationInfo, model_validator

from fednet.config_base import (
    Float,
    Int,
    SafeName,
    bound,
    config_model,
    expected,
    problems,
    validate,
)
from fednet.errors import ConfigError
from fednet.names import check_name, is_safe_name
from fednet.protocol import DATA_COUNT_KEYS, DATA_ENCODING_KEY, DATA_PREFIX

if TYPE_CHECKING:
    from fednet.config import FederationConfig

__all__ = [
    "ClientProfile",
    "ProfileRecord",
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
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(
            f"profile from node {node_id}: `{key}` must be an int in [{low}, {high}], got "
            f"{value!r:.80}"
        )
    return value


def _label_name(value: str) -> str:
    if not value.strip() or len(value) > MAX_LABEL_CHARS or any(ord(ch) < 32 for ch in value):
        raise expected(f"1-{MAX_LABEL_CHARS} characters without control characters")
    return value


def _label_names(names: tuple[str, ...]) -> tuple[str, ...]:
    if not 2 <= len(names) <= MAX_LABELS:
        why = "; its data has a single class" if len(names) == 1 else ""
        raise expected(f"a list of 2 to {MAX_LABELS} labels{why}")
    if len(set(names)) != len(names):
        raise expected("a list of distinct labels")
    return names


LabelName = Annotated[str, Strict(), AfterValidator(_label_name)]


@config_model("")
class ProfileRecord:
    """The fields of a ``profile`` record, checked for type and bounds (kebab-case keys).

    Validated with the preset in the context (``context={"preset": cfg}``), its
    model validator also checks every field against that client's preset entry.
    """

    client_id: SafeName
    base_model: SafeName
    task: SafeName
    label_names: Annotated[tuple[LabelName, ...], AfterValidator(_label_names)]
    lora_rank: Annotated[Int, *bound(f"in [1, {MAX_RANK}]")]
    lora_alpha: Annotated[Float, *bound(f"in (0, {16 * MAX_RANK}]")]
    num_examples: Annotated[Int, *bound(f"in [1, {MAX_NUM_EXAMPLES}]")] | None = None

    @model_validator(mode="after")
    def _against_preset(self, info: ValidationInfo) -> ProfileRecord:
        preset: FederationConfig | None = (info.context or {}).get("preset")
        if preset is None:
            return self
        found: list[tuple[tuple[str, ...], str]] = []
        if self.num_examples is None and not preset.privacy.enabled:
            found.append(((), "lacks 'num-examples'"))
        known = {c.id: c for c in preset.clients}
        client = known.get(self.client_id)
        if client is None:
            found.append(
                (
                    ("client-id",),
                    f"is {self.client_id!r}, which is not in the preset (clients: {sorted(known)})",
                )
            )
        else:
            alpha = preset.lora_alpha(client.lora_rank)
            differ: list[tuple[str, object, object]] = [
                (key, got, want)
                for key, got, want in (
                    ("base-model", self.base_model, client.base_model),
                    ("task", self.task, client.task),
                    ("lora-rank", self.lora_rank, client.lora_rank),
                )
                if got != want
            ]
            if not math.isclose(self.lora_alpha, alpha, rel_tol=1e-9):
                differ.append(("lora-alpha", self.lora_alpha, alpha))
            for key, got, want in differ:
                found.append(((key,), f"is {got!r}, the preset says {want!r}"))
        error = problems(found)
        if error is not None:
            raise error
        return self


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
        missing = [k for k in _KEYS if k not in record]
        if missing:
            raise ValueError(f"profile from node {node_id} lacks {missing[0]!r}")
        claimed = record["client-id"]
        who = f"profile from node {node_id}" + (f" ({claimed!s})" if is_safe_name(claimed) else "")
        fields = {k: record[k] for k in (*_KEYS, "num-examples") if k in record}
        try:
            checked = validate(ProfileRecord, fields, context={"preset": preset})
        except ConfigError as e:
            shown = e.problems[:_SHOWN]
            more = f"; and {len(e.problems) - _SHOWN} more" if len(e.problems) > _SHOWN else ""
            raise ValueError(f"{who}: " + "; ".join(shown) + more) from None
        return cls(
            node_id=node_id,
            client_id=checked.client_id,
            base_model=checked.base_model,
            task=checked.task,
            label_names=checked.label_names,
            rank=checked.lora_rank,
            lora_alpha=float(checked.lora_alpha),
            num_examples=checked.num_examples,
            data=_data_fields(node_id, record),
        )


_SHOWN = 10
"""Problems of one profile named in its error; the rest are counted."""

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
