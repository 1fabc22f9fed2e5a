"""The Flower command lines and files fednet writes, checked against Flower 1.42 itself."""

from __future__ import annotations

import socket
import zipfile
from io import BytesIO
from pathlib import Path

import pytest
from flwr.cli.build import build_fab_from_disk
from flwr.cli.flower_config import read_superlink_connection
from flwr.common.config import parse_config_args
from flwr.superlink.cli.flower_superlink import _parse_args_run_superlink
from flwr.supernode.cli.flower_supernode import _parse_args_run_supernode

from fednet.config import PROJECT_ROOT
from fednet.deploy import flower as F
from fednet.deploy.net import (
    connect_host,
    join_address,
    parse_address,
    port_in_use,
    probe_server,
)


@pytest.mark.parametrize(
    "text, want",
    [
        ("0.0.0.0:9092", ("0.0.0.0", 9092)),
        (":9092", ("0.0.0.0", 9092)),
        ("[::1]:80", ("::1", 80)),
        ("coordinator.lan:443", ("coordinator.lan", 443)),
    ],
)
def test_parse_address(text, want):
    assert parse_address(text) == want


@pytest.mark.parametrize("text", ["9092", "host:", "host:port", "host:70000"])
def test_parse_address_names_the_bad_value(text):
    with pytest.raises(ValueError, match="address"):
        parse_address(text)


def test_addresses_for_dialing():
    assert connect_host("0.0.0.0") == "127.0.0.1" and connect_host("::") == "::1"
    assert join_address("::1", 9) == "[::1]:9" and join_address("h", 9) == "h:9"


def test_key_values_parse_back_with_flower():
    values = {"client-id": "spam-0", "preset": "/a b/c.toml", "resume": True, "rounds": 3}
    assert parse_config_args([F.format_kv(values)]) == values


def test_superlink_flags_exist_in_flower(tmp_path):
    for certs, auth in ((tmp_path, True), (None, False)):
        cmd = F.superlink_command(host="0.0.0.0", port=9092, certs_dir=certs, node_auth=auth)
        args = _parse_args_run_superlink().parse_args(cmd[1:])
        assert (args.host, args.port) == ("0.0.0.0", 9092)
        assert args.enable_supernode_auth is auth and args.insecure is (certs is None)
        assert args.runtime_dependency_install is False
        if certs:
            assert args.ssl_ca_certfile == str(tmp_path / "ca.crt")


def test_supernode_flags_exist_in_flower(tmp_path):
    cmd = F.supernode_command(
        server="coordinator.lan:9092",
        ca_cert=tmp_path / "ca.crt",
        auth_key=tmp_path / "k.key",
        node_config={"client-id": "spam-0", "state-dir": "/s"},
        runtime_port=9190,
    )
    args = _parse_args_run_supernode().parse_args(cmd[1:])
    assert args.superlink == "coordinator.lan:9092" and args.port == 9190
    assert args.host == "127.0.0.1" and args.insecure is False
    assert args.root_certificates == str(tmp_path / "ca.crt")
    assert args.auth_supernode_private_key == str(tmp_path / "k.key")
    assert parse_config_args([args.node_config]) == {"client-id": "spam-0", "state-dir": "/s"}


@pytest.mark.parametrize("secure", [True, False])
def test_connection_file_is_read_by_flwr(tmp_path, monkeypatch, secure):
    ca = tmp_path / "ca.crt"
    F.write_connection(tmp_path / "home", address="10.0.0.5:9092", ca_cert=ca if secure else None)
    monkeypatch.setenv("FLWR_HOME", str(tmp_path / "home"))
    conn = read_superlink_connection(F.CONNECTION)
    assert conn.address == "10.0.0.5:9092" and conn.insecure is (not secure)
    assert conn.root_certificates == (str(ca.resolve()) if secure else None)
    assert read_superlink_connection(None).name == F.CONNECTION  # it is the default


def test_staged_app_is_a_small_fab_and_leaves_the_project_alone(tmp_path):
    before = (PROJECT_ROOT / "pyproject.toml").read_bytes()
    staged = F.stage_app(PROJECT_ROOT, tmp_path / "app")
    fab = build_fab_from_disk(staged)
    names = set(zipfile.ZipFile(BytesIO(fab)).namelist())
    assert {"server/app.py", "clients/app.py", "pyproject.toml"} <= names
    assert not any(n.startswith(("fednet/", "tests/")) for n in names)
    assert len(fab) < 100_000
    assert (PROJECT_ROOT / "pyproject.toml").read_bytes() == before


def test_env_disables_runtime_installs_and_telemetry(tmp_path):
    env = F.flower_env(tmp_path, base={"PATH": "/usr/bin"})
    assert env["FLWR_HOME"] == str(tmp_path)
    assert env["FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION"] == "1"
    assert env["FLWR_TELEMETRY_ENABLED"] == "0"
    assert Path(env["PATH"].split(":")[0], "flower-superlink").exists()


def test_port_probe_and_in_use():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert port_in_use("127.0.0.1", port)
        assert probe_server("127.0.0.1", port, ca_cert=None).ok
    res = probe_server("127.0.0.1", port, ca_cert=None)
    assert not res.ok and not res.permanent and "refused" in res.reason
    assert not port_in_use("127.0.0.1", port)
