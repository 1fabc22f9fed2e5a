"""``flower-client``: run one silo of a fednet federation as a Flower SuperNode.

The SuperNode gets node config ``client-id``, ``preset`` (this machine's copy)
and ``state-dir``; the fednet ClientApp reads its preset entry (data, rank,
budgets) from them, keeps its privacy ledger and data cache in the state
directory, and only LoRA factors, heads and metrics leave the machine.

Before it starts the SuperNode the command checks the preset entry and loads
the client's data once (filling the cache every later message reads). It then
waits for the server, retrying with exponential backoff and saying what it
waits for, indefinitely unless ``--max-wait`` is given. When a running
SuperNode loses the server (a restarted or resumed ``flower-server``), it
waits and reconnects.

Like a SuperNode, a client serves run after run until it is stopped. Exit
status: 2 bad input (unknown client id, missing certificate or key, data that
cannot be loaded), 3 refused by the server (key not registered), 4 the
server's certificate is not trusted, 5 ``--max-wait`` seconds passed without a
server, 130 or 143 when stopped by Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import tenacity

from fednet.deploy import flower as F
from fednet.deploy.net import free_port, parse_address, probe_server
from fednet.deploy.procs import Supervisor, run_command, watch_output
from fednet.errors import ConfigError, FednetError

if TYPE_CHECKING:
    from fednet.config import FederationConfig

__all__ = ["main", "build_parser", "run_client", "resolve_client_id", "ClientStopError"]

logger = logging.getLogger(__name__)

PROG = "flower-client"
EXIT_REFUSED, EXIT_UNTRUSTED, EXIT_GAVE_UP = 3, 4, 5


class ClientStopError(FednetError):
    """The client stops for good; ``status`` is its exit status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Run one fednet client (a Flower "
        "SuperNode) that trains on this machine's private data.",
    )
    p.add_argument("--server", required=True, help="HOST:PORT of flower-server")
    p.add_argument("--client", required=True, help="this client's id in the preset")
    p.add_argument("--config", default="configs/default.toml", help="TOML preset")
    sec = p.add_mutually_exclusive_group()
    sec.add_argument(
        "--certs",
        default=None,
        help="this client's bundle from make certs (ca.crt, node.key), or the issuer's "
        "directory holding clients/<ID>/; default: certs",
    )
    sec.add_argument(
        "--insecure", action="store_true", help="no TLS and no client authentication (testing only)"
    )
    p.add_argument(
        "--auth-key",
        default=None,
        help="this client's node private key "
        "(default <certs>/node.key or <certs>/clients/<ID>/node.key)",
    )
    p.add_argument(
        "--max-wait",
        type=float,
        default=None,
        help="give up after this many seconds without a server (default: never)",
    )
    p.add_argument(
        "--state-dir", default=None, help="ledger and cache directory (default runs/client-<ID>)"
    )
    p.add_argument("--refused-grace", type=float, default=20.0, help=argparse.SUPPRESS)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


BACKOFF_CAP_S = 30.0
"""The longest wait between two attempts to reach the server."""


class _NotServingError(Exception):
    """An attempt that did not reach a serving SuperNode; the message says why."""


@dataclass
class _Outcome:
    """What one SuperNode process did, read from its output."""

    connected: bool = False
    refused: bool = False
    untrusted: str = ""
    lines: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def feed(self, line: str) -> None:
        sys.stderr.write(line + "\n")
        low = line.lower()
        with self.lock:
            self.lines = [*self.lines[-30:], line]
            if "supernode id:" in low:
                self.connected = True
            if "failed to activate supernode" in low or "code: 2004" in low:
                self.refused = True
            if "certificate verify failed" in low or "ssl/tls handshake error" in low:
                self.untrusted = line.strip()


