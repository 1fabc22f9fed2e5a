"""A hostile server's run config, against a client node that brings no preset.

In deployment a node without node config ``preset`` takes the preset the
server's run config names. The server must not be able to use that name to
make the client read, and echo back, a file outside the app (Flower sends an
exception's text to the server), nor to turn the client's DP noise
reproducible, which would let it subtract the noise again.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from fednet.config import PROJECT_ROOT, ConfigError
from fednet.federation import apps
from fednet.federation.apps import make_client_app

TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1  # as a ServerApp

SECRET = "hunter2-SECRET"


@pytest.fixture(autouse=True)
def _no_node_preset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(apps.NODE_PRESET_ENV, raising=False)


def _ask(run_config: dict[str, object], tmp_path: Path) -> str:
    """Send one query to a node with no preset of its own; everything the server
    gets back (the reply, or the text of the exception Flower forwards)."""
    app = make_client_app()
    context = Context(
        run_id=1,
        node_id=1,
        node_config={"partition-id": 0, "num-partitions": 2, "state-dir": str(tmp_path / "n")},
        state=RecordDict(),
        run_config=run_config,
    )
    msg = Message(
        RecordDict({"config": ConfigRecord({"server-round": 1})}),
        dst_node_id=1,
        message_type="query",
    )
    try:
        reply = app(msg, context)
    except Exception as e:  # noqa: BLE001 - Flower sends str(e) to the server
        return f"{type(e)}:<'{e}'>"
    return repr(reply.content if reply.has_content() else reply.error)


@pytest.mark.parametrize("how", ["absolute", "dot-dot", "home"])
def test_a_server_cannot_make_a_client_read_a_file_outside_the_app(tmp_path, monkeypatch, how):
    creds = tmp_path / "home" / "creds.toml"
    creds.parent.mkdir()
    creds.write_text(f'api_token = "{SECRET}"\n[database]\npassword = "{SECRET}"\n')
    monkeypatch.setenv("HOME", str(creds.parent))
    name = {
        "absolute": str(creds),
        "dot-dot": str(Path("configs", *[".."] * (len(PROJECT_ROOT.parts) + 1), *creds.parts[1:])),
        "home": "~/creds.toml",
    }[how]

    answer = _ask({"preset": name}, tmp_path)

    assert SECRET not in answer
    assert "preset" in answer and "inside the app" in answer


def test_a_server_cannot_turn_a_clients_noise_reproducible(tmp_path, monkeypatch):
    app_root = tmp_path / "app"
    (app_root / "configs").mkdir(parents=True)
    text = (PROJECT_ROOT / "configs" / "tiny.toml").read_text()
    assert "reproducible-noise" not in text
    (app_root / "configs" / "replay.toml").write_text(
        text.replace("[privacy]", "[privacy]\nreproducible-noise = true", 1)
        if "[privacy]" in text
        else text + "\n[privacy]\nenabled = true\nreproducible-noise = true\n"
    )
    shutil.copytree(PROJECT_ROOT / "configs", app_root / "configs", dirs_exist_ok=True)
    monkeypatch.setattr(apps, "PROJECT_ROOT", app_root)  # the server's FAB

    answer = _ask({"preset": "configs/replay.toml"}, tmp_path)

    assert "reproducible-noise" in answer and "own preset" in answer


def _context(run_preset: str, **node: object) -> Context:
    """A node's context: its node config ``node`` (partition 0), the server's run config
    naming ``run_preset``."""
    return Context(
        run_id=1,
        node_id=1,
        node_config={"partition-id": 0, **node},
        state=RecordDict(),
        run_config={"preset": run_preset},
    )


def test_a_node_may_choose_reproducible_noise_in_its_own_preset(tmp_path):
    own = tmp_path / "own.toml"
    text = (PROJECT_ROOT / "configs" / "tiny.toml").read_text()
    own.write_text(
        text.replace("[privacy]", "[privacy]\nreproducible-noise = true", 1)
        if "[privacy]" in text
        else text + "\n[privacy]\nenabled = true\nreproducible-noise = true\n"
    )
    context = _context("configs/tiny.toml", preset=str(own))
    assert apps._config(context, None).privacy.reproducible_noise


def test_a_nodes_own_preset_may_come_from_its_environment(tmp_path, monkeypatch):
    """How `fednet simulate` gives its virtual SuperNodes the user's preset."""
    own = tmp_path / "own.toml"
    own.write_text((PROJECT_ROOT / "configs" / "tiny.toml").read_text())
    monkeypatch.setenv(apps.NODE_PRESET_ENV, str(own))
    context = _context("/somewhere/the/server/chose.toml")
    assert apps._config(context, None).source == str(own)


def test_the_apps_own_preset_still_serves_a_node_without_one(tmp_path):
    assert apps._config(_context("configs/tiny.toml"), None).source.endswith("configs/tiny.toml")
    with pytest.raises(ConfigError, match="inside the app"):
        apps._config(_context(str(PROJECT_ROOT / "configs" / "tiny.toml")), None)
