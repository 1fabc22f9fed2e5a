"""Fixtures for joint inference: a published fake run, servers on free loopback ports."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import update

from fednet.hub import HubStore
from fednet.hub.db import adapters_table
from fednet.hub.publish import keys_dir_trust, publish_run

from .fake_run import write_run

TOKEN = "peer-test-token"


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
    """A fresh store holding every adapter of the run (peers count as down after 2 s),
    read with a trust store that pinned every publisher's key."""
    with HubStore(tmp_path / "hub", peer_timeout=2.0) as store:
        publish_run(run_dir, store, vet=None, keys_dir=tmp_path / "keys")
        store.trust = keys_dir_trust(tmp_path / "keys")
        yield store
