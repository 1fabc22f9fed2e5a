"""Addresses, ports and a TLS probe that says why a server cannot be reached."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

__all__ = [
    "parse_address",
    "connect_host",
    "join_address",
    "port_in_use",
    "free_port",
    "probe_server",
    "ProbeResult",
]


def parse_address(address: str, *, default_host: str = "0.0.0.0") -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT``, ``:PORT``) as (host, port); names the bad value."""
    text = address.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ValueError(f"`address` must be HOST:PORT, got {address!r}")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ValueError(f"`address` port must be in [1, 65535], got {port}")
    host = host.strip("[]") or default_host
    return host, port


def connect_host(host: str) -> str:
    """The address to dial for a server bound to ``host`` on this machine."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def join_address(host: str, port: int) -> str:
    """``host:port``, bracketing an IPv6 host."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def port_in_use(host: str, port: int) -> bool:
    """Whether binding ``host:port`` would fail because something holds it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def free_port(host: str = "127.0.0.1") -> int:
    """A port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class ProbeResult:
    """Outcome of :func:`probe_server`.

    Parameters
    ----------
    ok : bool
        The server accepted a connection (and, with TLS, a verified handshake).
    reason : str
        Why not, in words, when ``ok`` is False.
    permanent : bool
        Retrying cannot help (the certificate is wrong), as opposed to a server
        that is down or not reachable yet.
    """

    __slots__ = ("ok", "reason", "permanent")

    def __init__(self, ok: bool, reason: str = "", permanent: bool = False) -> None:
        self.ok, self.reason, self.permanent = ok, reason, permanent

    def __repr__(self) -> str:
        return f"ProbeResult(ok={self.ok}, reason={self.reason!r}, permanent={self.permanent})"


def probe_server(
    host: str, port: int, *, ca_cert: Path | None, timeout: float = 5.0
) -> ProbeResult:
    """Connect to ``host:port`` and, when ``ca_cert`` is given, verify its TLS certificate.

    The handshake checks the chain against ``ca_cert`` and that the certificate
    names ``host``, as Flower's SuperNode will.
    """
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except socket.gaierror as e:
        return ProbeResult(False, f"cannot resolve {host!r}: {e.strerror or e}")
    except ConnectionRefusedError:
        return ProbeResult(False, "connection refused (no server listening yet)")
    except TimeoutError:
        return ProbeResult(False, f"no answer within {timeout:.0f}s")
    except OSError as e:
        return ProbeResult(False, e.strerror or str(e))
    with sock:
        if ca_cert is None:
            return ProbeResult(True)
        ctx = ssl.create_default_context(cafile=str(ca_cert))
        try:
            with ctx.wrap_socket(sock, server_hostname=host):
                return ProbeResult(True)
        except ssl.SSLCertVerificationError as e:
            return ProbeResult(
                False,
                f"the server's TLS certificate is not trusted: "
                f"{e.verify_message} (checked against {ca_cert})",
                permanent=True,
            )
        except ssl.SSLError as e:
            return ProbeResult(
                False,
                f"TLS handshake failed: {e.reason or e}; is the server running with --insecure?",
                permanent=True,
            )
        except (TimeoutError, OSError) as e:
            return ProbeResult(False, f"TLS handshake did not complete: {e}")
