"""Certificates and node keys for a fednet deployment.

``make certs`` (``python -m fednet.deploy.certs``) writes one directory;
``flower-server`` reads it with ``--certs DIR``::

    DIR/ca.crt               self-signed CA; every client needs a copy
    DIR/ca.key               the CA's private key; stays with whoever issues certs
    DIR/server.crt, .key     the SuperLink's TLS certificate (localhost, 127.0.0.1, ::1
                             and every ``--host``) and its key
    DIR/nodes/<id>.pub       client ``<id>``'s node-authentication public key;
                             ``flower-server`` registers every one. No client's
                             private key is ever in ``nodes/``.
    DIR/clients/<id>/        everything client ``<id>`` needs and nothing else:
                             ``ca.crt`` and its ``node.key`` (OpenSSH, ECDSA
                             P-384); hand this directory to that client only
                             (``flower-client --certs DIR/clients/<id>``) and
                             remove it from the server's machine

A client can bring its own node key instead: it runs ``python -m
fednet.deploy.certs --node-key-only --client ID --out DIR`` on its own machine
and sends only ``DIR/nodes/ID.pub``, which the issuer adds with
``--import-pub ID=PATH``. Its owner (signing) key is never made here: each
client makes and keeps its own (:mod:`fednet.federation.signing`).

TLS keys are ECDSA P-256; node keys are ECDSA P-384, the curve Flower's
``flwr supernode register`` expects. Private keys are written with mode 0600.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import logging
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CertPaths",
    "cert_paths",
    "generate_ca",
    "generate_server_cert",
    "generate_node_key",
    "import_node_pub",
    "make_certs",
    "check_server_cert",
    "main",
]

logger = logging.getLogger(__name__)

DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")
_VALID_DAYS = 825


@dataclass(frozen=True)
class CertPaths:
    """Where the files of one certificate directory live."""

    root: Path

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.root / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.root / "server.key"

    @property
    def nodes(self) -> Path:
        return self.root / "nodes"

    def client_dir(self, client_id: str) -> Path:
        """The bundle to hand to ``client_id``: ``ca.crt`` and ``node.key``."""
        return self.root / "clients" / client_id

    def node_key(self, client_id: str) -> Path:
        """Private node-authentication key of ``client_id``, in its bundle."""
        return self.client_dir(client_id) / "node.key"

    def node_pub(self, client_id: str) -> Path:
        """Public node-authentication key of ``client_id``."""
        return self.nodes / f"{client_id}.pub"

    def node_pubs(self) -> dict[str, Path]:
        """Every registered client's public key, by client id."""
        if not self.nodes.is_dir():
            return {}
        return {p.stem: p for p in sorted(self.nodes.glob("*.pub"))}


def cert_paths(root: str | Path) -> CertPaths:
    """The :class:`CertPaths` of directory ``root``."""
    return CertPaths(Path(root).expanduser().resolve())