def _security(args: argparse.Namespace) -> tuple[Path | None, Path | None]:
    """(CA certificate, node private key); both None with ``--insecure``."""
    if args.insecure:
        if args.auth_key:
            raise ConfigError("`--auth-key` needs TLS; drop --insecure and pass --certs")
        logger.warning(
            "--insecure: no TLS and no client authentication; the updates this "
            "client sends travel in clear text"
        )
        return None, None
    root = Path(args.certs or "certs").expanduser().resolve()
    ca = root / "ca.crt"
    if not ca.is_file():
        raise ConfigError(
            f"no CA certificate at {str(ca)!r}; copy the server's certs/ca.crt "
            "there or pass --certs DIR"
        )
    key = (
        Path(args.auth_key).expanduser().resolve()
        if args.auth_key
        else _default_node_key(root, args.client)
    )
    if not key.is_file():
        if args.auth_key:
            raise ConfigError(f"`--auth-key` {args.auth_key!r} does not exist")
        logger.warning(
            "no node key at %s: a server that authenticates clients will refuse this one", key
        )
        return ca, None
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_ssh_private_key

    try:
        if not isinstance(load_ssh_private_key(key.read_bytes(), None), ec.EllipticCurvePrivateKey):
            raise ValueError("not an ECDSA key")
    except ValueError as e:
        raise ConfigError(
            f"`--auth-key` {str(key)!r} is not an OpenSSH ECDSA private key "
            f"(make certs writes one): {e}"
        ) from e
    return ca, key


def _default_node_key(root: Path, client_id: str) -> Path:
    """The node key in a client's bundle (``--certs`` is the bundle, or the issuer's
    directory holding ``clients/<ID>/``)."""
    for path in (root / "node.key", root / "clients" / client_id / "node.key"):
        if path.is_file():
            return path
    return root / "node.key"


def resolve_client_id(cfg: FederationConfig, wanted: str) -> str:
    """``wanted`` if the preset has that id, else the ``wanted``-th client (``ID=0``)."""
    if any(c.id == wanted for c in cfg.clients):
        return wanted
    if wanted.isdigit() and int(wanted) < len(cfg.clients):
        chosen = cfg.clients[int(wanted)].id
        logger.info("client %s of the preset is %r", wanted, chosen)
        return chosen
    return cfg.client(wanted).id  # ConfigError listing the valid ids


def _prepare(cfg: FederationConfig, client_id: str, state_dir: Path) -> tuple[Path, int]:
    """Fill the data cache (and so check the data); return (preset path, examples)."""
    from fednet.federation.cache import cached_client_data, use_cache_dir

    client = cfg.client(client_id)
    use_cache_dir(state_dir)
    try:
        data = cached_client_data(cfg, client)
    except (ValueError, TypeError, FileNotFoundError, OSError) as e:
        raise ConfigError(
            f"client {client_id!r}: cannot load its data ({client.dataset!r}): {e}"
        ) from e
    return Path(cfg.source).resolve(), len(data.train_texts)


def run_client(args: argparse.Namespace) -> int:
    """Validate, then serve as a SuperNode until stopped; return the exit status."""
    if args.max_wait is not None and args.max_wait <= 0:
        raise ConfigError(f"`--max-wait` must be > 0 seconds, got {args.max_wait}")
    from fednet.config import load_preset

    host, port = parse_address(args.server, default_host="")
    if not host:
        raise ConfigError(f"`--server` must name a host, got {args.server!r}")
    cfg = load_preset(args.config)
    args.client = resolve_client_id(cfg, args.client)
    ca, key = _security(args)
    state_dir = Path(args.state_dir or f"runs/client-{args.client}").expanduser().resolve()
    preset, n = _prepare(cfg, args.client, state_dir)
    logger.info("client %s: %d training examples, state in %s", args.client, n, state_dir)
    node_config: dict[str, str | int | float | bool] = {
        "client-id": args.client,
        "preset": str(preset),
        "state-dir": str(state_dir),
    }
    env = F.flower_env(state_dir / "flwr-home")
    what = (
        f"the server at {args.server} ({'TLS, CA ' + str(ca) if ca else 'insecure'}"
        f"{', node key ' + str(key) if key else ''})"
    )
    loop = _Loop(args, host, port, ca, key, node_config, env, state_dir, what)
    with Supervisor() as sup:
        while True:  # after a SuperNode loses the server, the waits start again
            loop.serve(sup)


