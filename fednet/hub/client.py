"""HTTP client of the hub service, mirroring :class:`HubStore` where it makes sense.

Downloads are verified client-side: the manifest's signature, its key against
the reader's own :class:`~fednet.hub.trust.TrustStore` (pinned owner keys; an
unpinned key fails closed) and every file's sha256, so a compromised hub or
network cannot slip in altered weights, even re-signed with another key.
"""

from __future__ import annotations

import base64
import builtins
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from fednet.errors import (
    HubError,
    IntegrityError,
    NotFoundError,
    SignatureError,
    UntrustedKeyError,
)
from fednet.hub.bundle import prepare_publish, sha256_hex, write_files_atomically
from fednet.hub.keys import Ed25519PrivateKey, TrustedKeys
from fednet.hub.manifest import Manifest, VersionSpec, check_filename, check_name, parse_version
from fednet.hub.peers import PeerInfo, SignedPeerRequest, sign_peer_request
from fednet.hub.store import HubStore
from fednet.hub.trust import TrustStore

__all__ = ["HubClient", "as_trust_store", "open_hub"]

logger = logging.getLogger(__name__)

_ERROR_TYPES: dict[str, type[Exception]] = {
    "NotFoundError": NotFoundError,
    "IntegrityError": IntegrityError,
    "SignatureError": SignatureError,
    "UntrustedKeyError": UntrustedKeyError,
}


