"""Peer records: who serves which adapters, where, and whether they are alive."""

from __future__ import annotations

import builtins
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, insert, select, update

from fednet.errors import NotFoundError
from fednet.hub.db import peers_table
from fednet.hub.manifest import check_name

__all__ = ["PeerInfo", "PeerRegistry", "check_peer_fields"]

logger = logging.getLogger(__name__)


def check_peer_fields(
    peer_id: object, endpoint: object, base_model: object, adapters: object
) -> tuple[str, str, str, tuple[str, ...]]:
    """Validate the fields of a peer registration and return them normalized.

    Raises
    ------
    TypeError, ValueError
        Naming the bad field and its value.
    """
    check_name("peer_id", peer_id)
    for key, value in (("endpoint", endpoint), ("base_model", base_model)):
        if not isinstance(value, str):
            raise TypeError(f"`{key}` must be a str, got {type(value).__name__} {value!r}")
        if not value:
            raise ValueError(f"`{key}` must be a non-empty string, got {value!r}")
    if isinstance(adapters, str) or not isinstance(adapters, Sequence):
        raise TypeError(f"`adapters` must be a sequence of adapter names, got {adapters!r}")
    for i, name in enumerate(adapters):
        check_name(f"adapters[{i}]", name)
    return peer_id, endpoint, base_model, tuple(adapters)  # type: ignore[return-value]


@dataclass(frozen=True, kw_only=True)
class PeerInfo:
    """A registered inference peer.

    Parameters
    ----------
    peer_id : str
        Identifier of the peer (usually the client id).
    endpoint : str
        Base URL where the peer answers queries.
    base_model : str
        Base model the peer runs.
    adapters : tuple[str, ...]
        Names of the hub adapters it serves.
    last_heartbeat : float
        Unix time of the last registration or heartbeat.
    up : bool
        Whether the last heartbeat is within the liveness timeout.
    """

    peer_id: str
    endpoint: str
    base_model: str
    adapters: tuple[str, ...] = ()
    last_heartbeat: float = 0.0
    up: bool = False

    def __post_init__(self) -> None:
        _, _, _, adapters = check_peer_fields(
            self.peer_id, self.endpoint, self.base_model, self.adapters
        )
        object.__setattr__(self, "adapters", adapters)
        if not isinstance(self.last_heartbeat, int | float) or isinstance(
            self.last_heartbeat, bool
        ):
            raise TypeError(f"`last_heartbeat` must be a number, got {self.last_heartbeat!r}")
        object.__setattr__(self, "last_heartbeat", float(self.last_heartbeat))
        if not isinstance(self.up, bool):
            raise TypeError(f"`up` must be a bool, got {self.up!r}")

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "peer_id": self.peer_id,
            "endpoint": self.endpoint,
            "base_model": self.base_model,
            "adapters": list(self.adapters),
            "last_heartbeat": self.last_heartbeat,
            "up": self.up,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PeerInfo:
        """Build from :meth:`to_dict` output, rejecting unknown keys."""
        if not isinstance(data, Mapping):
            raise TypeError(f"peer must be a JSON object, got {type(data).__name__}")
        known = {"peer_id", "endpoint", "base_model", "adapters", "last_heartbeat", "up"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"peer has unknown keys {unknown}; valid keys are {sorted(known)}")
        kwargs = dict(data)
        if isinstance(kwargs.get("adapters"), list):
            kwargs["adapters"] = tuple(kwargs["adapters"])
        return cls(**kwargs)


class PeerRegistry:
    """Peers and their heartbeats in the hub database.

    Parameters
    ----------
    engine : Engine
        Database holding :data:`fednet.hub.db.peers_table`.
    timeout : float
        Default seconds since the last heartbeat for a peer to count as up.
    clock : callable
        Returns Unix time; injectable for tests.
    lock : threading.Lock, optional
        Serializes writes with the rest of the store.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        timeout: float = 60.0,
        clock: Callable[[], float] = time.time,
        lock: threading.Lock | None = None,
    ) -> None:
        self.timeout = _check_timeout("peer_timeout", timeout)
        self._engine = engine
        self._clock = clock
        self._lock = lock or threading.Lock()

    def register(
        self, peer_id: str, endpoint: str, base_model: str, adapters: Sequence[str] = ()
    ) -> PeerInfo:
        """Insert or update a peer and record a heartbeat now."""
        peer_id, endpoint, base_model, served = check_peer_fields(
            peer_id, endpoint, base_model, adapters
        )
        now = self._clock()
        values: dict[str, Any] = {
            "endpoint": endpoint,
            "base_model": base_model,
            "adapters": json.dumps(builtins.list(served)),
            "last_heartbeat": now,
        }
        with self._lock, self._engine.begin() as conn:
            updated = conn.execute(
                update(peers_table).where(peers_table.c.peer_id == peer_id).values(**values)
            )
            if updated.rowcount == 0:
                conn.execute(insert(peers_table).values(peer_id=peer_id, registered=now, **values))
        logger.info("peer %s registered at %s serving %s", peer_id, endpoint, served)
        return self.get(peer_id)

    def heartbeat(self, peer_id: str) -> PeerInfo:
        """Record a heartbeat now; ``NotFoundError`` if the peer is unknown."""
        check_name("peer_id", peer_id)
        with self._lock, self._engine.begin() as conn:
            updated = conn.execute(
                update(peers_table)
                .where(peers_table.c.peer_id == peer_id)
                .values(last_heartbeat=self._clock())
            )
        if updated.rowcount == 0:
            raise NotFoundError(f"peer {peer_id!r} is not registered; register it first")
        return self.get(peer_id)

    def get(self, peer_id: str, alive_within: float | None = None) -> PeerInfo:
        """One peer by id; ``NotFoundError`` if unknown."""
        timeout = self._timeout(alive_within)
        with self._engine.connect() as conn:
            row = conn.execute(
                select(peers_table).where(peers_table.c.peer_id == peer_id)
            ).one_or_none()
        if row is None:
            raise NotFoundError(f"peer {peer_id!r} is not registered")
        return _from_row(dict(row._mapping), self._clock(), timeout)

    def list(self, alive_within: float | None = None) -> builtins.list[PeerInfo]:
        """All peers sorted by id, each marked up or down against ``alive_within``."""
        timeout = self._timeout(alive_within)
        with self._engine.connect() as conn:
            rows = builtins.list(conn.execute(select(peers_table).order_by(peers_table.c.peer_id)))
        now = self._clock()
        return [_from_row(dict(row._mapping), now, timeout) for row in rows]

    def _timeout(self, alive_within: float | None) -> float:
        if alive_within is None:
            return self.timeout
        return _check_timeout("alive_within", alive_within)


def _check_timeout(key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"`{key}` must be a number of seconds, got {value!r}")
    if not value > 0:
        raise ValueError(f"`{key}` must be > 0, got {value!r}")
    return float(value)


def _from_row(row: Mapping[str, Any], now: float, timeout: float) -> PeerInfo:
    return PeerInfo(
        peer_id=row["peer_id"],
        endpoint=row["endpoint"],
        base_model=row["base_model"],
        adapters=tuple(json.loads(row["adapters"])),
        last_heartbeat=row["last_heartbeat"],
        up=now - row["last_heartbeat"] <= timeout,
    )