class _Loop:
    """Connect, serve, and on failure wait with backoff (tenacity): the client's life.

    Waits grow as 1, 2, 4, ... seconds plus up to a second of jitter, at most
    :data:`BACKOFF_CAP_S`; with ``--max-wait`` the last wait ends at the deadline.
    """

    def __init__(
        self,
        args: argparse.Namespace,
        host: str,
        port: int,
        ca: Path | None,
        key: Path | None,
        node_config: dict[str, str | int | float | bool],
        env: dict[str, str],
        state_dir: Path,
        what: str,
    ) -> None:
        self.args, self.host, self.port, self.ca, self.key = args, host, port, ca, key
        self.node_config, self.env, self.state_dir, self.what = node_config, env, state_dir, what
        self.backoff = tenacity.wait_exponential_jitter(initial=1, max=BACKOFF_CAP_S, jitter=1)
        self.refused_since: float | None = None

    def serve(self, sup: Supervisor) -> None:
        """Attempt until a SuperNode connects and later ends; stop at ``--max-wait``."""
        max_wait = self.args.max_wait
        tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(_NotServingError),
            wait=self._pause,
            stop=tenacity.stop_never if max_wait is None else tenacity.stop_after_delay(max_wait),
            before_sleep=self._log_wait,
            retry_error_callback=self._give_up,
        )(self.attempt, sup)

    def _left(self, state: tenacity.RetryCallState) -> float | None:
        if self.args.max_wait is None:
            return None
        return self.args.max_wait - (time.monotonic() - state.start_time)

    def _pause(self, state: tenacity.RetryCallState) -> float:
        pause, left = self.backoff(state), self._left(state)
        return pause if left is None else max(0.0, min(pause, left))

    def _log_wait(self, state: tenacity.RetryCallState) -> None:
        left = self._left(state)
        logger.info(
            "client %s waiting for %s: %s; retry %d in %.1fs%s",
            self.args.client,
            self.what,
            state.outcome.exception() if state.outcome else "",
            state.attempt_number,
            state.upcoming_sleep,
            "" if left is None else f"; giving up in {left:.0f}s",
        )

    def _give_up(self, state: tenacity.RetryCallState) -> None:
        reason = state.outcome.exception() if state.outcome else ""
        raise ClientStopError(
            f"gave up after {self.args.max_wait:.0f}s waiting for {self.what}: {reason}",
            EXIT_GAVE_UP,
        )

    def attempt(self, sup: Supervisor) -> None:
        """Probe the server and, if it answers, serve until the SuperNode ends.

        Raises
        ------
        _NotServingError
            If no SuperNode connected; the message says why.
        ClientStopError
            If waiting longer cannot help (untrusted certificate, refused key).
        """
        probe = probe_server(self.host, self.port, ca_cert=self.ca)
        if probe.permanent:
            hint = (
                f"re-issue the server certificate for it: make certs HOSTS={self.host}"
                if "hostname" in probe.reason.lower()
                else "--certs must hold the ca.crt of the server's certificate directory"
            )
            raise ClientStopError(f"{probe.reason}; {hint}", EXIT_UNTRUSTED)
        if not probe.ok:
            raise _NotServingError(probe.reason)
        out, rc = self._serve(sup)
        if out.untrusted:
            raise ClientStopError(
                f"TLS with {self.args.server} failed: {out.untrusted}", EXIT_UNTRUSTED
            )
        if out.connected:  # the waits (and --max-wait) start again from now
            self.refused_since = None
            reason = f"the SuperNode lost the server (status {rc})"
            logger.warning("client %s: %s; reconnecting", self.args.client, reason)
            return
        if out.refused:
            self.refused_since = self.refused_since or time.monotonic()
            if time.monotonic() - self.refused_since >= self.args.refused_grace:
                cid = self.args.client
                raise ClientStopError(
                    f"the server at {self.args.server} refused client {cid!r}: its node key "
                    f"{self.key or '(none)'} is not registered there. Put the public key "
                    f"(nodes/{cid}.pub) in the server's certs/nodes/ and restart flower-server.",
                    EXIT_REFUSED,
                )
            raise _NotServingError("the server does not know this client's key (yet)")
        raise _NotServingError(f"the SuperNode could not connect (status {rc})")

    def _serve(self, sup: Supervisor) -> tuple[_Outcome, int]:
        """Run one SuperNode until it exits."""
        cmd = F.supernode_command(
            server=self.args.server,
            ca_cert=self.ca,
            auth_key=self.key,
            node_config=self.node_config,
            runtime_port=free_port(),
        )
        if self.args.max_wait is not None:  # also bounds Flower's own reconnection
            cmd += ["--max-wait-time", f"{self.args.max_wait:.0f}"]
        out = _Outcome()
        node = sup.spawn("supernode", cmd, env=self.env, cwd=self.state_dir, pipe=True)
        with watch_output(node, out.feed):
            rc = node.proc.wait()
        sup.stop(node)
        return out, rc


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``flower-client``."""
    from fednet.logs import setup_logging

    args = build_parser().parse_args(argv)
    setup_logging(args.verbose, prog=PROG)
    return run_command(PROG, lambda: run_client(args))


if __name__ == "__main__":
    sys.exit(main())
