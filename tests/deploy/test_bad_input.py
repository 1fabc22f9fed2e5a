"""Bad input to flower-server and flower-client: a clear message, a non-zero exit, no orphan."""

from __future__ import annotations

import signal
import socket
import ssl
import threading

import pytest

from fednet.deploy.certs import cert_paths, generate_node_key, make_certs
from fednet.deploy.client_cmd import EXIT_GAVE_UP, EXIT_REFUSED, EXIT_UNTRUSTED
from fednet.deploy.net import free_port

from .conftest import wait_for

pytestmark = pytest.mark.integration


def _finish(procs, proc, name: str, timeout: float = 120) -> tuple[int, str]:
    rc = proc.wait(timeout=timeout)
    assert procs.wait_no_orphans() == [], f"{name} left processes behind"
    return rc, procs.log(name)


def test_client_id_not_in_preset(procs, certs):
    proc = procs.client("nobody", free_port(), certs)
    rc, log = _finish(procs, proc, "client-nobody")
    assert rc == 2
    assert "unknown client id 'nobody'" in log and "spam-0, spam-1, news-0" in log


def test_port_in_use(procs, certs, tmp_path):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        proc = procs.server("server", tmp_path / "run", port, certs)
        rc, log = _finish(procs, proc, "server")
    assert rc == 2
    assert f"127.0.0.1:{port} is already in use" in log
    assert not (tmp_path / "run").exists()


def test_unreachable_server_is_retried_then_given_up(procs, certs):
    port = free_port()
    proc = procs.client("spam-0", port, certs, "--max-wait", "6")
    rc, log = _finish(procs, proc, "client-spam-0")
    assert rc == EXIT_GAVE_UP
    assert f"waiting for the server at 127.0.0.1:{port}" in log
    assert log.count("connection refused") >= 3, log  # the first try and at least 2 retries
    assert "retry 2 in" in log
    assert "gave up after 6s" in log


def _tls_server(cert, key) -> tuple[int, threading.Event]:
    """A TLS listener presenting ``cert``, answering handshakes until stopped."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    sock = socket.create_server(("127.0.0.1", 0))
    sock.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        with sock:
            while not stop.is_set():
                try:
                    conn, _ = sock.accept()
                except TimeoutError:
                    continue
                try:
                    with ctx.wrap_socket(conn, server_side=True):
                        pass
                except (ssl.SSLError, OSError):
                    pass

    threading.Thread(target=serve, daemon=True).start()
    return sock.getsockname()[1], stop


def test_server_certificate_from_another_ca_is_refused(procs, certs, tmp_path):
    other = make_certs(tmp_path / "other")
    port, stop = _tls_server(other.server_cert, other.server_key)
    try:
        proc = procs.client("spam-0", port, certs)
        rc, log = _finish(procs, proc, "client-spam-0")
    finally:
        stop.set()
    assert rc == EXIT_UNTRUSTED
    assert "certificate is not trusted" in log and "unable to get local issuer" in log
    assert "ca.crt of the server's certificate directory" in log


def test_server_refuses_mismatched_certificates(procs, certs, tmp_path):
    mixed = make_certs(tmp_path / "mixed", client_ids=["spam-0"])
    other = make_certs(tmp_path / "other")
    mixed.server_cert.write_bytes(other.server_cert.read_bytes())
    mixed.server_key.write_bytes(other.server_key.read_bytes())
    proc = procs.server("server", tmp_path / "run", free_port(), mixed.root)
    rc, log = _finish(procs, proc, "server")
    assert rc == 2 and "was not issued by" in log


def test_client_with_unregistered_key_is_refused(procs, tmp_path):
    server_certs = make_certs(tmp_path / "certs", client_ids=["spam-0", "spam-1"]).root
    rogue = generate_node_key(cert_paths(tmp_path / "rogue"), "news-0")
    port = free_port()
    server = procs.server("server", tmp_path / "run", port, server_certs)
    wait_for(
        lambda: "client spam-1 may join" in procs.log("server"),
        90,
        "the server to register its client keys",
        fail=lambda: procs.log("server"),
    )
    client = procs.client(
        "news-0", port, server_certs, "--auth-key", str(rogue), "--refused-grace", "3"
    )
    rc = client.wait(timeout=120)
    log = procs.log("client-news-0")
    assert rc == EXIT_REFUSED, log
    assert "refused client 'news-0'" in log and "not registered" in log
    server.send_signal(signal.SIGTERM)
    rc, slog = _finish(procs, server, "server")
    assert rc == 128 + signal.SIGTERM and "stopped by SIGTERM" in slog
