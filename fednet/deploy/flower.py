"""The Flower 1.42 Deployment Engine commands, as fednet drives them.

In Flower 1.42 one SuperLink port serves the Fleet API (SuperNodes), the
Control API (``flwr`` CLI) and the Runtime API (the ServerApp process), over
HTTPS unless ``--insecure``. The ``flwr`` CLI no longer reads SuperLink
addresses from ``[tool.flwr.federations]`` in ``pyproject.toml``: it reads
named *connections* from ``$FLWR_HOME/config.toml``::

    [superlink]
    default = "fednet"

    [superlink.fednet]
    address = "127.0.0.1:9092"
    root-certificates = "/abs/path/ca.crt"   # or: insecure = true

This module builds those command lines and files; :mod:`fednet.deploy.server_cmd`
and :mod:`fednet.deploy.client_cmd` run them. ``docs/deployment.md`` shows the
same commands for people who run Flower's tools by hand.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

__all__ = [
    "CONNECTION",
    "DEFAULT_PORT",
    "flower_bin",
    "flower_env",
    "format_kv",
    "superlink_command",
    "supernode_command",
    "write_connection",
    "stage_app",
]

CONNECTION = "fednet"
"""Name of the SuperLink connection fednet writes into ``$FLWR_HOME/config.toml``."""

DEFAULT_PORT = 9092

_QUIET_ENV = {
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "PYTHONUNBUFFERED": "1",
}


def flower_bin(name: str) -> str:
    """Path of Flower executable ``name``: beside this Python first, then on ``PATH``."""
    here = Path(sys.executable).parent / name
    if here.is_file() and os.access(here, os.X_OK):
        return str(here)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(
            f"Flower command {name!r} not found beside {sys.executable} or on PATH; "
            "install fednet's dependencies (flwr>=1.42,<1.43)"
        )
    return found


def flower_env(flwr_home: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for Flower processes: own ``FLWR_HOME``, no telemetry, no ``uv sync``.

    Without ``FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1`` Flower would build a
    fresh environment per run with ``uv`` and download a CUDA build of torch.
    """
    env = dict(os.environ if base is None else base)
    env.update(_QUIET_ENV)
    env["FLWR_HOME"] = str(flwr_home)
    bindir = str(Path(sys.executable).parent)
    if bindir not in env.get("PATH", "").split(os.pathsep):
        env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    return env


def format_kv(values: Mapping[str, str | int | float | bool]) -> str:
    """``key=value`` pairs in the TOML syntax of ``--node-config`` and ``--run-config``."""
    parts = []
    for key, value in values.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, int | float):
            text = repr(value)
        else:
            text = json.dumps(str(value))  # a TOML basic string
        parts.append(f"{key}={text}")
    return " ".join(parts)


def superlink_command(
    *, host: str, port: int, certs_dir: Path | None, node_auth: bool
) -> list[str]:
    """``flower-superlink`` serving Fleet, Control and Runtime APIs on ``host:port``."""
    cmd = [
        flower_bin("flower-superlink"),
        "--host",
        host,
        "--port",
        str(port),
        "--isolation",
        "subprocess",
        "--disable-runtime-dependency-installation",
    ]
    if certs_dir is None:
        cmd.append("--insecure")
    else:
        cmd += [
            "--ssl-ca-certfile",
            str(certs_dir / "ca.crt"),
            "--ssl-certfile",
            str(certs_dir / "server.crt"),
            "--ssl-keyfile",
            str(certs_dir / "server.key"),
        ]
        if node_auth:
            cmd.append("--enable-supernode-auth")
    return cmd


def supernode_command(
    *,
    server: str,
    ca_cert: Path | None,
    auth_key: Path | None,
    node_config: Mapping[str, str | int | float | bool],
    runtime_port: int,
) -> list[str]:
    """``flower-supernode`` for one client; its Runtime API listens on loopback only."""
    cmd = [
        flower_bin("flower-supernode"),
        "--superlink",
        server,
        "--node-config",
        format_kv(node_config),
        "--host",
        "127.0.0.1",
        "--port",
        str(runtime_port),
    ]
    if ca_cert is None:
        cmd.append("--insecure")
    else:
        cmd += ["--root-certificates", str(ca_cert)]
    if auth_key is not None:
        cmd += ["--auth-supernode-private-key", str(auth_key)]
    return cmd


def write_connection(flwr_home: Path, *, address: str, ca_cert: Path | None) -> Path:
    """Write ``$FLWR_HOME/config.toml`` with the ``fednet`` SuperLink connection."""
    flwr_home.mkdir(parents=True, exist_ok=True)
    lines = [
        "[superlink]",
        f'default = "{CONNECTION}"',
        "",
        f"[superlink.{CONNECTION}]",
        f"address = {json.dumps(address)}",
    ]
    if ca_cert is None:
        lines.append("insecure = true")
    else:
        lines.append(f"root-certificates = {json.dumps(str(ca_cert.resolve()))}")
    path = flwr_home / "config.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


_APP_PARTS = ("server", "clients")


def stage_app(project: Path, dest: Path) -> Path:
    """Copy the Flower app (``pyproject.toml``, ``server/``, ``clients/``) to ``dest``.

    ``flwr run`` packs its directory into the FAB and rewrites a legacy
    ``pyproject.toml`` in place; running it on a staged copy keeps the FAB to
    the two thin apps (fednet itself is installed on every machine) and leaves
    the project untouched.
    """
    if not (project / "pyproject.toml").is_file():
        raise FileNotFoundError(f"no pyproject.toml in the app directory {str(project)!r}")
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    shutil.copy2(project / "pyproject.toml", dest / "pyproject.toml")
    for part in _APP_PARTS:
        src = project / part
        if not src.is_dir():
            raise FileNotFoundError(f"the app directory {str(project)!r} has no {part}/")
        shutil.copytree(src, dest / part, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest
