"""``fednet simulate`` on the simulation path Flower 1.42 supports.

Flower 1.42 deprecates ``flwr.simulation.run_simulation`` ("use ``flwr run``
in the CLI instead"). Its Simulation Runtime runs behind a SuperLink started
with ``--simulation``; ``flwr run`` submits the app to it, and the SuperLink
starts one ``flwr-simulation`` process that runs the ServerApp and the
ClientApps (Ray actors). This module does what a person would do by hand:

1. start ``flower-superlink --simulation`` on a free loopback port, with a
   ``FLWR_HOME`` of its own (removed afterwards);
2. ``flwr run`` the staged app (``pyproject.toml``, ``server/``, ``clients/``)
   with the run config (the preset's absolute path, the run directory,
   ``num-server-rounds``) and the federation config (one SuperNode per client,
   cores per client);
3. stream the run's log (``flwr log --stream``: the ServerApp, Ray actors,
   Flower, Hugging Face) and the SuperLink's own output into ``<run-dir>/run.log``
   while a caller watches ``<run-dir>/progress.json``;
4. read the run's final status (``flwr list``) and stop every process it started.

What the run writes (``summary.json``, checkpoints, signed manifests) is the
ServerApp's and ClientApps' doing, the same on either path.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fednet.deploy import flower as F
from fednet.deploy.net import free_port, probe_server
from fednet.deploy.procs import Child, Supervisor, watch_output
from fednet.errors import FednetError

__all__ = ["LOG_FILE", "LocalRun", "simulate_local"]

logger = logging.getLogger(__name__)

LOG_FILE = "run.log"
"""The run directory's log of everything the framework and the libraries say."""

_READY_TIMEOUT_S = 90.0
_STATUS_WAIT_S = 20.0


@dataclass(frozen=True)
class LocalRun:
    """How a local simulation ended.

    ``status`` is Flower's (``finished:completed``, ``finished:failed``, ...);
    ``summary`` is ``summary.json`` when the ServerApp wrote it, else ``None``.
    """

    run_id: str
    status: str
    summary: dict[str, Any] | None
    log_path: Path


def _wait_ready(link: Child, port: int) -> None:
    deadline = time.monotonic() + _READY_TIMEOUT_S
    while True:
        if link.poll() is not None:
            raise FednetError(
                f"flower-superlink exited with status {link.poll()} before it was ready:\n"
                f"{link.log_tail(15)}"
            )
        if probe_server("127.0.0.1", port, ca_cert=None, timeout=2.0).ok:
            return
        if time.monotonic() > deadline:
            raise FednetError(
                f"the local SuperLink did not start within {_READY_TIMEOUT_S:.0f}s:\n"
                f"{link.log_tail(15)}"
            )
        time.sleep(0.3)


def _flwr_json(sup: Supervisor, env: dict[str, str], cwd: Path, *args: str) -> dict[str, Any]:
    rc, out = sup.run(
        f"flwr {args[0]}", [F.flower_bin("flwr"), *args, "--format", "json"], env=env, cwd=cwd
    )
    start = out.find("{")
    try:
        data = json.loads(out[start:]) if start >= 0 else {}
    except json.JSONDecodeError:
        data = {}
    if rc != 0 or not data.get("success", False):
        detail = data.get("error-message") or out.strip()[-800:]
        raise FednetError(f"`flwr {args[0]}` failed (exit {rc}): {detail}")
    return data


def _status(sup: Supervisor, env: dict[str, str], cwd: Path, run_id: str) -> str:
    """The run's status, once Flower reports it finished (or after a short wait)."""
    deadline = time.monotonic() + _STATUS_WAIT_S
    while True:
        data = _flwr_json(sup, env, cwd, "list", F.CONNECTION, "--run-id", run_id)
        runs = data.get("runs") or [{}]
        status = str(runs[0].get("status", "unknown"))
        if status.startswith("finished") or time.monotonic() > deadline:
            return status
        time.sleep(0.5)


