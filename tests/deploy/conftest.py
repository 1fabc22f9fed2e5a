"""Real processes for the deployment tests, and a guarantee that none survives.

Every process a test starts carries ``FEDNET_TEST_MARKER=<uuid>`` in its
environment, and Flower's processes inherit it. :meth:`Procs.orphans` finds
every live process with the marker, however deep or detached it is; the
fixture kills them all at the end, so a failing test cannot leak processes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fednet.deploy.certs import make_certs

BIN = Path(sys.executable).parent
PRESET = str(Path("configs/deploy-tiny.toml").resolve())
CLIENTS = ("spam-0", "spam-1", "news-0")


def _environ_has(pid: int, needle: bytes) -> bool:
    try:
        return needle in Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].split()[0] not in ("Z", "X")


class Procs:
    """Starts the fednet commands as separate processes with a test marker."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.marker = f"fednet-test-{uuid.uuid4().hex}"
        self.started: list[subprocess.Popen[str]] = []

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            FEDNET_TEST_MARKER=self.marker,
            FLWR_TELEMETRY_ENABLED="0",
            FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION="1",
            HF_HUB_OFFLINE="1",
            PYTHONUNBUFFERED="1",
        )
        return env

    def start(self, name: str, *args: str) -> subprocess.Popen[str]:
        log = open(self.tmp / f"{name}.log", "w")  # noqa: SIM115 - the child owns it
        proc = subprocess.Popen(
            [str(BIN / args[0]), *args[1:]],
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            env=self.env(),
            start_new_session=True,
        )
        log.close()
        proc.name = name  # type: ignore[attr-defined]
        self.started.append(proc)
        return proc

    def server(self, name: str, run_dir: Path, port: int, certs: Path, *extra: str):
        return self.start(
            name,
            "flower-server",
            "--config",
            PRESET,
            "--run-dir",
            str(run_dir),
            "--address",
            f"127.0.0.1:{port}",
            "--certs",
            str(certs),
            *extra,
        )

    def client(self, cid: str, port: int, certs: Path, *extra: str):
        return self.start(
            f"client-{cid}",
            "flower-client",
            "--server",
            f"127.0.0.1:{port}",
            "--client",
            cid,
            "--config",
            PRESET,
            "--certs",
            str(_bundle(certs, cid)),
            "--state-dir",
            str(self.tmp / "clients" / cid),  # each client its own state and owner key
            *extra,
        )

    def log(self, name: str) -> str:
        path = self.tmp / f"{name}.log"
        return path.read_text(errors="replace") if path.is_file() else ""

    def orphans(self) -> list[int]:
        """Live processes, other than this one, that carry the marker."""
        needle = f"FEDNET_TEST_MARKER={self.marker}".encode()
        me = os.getpid()
        return [
            int(p.name)
            for p in Path("/proc").iterdir()
            if p.name.isdigit()
            and int(p.name) != me
            and _environ_has(int(p.name), needle)
            and _alive(int(p.name))
        ]

    def wait_no_orphans(self, timeout: float = 20.0) -> list[int]:
        deadline = time.monotonic() + timeout
        while (left := self.orphans()) and time.monotonic() < deadline:
            time.sleep(0.25)
        return left

    def kill_all(self) -> None:
        for proc in self.started:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        for pid in self.orphans():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        for proc in self.started:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    p = Procs(tmp_path)
    try:
        yield p
    finally:
        p.kill_all()


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CA, server certificate and a node key for every client of deploy-tiny.

    The clients' bundles are moved out of the server's directory, as the issuer
    hands them out: the server sees ``ca.key``, its own key and public node keys.
    """
    root = make_certs(tmp_path_factory.mktemp("certs") / "server", client_ids=CLIENTS).root
    shutil.move(root / "clients", root.parent / "bundles")
    return root


def _bundle(certs: Path, cid: str) -> Path:
    """The certificate directory client ``cid`` gets: its own bundle when there is one."""
    for bundle in (certs.parent / "bundles" / cid, certs / "clients" / cid):
        if bundle.is_dir():
            return bundle
    return certs


def wait_for(cond: Callable[[], object], timeout: float, what: str, *, fail: Callable[[], str]):
    """Poll ``cond`` until truthy; on timeout fail with ``what`` and ``fail()`` (logs)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n{fail()}")


def checkpoint_round(run_dir: Path) -> int:
    """The last checkpointed round of ``run_dir`` (0 when none)."""
    path = run_dir / "checkpoint" / "latest.json"
    try:
        return int(json.loads(path.read_text())["server_round"])
    except (OSError, ValueError, KeyError):
        return 0
