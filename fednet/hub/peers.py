"""Peer records: who serves which adapters, where, and whether they are alive.

Every registration and heartbeat is signed with the peer owner's Ed25519 key
(:func:`sign_peer_request`). The first registration binds the peer id to its
owner and key; later ones, and every heartbeat, must be signed by that key.
A request carries its own Unix time and must be newer than the last one
accepted for the peer and within :data:`MAX_CLOCK_SKEW_S` of the hub's clock,
so a captured request cannot be replayed. Endpoints must be ``http`` or
``https`` URLs with a host and a port in 1..65535 and nothing else.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidSignature
from sqlalchemy import Engine, insert, select, update

from fednet.errors import NotFoundError, SignatureError, UntrustedKeyError
from fednet.hub.db import name_keys_table, owner_keys_table, peers_table
from fednet.hub.keys import Ed25519PrivateKey, decode_public_key, encode_public_key
from fednet.hub.manifest import check_name

__all__ = [
    "MAX_CLOCK_SKEW_S",
    "PeerInfo",
    "PeerRegistry",
    "SignedPeerRequest",
    "check_endpoint",
    "check_peer_fields",
    "sign_peer_request",
]

logger = logging.getLogger(__name__)

MAX_CLOCK_SKEW_S = 300.0
"""Largest difference, in seconds, between a signed request's time and the hub's."""


def check_endpoint(endpoint: object) -> str:
    """Return ``endpoint`` if it is ``http(s)://host:port`` (an optional path allowed).

    Raises
    ------
    TypeError
        If it is not a string.
    ValueError
        Naming what is wrong: the scheme, a missing host, a port outside
        1..65535, user info, a query or a fragment.
    """
    if not isinstance(endpoint, str):
        raise TypeError(f"`endpoint` must be a str, got {type(endpoint).__name__} {endpoint!r}")
    if len(endpoint) > 2048 or any(c.isspace() or ord(c) < 32 for c in endpoint):
        raise ValueError(f"`endpoint` must be a URL without spaces, got {endpoint!r}")
    try:
        parts = urlsplit(endpoint)
        port = parts.port
    except ValueError as e:
        raise ValueError(f"`endpoint` {endpoint!r} is not a valid URL: {e}") from e
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"`endpoint` must use http or https, got {endpoint!r}")
    if not parts.hostname:
        raise ValueError(f"`endpoint` must name a host, got {endpoint!r}")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"`endpoint` must not carry user info, got {endpoint!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"`endpoint` must not carry a query or fragment, got {endpoint!r}")
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    if not 1 <= port <= 65535:
        raise ValueError(f"`endpoint` port must be in 1..65535, got {endpoint!r}")
    return endpoint


@dataclass(frozen=True, kw_only=True)
class SignedPeerRequest:
    """A peer registration or heartbeat, signed by the peer owner's key.

    Parameters
    ----------
    action : {"register", "heartbeat"}
        What the request does.
    peer_id, owner : str
        The peer and the client id that owns it.
    public_key : str
        The owner's Ed25519 public key (base64).
    timestamp : float
        Unix time the owner signed at.
    signature : str
        Base64 Ed25519 signature over :meth:`payload`.
    endpoint, base_model, adapters
        The registration (empty for a heartbeat).
    """

    action: Literal["register", "heartbeat"]
    peer_id: str
    owner: str
    public_key: str
    timestamp: float
    signature: str = ""
    endpoint: str = ""
    base_model: str = ""
    adapters: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.action not in ("register", "heartbeat"):
            raise ValueError(f"`action` must be 'register' or 'heartbeat', got {self.action!r}")
        check_name("peer_id", self.peer_id)
        check_name("owner", self.owner)
        if self.action == "register":
            check_peer_fields(self.peer_id, self.endpoint, self.base_model, self.adapters)
        object.__setattr__(self, "adapters", tuple(self.adapters))
        if isinstance(self.timestamp, bool) or not isinstance(self.timestamp, int | float):
            raise TypeError(f"`timestamp` must be a number, got {self.timestamp!r}")
        object.__setattr__(self, "timestamp", float(self.timestamp))
        for key in ("public_key", "signature"):
            if not isinstance(getattr(self, key), str):
                raise TypeError(f"`{key}` must be a str, got {getattr(self, key)!r}")

    def payload(self) -> bytes:
        """Canonical JSON the owner signs (every field but the signature)."""
        data = self.to_dict()
        data.pop("signature")
        return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field."""
        return {
            "action": self.action,
            "peer_id": self.peer_id,
            "owner": self.owner,
            "public_key": self.public_key,
            "timestamp": self.timestamp,
            "signature": self.signature,
            "endpoint": self.endpoint,
            "base_model": self.base_model,
            "adapters": list(self.adapters),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SignedPeerRequest:
        """Build from :meth:`to_dict` output, rejecting unknown keys."""
        if not isinstance(data, Mapping):
            raise TypeError(f"peer request must be a JSON object, got {type(data).__name__}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"peer request has unknown keys {unknown}; valid: {sorted(known)}")
        kwargs = dict(data)
        if isinstance(kwargs.get("adapters"), list):
            kwargs["adapters"] = tuple(kwargs["adapters"])
        return cls(**kwargs)

    def verify(self) -> str:
        """Check the signature against ``public_key``; return the key (base64).

        Raises
        ------
        SignatureError
            If the key or signature is malformed or does not verify.
        """
        try:
            public = decode_public_key(self.public_key)
            signature = base64.b64decode(self.signature, validate=True)
            public.verify(signature, self.payload())
        except (ValueError, TypeError, binascii.Error) as e:
            raise SignatureError(
                f"{self.action} of peer {self.peer_id!r} has a malformed key or signature: {e}"
            ) from e
        except InvalidSignature as e:
            raise SignatureError(
                f"signature of the {self.action} of peer {self.peer_id!r} (owner "
                f"{self.owner!r}) does not verify"
            ) from e
        return encode_public_key(public)


_stamp_lock = threading.Lock()
_last_stamp = 0.0


def _now_stamp() -> float:
    """Unix time, strictly increasing within this process (coarse clocks repeat)."""
    global _last_stamp
    with _stamp_lock:
        _last_stamp = max(time.time(), _last_stamp + 1e-3)
        return _last_stamp


def sign_peer_request(
    key: Ed25519PrivateKey,
    *,
    action: Literal["register", "heartbeat"],
    peer_id: str,
    owner: str,
    endpoint: str = "",
    base_model: str = "",
    adapters: Sequence[str] = (),
    timestamp: float | None = None,
) -> SignedPeerRequest:
    """A registration or heartbeat signed with the owner's ``key`` (time: now)."""
    request = SignedPeerRequest(
        action=action,
        peer_id=peer_id,
        owner=owner,
        public_key=encode_public_key(key),
        timestamp=_now_stamp() if timestamp is None else timestamp,
        endpoint=endpoint,
        base_model=base_model,
        adapters=tuple(adapters),
    )
    signature = base64.b64encode(key.sign(request.payload())).decode("ascii")
    return SignedPeerRequest(**{**request.__dict__, "signature": signature})


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
    check_endpoint(endpoint)
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
    owner, public_key : str
        The client id the peer id is bound to, and its Ed25519 key (base64).
    registration : str
        JSON of the owner's newest signed registration
        (:meth:`SignedPeerRequest.to_dict`). The hub's other fields are its own
        word; :meth:`check_registration` holds them to what the owner signed.
        ``up`` and ``last_heartbeat`` are the hub's alone.
    """

    peer_id: str
    endpoint: str
    base_model: str
    adapters: tuple[str, ...] = ()
    last_heartbeat: float = 0.0
    up: bool = False
    owner: str = ""
    public_key: str = ""
    registration: str = ""

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
            "owner": self.owner,
            "public_key": self.public_key,
            "registration": self.registration,
        }

    def check_registration(self) -> SignedPeerRequest:
        """The owner's signed registration, checked against this record.

        Returns
        -------
        SignedPeerRequest
            The registration: signed with ``public_key`` by ``owner`` for
            ``peer_id``, with this record's ``endpoint``, ``base_model`` and
            ``adapters``.

        Raises
        ------
        SignatureError
            If there is no registration, it is malformed or does not verify, or
            it differs from this record in any of those fields (each named).
        """
        where = f"peer {self.peer_id!r}"
        if not self.registration:
            raise SignatureError(f"{where} carries no signed registration")
        try:
            request = SignedPeerRequest.from_dict(json.loads(self.registration))
        except (TypeError, ValueError) as e:
            raise SignatureError(f"{where} has a malformed registration: {e}") from e
        if request.action != "register":
            raise SignatureError(f"{where}'s registration is a {request.action!r}")
        request.verify()
        differ = [
            f"{name} {mine!r} (signed: {theirs!r})"
            for name, mine, theirs in (
                ("peer_id", self.peer_id, request.peer_id),
                ("owner", self.owner, request.owner),
                ("public_key", self.public_key, request.public_key),
                ("endpoint", self.endpoint, request.endpoint),
                ("base_model", self.base_model, request.base_model),
                ("adapters", self.adapters, request.adapters),
            )
            if mine != theirs
        ]
        if differ:
            raise SignatureError(
                f"{where}'s record differs from what its owner signed: " + "; ".join(differ)
            )
        return request

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PeerInfo:
        """Build from :meth:`to_dict` output, rejecting unknown keys."""
        if not isinstance(data, Mapping):
            raise TypeError(f"peer must be a JSON object, got {type(data).__name__}")
        known = {
            "peer_id",
            "endpoint",
            "base_model",
            "adapters",
            "last_heartbeat",
            "up",
            "owner",
            "public_key",
            "registration",
        }
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

    def _check_fresh(self, request: SignedPeerRequest, last_signed: float) -> None:
        now = self._clock()
        if abs(request.timestamp - now) > MAX_CLOCK_SKEW_S:
            raise SignatureError(
                f"{request.action} of peer {request.peer_id!r} is signed at "
                f"{request.timestamp:.0f}, more than {MAX_CLOCK_SKEW_S:.0f}s from the hub's "
                f"clock ({now:.0f})"
            )
        if request.timestamp <= last_signed:
            raise SignatureError(
                f"{request.action} of peer {request.peer_id!r} is not newer than the last "
                f"accepted one ({request.timestamp} <= {last_signed}); a replay?"
            )

    def register(self, request: SignedPeerRequest) -> PeerInfo:
        """Insert or update a peer from a signed registration; counts as a heartbeat.

        Raises
        ------
        SignatureError
            If the signature does not verify or the request is stale or replayed.
        UntrustedKeyError
            If the peer id is bound to another owner or key, the owner's key
            pinned by its first publish is another one, or a listed adapter's
            name is bound to another owner.
        NotFoundError
            If a listed adapter is not in the hub.
        """
        if not isinstance(request, SignedPeerRequest) or request.action != "register":
            raise TypeError(f"`request` must be a signed registration, got {request!r}")
        key = request.verify()
        now = self._clock()
        values: dict[str, Any] = {
            "endpoint": request.endpoint,
            "base_model": request.base_model,
            "adapters": json.dumps(builtins.list(request.adapters)),
            "last_heartbeat": now,
            "last_signed": request.timestamp,
            "registration": json.dumps(request.to_dict(), sort_keys=True),
        }
        with self._lock, self._engine.begin() as conn:
            pinned = conn.execute(
                select(owner_keys_table.c.public_key).where(
                    owner_keys_table.c.owner == request.owner
                )
            ).scalar_one_or_none()
            if pinned is not None and pinned != key:
                raise UntrustedKeyError(
                    f"peer {request.peer_id!r} claims owner {request.owner!r}, whose adapters "
                    f"are signed with another key; the registration's key is not theirs"
                )
            for name in request.adapters:  # a peer serves only its owner's adapters
                bound = conn.execute(
                    select(name_keys_table.c.owner).where(name_keys_table.c.name == name)
                ).scalars()
                owners = set(bound)
                if not owners:
                    raise NotFoundError(
                        f"peer {request.peer_id!r} lists adapter {name!r}, which is not in the hub"
                    )
                if owners != {request.owner}:
                    raise UntrustedKeyError(
                        f"peer {request.peer_id!r} (owner {request.owner!r}) lists adapter "
                        f"{name!r} of owner {sorted(owners)[0]!r}; a peer serves only its "
                        "owner's adapters"
                    )
            row = conn.execute(
                select(peers_table).where(peers_table.c.peer_id == request.peer_id)
            ).one_or_none()
            if row is None:
                self._check_fresh(request, 0.0)
                conn.execute(
                    insert(peers_table).values(
                        peer_id=request.peer_id,
                        registered=now,
                        owner=request.owner,
                        public_key=key,
                        **values,
                    )
                )
            else:
                old = row._mapping
                if not old["public_key"]:  # registered before peers were signed: bind now
                    logger.warning(
                        "peer %s had no owner key; binding it to %s", request.peer_id, request.owner
                    )
                elif (old["owner"], old["public_key"]) != (request.owner, key):
                    raise UntrustedKeyError(
                        f"peer {request.peer_id!r} is bound to owner {old['owner']!r}; a "
                        f"registration by {request.owner!r} with another key cannot change it"
                    )
                self._check_fresh(request, float(old["last_signed"]))
                conn.execute(
                    update(peers_table)
                    .where(peers_table.c.peer_id == request.peer_id)
                    .values(owner=request.owner, public_key=key, **values)
                )
        logger.info(
            "peer %s (owner %s) registered at %s serving %s",
            request.peer_id,
            request.owner,
            request.endpoint,
            request.adapters,
        )
        return self.get(request.peer_id)

    def heartbeat(self, request: SignedPeerRequest) -> PeerInfo:
        """Record a signed heartbeat now; ``NotFoundError`` if the peer is unknown.

        Raises
        ------
        SignatureError, UntrustedKeyError
            If it is not signed by the key the peer is bound to, or is stale.
        """
        if not isinstance(request, SignedPeerRequest) or request.action != "heartbeat":
            raise TypeError(f"`request` must be a signed heartbeat, got {request!r}")
        key = request.verify()
        with self._lock, self._engine.begin() as conn:
            row = conn.execute(
                select(peers_table).where(peers_table.c.peer_id == request.peer_id)
            ).one_or_none()
            if row is None:
                raise NotFoundError(
                    f"peer {request.peer_id!r} is not registered; register it first"
                )
            old = row._mapping
            if (old["owner"], old["public_key"]) != (request.owner, key):
                raise UntrustedKeyError(
                    f"heartbeat for peer {request.peer_id!r} is not signed by its owner "
                    f"{old['owner']!r}"
                )
            self._check_fresh(request, float(old["last_signed"]))
            conn.execute(
                update(peers_table)
                .where(peers_table.c.peer_id == request.peer_id)
                .values(last_heartbeat=self._clock(), last_signed=request.timestamp)
            )
        return self.get(request.peer_id)

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
        owner=row.get("owner") or "",
        public_key=row.get("public_key") or "",
        registration=row.get("registration") or "",
    )
