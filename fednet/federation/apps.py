"""Factories of the Flower ServerApp and ClientApp.

``server/app.py`` and ``clients/app.py`` build their apps with these (the
ServerApp also sets up its logging, which this library never does), and
``fednet simulate`` calls them with an already loaded configuration.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from fednet import protocol as P
from fednet.config import PROJECT_ROOT, FederationConfig, RunConfig, from_run_config
from fednet.errors import ConfigError

__all__ = ["client_key_dir", "make_server_app", "make_client_app", "new_run_dir", "run_dir_of"]

logger = logging.getLogger(__name__)

DEFAULT_PRESET = RunConfig().preset
"""The preset of a run config that names none."""

NODE_PRESET_ENV = "FEDNET_NODE_PRESET"
"""Environment variable naming a node's own preset, as node config ``preset`` does:
``fednet simulate`` sets it for its virtual SuperNodes, whose node config it cannot
set, and a node's operator may set it for ``flower-supernode``."""


def new_run_dir(base: str | Path = "runs") -> Path:
    """A fresh ``runs/<timestamp>`` directory path (not created)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(base) / stamp
    n = 1
    while path.exists():
        n += 1
        path = Path(base) / f"{stamp}-{n}"
    return path


def run_dir_of(run_config: Any) -> Path:
    """The run directory of a ``flwr run``: run config ``run-dir`` (a relative one
    under the project), else a fresh ``<project>/runs/<timestamp>``.

    ``flwr run .`` runs the app from a copy under ``FLWR_HOME/apps/``; the project
    is where the installed ``fednet`` lives (:data:`fednet.config.PROJECT_ROOT`).
    """
    given = str(run_config.get("run-dir") or "")
    if not given:
        return new_run_dir(PROJECT_ROOT / "runs")
    path = Path(given).expanduser()
    return path if path.is_absolute() else PROJECT_ROOT / path


def client_key_dir(cfg: FederationConfig, client_id: str) -> Path:
    """Where simulated client ``client_id`` keeps its owner key: ``hub.keys-dir`` if
    set, else ``<federation.state-dir>/<client-id>/keys``, its own state directory,
    outside every run directory. The key is ``<client-id>.key``, mode 0600 in a 0700
    directory. Only the ClientApp reads it; the server never does."""
    from fednet.names import check_name

    check_name("client id", client_id)
    if cfg.hub.keys_dir:
        return Path(cfg.hub.keys_dir).expanduser()
    return Path(cfg.state_dir).expanduser() / client_id / "keys"


def make_server_app(
    cfg: FederationConfig | None = None,
    run_dir: str | Path | None = None,
    *,
    min_nodes: int | None = None,
) -> ServerApp:
    """A ServerApp running :func:`fednet.federation.server.run_server`.

    Without ``cfg`` the configuration comes from the run config (``flwr run``).
    """
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        from fednet.federation.server import run_server

        run_config, resume = _split_resume(context)
        conf = cfg if cfg is not None else from_run_config(run_config)
        out = Path(run_dir) if run_dir else run_dir_of(context.run_config)
        run_server(grid, conf, out, min_nodes=min_nodes, resume=resume)

    return app


def _split_resume(context: Context) -> tuple[dict[str, Any], bool]:
    """The run config without ``resume``, and that flag (set by ``flower-server --resume``)."""
    run_config = dict(context.run_config)
    return run_config, bool(run_config.pop("resume", False))


def _config(context: Context, cfg: FederationConfig | None) -> FederationConfig:
    """The client's configuration: its own preset copy (node config ``preset``, else
    ``$FEDNET_NODE_PRESET``) if given.

    A node without one takes the preset the server's run config names. That
    name is the server's, so it must be a relative path to a ``.toml`` file
    inside the app (:func:`_app_preset`): Flower sends the text of a client's
    exception to the server, and a preset's errors quote its keys and values.
    Reproducible noise (``privacy.reproducible-noise``) is taken only from the
    node's own preset: from the server's it would let the server regenerate the
    client's noise and subtract it.

    Raises
    ------
    ConfigError
        A server-named preset outside the app, or one that turns on reproducible noise.
    """
    if cfg is not None:
        return cfg
    run_config, _ = _split_resume(context)
    own = context.node_config.get("preset") or os.environ.get(NODE_PRESET_ENV)
    if own:
        run_config["preset"] = str(own)
        return from_run_config(run_config)
    run_config["preset"] = str(_app_preset(run_config.get("preset", DEFAULT_PRESET)))
    conf = from_run_config(run_config)
    if conf.privacy.reproducible_noise:
        raise ConfigError(
            f"the server's preset {run_config['preset']!r} sets `privacy.reproducible-noise`; "
            "a client takes reproducible noise only from its own preset (node config `preset`)"
        )
    return conf


def _app_preset(name: object) -> Path:
    """The file a server-named preset ``name`` is inside the app's directory.

    Raises
    ------
    ConfigError
        ``name`` is absolute, starts with ``~``, has a ``..`` part, is not a
        ``.toml`` file, or resolves (through links) outside the app.
    """
    text = str(name)
    rel = Path(text)
    problem = ""
    if not text or rel.is_absolute() or text.startswith("~"):
        problem = "is not a relative path"
    elif ".." in rel.parts:
        problem = "has a `..` part"
    elif rel.suffix != ".toml":
        problem = "is not a .toml file"
    else:
        root = PROJECT_ROOT.resolve()
        path = (root / rel).resolve()
        if not path.is_relative_to(root):
            problem = "leads outside the app through a link"
    if problem:
        raise ConfigError(
            f"run config `preset` {text[:200]!r} {problem}: a preset the server names must be "
            "a .toml file inside the app; a node that brings its own sets node config `preset`"
        )
    return path


def _runtime(
    msg: Message, context: Context, cfg: FederationConfig | None, cache_dir: str | Path | None
) -> Any:
    """The client's runtime, with its prepared data cached where the node keeps state.

    In deployment every message is a fresh process, so the split is cached in
    the node's ``state-dir``; a simulation passes a ``cache_dir`` of its own,
    since each worker process may serve every client.
    """
    from fednet.federation.cache import use_cache_dir
    from fednet.federation.client import get_runtime, resolve_client

    conf = _config(context, cfg)
    if "state-dir" in context.node_config:
        use_cache_dir(str(context.node_config["state-dir"]))
    elif cache_dir is not None:
        use_cache_dir(cache_dir)
    return get_runtime(conf, resolve_client(conf, dict(context.node_config)))


def _load_incoming(rt: Any, content: RecordDict) -> None:
    lora = content.array_records.get(P.LORA)
    head = content.array_records.get(P.HEAD)
    rt.load_global(
        {k: v.float() for k, v in lora.to_torch_state_dict().items()} if lora else None,
        {k: v.float() for k, v in head.to_torch_state_dict().items()} if head else None,
    )


def _state_dir(context: Context, default: str | Path | None, conf: FederationConfig) -> Path:
    """Where a client keeps what must survive restarts and runs (its privacy ledger).

    Node config ``state-dir``, else the app's ``state_dir``, else the preset's
    ``federation.state-dir``: never inside a run directory, so that a new run
    does not start a new budget.
    """
    if "state-dir" in context.node_config:
        return Path(str(context.node_config["state-dir"]))
    if default is not None:
        return Path(default)
    return Path(conf.state_dir).expanduser()


def _refusal(msg: Message, reason: str) -> Message:
    return Message(
        RecordDict(
            {
                P.STATUS: ConfigRecord({"refused": 1, "reason": reason}),
                P.METRICS: MetricRecord({"refused": 1.0}),
            }
        ),
        reply_to=msg,
    )


def _release(
    rt: Any, state: Path, msg: Message, kind: str, server_round: int, metrics: dict[str, float]
) -> dict[str, float]:
    """The metrics that may leave; under privacy the rest go to the client's own record.
    What leaves is recorded too, to hold the server's drafts to before signing."""
    from fednet.federation.private import record_own_metrics, record_released, releasable_metrics

    out = releasable_metrics(rt.cfg.privacy, metrics)
    if out.keys() != metrics.keys():
        record_own_metrics(
            state, rt.client.id, {"kind": kind, "round": server_round, "metrics": metrics}
        )
    record_released(state, rt.client.id, msg.metadata.run_id, kind, out)
    return out


