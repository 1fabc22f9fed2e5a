"""What may travel between the ServerApp and the ClientApps.

Record keys live here and nowhere else. :func:`check_reply` is the allowlist on a
client's outgoing records: only LoRA factors, head tensors, DP sketch tensors,
scalar metrics, the client's public profile, the manifests it signed
(:data:`SIGNED`; a manifest holds hashes, a public key and a signature) and,
with ``strategy.prototypes``, its DP class prototypes (:data:`PROTO`, exactly
the tensors :data:`PROTO_KEYS`; see :mod:`fednet.representation.prototypes`) may
leave. :func:`allowlist_mod`
applies it to every reply of a ClientApp, so nothing else leaves even if the
training code misbehaves.

Under privacy the allowlist is narrower (``check_reply(..., private=True)``,
applied by the ClientApp when ``privacy.enabled``): metrics only from
:data:`DP_METRIC_KEYS` (step count, ε, δ, refusal flags: functions of public
settings) and a profile without ``num-examples`` (:data:`DP_PROFILE_KEYS`).
Training loss, update norm, evaluation accuracy and loss, example counts and
timings stay on the client.

LoRA factors and heads travel in the federation's wire dtype
(``federation.wire-dtype``): ``float32``, or ``float16`` for half the bytes.
The server names it in every message's config (:data:`WIRE_DTYPE_KEY`); the
client replies in it, and the server rejects a reply in any other dtype.
Both sides compute in float32: :func:`to_wire` casts down, :func:`from_wire` up.
Casting after local DP noise is post-processing, so it costs no privacy.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict

from fednet import config
from fednet.errors import UpdateRejectedError
from fednet.lora.state import is_lora_key

__all__ = [
    "LORA",
    "HEAD",
    "SKETCH",
    "METRICS",
    "CONFIG",
    "PROFILE",
    "STATUS",
    "RELEASE",
    "SIGNED",
    "SIGNED_KEYS",
    "PROTO",
    "PROTO_KEYS",
    "METRIC_KEYS",
    "PROFILE_KEYS",
    "DATA_PREFIX",
    "DATA_ENCODING_KEY",
    "DATA_COUNT_KEYS",
    "STATUS_KEYS",
    "DP_METRIC_KEYS",
    "EPSILON_KEYS",
    "reported_epsilon",
    "DP_PROFILE_KEYS",
    "HEAD_KEYS",
    "check_reply",
    "allowlist_mod",
    "private_allowlist_mod",
    "record_nbytes",
    "WIRE_DTYPES",
    "WIRE_DTYPE_KEY",
    "FROZEN_A_KEY",
    "wire_dtype",
    "to_wire",
    "from_wire",
]

logger = logging.getLogger(__name__)

# RecordDict keys
LORA = "lora"
HEAD = "head"
SKETCH = "sketch"
METRICS = "metrics"
CONFIG = "config"
PROFILE = "profile"
STATUS = "status"
RELEASE = "release"  # server -> client: manifests (and files) to sign
SIGNED = "signed"  # client -> server: the manifests it signed
PROTO = "proto"  # client -> server: DP class prototypes in the network space

WIRE_DTYPE_KEY = "wire-dtype"
FROZEN_A_KEY = "frozen-a"
"""Message-config flag (0/1): the client keeps LoRA A fixed and replies with B only."""
WIRE_DTYPES: dict[str, torch.dtype] = {name: getattr(torch, name) for name in config.WIRE_DTYPES}

HEAD_KEYS = frozenset({"head.weight", "head.bias"})
PROTO_KEYS = frozenset({"proto.sums", "proto.counts", "proto.params"})
"""The tensors of a prototype release: noised sums and counts, and how they were noised."""
METRIC_KEYS = frozenset(
    {
        "num-examples",
        "train-loss",
        "steps",
        "compute-s",
        "wall-s",
        "accuracy",
        "loss",
        "epsilon",
        "delta",
        "update-epsilon",
        "sketch-epsilon",
        "update-norm",
        "refused",
        "personalized",
    }
)
DATA_PREFIX = "data-"
"""Profile keys ``data-*`` carry the figures of the client's data load."""
DATA_ENCODING_KEY = "data-encoding"
DATA_COUNT_KEYS: tuple[str, ...] = (
    "data-rows-read",
    "data-rows-kept",
    "data-rows-dropped",
    "data-dropped-blank-line",
    "data-dropped-empty-text",
    "data-dropped-empty-label",
    "data-duplicate-rows",
    "data-conflicting-texts",
    "data-train-examples",
    "data-test-examples",
)
"""Counts a client reports about its data load (see :class:`fednet.data.LoadReport`)."""
PROFILE_KEYS = frozenset(
    {
        "client-id",
        "base-model",
        "task",
        "label-names",
        "lora-rank",
        "num-examples",
        "lora-alpha",
        DATA_ENCODING_KEY,
        *DATA_COUNT_KEYS,
    }
)
STATUS_KEYS = frozenset({"refused", "reason"})
DP_METRIC_KEYS = frozenset(
    {"steps", "epsilon", "delta", "update-epsilon", "sketch-epsilon", "refused", "personalized"}
)
"""Metrics that may leave a client under privacy: none depends on its data
beyond what its ledger already charges (ε is a function of public settings)."""
EPSILON_KEYS: tuple[str, ...] = ("epsilon", "update-epsilon", "sketch-epsilon")
"""The ε a client reports with every training reply: what its ledger has composed
after the round, of every release, of its DP-SGD and update releases, and of
its sketch releases."""
DP_PROFILE_KEYS = PROFILE_KEYS - {"num-examples", DATA_ENCODING_KEY, *DATA_COUNT_KEYS}
"""Profile keys under privacy: no count of the client's data leaves it."""
PRIVATE_BUDGET_REASON = "privacy budget exhausted (the figures stay in the client's own log)"
PRIVATE_FAILURE_REASON = "the client failed (its reason stays in its own log under privacy)"
SIGNED_KEYS = frozenset({"shared", "personalized"})


