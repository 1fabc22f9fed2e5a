"""--insecure is never a default: without certificates the commands stop and say so."""

from __future__ import annotations

import signal
import subprocess

import pytest

from fednet.deploy.net import free_port

from .conftest import BIN, PRESET, wait_for

pytestmark = pytest.mark.integration


def test_no_certificates_and_no_insecure_is_an_error(procs, tmp_path):
    for cmd in (
        ["flower-server", "--config", PRESET, "--run-dir", str(tmp_path / "run")],
        ["flower-client", "--server", "127.0.0.1:9", "--client", "spam-0", "--config", PRESET],
    ):
        out = subprocess.run(
            [str(BIN / cmd[0]), *cmd[1:]],
            cwd=tmp_path,
            env=procs.env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 2, out.stderr
        assert "certs" in out.stderr and ("--insecure" in out.stderr or "ca.crt" in out.stderr)
    assert procs.wait_no_orphans() == []


def test_insecure_runs_and_warns(procs, tmp_path):
    port = free_port()
    server = procs.start(
        "server",
        "flower-server",
        "--config",
        PRESET,
        "--run-dir",
        str(tmp_path / "run"),
        "--address",
        f"127.0.0.1:{port}",
        "--insecure",
    )
    client = procs.start(
        "client",
        "flower-client",
        "--server",
        f"127.0.0.1:{port}",
        "--client",
        "spam-0",
        "--config",
        PRESET,
        "--insecure",
        "--state-dir",
        str(tmp_path / "clients"),
    )
    wait_for(
        lambda: "SuperNode ID:" in procs.log("client"),
        120,
        "the client to connect",
        fail=lambda: procs.log("server") + procs.log("client"),
    )
    for name in ("server", "client"):
        assert "--insecure: no TLS and no client authentication" in procs.log(name)
    for proc in (client, server):
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    assert procs.wait_no_orphans() == []
