"""Run a peer: load its adapters, serve HTTP, register with the hub, heartbeat."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fednet.errors import FednetError, HubError, NotFoundError
from fednet.hub.client import HubClient
from fednet.hub.keys import Ed25519PrivateKey
from fednet.hub.manifest import check_name
from fednet.hub.maps import MAP_KIND
from fednet.hub.store import HubStore
from fednet.inference.batcher import MicroBatcher
from fednet.inference.config import PeerConfig
from fednet.inference.engine import AdapterEngine

__all__ = ["PeerServer", "owned_adapters"]

logger = logging.getLogger(__name__)


def owned_adapters(hub: HubStore | HubClient, client_id: str) -> list[str]:
    """Names of the hub adapters published by ``client_id``, personalised first.

    Raises
    ------
    NotFoundError
        If the client has published nothing; lists the owners that have.
    """
    manifests = [m for m in hub.list() if m.owner == client_id and m.kind != MAP_KIND]
    if not manifests:
        owners = sorted({m.owner for m in hub.list()})
        raise NotFoundError(
            f"client {client_id!r} has no adapters on the hub; owners: {owners or 'none'}"
        )
    order = {"personalized": 0, "shared": 1}
    manifests.sort(key=lambda m: (order.get(m.kind, 2), m.name))
    return [m.name for m in manifests]


class PeerServer:
    """One inference peer on ``host:port`` serving hub adapters.

    Parameters
    ----------
    hub : HubStore or HubClient
        Source of adapters and where the peer registers (a ``HubClient``
        needs the write token to register).
    peer_id : str
        Identifier; usually the client id.
    adapters : sequence of str
        Adapters to serve; the first is the default. They are loaded at start.
    host, port : str, int
        Where to listen; port 0 picks a free one.
    config : PeerConfig, optional
        Limits, batching and heartbeat settings.
    cache_dir : str or Path, optional
        Disk cache of fetched adapters.
    register : bool
        Register with the hub and heartbeat.
    owner : str, optional
        Client id owning the peer (default ``peer_id``).
    key : Ed25519PrivateKey, optional
        The owner's key, which signs the registration and every heartbeat;
        required with ``register``.
    token : str, optional
        When given, ``/v1/classify`` answers only requests bearing it.
    """

    def __init__(
        self,
        hub: HubStore | HubClient,
        *,
        peer_id: str,
        adapters: Sequence[str],
        host: str = "127.0.0.1",
        port: int = 0,
        config: PeerConfig | None = None,
        cache_dir: str | Path | None = None,
        register: bool = True,
        owner: str | None = None,
        key: Ed25519PrivateKey | None = None,
        token: str | None = None,
    ) -> None:
        check_name("peer_id", peer_id)
        if not adapters:
            raise ValueError(f"peer {peer_id!r} must serve at least one adapter")
        if register and not isinstance(key, Ed25519PrivateKey):
            raise ValueError(
                f"peer {peer_id!r} registers with the hub, so it needs its owner's signing `key`"
            )
        self.owner = check_name("owner", owner or peer_id)
        self.key = key
        self.token = token
        self.hub = hub
        self.peer_id = peer_id
        self.adapters = list(adapters)
        self.host = host
        self.port = port
        self.config = config or PeerConfig()
        self.cache_dir = cache_dir
        self.register = register
        self.engine: AdapterEngine | None = None
        self.batcher: MicroBatcher | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL of the running peer."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> str:
        """Load the adapters, start serving and register; return the URL.

        Raises
        ------
        NotFoundError, IntegrityError, SignatureError
            If an adapter to serve is missing or fails verification.
        """
        import uvicorn

        from fednet.inference.peer import create_peer_app

        manifest = self.hub.resolve(self.adapters[0])
        cfg = self.config
        self.engine = AdapterEngine(
            manifest.base_model,
            source=self.hub,
            cache_dir=self.cache_dir,
            cache_size=max(cfg.cache_size, len(self.adapters)),
            max_length=cfg.max_length,
            resolve_ttl_s=cfg.resolve_ttl_s,
        )
        for name in self.adapters:
            self.engine.ensure(name)
        self.batcher = MicroBatcher(
            self.engine, window_s=cfg.batch_window_s, max_batch_texts=cfg.max_batch_texts
        )
        app = create_peer_app(
            self.engine,
            self.batcher,
            peer_id=self.peer_id,
            adapters=self.adapters,
            config=cfg,
            token=self.token,
        )
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((self.host, self.port))
        self.port = self._socket.getsockname()[1]
        self._server = uvicorn.Server(
            uvicorn.Config(app, log_level="warning", lifespan="off", timeout_keep_alive=30)
        )
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._socket]},
            daemon=True,
            name=f"peer-{self.peer_id}",
        )
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise FednetError(f"peer {self.peer_id} did not start on {self.url}")
            time.sleep(0.01)
        if self.register:
            self._register()
            self._heartbeat = threading.Thread(target=self._beat, daemon=True)
            self._heartbeat.start()
        logger.info("peer %s serving %s on %s", self.peer_id, self.adapters, self.url)
        return self.url

    def _register(self) -> None:
        assert self.engine is not None and self.key is not None
        self.hub.register_peer(
            self.peer_id,
            self.url,
            self.engine.base_model,
            self.adapters,
            owner=self.owner,
            key=self.key,
        )

    def _beat(self) -> None:
        while not self._stop.wait(self.config.heartbeat_s):
            try:
                assert self.key is not None
                self.hub.heartbeat(self.peer_id, owner=self.owner, key=self.key)
            except NotFoundError:
                logger.info("hub forgot peer %s; registering again", self.peer_id)
                try:
                    self._register()
                except (HubError, ValueError) as e:
                    logger.warning("peer %s cannot register: %s", self.peer_id, e)
            except HubError as e:
                logger.warning("heartbeat of %s failed: %s", self.peer_id, e)

    def stop(self) -> None:
        """Stop serving and heartbeating (the hub marks the peer down later)."""
        self._stop.set()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()
        if self.batcher is not None:
            self.batcher.close()

    def serve_forever(self) -> None:
        """Start, then block until interrupted."""
        self.start()
        try:
            while self._thread is not None and self._thread.is_alive():
                self._thread.join(timeout=0.5)
        finally:
            self.stop()

    def __enter__(self) -> PeerServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