def simulate_local(
    preset: Path,
    run_dir: Path,
    *,
    num_supernodes: int,
    rounds: int = 0,
    num_cpus_per_client: int = 1,
    app_dir: Path | None = None,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    on_line: Callable[[str], None] | None = None,
    poll_s: float = 0.5,
) -> LocalRun:
    """Run the preset in Flower's Simulation Runtime through ``flwr run``.

    Parameters
    ----------
    preset : path
        The TOML preset; passed to the ServerApp and ClientApps by absolute path.
    run_dir : path
        The run directory (created); the run writes its outputs and ``run.log`` here.
    num_supernodes : int
        Virtual SuperNodes, one per client of the preset.
    rounds : int
        Overrides ``federation.rounds`` when > 0.
    num_cpus_per_client : int
        Cores each client's Ray actor holds; the actors that fit run at once.
        Flower's federation config takes whole cores only.
    app_dir : path, optional
        The Flower app (default: the project holding ``server/`` and ``clients/``).
    on_progress : callable, optional
        Called with ``progress.json`` each time the run rewrites it.
    on_line : callable, optional
        Called with every log line of the run besides writing it to ``run.log``.

    Raises
    ------
    FednetError
        When the SuperLink does not start or ``flwr run`` refuses the app.
    """
    from fednet.config import PROJECT_ROOT
    from fednet.federation.apps import NODE_PRESET_ENV
    from fednet.federation.recorder import PROGRESS_FILE

    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    log_path = run_dir / LOG_FILE
    work = Path(tempfile.mkdtemp(prefix="fednet-simulate-"))
    try:
        flwr_home = work / "flwr-home"
        port = free_port()
        F.write_connection(flwr_home, address=f"127.0.0.1:{port}", ca_cert=None)
        staged = F.stage_app(app_dir or PROJECT_ROOT, work / "app")
        env = F.flower_env(flwr_home)
        # the virtual SuperNodes' own preset: the user's, as `flower-client --config` gives it
        env[NODE_PRESET_ENV] = str(Path(preset).resolve())
        run_config: dict[str, str | int | float | bool] = {
            "preset": str(Path(preset).resolve()),
            "run-dir": str(run_dir),
            "num-server-rounds": int(rounds),
        }
        federation_config: dict[str, str | int | float | bool] = {
            "num-supernodes": int(num_supernodes),
            "client-resources-num-cpus": int(num_cpus_per_client),
            "client-resources-num-gpus": 0.0,
        }
        cwd = Path.cwd()  # the apps resolve relative data paths as `fednet simulate` would
        with Supervisor() as sup, open(log_path, "a", encoding="utf-8", buffering=1) as log:
            link = sup.spawn(
                "superlink",
                [
                    *F.superlink_command(
                        host="127.0.0.1", port=port, certs_dir=None, node_auth=False
                    ),
                    "--simulation",
                ],
                env=env,
                cwd=cwd,
                log_path=log_path,
            )
            _wait_ready(link, port)
            data = _flwr_json(
                sup,
                env,
                cwd,
                "run",
                str(staged),
                F.CONNECTION,
                "--run-config",
                F.format_kv(run_config),
                "--federation-config",
                F.format_kv(federation_config),
            )
            run_id = str(data["run-id"])
            logger.debug("run %s submitted to the local SuperLink on port %d", run_id, port)
            stream = sup.spawn(
                "flwr log",
                [F.flower_bin("flwr"), "log", run_id, F.CONNECTION, "--stream"],
                env=env,
                cwd=cwd,
                pipe=True,
            )

            def line(text: str) -> None:
                log.write(text + "\n")
                if on_line is not None:
                    on_line(text)

            seen = 0.0
            progress_path = run_dir / PROGRESS_FILE
            with watch_output(stream, line):
                while stream.poll() is None and link.poll() is None:
                    seen = _report(progress_path, seen, on_progress)
                    time.sleep(poll_s)
            _report(progress_path, seen, on_progress)
            if link.poll() is not None:
                raise FednetError(
                    f"flower-superlink died during the run (status {link.poll()}); see {log_path}"
                )
            status = _status(sup, env, cwd, run_id)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else None
    return LocalRun(run_id=run_id, status=status, summary=summary, log_path=log_path)


def _report(path: Path, seen: float, on_progress: Callable[[dict[str, Any]], None] | None) -> float:
    """Call ``on_progress`` with ``path`` if it changed since ``seen`` (its mtime)."""
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return seen
    if mtime == seen or on_progress is None:
        return mtime
    try:
        on_progress(json.loads(path.read_text()))
    except (json.JSONDecodeError, OSError):
        return seen  # read again next time
    return mtime
