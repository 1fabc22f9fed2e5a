"""make certs: a CA, a server certificate for the right names, keys Flower accepts."""

from __future__ import annotations

import socket
import ssl
import stat
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_ssh_private_key, load_ssh_public_key
from flwr.supercore.primitives.asymmetric import uses_nist_ec_curve

from fednet.deploy.certs import check_server_cert, main, make_certs
from fednet.errors import ConfigError


def _names(path) -> set[str]:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(n) for n in san.get_values_for_type(x509.DNSName)} | {
        str(n) for n in san.get_values_for_type(x509.IPAddress)
    }


def test_server_certificate_names_loopback_and_given_hosts(tmp_path):
    paths = make_certs(tmp_path, hosts=["10.1.2.3", "coordinator.lan"], client_ids=["a"])
    assert _names(paths.server_cert) == {
        "localhost",
        "127.0.0.1",
        "::1",
        "10.1.2.3",
        "coordinator.lan",
    }
    check_server_cert(paths)
    for private in (paths.ca_key, paths.server_key, paths.node_key("a")):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600, private


def test_node_keys_are_what_flower_loads(tmp_path):
    paths = make_certs(tmp_path, client_ids=["spam-0", "news-0"])
    assert sorted(paths.node_pubs()) == ["news-0", "spam-0"]
    private = load_ssh_private_key(paths.node_key("spam-0").read_bytes(), None)
    public = load_ssh_public_key(paths.node_pub("spam-0").read_bytes())
    assert isinstance(private, ec.EllipticCurvePrivateKey)  # flower-supernode's check
    assert isinstance(public, ec.EllipticCurvePublicKey) and uses_nist_ec_curve(public)
    assert private.public_key().public_numbers() == public.public_numbers()


def test_rerun_keeps_the_ca_and_the_keys(tmp_path):
    first = make_certs(tmp_path, client_ids=["a"])
    ca, key = first.ca_cert.read_bytes(), first.node_key("a").read_bytes()
    again = make_certs(tmp_path, hosts=["new-host"], client_ids=["a", "b"])
    assert again.ca_cert.read_bytes() == ca and again.node_key("a").read_bytes() == key
    assert "new-host" in _names(again.server_cert) and again.node_key("b").is_file()
    check_server_cert(again)


def _handshake(paths, server_hostname: str) -> None:
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(paths.server_cert, paths.server_key)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with server_ctx.wrap_socket(conn, server_side=True):
                pass
        except (ssl.SSLError, OSError):
            pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    client_ctx = ssl.create_default_context(cafile=str(paths.ca_cert))
    try:
        with (
            socket.create_connection(("127.0.0.1", port)) as raw,
            client_ctx.wrap_socket(raw, server_hostname=server_hostname),
        ):
            pass
    finally:
        t.join(timeout=5)
        listener.close()


@pytest.mark.parametrize("name", ["localhost", "127.0.0.1", "coordinator.lan"])
def test_tls_verifies_against_the_ca(tmp_path, name):
    _handshake(make_certs(tmp_path, hosts=["coordinator.lan"]), name)


def test_tls_rejects_a_name_not_in_the_certificate(tmp_path):
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        _handshake(make_certs(tmp_path), "elsewhere.lan")


def test_mismatched_key_is_reported(tmp_path):
    paths = make_certs(tmp_path / "a")
    other = make_certs(tmp_path / "b")
    paths.server_key.write_bytes(other.server_key.read_bytes())
    with pytest.raises(ConfigError, match="does not match"):
        check_server_cert(paths)


def test_command_line(tmp_path, capsys):
    assert (
        main(
            [
                "--out",
                str(tmp_path),
                "--config",
                "configs/deploy-tiny.toml",
                "--host",
                "10.0.0.5,gateway",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "client news-0" in out and "10.0.0.5" in out
    assert _names(tmp_path / "server.crt") >= {"10.0.0.5", "gateway"}
    assert main(["--out", str(tmp_path), "--client", "bad/id"]) == 2


def test_each_client_gets_only_its_own_bundle(tmp_path):
    """The server's side holds public node keys only; each client's private key is in
    a bundle (ca.crt and node.key) made for that client alone."""
    paths = make_certs(tmp_path, client_ids=["spam-0", "news-0"])
    assert sorted(p.name for p in paths.nodes.iterdir()) == ["news-0.pub", "spam-0.pub"]
    for cid in ("spam-0", "news-0"):
        bundle = paths.client_dir(cid)
        assert sorted(p.name for p in bundle.iterdir()) == ["ca.crt", "node.key"]
        assert stat.S_IMODE(bundle.stat().st_mode) == 0o700
        assert stat.S_IMODE((bundle / "node.key").stat().st_mode) == 0o600
        assert (bundle / "ca.crt").read_bytes() == paths.ca_cert.read_bytes()
    for path in paths.root.rglob("*"):
        if path.is_file() and "PRIVATE KEY" in path.read_text(errors="ignore"):
            assert path in (paths.ca_key, paths.server_key) or path.parent.parent.name == "clients"


def test_a_client_brings_its_own_node_key(tmp_path, capsys):
    own = tmp_path / "on-the-client"
    assert main(["--node-key-only", "--client", "spam-0", "--out", str(own)]) == 0
    assert "send only" in capsys.readouterr().out
    issuer = tmp_path / "issuer"
    pub = own / "nodes" / "spam-0.pub"
    assert main(["--out", str(issuer), "--import-pub", f"spam-0={pub}"]) == 0
    paths = make_certs(issuer)
    assert paths.node_pub("spam-0").read_bytes() == pub.read_bytes()
    assert not paths.client_dir("spam-0").exists()  # the issuer never saw its private key
    assert main(["--out", str(issuer), "--import-pub", f"x={own / 'clients/spam-0/node.key'}"]) == 2