class HubClient:
    """Talk to a hub service over HTTP.

    Parameters
    ----------
    url : str
        Base URL of the service, e.g. ``http://hub:8080``.
    token : str, optional
        Bearer token sent with every request (write token to publish).
    timeout : float
        Seconds for connecting and for each read or write; an unreachable or
        silent hub raises ``HubError`` instead of hanging.
    trust : TrustStore or mapping, optional
        The owner keys this reader trusts (a mapping of owner id to keys is
        pinned in memory). Default: the trust store file
        (:func:`~fednet.hub.trust.default_trust_path`). Downloads signed by a
        key it does not trust raise ``UntrustedKeyError``.
    transport : httpx.BaseTransport, optional
        Custom transport (for tests or proxies).
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout: float = 10.0,
        trust: TrustStore | TrustedKeys | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(f"`url` must start with http:// or https://, got {url!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise ValueError(f"`timeout` must be a positive number of seconds, got {timeout!r}")
        self.url = url.rstrip("/")
        self.timeout = float(timeout)
        self.trust = as_trust_store(trust)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=self.url, headers=headers, timeout=self.timeout, transport=transport
        )

    def __repr__(self) -> str:
        return f"HubClient(url={self.url!r})"

    def __enter__(self) -> HubClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    # -- transport ---------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as e:
            raise HubError(
                f"hub at {self.url} did not answer {method} {path} within {self.timeout}s"
            ) from e
        except httpx.TransportError as e:
            raise HubError(f"hub at {self.url} is unreachable ({method} {path}): {e}") from e
        if response.status_code >= 400:
            raise self._error(method, path, response)
        return response

    def _error(self, method: str, path: str, response: httpx.Response) -> Exception:
        try:
            body = response.json()
            message, kind = str(body["error"]), str(body.get("type", ""))
        except (ValueError, KeyError, TypeError):
            message, kind = response.text[:500], ""
        status = response.status_code
        if kind in _ERROR_TYPES:
            return _ERROR_TYPES[kind](message)
        if status == 404:
            return NotFoundError(message)
        if status in (400, 422):
            return ValueError(message)
        return HubError(f"hub at {self.url} answered {status} to {method} {path}: {message}")

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError as e:
            raise HubError(f"hub at {self.url} sent invalid JSON for {method} {path}") from e

    # -- adapters ----------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """The service's health document."""
        result: dict[str, Any] = self._json("GET", "/v1/health")
        return result

    def publish(self, adapter_dir: str | Path, draft: Manifest, key: Ed25519PrivateKey) -> Manifest:
        """Hash, sign and upload an adapter directory; see :meth:`HubStore.publish`."""
        manifest, files = prepare_publish(adapter_dir, draft, key)
        return self.publish_signed(manifest, files)

    def publish_signed(self, manifest: Manifest, files: Mapping[str, bytes]) -> Manifest:
        """Upload a signed manifest and its files; the server verifies both."""
        if not isinstance(manifest, Manifest):
            raise TypeError(f"`manifest` must be a Manifest, got {type(manifest).__name__}")
        payload = {
            "manifest": manifest.to_dict(),
            "files": {name: base64.b64encode(data).decode("ascii") for name, data in files.items()},
        }
        stored = Manifest.from_dict(self._json("POST", "/v1/adapters", json=payload))
        logger.info("published %s to %s", stored.ref, self.url)
        return stored

    def resolve(self, name: str, version: VersionSpec = "latest") -> Manifest:
        """The manifest of ``name`` at ``version`` (an int or ``"latest"``)."""
        check_name("name", name)
        spec = parse_version(version)
        manifest = Manifest.from_dict(self._json("GET", f"/v1/adapters/{name}/{spec}"))
        if manifest.name != name or (spec != "latest" and manifest.version != spec):
            raise IntegrityError(
                f"hub at {self.url} answered {manifest.ref} when asked for {name}@{spec}"
            )
        return manifest

    def list_versions(self, name: str) -> builtins.list[int]:
        """Published versions of ``name``, ascending."""
        check_name("name", name)
        return [int(v) for v in self._json("GET", f"/v1/adapters/{name}")["versions"]]

    def list(self) -> builtins.list[Manifest]:
        """The latest manifest of every adapter, sorted by name."""
        return [Manifest.from_dict(m) for m in self._json("GET", "/v1/adapters")["adapters"]]

    def _verified_manifest(self, name: str, version: VersionSpec) -> Manifest:
        manifest = self.resolve(name, version)
        self.trust.check(manifest)
        return manifest

    def _download(self, manifest: Manifest, filename: str) -> bytes:
        check_filename("filename", filename)
        if filename not in manifest.files:
            raise NotFoundError(
                f"adapter {manifest.ref} has no file {filename!r}; files: {sorted(manifest.files)}"
            )
        path = f"/v1/adapters/{manifest.name}/{manifest.version}/files/{filename}"
        data = self._request("GET", path).content
        actual = sha256_hex(data)
        if actual != manifest.files[filename]:
            raise IntegrityError(
                f"adapter {manifest.ref}: file {filename!r} from {self.url}{path} has sha256 "
                f"{actual}, manifest says {manifest.files[filename]}"
            )
        return data

    def read_file(self, name: str, version: VersionSpec, filename: str) -> bytes:
        """Download one file, verifying the signature and its sha256."""
        return self._download(self._verified_manifest(name, version), filename)

    def fetch(self, name: str, version: VersionSpec, dest_dir: str | Path) -> Manifest:
        """Download, verify and atomically write an adapter into ``dest_dir``."""
        manifest = self._verified_manifest(name, version)
        files = {filename: self._download(manifest, filename) for filename in manifest.files}
        write_files_atomically(dest_dir, files)
        logger.info("fetched %s from %s into %s", manifest.ref, self.url, dest_dir)
        return manifest

    # -- peers -------------------------------------------------------------------

    def register_peer(
        self,
        peer_id: str,
        endpoint: str,
        base_model: str,
        adapters: Sequence[str] = (),
        *,
        owner: str,
        key: Ed25519PrivateKey,
    ) -> PeerInfo:
        """Register or update a peer, signed by its owner's ``key`` (``heartbeat`` scope)."""
        request = sign_peer_request(
            key,
            action="register",
            peer_id=peer_id,
            owner=owner,
            endpoint=endpoint,
            base_model=base_model,
            adapters=adapters,
        )
        return self.register_peer_signed(request)

    def register_peer_signed(self, request: SignedPeerRequest) -> PeerInfo:
        """Send a signed registration as it is."""
        return PeerInfo.from_dict(self._json("POST", "/v1/peers", json=request.to_dict()))

    def heartbeat(self, peer_id: str, *, owner: str, key: Ed25519PrivateKey) -> PeerInfo:
        """Mark ``peer_id`` alive now, signed by its owner's ``key``."""
        return self.heartbeat_signed(
            sign_peer_request(key, action="heartbeat", peer_id=peer_id, owner=owner)
        )

    def heartbeat_signed(self, request: SignedPeerRequest) -> PeerInfo:
        """Send a signed heartbeat as it is."""
        check_name("peer_id", request.peer_id)
        path = f"/v1/peers/{request.peer_id}/heartbeat"
        return PeerInfo.from_dict(self._json("POST", path, json=request.to_dict()))

    def peers(self, alive_within: float | None = None) -> builtins.list[PeerInfo]:
        """All peers with their up/down state."""
        params = {} if alive_within is None else {"alive_within": alive_within}
        return [
            PeerInfo.from_dict(p) for p in self._json("GET", "/v1/peers", params=params)["peers"]
        ]


def as_trust_store(trust: TrustStore | TrustedKeys | None) -> TrustStore:
    """``trust`` as a :class:`TrustStore`: the default file when ``None``."""
    if isinstance(trust, TrustStore):
        return trust
    if trust is None:
        return TrustStore()
    if isinstance(trust, Mapping):
        return TrustStore(None, keys=trust)
    raise TypeError(f"`trust` must be a TrustStore or a mapping, got {type(trust).__name__}")


def open_hub(
    location: str | Path,
    *,
    token: str | None = None,
    timeout: float = 10.0,
    trust: TrustStore | TrustedKeys | None = None,
) -> HubStore | HubClient:
    """Open a hub for reading: an ``http(s)://`` URL gives a :class:`HubClient`,
    anything else the root directory of a local :class:`HubStore`.

    Either way reads are checked against ``trust`` (default: the trust store
    file), so an adapter whose owner key is not pinned is refused.
    """
    store = as_trust_store(trust)
    if isinstance(location, str) and location.startswith(("http://", "https://")):
        return HubClient(location, token=token, timeout=timeout, trust=store)
    if not isinstance(location, str | Path):
        raise TypeError(f"`location` must be a URL or a path, got {type(location).__name__}")
    return HubStore(Path(location), trust=store)
