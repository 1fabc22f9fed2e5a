"""FedLoRA: federated LoRA across heterogeneous ranks, base models and tasks."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable

import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid

from fednet import protocol as P
from fednet.errors import UpdateRejectedError
from fednet.lora import (
    RANK_AGGREGATIONS,
    LoraUpdate,
    aggregate_lora,
    svd_aggregate,
    truncate_rank,
    weighted_mean,
)
from fednet.strategies.base import FednetStrategy
from fednet.strategies.profile import ClientProfile
from fednet.strategies.state import GlobalState, lora_group

__all__ = ["FedLoRA", "validate_update", "rejection_reasons"]

logger = logging.getLogger(__name__)

_REASONS = (
    ("non-finite", "non-finite"),
    ("expected float", "wrong-dtype"),
    (" has shape ", "wrong-shape"),
    ("is not a LoRA factor", "unexpected-key"),
    ("is not a head tensor", "unexpected-key"),
    ("keys differ", "unexpected-key"),
    ("lacks the `lora` or `head` record", "missing-record"),
    ("no global LoRA for group", "unknown-group"),
)


def rejection_reasons(problems: list[str]) -> list[str]:
    """Named reasons (``non-finite``, ``wrong-dtype``, ``wrong-shape``,
    ``unexpected-key``, ``missing-record``, ``unknown-group``, ``not-allowed``)
    of the problems an :class:`UpdateRejectedError` lists."""
    out = set()
    for text in problems:
        out.add(next((name for pat, name in _REASONS if pat in text), "not-allowed"))
    return sorted(out)


def validate_update(
    content: RecordDict,
    profile: ClientProfile,
    state: GlobalState,
    *,
    wire_dtype: str = "float32",
    lora_grouping: str = "base-model",
    frozen_a: bool = False,
    head_key: str | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Check a training reply against the allowlist and the client's profile.

    Returns the LoRA and head tensors in float32; raises
    :class:`UpdateRejectedError` listing every problem (wrong keys, ranks,
    shapes or wire dtype, non-finite values). With ``frozen_a`` the reply must
    hold the B factors only (FFA-LoRA: A never travels up). The head is checked
    against the global head ``head_key`` (default: the client's task on its base
    model).
    """
    problems: list[str] = []
    try:
        P.check_reply(content)
    except UpdateRejectedError as e:
        problems += e.problems
    if P.LORA not in content.array_records or P.HEAD not in content.array_records:
        raise UpdateRejectedError(problems + ["reply lacks the `lora` or `head` record"])
    lora, bad_lora = P.from_wire(content.array_records[P.LORA], wire_dtype, where=P.LORA)
    head, bad_head = P.from_wire(content.array_records[P.HEAD], wire_dtype, where=P.HEAD)
    problems += bad_lora + bad_head
    group = profile.lora_group(lora_grouping)
    ref = state.lora.get(group)
    if ref is None:
        problems.append(f"no global LoRA for group {group!r}")
    else:
        if frozen_a:
            ref = {k: v for k, v in ref.items() if k.endswith(".lora_B.weight")}
        if set(lora) != set(ref):
            extra, missing = sorted(set(lora) - set(ref)), sorted(set(ref) - set(lora))
            problems.append(
                f"LoRA keys differ from the group's adapter"
                f"{' (frozen-a: B factors only)' if frozen_a else ''}: "
                f"unexpected {extra[:3]}, missing {missing[:3]}"
            )
        else:
            for k, v in lora.items():
                expect = truncate_rank({k: ref[k]}, profile.rank)[k].shape
                if tuple(v.shape) != tuple(expect):
                    problems.append(f"{k} has shape {tuple(v.shape)}, expected {tuple(expect)}")
    ref_head = state.heads.get(head_key or profile.head_group, {})
    if ref_head and set(head) != set(ref_head):
        extra, missing = sorted(set(head) - set(ref_head)), sorted(set(ref_head) - set(head))
        problems.append(
            f"head keys differ from the task's head: unexpected {extra[:3]}, missing {missing[:3]}"
        )
    for k, v in head.items():
        if k in ref_head and tuple(v.shape) != tuple(ref_head[k].shape):
            problems.append(f"{k} has shape {tuple(v.shape)}, expected {tuple(ref_head[k].shape)}")
    for k, v in {**lora, **head}.items():
        if not torch.isfinite(v).all():
            problems.append(f"{k} has non-finite values")
    if problems:
        raise UpdateRejectedError(problems)
    return lora, head


