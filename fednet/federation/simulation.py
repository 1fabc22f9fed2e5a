"""Run a federation in this process with Flower's Simulation Engine (Ray backend).

This is the in-process engine of the tests and the benchmark: it takes a
configuration built in code and ClientApp mods that are Python objects (wire
recorders, attacks), which cannot cross ``flwr run`` (that path loads the apps
by import from a packed copy and reads the preset from a file). It still calls
``flwr.simulation.run_simulation``, which Flower 1.42 deprecates. ``fednet
simulate`` uses the supported path instead: :mod:`fednet.deploy.simulate`.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from fednet.config import FederationConfig

__all__ = ["simulate"]

logger = logging.getLogger(__name__)


def simulate(
    cfg: FederationConfig,
    run_dir: str | Path,
    *,
    mods: tuple[Any, ...] = (),
    num_cpus_per_client: float = 1.0,
) -> dict[str, Any]:
    """Simulate ``cfg`` with one virtual SuperNode per client; return the summary.

    Parameters
    ----------
    cfg : FederationConfig
        The federation; its clients map to node partition ids in order.
    run_dir : path
        Where the run writes its outputs.
    mods : tuple
        Extra ClientApp mods, outside the wire allowlist.
    num_cpus_per_client : float
        Cores each client's worker holds; the workers that fit run at once.
    """
    from flwr.simulation import run_simulation

    from fednet.federation.apps import make_client_app, make_server_app

    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    run_dir = Path(run_dir)
    # Every worker may serve every client: each split is prepared once, kept in a
    # private directory for the run's length, and removed with it.
    with tempfile.TemporaryDirectory(prefix="fednet-clients-") as cache:
        run_simulation(
            server_app=make_server_app(cfg, run_dir),
            client_app=make_client_app(
                cfg,
                mods=mods,
                state_dir=Path(cfg.state_dir).expanduser(),
                cache_dir=cache,
                key_dir=cfg.hub.keys_dir or None,
            ),
            num_supernodes=len(cfg.clients),
            backend_config={
                "client_resources": {"num_cpus": num_cpus_per_client, "num_gpus": 0.0},
                "init_args": {"logging_level": "ERROR", "log_to_driver": True},
            },
        )
    summary_path = run_dir / "summary.json"
    if not summary_path.is_file():
        raise RuntimeError(f"the simulation ended without writing {summary_path}; see the log")
    return json.loads(summary_path.read_text())
