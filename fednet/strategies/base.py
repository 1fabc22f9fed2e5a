"""Shared machinery of fednet strategies: client discovery, sampling, the round loop.

Flower's ``Strategy.start`` always runs rounds ``1..N``. fednet's loop also
resumes from a checkpointed round and calls a hook after every round (to write
adapters, metrics and checkpoints), and it learns each node's public profile
with a ``query`` message before the node takes part.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Result, Strategy

from fednet import protocol as P
from fednet.names import is_safe_name
from fednet.strategies.profile import ClientProfile

__all__ = ["FednetStrategy", "RoundHook", "RoundOutcome"]

logger = logging.getLogger(__name__)


@dataclass
class RoundOutcome:
    """What one round produced, handed to the round hook."""

    server_round: int
    arrays: ArrayRecord
    train_metrics: MetricRecord | None
    evaluate_metrics: MetricRecord | None
    bytes_up: dict[str, int] = field(default_factory=dict)
    bytes_down: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0
    events: list[dict] = field(default_factory=list)
    diagnostics: dict[str, float] = field(default_factory=dict)
    contributions: list[dict] = field(default_factory=list)


RoundHook = Callable[[RoundOutcome], None]

_APP_EXCEPTION = re.compile(r"Exception \w+ occurred\. Message: (.*?)'?>?\s*$", re.S)


def short_reason(reason: str, limit: int = 500) -> str:
    """The message of a failure without Flower's and Ray's wrapping and tracebacks."""
    match = _APP_EXCEPTION.search(reason)
    if match:
        reason = match.group(1)
    lines = [ln.strip() for ln in reason.strip().splitlines() if ln.strip()]
    text = lines[-1] if lines else reason.strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


class FednetStrategy(Strategy):
    """Base class: profiles, sampling, byte accounting and a resumable loop.

    Parameters
    ----------
    fraction_train : float
        Fraction of profiled nodes sampled for training each round.
    min_clients : int
        Minimum valid replies for a round to update the global state (0 means 1).
    seed : int
        Seed of the node sampler.
    """

    def __init__(self, *, fraction_train: float = 1.0, min_clients: int = 0, seed: int = 0):
        if not 0.0 < fraction_train <= 1.0:
            raise ValueError(f"`fraction-train` must be in (0, 1], got {fraction_train}")
        if min_clients < 0:
            raise ValueError(f"`min-clients` must be >= 0, got {min_clients}")
        self.fraction_train = fraction_train
        self.min_clients = min_clients
        self.rng = random.Random(seed)
        self.profiles: dict[int, ClientProfile] = {}
        self.bytes_up: dict[str, int] = {}
        self.bytes_down: dict[str, int] = {}
        self.refusals: dict[str, str] = {}
        self.failures: dict[str, list[dict[str, object]]] = {}
        self.trained: dict[str, int] = {}
        self.server_round = 0
        self.preset: Any = None  # the FederationConfig that profiles are checked against
        self.events: list[dict] = []
        self.diagnostics: dict[str, float] = {}

    def reset_round(self, server_round: int | None = None) -> None:
        """Clear the per-round byte counters, events and diagnostics; note the round now running."""
        self.bytes_up.clear()
        self.bytes_down.clear()
        self.events.clear()
        self.diagnostics.clear()
        if server_round is not None:
            self.server_round = server_round

    def fail(self, who: str, stage: str, reason: str) -> None:
        """Name a client that failed, with its reason, in the log and in :attr:`failures`.

        ``stage`` is ``"profile"``, ``"train"``, ``"evaluate"`` or ``"personalize"``.
        """
        reason = short_reason(reason)
        logger.warning("round %s: %s failed in %s: %s", self.server_round, who, stage, reason)
        self.failures.setdefault(who, []).append(
            {"round": self.server_round, "stage": stage, "reason": reason}
        )

    def finished_clients(self) -> list[str]:
        """Clients whose last accepted training update came after their last failure."""
        return sorted(
            c
            for c, last in self.trained.items()
            if all(int(f["round"]) < last for f in self.failures.get(c, []))  # type: ignore[call-overload]
        )

    def note_missing(self, kind: str, sent: Iterable[Message], replies: list[Message]) -> None:
        """Name every node sent a ``kind`` message that did not reply."""
        answered = {r.metadata.src_node_id for r in replies}
        for m in sent:
            node = m.metadata.dst_node_id
            if node not in answered:
                p = self.profiles.get(node)
                self.fail(p.client_id if p else f"node {node}", kind, "no reply within the timeout")

    def log_event(self, server_round: int, client_id: str, status: str, stage: str, **info: object):
        """Record what happened to one client's update this round (with its reason).

        ``status`` is ``rejected`` (not aggregated), ``clipped`` or ``down-weighted``
        (aggregated with less weight); ``stage`` names the check that decided.
        """
        self.events.append(
            {"round": server_round, "client": client_id, "status": status, "stage": stage, **info}
        )

    def contributions(self, server_round: int, arrays: ArrayRecord) -> list[dict]:
        """Per-client contribution records of the round just aggregated (none by default)."""
        return []

    # -- discovery -----------------------------------------------------------
    def discover(self, grid: Grid, *, min_nodes: int, timeout: float) -> dict[int, ClientProfile]:
        """Wait for ``min_nodes`` nodes and learn the profile of every new one."""
        deadline = time.monotonic() + timeout
        while len(list(grid.get_node_ids())) < min_nodes:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"only {len(list(grid.get_node_ids()))} of {min_nodes} clients "
                    f"connected within {timeout:.0f}s"
                )
            time.sleep(0.5)
        new = [n for n in grid.get_node_ids() if n not in self.profiles]
        if new:
            msgs = [
                Message(RecordDict(), dst_node_id=n, message_type=MessageType.QUERY) for n in new
            ]
            replies = list(grid.send_and_receive(msgs, timeout=timeout))
            self.note_missing("profile", msgs, replies)
            for reply in replies:
                node = reply.metadata.src_node_id
                if (
                    not reply.has_error()
                    and P.STATUS in reply.content.config_records
                    and P.PROFILE not in reply.content.config_records
                ):
                    status = reply.content.config_records[P.STATUS]
                    self.refusals[f"node {node}"] = str(status.get("reason"))
                    logger.warning("node %s refused to join: %s", node, status.get("reason"))
                    continue
                if reply.has_error() or P.PROFILE not in reply.content:
                    why = reply.error.reason if reply.has_error() else "empty reply"
                    self.fail(f"node {node}", "profile", f"sent no profile: {why}")
                    continue
                record = reply.content.config_records[P.PROFILE]
                if P.STATUS in reply.content.config_records:  # the client names its failure
                    claimed = record.get("client-id")
                    who = claimed if is_safe_name(claimed) else f"node {node}"
                    reason = reply.content.config_records[P.STATUS].get("reason")
                    self.fail(str(who), "profile", str(reason))
                    continue
                try:
                    profile = ClientProfile.from_record(node, record, preset=self.preset)
                except ValueError as e:
                    claimed = record.get("client-id")
                    who = claimed if is_safe_name(claimed) else f"node {node}"
                    self.fail(str(who), "profile", str(e))
                    continue
                taken = next(
                    (n for n, p in self.profiles.items() if p.client_id == profile.client_id),
                    None,
                )
                if taken is not None and taken != node:
                    self.fail(
                        f"node {node}",
                        "profile",
                        f"claims client {profile.client_id!r}, already held by node {taken}",
                    )
                    continue
                self.profiles[node] = profile
        logger.info("clients: %s", sorted(p.client_id for p in self.profiles.values()))
        return self.profiles

    def sample(self, grid: Grid) -> list[ClientProfile]:
        """Profiled, connected nodes sampled for this round."""
        live = set(grid.get_node_ids())
        pool = sorted((p for n, p in self.profiles.items() if n in live), key=lambda p: p.client_id)
        k = max(1, round(len(pool) * self.fraction_train)) if pool else 0
        return sorted(self.rng.sample(pool, k), key=lambda p: p.client_id)

    def profile_of(self, msg: Message) -> ClientProfile | None:
        return self.profiles.get(msg.metadata.src_node_id)

    def valid_replies(self, replies: Iterable[Message], kind: str) -> list[Message]:
        """Drop error replies and replies from unknown nodes, logging each."""
        ok = []
        for r in replies:
            p = self.profile_of(r)
            who = p.client_id if p else f"node {r.metadata.src_node_id}"
            if r.has_error():
                self.fail(who, kind, str(r.error.reason))
            elif P.STATUS in r.content.config_records:
                status = r.content.config_records[P.STATUS]
                logger.warning("%s: %s refused to release: %s", kind, who, status.get("reason"))
                self.refusals[who] = str(status.get("reason"))
            elif p is None:
                logger.warning("%s reply from unprofiled %s ignored", kind, who)
            else:
                ok.append(r)
        return ok

    def enough(self, got: int) -> bool:
        """Whether ``got`` valid replies are enough to update the global state."""
        return got >= max(1, self.min_clients)

    # -- the loop ------------------------------------------------------------
    def summary(self) -> None:
        logger.info(
            "%s: fraction-train=%s min-clients=%s",
            type(self).__name__,
            self.fraction_train,
            self.min_clients,
        )

    def start(
        self,
        grid: Grid,
        initial_arrays: ArrayRecord,
        num_rounds: int = 3,
        timeout: float = 3600,
        train_config: ConfigRecord | None = None,
        evaluate_config: ConfigRecord | None = None,
        evaluate_fn: Callable[[int, ArrayRecord], MetricRecord | None] | None = None,
        *,
        start_round: int = 1,
        on_round_end: RoundHook | None = None,
    ) -> Result:
        """Run rounds ``start_round..num_rounds``; call ``on_round_end`` after each."""
        self.summary()
        result = Result()
        arrays = initial_arrays
        result.arrays = arrays
        for rnd in range(start_round, num_rounds + 1):
            t0 = time.monotonic()
            logger.info("[ROUND %s/%s]", rnd, num_rounds)
            self.reset_round(rnd)
            self.discover(grid, min_nodes=0, timeout=timeout)
            config = ConfigRecord(
                {**dict(train_config or {}), "last-round": int(rnd == num_rounds)}
            )
            sent = list(self.configure_train(rnd, arrays, config, grid))
            replies = list(grid.send_and_receive(sent, timeout=timeout))
            self.note_missing("train", sent, replies)
            new_arrays, train_metrics = self.aggregate_train(rnd, replies)
            if new_arrays is not None:
                arrays = new_arrays
                result.arrays = arrays
            if train_metrics is not None:
                result.train_metrics_clientapp[rnd] = train_metrics
            sent = list(
                self.configure_evaluate(
                    rnd, arrays, ConfigRecord(dict(evaluate_config or {})), grid
                )
            )
            eval_replies = list(grid.send_and_receive(sent, timeout=timeout))
            self.note_missing("evaluate", sent, eval_replies)
            eval_metrics = self.aggregate_evaluate(rnd, eval_replies)
            if eval_metrics is not None:
                result.evaluate_metrics_clientapp[rnd] = eval_metrics
            if evaluate_fn is not None:
                res = evaluate_fn(rnd, arrays)
                if res is not None:
                    result.evaluate_metrics_serverapp[rnd] = res
            if on_round_end is not None:
                on_round_end(
                    RoundOutcome(
                        rnd,
                        arrays,
                        train_metrics,
                        eval_metrics,
                        dict(self.bytes_up),
                        dict(self.bytes_down),
                        time.monotonic() - t0,
                        events=list(self.events),
                        diagnostics=dict(self.diagnostics),
                        contributions=self.contributions(rnd, arrays),
                    )
                )
        return result