class FedLoRA(FednetStrategy):
    """Federated averaging of LoRA factors and task heads.

    Implementation based on FedIT (Zhang et al., https://arxiv.org/abs/2305.05644),
    separate averaging of the A and B factors, and HetLoRA (Cho et al.,
    https://arxiv.org/abs/2401.06432) truncation for clients of smaller rank.

    LoRA factors are averaged over the clients of a LoRA group, weighted by
    their number of training examples; heads over all clients of a task on one
    base model (:meth:`head_of`). A
    group is every client of a base model, or with ``lora_grouping="task"``
    every client of a base model and task, so unrelated tasks do not pull one
    adapter apart. The shared adapter keeps the group's largest rank. See
    :mod:`fednet.lora.aggregate` for ``rank_aggregation``.

    Parameters
    ----------
    rank_aggregation : str
        ``"rank-wise"`` (default), ``"zero-pad"`` or ``"fedit"`` (FedIT's separate,
        inexact averaging), ``"svd"`` (FlexLoRA, exact) or ``"frozen-a"``
        (FFA-LoRA: A stays at its seeded initialisation, only B trains and travels;
        exact). See :mod:`fednet.lora.aggregate`.
    lora_grouping : str
        ``"base-model"`` (default) or ``"task"``: which clients average their
        LoRA factors together (see :mod:`fednet.strategies.state`).
    wire_dtype : str
        Dtype of the LoRA factors and heads on the wire, both ways:
        ``"float32"`` (default) or ``"float16"`` (see :mod:`fednet.protocol`).
    fraction_train, min_clients, seed
        See :class:`~fednet.strategies.base.FednetStrategy`.
    """

    def __init__(
        self,
        *,
        rank_aggregation: str = "rank-wise",
        fraction_train: float = 1.0,
        min_clients: int = 0,
        seed: int = 0,
        wire_dtype: str = "float32",
        lora_grouping: str = "base-model",
    ) -> None:
        super().__init__(fraction_train=fraction_train, min_clients=min_clients, seed=seed)
        lora_group("", "", lora_grouping)  # names the valid groupings if it is not one
        self.lora_grouping = lora_grouping
        if rank_aggregation not in RANK_AGGREGATIONS:
            valid = ", ".join(map(repr, RANK_AGGREGATIONS))
            raise ValueError(f"`rank-aggregation` must be one of {valid}, got {rank_aggregation!r}")
        P.wire_dtype(wire_dtype)
        self.rank_aggregation = rank_aggregation
        self.wire_dtype = wire_dtype
        self._state_for_round = GlobalState()
        self.sketches: dict[str, dict[str, torch.Tensor]] = {}
        self.last_accepted: list[tuple[ClientProfile, dict, dict, dict]] = []
        # the ε each client reported in the last training round, accepted or not
        self.spent: dict[str, dict[str, float]] = {}

    @property
    def frozen_a(self) -> bool:
        """Whether A stays fixed and only B travels up (``rank-aggregation = "frozen-a"``)."""
        return self.rank_aggregation == "frozen-a"

    # -- what each client receives --------------------------------------------
    def payload(self, state: GlobalState, profile: ClientProfile) -> RecordDict:
        """The group's LoRA truncated to the client's rank, and its task's head."""
        lora = truncate_rank(state.lora[self.group_of(profile)], profile.rank)
        return RecordDict(
            {
                P.LORA: P.to_wire(lora, self.wire_dtype),
                P.HEAD: P.to_wire(state.heads[self.head_of(profile)], self.wire_dtype),
            }
        )

    def with_frozen_a(
        self, profile: ClientProfile, lora: dict[str, torch.Tensor], state: GlobalState
    ) -> dict[str, torch.Tensor]:
        """``lora`` completed with the group's fixed A at the client's rank (``frozen-a``
        replies carry B only); unchanged otherwise."""
        if not self.frozen_a:
            return lora
        ref = truncate_rank(state.lora[self.group_of(profile)], profile.rank)
        return {**{k: v for k, v in ref.items() if k.endswith(".lora_A.weight")}, **lora}

    def group_of(self, profile: ClientProfile) -> str:
        """Key of ``profile``'s LoRA group in the global state."""
        return profile.lora_group(self.lora_grouping)

    def head_of(self, profile: ClientProfile) -> str:
        """Key of ``profile``'s head in the global state: its task on its base model.

        A head reads its base model's pooled embedding, so heads of one task on
        different base models are kept apart. A strategy whose heads read a shared
        network space (a learned map from every base model's embedding, the
        representation layer) overrides this to key heads by task alone.
        """
        return profile.head_group

    def message_config(self, server_round: int, config: ConfigRecord | None = None) -> ConfigRecord:
        """``config`` plus the round, the wire dtype and whether A is frozen."""
        return ConfigRecord(
            {
                **dict(config or ConfigRecord()),
                "server-round": server_round,
                P.WIRE_DTYPE_KEY: self.wire_dtype,
                P.FROZEN_A_KEY: int(self.frozen_a),
            }
        )

    def validate(
        self, content: RecordDict, profile: ClientProfile, state: GlobalState
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """:func:`validate_update` in this strategy's wire dtype."""
        return validate_update(
            content,
            profile,
            state,
            wire_dtype=self.wire_dtype,
            lora_grouping=self.lora_grouping,
            frozen_a=self.frozen_a,
            head_key=self.head_of(profile),
        )

    def _messages(
        self,
        server_round: int,
        arrays: ArrayRecord,
        config: ConfigRecord,
        profiles: list[ClientProfile],
        message_type: str,
    ) -> list[Message]:
        state = GlobalState.from_arrayrecord(arrays)
        msgs = []
        for p in profiles:
            if self.group_of(p) not in state.lora or self.head_of(p) not in state.heads:
                self.fail(
                    p.client_id,
                    str(message_type),
                    f"no global state for LoRA group {self.group_of(p)!r} and head "
                    f"{self.head_of(p)!r}",
                )
                continue
            content = self.payload(state, p)
            content[P.CONFIG] = self.message_config(server_round, config)
            self.bytes_down[p.client_id] = self.bytes_down.get(p.client_id, 0) + P.record_nbytes(
                content
            )
            msgs.append(
                Message(
                    content,
                    dst_node_id=p.node_id,
                    message_type=message_type,
                    group_id=str(server_round),
                )
            )
        return msgs

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        self._state_for_round = GlobalState.from_arrayrecord(arrays)
        sampled = self.sample(grid)
        logger.info("round %s: training %s", server_round, [p.client_id for p in sampled])
        return self._messages(server_round, arrays, config, sampled, MessageType.TRAIN)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        live = set(grid.get_node_ids())
        profiles = sorted(
            (p for n, p in self.profiles.items() if n in live), key=lambda p: p.client_id
        )
        return self._messages(server_round, arrays, config, profiles, MessageType.EVALUATE)

    # -- aggregation -----------------------------------------------------------
    def accept(
        self, server_round: int, replies: Iterable[Message]
    ) -> list[tuple[ClientProfile, dict, dict, dict]]:
        """Validated (profile, lora, head, metrics) updates of a training round.

        Counts the bytes each client sent, keeps released sketches, notes the ε
        every client reported (:attr:`spent`, rejected or not: its ledger was
        charged) and logs every rejected update with its reasons.
        """
        accepted: list[tuple[ClientProfile, dict, dict, dict]] = []
        self.spent = {}
        for r in self.valid_replies(replies, "train"):
            p = self.profile_of(r)
            assert p is not None
            self.bytes_up[p.client_id] = self.bytes_up.get(p.client_id, 0) + P.record_nbytes(
                r.content
            )
            self.spent[p.client_id] = P.reported_epsilon(
                r.content.metric_records.get(P.METRICS, MetricRecord())
            )
            try:
                lora, head = self.validate(r.content, p, self._state_for_round)
            except UpdateRejectedError as e:
                self.fail(p.client_id, "train", str(e))
                self.log_event(
                    server_round,
                    p.client_id,
                    "rejected",
                    "validate",
                    group=self.group_of(p),
                    reasons=rejection_reasons(e.problems),
                    detail="; ".join(e.problems)[:500],
                )
                continue
            self.trained[p.client_id] = server_round
            if P.SKETCH in r.content.array_records:
                self.sketches[p.client_id] = r.content.array_records[P.SKETCH].to_torch_state_dict()
            metrics = dict(r.content.metric_records.get(P.METRICS, MetricRecord()))
            logger.info(
                "round %s: %-12s loss %.4f  (%d steps, %.1fs)",
                server_round,
                p.client_id,
                metrics.get("train-loss", math.nan),
                int(metrics.get("steps", 0)),  # type: ignore[arg-type]
                metrics.get("compute-s", math.nan),
            )
            accepted.append((p, lora, head, metrics))
        self.last_accepted = list(accepted)
        return accepted

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        accepted = self.accept(server_round, replies)
        if not self.enough(len(accepted)):
            logger.warning(
                "round %s: %d valid updates, need %d; global state unchanged",
                server_round,
                len(accepted),
                max(1, self.min_clients),
            )
            return None, self._train_metrics(accepted)
        new = self.aggregate(self._state_for_round, accepted)
        return new.to_arrayrecord(), self._train_metrics(accepted)

    def aggregate(
        self, state: GlobalState, accepted: list[tuple[ClientProfile, dict, dict, dict]]
    ) -> GlobalState:
        """New global state from accepted (profile, lora, head, metrics) updates."""
        new = GlobalState(lora=dict(state.lora), heads=dict(state.heads))
        for key in sorted({self.group_of(p) for p, *_ in accepted}):
            group = [(p, lora) for p, lora, _, _ in accepted if self.group_of(p) == key]
            if self.rank_aggregation == "svd":
                res = svd_aggregate(
                    [lora for _, lora in group],
                    [p.weight for p, _ in group],
                    rank=state.rank_of(key),
                )
                new.lora[key] = res.state
                self.diagnostics[f"svd-energy/{key}"] = res.min_energy
                self.diagnostics[f"svd-revived/{key}"] = float(sum(res.revived.values()))
                if res.min_energy < 0.9:
                    logger.warning(
                        "group %s: rank %d keeps only %.1f%% of the aggregate's energy",
                        key,
                        state.rank_of(key),
                        100 * res.min_energy,
                    )
                continue
            new.lora[key] = aggregate_lora(
                [LoraUpdate(lora, p.weight) for p, lora in group],
                rank=state.rank_of(key),
                previous=state.lora[key],
                method=self.rank_aggregation,
            )
        for key in {self.head_of(p) for p, *_ in accepted}:
            group = [(p, head) for p, _, head, _ in accepted if self.head_of(p) == key]
            new.heads[key] = {
                k: weighted_mean([h[k] for _, h in group], [p.weight for p, _ in group])
                for k in group[0][1]
            }
        return new

    def contributions(self, server_round: int, arrays: ArrayRecord) -> list[dict]:
        """The contribution ledger's rows for this round (see
        :mod:`fednet.strategies.contribution`): every validated update, marked
        accepted or with the wrappers' decision, and every rejected reply."""
        from fednet.strategies.contribution import contribution_rows

        decided: dict[str, dict] = {}
        for e in self.events:  # the last decision about a client wins
            decided[e["client"]] = e
        excluded = {c for c, e in decided.items() if e["status"] == "rejected"}
        rows = []
        if self.last_accepted:
            after = GlobalState.from_arrayrecord(arrays)
            rows = contribution_rows(
                server_round,
                self._state_for_round,
                after,
                [(p, lora, head) for p, lora, head, _ in self.last_accepted],
                group_of=self.group_of,
                head_of=self.head_of,
                excluded=excluded,
                complete=lambda p, lora: self.with_frozen_a(p, lora, self._state_for_round),
            )
        seen = {r["client"] for r in rows}
        for r in rows:
            verdict = decided.get(r["client"])
            r["status"] = verdict["status"] if verdict else "accepted"
            r["reasons"] = list(verdict.get("reasons", [])) if verdict else []
        for cid, e in sorted(decided.items()):
            if cid not in seen:
                rows.append(
                    {
                        "round": server_round,
                        "client": cid,
                        "group": e.get("group"),
                        "status": e["status"],
                        "reasons": list(e.get("reasons", [])),
                        "weight": 0.0,
                        "update_norm": None,
                        "cosine": None,
                        "contribution": None,
                        "method": "gradient-projection",
                    }
                )
        return rows

    def _train_metrics(self, accepted: list) -> MetricRecord:
        """The round's train metrics: loss and timings of the accepted updates, and
        the ε of every client that replied (:attr:`spent`), accepted or not."""
        out: dict[str, float] = {"clients": float(len(accepted))}
        total = sum(p.weight for p, *_ in accepted)
        if total:
            out["train-loss"] = (
                sum(m.get("train-loss", math.nan) * p.weight for p, _, _, m in accepted) / total
            )
        for p, _, _, m in accepted:
            for k in ("train-loss", "compute-s", "wall-s"):
                if k in m:
                    out[f"{p.client_id}/{k}"] = float(m[k])
        for client_id, spent in sorted(self.spent.items()):
            for k, value in spent.items():
                out[f"{client_id}/{k}"] = value
        return MetricRecord(out)  # type: ignore[arg-type]

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        rows = []
        walls: dict[str, float] = {}
        for r in self.valid_replies(replies, "evaluate"):
            p = self.profile_of(r)
            m = r.content.metric_records.get(P.METRICS)
            if p is None or m is None or "accuracy" not in m:
                continue
            acc, loss, n = (float(m[k]) for k in ("accuracy", "loss", "num-examples"))  # type: ignore[arg-type]
            rows.append((p, acc, loss, n))
            if "wall-s" in m:
                walls[p.client_id] = float(m["wall-s"])  # type: ignore[arg-type]
        if not rows:
            return None
        n = sum(w for *_, w in rows)
        out = {
            "accuracy": sum(a * w for _, a, _, w in rows) / n,
            "loss": sum(lo * w for _, _, lo, w in rows) / n,
            "accuracy-mean": sum(a for _, a, _, _ in rows) / len(rows),
        }
        for p, a, lo, _ in rows:
            out[f"{p.client_id}/accuracy"] = a
            out[f"{p.client_id}/loss"] = lo
        for cid, wall in walls.items():
            out[f"{cid}/eval-wall-s"] = wall
        return MetricRecord(out)  # type: ignore[arg-type]
