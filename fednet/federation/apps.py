"""Factories of the Flower ServerApp and ClientApp.

``server/app.py`` and ``clients/app.py`` are one line each on top of these, and
``fednet simulate`` calls them with an already loaded configuration.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from fednet.config import PROJECT_ROOT, FederationConfig, from_run_config
from fednet.federation import protocol as P

__all__ = ["make_server_app", "make_client_app", "new_run_dir"]

logger = logging.getLogger(__name__)


def new_run_dir(base: str | Path = "runs") -> Path:
    """A fresh ``runs/<timestamp>`` directory path (not created)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(base) / stamp
    n = 1
    while path.exists():
        n += 1
        path = Path(base) / f"{stamp}-{n}"
    return path


def make_server_app(cfg: FederationConfig | None = None, run_dir: str | Path | None = None,
                    *, min_nodes: int | None = None) -> ServerApp:
    """A ServerApp running :func:`fednet.federation.server.run_server`.

    Without ``cfg`` the configuration comes from the run config (``flwr run``).
    """
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        from fednet.federation.server import run_server

        conf = cfg if cfg is not None else from_run_config(context.run_config)
        out = run_dir or context.run_config.get("run-dir") or new_run_dir(PROJECT_ROOT / "runs")
        run_server(grid, conf, Path(str(out)), min_nodes=min_nodes)

    return app


def _config(context: Context, cfg: FederationConfig | None) -> FederationConfig:
    return cfg if cfg is not None else from_run_config(context.run_config)


def _runtime(msg: Message, context: Context, cfg: FederationConfig | None) -> Any:
    from fednet.federation.client import get_runtime, resolve_client

    conf = _config(context, cfg)
    return get_runtime(conf, resolve_client(conf, dict(context.node_config)))


def _load_incoming(rt: Any, content: RecordDict) -> None:
    lora = content.array_records.get(P.LORA)
    head = content.array_records.get(P.HEAD)
    rt.load_global(lora.to_torch_state_dict() if lora else None,
                   head.to_torch_state_dict() if head else None)


def make_client_app(cfg: FederationConfig | None = None, mods: Sequence[Any] = ()) -> ClientApp:
    """A ClientApp whose every reply passes the wire allowlist.

    ``mods`` run outside the allowlist (they see what actually leaves).
    """
    app = ClientApp(mods=[*mods, P.allowlist_mod])

    @app.query()
    def query(msg: Message, context: Context) -> Message:
        rt = _runtime(msg, context, cfg)
        return Message(RecordDict({P.PROFILE: ConfigRecord(rt.profile())}), reply_to=msg)

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        rt = _runtime(msg, context, cfg)
        _load_incoming(rt, msg.content)
        conf = dict(msg.content.config_records.get(P.CONFIG, ConfigRecord()))
        rnd = int(conf.get("server-round", 0))  # type: ignore[arg-type]
        personal = bool(conf.get("personalize", 0))
        steps = int(conf["steps"]) if "steps" in conf else None  # type: ignore[arg-type]
        metrics = rt.train(server_round=rnd, steps=steps)
        if personal:
            metrics.update(rt.evaluate())
            metrics["personalized"] = 1.0
            metrics["num-examples"] = float(rt.num_examples)
        content = RecordDict({
            P.LORA: ArrayRecord(rt.model.lora_state()),
            P.HEAD: ArrayRecord(rt.model.head_state()),
            P.METRICS: MetricRecord(metrics),  # type: ignore[arg-type]
        })
        return Message(content, reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        rt = _runtime(msg, context, cfg)
        _load_incoming(rt, msg.content)
        return Message(RecordDict({P.METRICS: MetricRecord(rt.evaluate())}),  # type: ignore[arg-type]
                       reply_to=msg)

    return app