def _key_root(
    context: Context, default: str | Path | None, conf: FederationConfig, client_id: str
) -> Path:
    """Where a client keeps its owner key: ``<state-dir>/keys`` of the node, else
    ``default``, else its own ``<federation.state-dir>/<client-id>/keys``."""
    if "state-dir" in context.node_config:
        return Path(str(context.node_config["state-dir"])) / "keys"
    if default is not None:
        return Path(default)
    return client_key_dir(conf, client_id)


def _sign(
    msg: Message,
    context: Context,
    cfg: FederationConfig | None,
    key_dir: str | Path | None,
    state_dir: str | Path | None,
) -> Message:
    """Sign the release the server asks for, with this client's own key, if the
    client's own privacy ledger (in its state directory) backs every privacy claim."""
    from fednet.federation.client import resolve_client
    from fednet.federation.private import keeps_personalized, released_metrics
    from fednet.federation.signing import client_ledger, client_owner_key, sign_release

    conf = _config(context, cfg)
    client = resolve_client(conf, dict(context.node_config))
    state = _state_dir(context, state_dir, conf)
    key = client_owner_key(
        client.id,
        key_root=_key_root(context, key_dir, conf, client.id),
        node_config=context.node_config,
    )
    signed = sign_release(
        msg.content.config_records[P.RELEASE],
        client,
        key,
        ledger=client_ledger(state, client),
        reproducible_noise=conf.privacy.reproducible_noise,
        keeps_personalized=keeps_personalized(conf.privacy),
        released=released_metrics(state, client.id, msg.metadata.run_id),
    )
    return Message(RecordDict({P.SIGNED: signed}), reply_to=msg)


