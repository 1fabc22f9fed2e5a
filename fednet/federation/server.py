"""The server side of a federation: discovery, rounds, personalisation, outputs."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from flwr.app import ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid

from fednet import protocol as P
from fednet.config import FederationConfig
from fednet.errors import ConfigError, UpdateRejectedError
from fednet.federation.recorder import RunRecorder
from fednet.names import check_name
from fednet.strategies import FednetStrategy, GlobalState, create_strategy, create_wrapper
from fednet.strategies.fedlora import FedLoRA
from fednet.strategies.profile import ClientProfile

__all__ = [
    "initial_state",
    "run_server",
    "build_strategy",
    "personalize",
    "collect_signatures",
    "publish_to_hub",
]

logger = logging.getLogger(__name__)


def build_strategy(cfg: FederationConfig) -> FednetStrategy:
    """The strategy the preset names, wrapped by its robust rule and by central DP
    (outermost) when configured."""
    if cfg.strategy.prototypes:
        raise ConfigError(
            "`strategy.prototypes` is not yet carried out by federation runs (clients do not "
            "yet receive network-space maps); the prototype exchange runs in "
            "`fednet bench-representation` and fednet.representation.prototypes"
        )
    central = cfg.privacy.enabled and cfg.privacy.update_mode == "central"
    if central and cfg.strategy.rank_aggregation in ("frozen-a", "svd"):
        raise ConfigError(
            f"`strategy.rank-aggregation` {cfg.strategy.rank_aggregation!r} does not yet "
            "compose with `privacy.update-mode` 'central': central DP averages the factors "
            "itself (and would add noise to a frozen A); use update-mode 'local' or "
            "'rank-wise', 'fedit' or 'zero-pad'"
        )
    strategy = create_strategy(
        cfg.strategy.name,
        rank_aggregation=cfg.strategy.rank_aggregation,
        fraction_train=cfg.strategy.fraction_train,
        min_clients=cfg.strategy.min_clients,
        seed=cfg.seed,
        wire_dtype=cfg.wire_dtype,
        lora_grouping=cfg.strategy.lora_grouping,
    )
    strategy.preset = cfg  # every client profile is checked against the preset
    strategy = create_wrapper(cfg.strategy.robust, strategy, cfg.strategy)
    if central and not getattr(strategy, "composes_with_central_dp", True):
        raise ConfigError(
            f"`strategy.robust` {cfg.strategy.robust!r} decides from every client's raw "
            "update, which breaks the sensitivity central DP is calibrated to, so it cannot "
            "run under `privacy.update-mode` 'central'; use update-mode 'local' or DP-SGD "
            'with a robust rule, or `strategy.robust = "none"`'
        )
    if central:
        from fednet.privacy.randomness import noise_source
        from fednet.strategies.dp_central import CentralDP

        return CentralDP(  # type: ignore[return-value]
            cast(FedLoRA, strategy),  # CentralDP raises TypeError for other strategies
            noise_multiplier=cfg.privacy.update_noise_multiplier,
            clipping_norm=cfg.privacy.update_clip,
            noise=noise_source(
                reproducible=cfg.privacy.reproducible_noise, parts=(cfg.seed, "central-dp")
            ),
        )
    return strategy


def initial_state(
    cfg: FederationConfig,
    profiles: dict[int, ClientProfile],
    *,
    head_of: Callable[[ClientProfile], str] | None = None,
) -> GlobalState:
    """Seeded initial LoRA per LoRA group (at its largest rank), and a head per head
    key, sized to its base model's hidden size.

    ``head_of`` is the strategy's head key (:meth:`FedLoRA.head_of`; default the
    client's task on its base model). Clients sharing a head key must share the
    head's hidden size.
    """
    from fednet.lora import truncate_rank
    from fednet.models import build_classifier, init_head, lora_targets

    state = GlobalState()
    tasks: dict[str, tuple[str, ...]] = {}
    for p in profiles.values():
        if tasks.setdefault(p.task, p.label_names) != p.label_names:
            raise ConfigError(
                f"clients of task {p.task!r} disagree on label names: "
                f"{list(tasks[p.task])} vs {list(p.label_names)} ({p.client_id})"
            )
    hidden: dict[str, int] = {}
    grouping = cfg.strategy.lora_grouping
    for base in sorted({p.base_model for p in profiles.values()}):
        rank = max(p.rank for p in profiles.values() if p.base_model == base)
        model = build_classifier(
            base,
            rank=rank,
            lora_alpha=cfg.lora_alpha(rank),
            lora_dropout=cfg.lora.dropout,
            target_modules=lora_targets(base, cfg.lora.target_modules),
            num_labels=2,
            seed=cfg.seed,
        )
        hidden[base] = int(model.head.in_features)
        # every group of a base model starts from the same seeded factors, at its largest rank
        groups: dict[str, int] = {}
        for p in profiles.values():
            if p.base_model == base:
                key = p.lora_group(grouping)
                groups[key] = max(groups.get(key, 0), p.rank)
        for key, top in sorted(groups.items()):
            state.lora[key] = truncate_rank(model.lora_state(), top)
    key_of = head_of or (lambda p: p.head_group)
    for p in sorted(profiles.values(), key=lambda p: p.client_id):
        head = init_head(hidden[p.base_model], len(tasks[p.task]), seed=cfg.seed)
        key = key_of(p)
        have = state.heads.get(key)
        if have is not None and have["head.weight"].shape != head["head.weight"].shape:
            raise ConfigError(
                f"head {key!r} is shared by clients of different hidden sizes "
                f"({p.client_id} on {p.base_model}); heads of one task on different base "
                "models need their own key"
            )
        state.heads[key] = head
    return state


def personalize(
    grid: Grid,
    strategy: FednetStrategy,
    state: GlobalState,
    cfg: FederationConfig,
    recorder: RunRecorder,
) -> dict[str, dict[str, float]]:
    """Each client fine-tunes a copy of the shared adapter; keep every copy."""
    from fednet.models import lora_targets, save_adapter

    strategy = getattr(strategy, "strategy", strategy)  # unwrap privacy wrappers
    if cfg.personalize_steps <= 0 or not isinstance(strategy, FedLoRA):
        return {}
    live = set(grid.get_node_ids())
    msgs = []
    for p in strategy.profiles.values():
        if p.node_id not in live:
            continue
        content = strategy.payload(state, p)
        content[P.CONFIG] = strategy.message_config(
            cfg.rounds + 1, ConfigRecord({"personalize": 1, "steps": cfg.personalize_steps})
        )
        msgs.append(
            Message(
                content,
                dst_node_id=p.node_id,
                message_type=MessageType.TRAIN,
                group_id="personalize",
            )
        )
    out: dict[str, dict[str, float]] = {}
    for r in strategy.valid_replies(
        grid.send_and_receive(msgs, timeout=cfg.strategy.round_timeout), "personalize"
    ):
        profile = strategy.profile_of(r)
        assert profile is not None
        p = profile
        if P.LORA not in r.content.array_records and P.HEAD not in r.content.array_records:
            # central DP without DP-SGD: the personalised adapter stays on the client
            out[p.client_id] = {
                k: float(v)  # type: ignore[arg-type]
                for k, v in r.content.metric_records.get(P.METRICS, {}).items()
            }
            logger.info("personalised %s: the adapter stays on the client", p.client_id)
            continue
        try:
            lora, head = strategy.validate(r.content, p, state)
        except UpdateRejectedError as e:
            strategy.fail(p.client_id, "personalize", str(e))
            # its ledger was charged all the same: what it signs later claims this ε
            out[p.client_id] = P.reported_epsilon(r.content.metric_records.get(P.METRICS, {}))
            continue
        lora = strategy.with_frozen_a(p, lora, state)
        metrics = {k: float(v) for k, v in r.content.metric_records[P.METRICS].items()}  # type: ignore[arg-type]
        out[p.client_id] = metrics
        save_adapter(
            recorder.run_dir / "personalized" / check_name("client id", p.client_id),
            lora_state=lora,
            base_model=p.base_model,
            rank=p.rank,
            lora_alpha=p.lora_alpha,
            lora_dropout=cfg.lora.dropout,
            target_modules=lora_targets(p.base_model, cfg.lora.target_modules),
            head_state=head,
            label_names=p.label_names,
            task=p.task,
        )
        recorder.writer.add_scalar(
            f"personalized-accuracy/{p.client_id}",
            metrics.get("accuracy", float("nan")),
            cfg.rounds,
        )
        logger.info("personalised %s: accuracy %.4f", p.client_id, metrics.get("accuracy", -1))
    return out


def save_sketches(
    run_dir: Path, sketches: dict[str, dict[str, Any]], *, into_personalized: bool = False
) -> None:
    """Write each client's DP sketch to ``sketches/<client>/sketch.safetensors``
    (and beside its personalised adapter)."""
    from safetensors.torch import save_file

    for cid, tensors in sketches.items():
        check_name("client id", cid)
        target = (
            (run_dir / "personalized" / cid) if into_personalized else (run_dir / "sketches" / cid)
        )
        if into_personalized and not target.is_dir():
            continue
        target.mkdir(parents=True, exist_ok=True)
        tmp = target / "sketch.safetensors.tmp"
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
        tmp.replace(target / "sketch.safetensors")


def collect_signatures(
    grid: Grid, strategy: FednetStrategy, cfg: FederationConfig, run_dir: Path
) -> list[Any]:
    """Ask every client to sign the manifests of its adapters; keep what they signed.

    The server holds no client key: each client checks and signs its own
    release inside its ClientApp (:mod:`fednet.federation.signing`). The
    signed manifests are written to ``<run>/signed/<name>.json``; a client
    that does not sign is logged, and its adapters are not published.
    """
    from fednet.atomic import write_atomic
    from fednet.errors import SignatureError
    from fednet.federation.signing import read_signed, release_record
    from fednet.hub.publish import SIGNED_DIR, client_releases

    inner = getattr(strategy, "strategy", strategy)
    live = set(grid.get_node_ids())
    asked: dict[int, tuple[ClientProfile, Any]] = {}
    msgs = []
    for p in sorted(inner.profiles.values(), key=lambda p: p.client_id):
        if p.node_id not in live:
            logger.warning("%s is gone; its adapters are not signed or published", p.client_id)
            continue
        releases = client_releases(run_dir, p.client_id)
        if not releases:
            continue
        asked[p.node_id] = (p, releases)
        msgs.append(
            Message(
                RecordDict({P.RELEASE: release_record(releases)}),
                dst_node_id=p.node_id,
                message_type=MessageType.QUERY,
                group_id="sign",
            )
        )
    signed = []
    answered = set()
    for r in grid.send_and_receive(msgs, timeout=cfg.strategy.round_timeout):
        node = r.metadata.src_node_id
        if node not in asked:
            continue
        p, releases = asked[node]
        answered.add(node)
        if r.has_error() or P.SIGNED not in r.content.config_records:
            reason = r.error.reason if r.has_error() else "no signed manifests"
            logger.warning("%s did not sign its release: %s", p.client_id, reason)
            continue
        try:
            manifests = read_signed(r.content.config_records[P.SIGNED], releases, p.client_id)
        except (SignatureError, ValueError, TypeError) as e:
            logger.warning("signed release of %s rejected: %s", p.client_id, e)
            continue
        for m in manifests:
            write_atomic(
                run_dir / SIGNED_DIR / f"{m.name}.json", m.to_json(indent=2).encode(), mode=0o644
            )
            signed.append(m)
    for node in set(asked) - answered:
        logger.warning("%s did not answer the request to sign", asked[node][0].client_id)
    return signed


def publish_to_hub(cfg: FederationConfig, run_dir: Path) -> None:
    """Forward every manifest the clients signed, with its files, to the hub."""
    import os

    from fednet.hub.publish import publish_signed_run

    token = cfg.hub.token or os.environ.get("FEDNET_HUB_TOKEN") or None
    manifests = publish_signed_run(run_dir, cfg.hub.location, token=token)
    logger.info("published %d client-signed adapters to %s", len(manifests), cfg.hub.location)


def run_server(
    grid: Grid,
    cfg: FederationConfig,
    run_dir: Path,
    *,
    min_nodes: int | None = None,
    discovery_timeout: float = 600.0,
    resume: bool = False,
) -> dict[str, Any]:
    """Run a whole federation on ``grid``; write its outputs to ``run_dir``.

    Every completed round is checkpointed into ``run_dir/checkpoint``; with
    ``resume`` the run continues after the last checkpointed round.
    """
    from fednet.federation.checkpoint import checkpointing, resume_from

    strategy = build_strategy(cfg)
    need = len(cfg.clients) if min_nodes is None else min_nodes
    profiles = strategy.discover(grid, min_nodes=need, timeout=discovery_timeout)
    if not profiles:
        failed = "; ".join(f"{w}: {f[-1]['reason']}" for w, f in sorted(strategy.failures.items()))
        raise RuntimeError(f"no client sent a valid profile ({failed or 'no replies'})")
    head_of = getattr(strategy, "head_of", None)  # wrappers hand on the inner strategy's
    recorder = RunRecorder(run_dir, cfg, profiles, head_of=head_of)
    ckpt = resume_from(run_dir, cfg, strategy, recorder) if resume else None
    if ckpt is None:
        state = initial_state(cfg, profiles, head_of=head_of)
        recorder.save_state(run_dir / "rounds" / "0", state)
    done = ckpt.server_round if ckpt else 0
    result = strategy.start(
        grid,
        ckpt.arrays if ckpt else state.to_arrayrecord(),
        num_rounds=cfg.rounds,
        timeout=cfg.strategy.round_timeout,
        start_round=done + 1,
        on_round_end=checkpointing(
            recorder.on_round, run_dir, cfg, strategy, recorder, resumed_from=done
        ),
    )
    final = GlobalState.from_arrayrecord(result.arrays)
    save_sketches(run_dir, getattr(strategy, "sketches", {}))
    personalized = personalize(grid, strategy, final, cfg, recorder)
    save_sketches(run_dir, getattr(strategy, "sketches", {}), into_personalized=True)
    summary = recorder.finish(
        personalized,
        refusals=dict(strategy.refusals),
        failures=dict(strategy.failures),
        finished=strategy.finished_clients(),
    )
    signed = collect_signatures(grid, strategy, cfg, run_dir)
    if cfg.hub.location and signed:
        publish_to_hub(cfg, run_dir)
    elif cfg.hub.location:
        logger.warning("no client signed a release; nothing is published to %s", cfg.hub.location)
    logger.info("run finished: %s", run_dir)
    return summary
