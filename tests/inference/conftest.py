"""Fixtures for joint inference: a published fake run, servers on free loopback ports."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import update

from fednet.hub import HubStore
from fednet.hub.db import adapters_table
from fednet.hub.publish import publish_run

from .fake_run import write_run

TOKEN = "peer-test-token"


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port in a thread; yield its URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def break_signature(store: HubStore, name: str) -> None:
    """Change a signed field of the stored latest manifest, as an attacker with DB access."""
    manifest = store.resolve(name)
    forged = manifest.to_dict()
    forged["metrics"] = {**forged["metrics"], "accuracy": 0.999}
    import json

    with store._engine.begin() as conn:  # noqa: SLF001 - the test plays the attacker
        conn.execute(
            update(adapters_table)
            .where(adapters_table.c.name == name, adapters_table.c.version == manifest.version)
            .values(manifest=json.dumps(forged, sort_keys=True))
        )


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_run(tmp_path_factory.mktemp("fake-run") / "run")


@pytest.fixture
def hub_store(run_dir: Path, tmp_path: Path) -> Iterator[HubStore]:
    """A fresh store holding every adapter of the run (peers count as down after 2 s)."""
    with HubStore(tmp_path / "hub", peer_timeout=2.0) as store:
        publish_run(run_dir, store, keys_dir=tmp_path / "keys")
        yield store
