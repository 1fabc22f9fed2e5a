"""flower-server and three flower-client processes on loopback, TLS and node auth on.

Two failures a real federation meets: a client that dies in the middle of a
round, and a server that dies between rounds and is restarted with --resume.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import time
from pathlib import Path

import pytest

from fednet.deploy.net import free_port
from fednet.deploy.procs import descendants, pids_alive

from .conftest import CLIENTS, checkpoint_round, wait_for

pytestmark = pytest.mark.integration

ROUND_1_S = 240.0  # discovery and round 1 on a busy 2-core machine
RUN_S = 300.0


def _logs(procs, *names: str) -> str:
    return "\n".join(f"--- {n} ---\n{procs.log(n)[-3000:]}" for n in names)


def _adapter_files(run_dir: Path, rnd: int) -> list[Path]:
    files = sorted((run_dir / "rounds" / str(rnd)).rglob("adapter_model.safetensors"))
    assert files, f"no adapters written for round {rnd}"
    return files


def _stop_clients(procs, clients) -> None:
    for proc in clients:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in clients:
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM, procs.log(proc.name)


def test_run_finishes_when_a_client_dies_in_round_2(procs, certs, tmp_path):
    port = free_port()
    run_dir = tmp_path / "run"
    server = procs.server("server", run_dir, port, certs)
    clients = {cid: procs.client(cid, port, certs) for cid in CLIENTS}
    names = ["server", *(f"client-{c}" for c in CLIENTS)]

    wait_for(
        lambda: checkpoint_round(run_dir) >= 1,
        ROUND_1_S,
        "round 1",
        fail=lambda: _logs(procs, *names),
    )
    victim = clients["news-0"]
    victim_tree = [victim.pid, *descendants(victim.pid)]
    os.killpg(victim.pid, signal.SIGKILL)  # the silo's fednet process crashes mid-round
    victim.wait(timeout=10)

    assert server.wait(timeout=RUN_S) == 0, _logs(procs, *names)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["rounds_completed"] == 2
    last = summary["history"][-1]
    assert last["round"] == 2
    assert last["train"]["clients"] == 2.0, last["train"]  # news-0's update never came
    assert "spam-0/accuracy" in last["evaluate"] and "news-0/accuracy" not in last["evaluate"]
    assert pids_alive(victim_tree) == [], "the killed client left processes behind"
    assert "run:" in procs.log("server") and "rounds completed: 2" in procs.log("server")

    _stop_clients(procs, [clients["spam-0"], clients["spam-1"]])
    assert procs.wait_no_orphans() == [], "processes left after the run"
    _check_key_custody(procs.tmp, run_dir, certs, ["spam-0", "spam-1"])


def _check_key_custody(tmp: Path, run_dir: Path, certs: Path, signers: list[str]) -> None:
    """Each surviving client signed with a key in its own state directory (0600 in a
    0700 directory); the server's run and certificate directories hold no client key."""
    from fednet.hub import encode_public_key, load_private_key
    from fednet.hub.manifest import Manifest

    for cid in signers:
        key_path = tmp / "clients" / cid / "keys" / f"{cid}.key"
        assert stat.S_IMODE(key_path.stat().st_mode) == 0o600, key_path
        assert stat.S_IMODE(key_path.parent.stat().st_mode) == 0o700
        signed = Manifest.from_json((run_dir / "signed" / f"{cid}-shared.json").read_text())
        assert signed.owner_public_key == encode_public_key(load_private_key(key_path))
    server_private = {certs / "ca.key", certs / "server.key"}
    for root in (run_dir, certs):
        for path in root.rglob("*"):
            if path.is_file() and path not in server_private:
                assert b"PRIVATE KEY" not in path.read_bytes(), path


def test_killed_server_resumes_from_its_last_round(procs, certs, tmp_path):
    port = free_port()
    run_dir = tmp_path / "run"
    first = procs.server("server-1", run_dir, port, certs)
    clients = [procs.client(cid, port, certs) for cid in CLIENTS]
    names = ["server-1", "server-2", *(f"client-{c}" for c in CLIENTS)]

    wait_for(
        lambda: checkpoint_round(run_dir) >= 1,
        ROUND_1_S,
        "round 1",
        fail=lambda: _logs(procs, *names),
    )
    server_tree = [first.pid, *descendants(first.pid)]
    os.kill(first.pid, signal.SIGKILL)  # a crash: no clean-up code runs in flower-server
    first.wait(timeout=10)
    assert checkpoint_round(run_dir) == 1, "the server was killed too late for this test"
    round_1 = {p: p.stat().st_mtime_ns for p in _adapter_files(run_dir, 1)}
    wait_for(
        lambda: not pids_alive(server_tree),
        30,
        "the dead server's processes to end",
        fail=lambda: f"alive: {pids_alive(server_tree)}",
    )

    restarted = time.time()
    second = procs.server("server-2", run_dir, port, certs, "--resume")
    assert second.wait(timeout=RUN_S) == 0, _logs(procs, *names)

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["rounds_completed"] == 2
    assert [h["round"] for h in summary["history"]] == [1, 2]
    state = json.loads((run_dir / "checkpoint" / "round-0002.json").read_text())
    assert state["server_round"] == 2 and state["meta"]["resumed_from"] == 1
    for p, mtime in round_1.items():
        assert p.stat().st_mtime_ns == mtime, f"{p} was rewritten by the resumed run"
    for p in _adapter_files(run_dir, 2):
        assert p.stat().st_mtime >= restarted, f"{p} is not from the continued run"
    assert "resume: continuing after round 1" in procs.log("server-2")

    _stop_clients(procs, clients)
    assert procs.wait_no_orphans() == [], "processes left after the run"