def reported_epsilon(metrics: Any) -> dict[str, float]:
    """The :data:`EPSILON_KEYS` of a reply's metrics that are numbers, as floats.

    The server keeps them from every training reply, its update accepted or
    not: the client's ledger was charged either way, and the manifests the
    client is later asked to sign claim the last ε it reported.
    """
    out = {}
    for key in EPSILON_KEYS:
        value = metrics.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[key] = float(value)
    return out


_SKETCH_KEY = re.compile(r"^sketch\.[a-z_]+$")


def _is_sketch_key(key: str) -> bool:
    return bool(_SKETCH_KEY.match(key))


def check_reply(content: RecordDict, *, private: bool = False) -> None:
    """Raise :class:`UpdateRejectedError` listing every record that may not leave.

    ``private`` applies the narrower allowlist of a client under privacy.
    """
    problems: list[str] = []
    metric_keys = DP_METRIC_KEYS if private else METRIC_KEYS
    profile_keys = DP_PROFILE_KEYS if private else PROFILE_KEYS
    for name, record in content.items():
        if name == LORA and isinstance(record, ArrayRecord):
            bad = [k for k in record if not is_lora_key(k)]
            problems += [f"array `{LORA}/{k}` is not a LoRA factor" for k in bad]
        elif name == HEAD and isinstance(record, ArrayRecord):
            problems += [
                f"array `{HEAD}/{k}` is not a head tensor" for k in record if k not in HEAD_KEYS
            ]
        elif name == SKETCH and isinstance(record, ArrayRecord):
            problems += [
                f"array `{SKETCH}/{k}` is not a sketch tensor"
                for k in record
                if not _is_sketch_key(k)
            ]
        elif name == PROTO and isinstance(record, ArrayRecord):
            problems += [
                f"array `{PROTO}/{k}` is not a prototype tensor"
                for k in record
                if k not in PROTO_KEYS
            ]
        elif name == METRICS and isinstance(record, MetricRecord):
            for k, v in record.items():
                if k not in metric_keys:
                    problems.append(
                        f"metric `{k}` is not allowed" + (" under privacy" if private else "")
                    )
                elif isinstance(v, list):
                    problems.append(f"metric `{k}` is a list; only scalars may leave")
        elif name == PROFILE and isinstance(record, ConfigRecord):
            problems += [
                f"profile key `{k}` is not allowed" for k in record if k not in profile_keys
            ]
        elif name == SIGNED and isinstance(record, ConfigRecord):
            for k, text in record.items():
                if k not in SIGNED_KEYS:
                    problems.append(f"signed key `{k}` is not allowed")
                elif not isinstance(text, str) or len(text) > 65536:
                    problems.append(f"signed `{k}` must be a manifest's JSON text")
        elif name == STATUS and isinstance(record, ConfigRecord):
            problems += [f"status key `{k}` is not allowed" for k in record if k not in STATUS_KEYS]
        else:
            problems.append(f"record `{name}` ({type(record).__name__}) is not allowed")
    if problems:
        raise UpdateRejectedError(problems)