def make_client_app(
    cfg: FederationConfig | None = None,
    mods: Sequence[Any] = (),
    state_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    key_dir: str | Path | None = None,
) -> ClientApp:
    """A ClientApp whose every reply passes the wire allowlist.

    ``mods`` run outside the allowlist (they see what actually leaves).
    ``state_dir`` holds each client's privacy ledger, ``cache_dir`` its
    prepared data and ``key_dir`` its owner key (node config ``state-dir``
    takes precedence for all three; ``owner-key`` names a key the client
    brings). The client signs its own releases, and only privacy claims its
    ledger backs (:mod:`fednet.federation.signing`); its key never leaves it.
    """

    def private_allowlist(msg: Message, context: Context, call_next: Any) -> Message:
        if _config(context, cfg).privacy.enabled:
            return P.private_allowlist_mod(msg, context, call_next)
        return call_next(msg, context)

    app = ClientApp(mods=[*mods, P.allowlist_mod, private_allowlist])

    @app.query()
    def query(msg: Message, context: Context) -> Message:
        from fednet.errors import BudgetExhaustedError
        from fednet.federation.client import resolve_client
        from fednet.federation.private import PrivateRound

        if P.RELEASE in msg.content:
            return _sign(msg, context, cfg, key_dir, state_dir)
        client = resolve_client(_config(context, cfg), dict(context.node_config))
        try:
            rt = _runtime(msg, context, cfg, cache_dir)
        except Exception as e:  # noqa: BLE001 - the server must learn who failed and why
            reason = f"{type(e).__name__}: {e}"[:500]
            logger.error("client %s cannot start: %s", client.id, reason)
            return Message(
                RecordDict(
                    {
                        P.PROFILE: ConfigRecord({"client-id": client.id}),
                        P.STATUS: ConfigRecord({"refused": 1, "reason": reason}),
                    }
                ),
                reply_to=msg,
            )
        privacy = rt.cfg.privacy
        if privacy.enabled and privacy.update_mode == "central":
            state = _state_dir(context, state_dir, rt.cfg)
            try:  # the run's central mechanism is charged before the client joins it
                PrivateRound(rt, state_dir=state).join_central_run(msg.metadata.run_id)
            except BudgetExhaustedError as e:
                logger.warning("%s", e)
                return _refusal(msg, str(e))
        profile = rt.profile()
        if privacy.enabled:  # counts are data: weights are then uniform, the load report stays
            profile.pop("num-examples", None)  # in the client's own log
            profile = {k: v for k, v in profile.items() if not k.startswith(P.DATA_PREFIX)}
        if "num-examples" in profile:  # what a manifest's num_examples is held to
            from fednet.federation.private import record_released

            record_released(
                _state_dir(context, state_dir, rt.cfg),
                rt.client.id,
                msg.metadata.run_id,
                "profile",
                {"num-examples": float(profile["num-examples"])},
            )
        return Message(RecordDict({P.PROFILE: ConfigRecord(profile)}), reply_to=msg)

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        from fednet.errors import BudgetExhaustedError
        from fednet.federation.private import PrivateRound

        started = time.perf_counter()
        rt = _runtime(msg, context, cfg, cache_dir)
        _load_incoming(rt, msg.content)
        conf = dict(msg.content.config_records.get(P.CONFIG, ConfigRecord()))
        wire = str(conf.get(P.WIRE_DTYPE_KEY, "float32"))
        P.wire_dtype(wire)  # an unknown dtype fails before any data is touched
        rnd = int(conf.get("server-round", 0))  # type: ignore[arg-type]
        personal = bool(conf.get("personalize", 0))
        steps = int(conf.get("steps", rt.client.local_steps))
        state = _state_dir(context, state_dir, rt.cfg)
        frozen_a = bool(conf.get(P.FROZEN_A_KEY, 0))
        rt.model.freeze_lora_a(frozen_a)
        try:
            res = PrivateRound(rt, state_dir=state).run(
                run_id=msg.metadata.run_id,
                server_round=rnd,
                steps=steps,
                release_sketch=bool(conf.get("last-round", 0)),
                personalize=personal,
            )
        except BudgetExhaustedError as e:
            logger.warning("%s", e)
            return _refusal(msg, str(e))
        metrics = res.metrics
        if personal:
            metrics.update(rt.evaluate())
            metrics["personalized"] = 1.0
            metrics["num-examples"] = float(rt.num_examples)
        metrics["wall-s"] = time.perf_counter() - started  # the client's own time this round
        metrics = _release(rt, state, msg, "train", rnd, metrics)
        content = RecordDict({P.METRICS: MetricRecord(metrics)})  # type: ignore[arg-type]
        if res.lora is not None and res.head is not None:
            lora = {k: v for k, v in res.lora.items() if not (frozen_a and ".lora_A." in k)}
            content[P.LORA] = P.to_wire(lora, wire)
            content[P.HEAD] = P.to_wire(res.head, wire)
        if res.sketch is not None:
            content[P.SKETCH] = ArrayRecord(res.sketch)
        return Message(content, reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        started = time.perf_counter()
        rt = _runtime(msg, context, cfg, cache_dir)
        _load_incoming(rt, msg.content)
        metrics = rt.evaluate()
        metrics["wall-s"] = time.perf_counter() - started
        conf = dict(msg.content.config_records.get(P.CONFIG, ConfigRecord()))
        rnd = int(conf.get("server-round", 0))  # type: ignore[arg-type]
        metrics = _release(
            rt, _state_dir(context, state_dir, rt.cfg), msg, "evaluate", rnd, metrics
        )
        return Message(
            RecordDict({P.METRICS: MetricRecord(metrics)}),  # type: ignore[arg-type]
            reply_to=msg,
        )

    return app