def _write(path: Path, data: bytes, *, private: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fednet"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _san(hosts: Iterable[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for h in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            names.append(x509.DNSName(h))
    return x509.SubjectAlternativeName(names)


def generate_ca(paths: CertPaths, *, common_name: str = "fednet CA") -> None:
    """Write a self-signed CA certificate and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=_VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write(paths.ca_key, _pem_key(key), private=True)
    _write(paths.ca_cert, cert.public_bytes(serialization.Encoding.PEM))


def generate_server_cert(paths: CertPaths, hosts: Sequence[str] = ()) -> list[str]:
    """Write the SuperLink's certificate, signed by the CA, for ``hosts``.

    ``localhost``, ``127.0.0.1`` and ``::1`` are always included. Returns the
    names in the certificate.
    """
    ca_key = serialization.load_pem_private_key(paths.ca_key.read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise TypeError(f"`{paths.ca_key}` must hold an EC private key, got {type(ca_key)}")
    names = list(dict.fromkeys([*DEFAULT_HOSTS, *(h.strip() for h in hosts if h.strip())]))
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(names[0]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=_VALID_DAYS))
        .add_extension(_san(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write(paths.server_key, _pem_key(key), private=True)
    _write(paths.server_cert, cert.public_bytes(serialization.Encoding.PEM))
    return names


def _check_client_id(client_id: str) -> None:
    if not client_id or "/" in client_id or client_id.startswith(".") or ".." in client_id:
        raise ValueError(f"`client-id` must be a plain file name, got {client_id!r}")


def generate_node_key(paths: CertPaths, client_id: str) -> Path:
    """Write the node-authentication key pair of ``client_id``; return the private key.

    The private key goes into the client's bundle (``clients/<id>/node.key``,
    mode 0600, directory 0700, with a copy of ``ca.crt`` when there is one);
    the public key into ``nodes/<id>.pub``.
    """
    _check_client_id(client_id)
    paths.client_dir(client_id).mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(paths.client_dir(client_id), 0o700)
    key = ec.generate_private_key(ec.SECP384R1())
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    _write(paths.node_key(client_id), private, private=True)
    _write(paths.node_pub(client_id), public + f" fednet-{client_id}\n".encode())
    if paths.ca_cert.is_file():
        _write(paths.client_dir(client_id) / "ca.crt", paths.ca_cert.read_bytes())
    return paths.node_key(client_id)


def import_node_pub(paths: CertPaths, client_id: str, public_key: str | Path) -> Path:
    """Register a node public key that client ``client_id`` made itself.

    Raises
    ------
    ValueError
        If the file is not an OpenSSH ECDSA public key on a NIST curve.
    """
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.serialization import load_ssh_public_key

    _check_client_id(client_id)
    data = Path(public_key).read_bytes()
    try:
        key = load_ssh_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise ValueError(f"{str(public_key)!r} is not an OpenSSH public key: {e}") from e
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in (
        "secp256r1",
        "secp384r1",
        "secp521r1",
    ):
        raise ValueError(f"{str(public_key)!r} must be an ECDSA key on a NIST curve")
    _write(paths.node_pub(client_id), data)
    return paths.node_pub(client_id)


def make_certs(
    root: str | Path,
    *,
    hosts: Sequence[str] = (),
    client_ids: Sequence[str] = (),
    force: bool = False,
) -> CertPaths:
    """Create (or complete) a certificate directory.

    An existing CA is kept unless ``force``, so re-running adds hosts or clients
    without invalidating certificates already handed out. The server
    certificate is always re-issued; existing node keys are kept.
    """
    paths = cert_paths(root)
    paths.root.mkdir(parents=True, exist_ok=True)
    if force or not (paths.ca_cert.is_file() and paths.ca_key.is_file()):
        generate_ca(paths)
        logger.info("wrote CA %s", paths.ca_cert)
    names = generate_server_cert(paths, hosts)
    logger.info("wrote server certificate %s for %s", paths.server_cert, ", ".join(names))
    for cid in client_ids:
        if force or not paths.node_pub(cid).is_file():
            generate_node_key(paths, cid)
            logger.info(
                "wrote node key %s (hand %s to %s only)",
                paths.node_key(cid),
                paths.client_dir(cid),
                cid,
            )
        elif paths.client_dir(cid).is_dir():
            _write(paths.client_dir(cid) / "ca.crt", paths.ca_cert.read_bytes())
    return paths


def check_server_cert(paths: CertPaths) -> None:
    """Check that the server certificate exists and was issued by this directory's CA.

    Raises :class:`~fednet.errors.ConfigError` naming the file that is wrong.
    """
    from fednet.errors import ConfigError

    for p in (paths.ca_cert, paths.server_cert, paths.server_key):
        if not p.is_file():
            raise ConfigError(f"certificate file {str(p)!r} is missing; run `make certs`")
    try:
        ca = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
        cert = x509.load_pem_x509_certificate(paths.server_cert.read_bytes())
        key = serialization.load_pem_private_key(paths.server_key.read_bytes(), None)
    except ValueError as e:
        raise ConfigError(f"cannot read the certificates in {str(paths.root)!r}: {e}") from e
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature) as e:
        raise ConfigError(
            f"`{paths.server_cert}` was not issued by `{paths.ca_cert}`; re-run `make certs`"
        ) from e
    pub = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if pub != cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        raise ConfigError(f"`{paths.server_key}` does not match `{paths.server_cert}`")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fednet.deploy.certs``: write a certificate directory."""
    p = argparse.ArgumentParser(
        prog="python -m fednet.deploy.certs",
        description="Write a CA, a server certificate and client node keys.",
    )
    p.add_argument("--out", default="certs", help="directory to write (default: certs)")
    p.add_argument(
        "--host",
        action="append",
        default=[],
        help="extra name or IP address of the server (repeatable)",
    )
    p.add_argument("--config", default=None, help="preset whose client ids get node keys")
    p.add_argument(
        "--client",
        action="append",
        default=[],
        help="extra client id that gets a node key (repeatable)",
    )
    p.add_argument("--force", action="store_true", help="replace the CA and every node key")
    p.add_argument(
        "--import-pub",
        action="append",
        default=[],
        metavar="ID=PATH",
        help="register a node public key a client made itself (repeatable)",
    )
    p.add_argument(
        "--node-key-only",
        action="store_true",
        help="on a client: make only its own node key pair (give --client ID)",
    )
    args = p.parse_args(argv)
    ids = list(args.client)
    hosts = [h for arg in args.host for h in arg.replace(",", " ").split()]
    if args.node_key_only:
        if len(ids) != 1:
            print("fednet-certs: error: --node-key-only needs one --client ID", file=sys.stderr)
            return 2
        paths = cert_paths(args.out)
        try:
            key = generate_node_key(paths, ids[0])
        except (ValueError, OSError) as e:
            print(f"fednet-certs: error: {e}", file=sys.stderr)
            return 2
        print(f"node key {key}; send only {paths.node_pub(ids[0])} to the server's issuer")
        return 0
    try:
        paths = cert_paths(args.out)
        for item in args.import_pub:
            cid, sep, path = item.partition("=")
            if not sep:
                raise ValueError(f"--import-pub must be ID=PATH, got {item!r}")
            import_node_pub(paths, cid, path)
        if args.config:
            from fednet.config import load_preset

            ids += [c.id for c in load_preset(args.config).clients]
        paths = make_certs(
            args.out, hosts=hosts, client_ids=list(dict.fromkeys(ids)), force=args.force
        )
    except (ValueError, OSError) as e:
        print(f"fednet-certs: error: {e}", file=sys.stderr)
        return 2
    print(f"certificates in {paths.root}")
    print(f"  CA:     {paths.ca_cert}")
    print(f"  server: {paths.server_cert} ({', '.join([*DEFAULT_HOSTS, *hosts])})")
    for cid in sorted(paths.node_pubs()):
        bundle = paths.client_dir(cid)
        where = f"{bundle} (give it to {cid} only)" if bundle.is_dir() else "its own key"
        print(f"  client {cid}: {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