def allowlist_mod(msg: Message, context: Context, call_next: Any) -> Message:
    """ClientApp mod: let a reply out only if every record passes :func:`check_reply`.

    A reply that breaks the allowlist is replaced by an error reply, whose reason
    names the offending records; its content never leaves the client.
    """
    from flwr.app import Error

    reply: Message = call_next(msg, context)
    if reply.has_error():
        return reply
    try:
        check_reply(reply.content)
    except UpdateRejectedError as e:
        logger.error("blocked an outgoing reply: %s", e)
        return Message(error=Error(code=403, reason=str(e)), reply_to=msg)
    return reply


def private_allowlist_mod(msg: Message, context: Context, call_next: Any) -> Message:
    """ClientApp mod for a client under privacy: :func:`check_reply` with ``private=True``.

    A failure's or refusal's free text may hold data (a line number, a count, a
    file path), so under privacy it stays in the client's own log and the reply
    carries a fixed reason: :data:`PRIVATE_BUDGET_REASON` or
    :data:`PRIVATE_FAILURE_REASON`.
    """
    from flwr.app import Error

    try:
        reply: Message = call_next(msg, context)
    except Exception as e:  # noqa: BLE001 - the reason must not leave the client
        logger.error("client failed (kept here under privacy): %s", e, exc_info=True)
        return Message(error=Error(code=500, reason=PRIVATE_FAILURE_REASON), reply_to=msg)
    if reply.has_error():
        logger.error("client failed (kept here under privacy): %s", reply.error.reason)
        return Message(
            error=Error(code=reply.error.code, reason=PRIVATE_FAILURE_REASON), reply_to=msg
        )
    if STATUS in reply.content.config_records:
        status = reply.content.config_records[STATUS]
        reason = str(status.get("reason", ""))
        logger.warning("refusal (kept here under privacy): %s", reason)
        budget = "budget" in reason.lower()
        status["reason"] = PRIVATE_BUDGET_REASON if budget else PRIVATE_FAILURE_REASON
    try:
        check_reply(reply.content, private=True)
    except UpdateRejectedError as e:
        logger.error("blocked an outgoing reply under privacy: %s", e)
        return Message(error=Error(code=403, reason=str(e)), reply_to=msg)
    return reply


def record_nbytes(content: RecordDict) -> int:
    """Bytes of the arrays in ``content`` (what dominates a message's size)."""
    total = 0
    for record in content.values():
        if isinstance(record, ArrayRecord):
            total += sum(len(a.data) for a in record.values())
    return total


def wire_dtype(name: object) -> torch.dtype:
    """The torch dtype of wire-dtype ``name``; a clear error for anything else."""
    if not isinstance(name, str) or name not in WIRE_DTYPES:
        valid = ", ".join(repr(k) for k in WIRE_DTYPES)
        raise ValueError(f"`{WIRE_DTYPE_KEY}` must be one of {valid}, got {name!r}")
    return WIRE_DTYPES[name]


def to_wire(state: dict[str, torch.Tensor], dtype: str) -> ArrayRecord:
    """``state`` as an ArrayRecord, floating tensors cast to wire dtype ``dtype``."""
    target = wire_dtype(dtype)
    return ArrayRecord(
        {k: v.detach().to(target) if v.is_floating_point() else v for k, v in state.items()}
    )


def from_wire(
    record: ArrayRecord, dtype: str, *, where: str
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Float32 tensors of ``record``, and a problem for each not in wire dtype ``dtype``.

    ``where`` names the record in the problems (``"lora"``, ``"head"``).
    """
    expected = wire_dtype(dtype)
    state = record.to_torch_state_dict()
    problems = [
        f"array `{where}/{k}` is {str(v.dtype).removeprefix('torch.')}, expected {dtype}"
        for k, v in state.items()
        if v.dtype != expected
    ]
    return {k: v.to(torch.float32) for k, v in state.items()}, problems
