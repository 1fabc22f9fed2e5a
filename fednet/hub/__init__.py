"""Versioned, integrity-checked, signed adapter hub.

Adapters (PEFT LoRA weights plus optional head and DP sketch) are stored as
content-addressed blobs with a signed :class:`Manifest` per version. Use
:class:`HubStore` on a local directory, :func:`create_app` / :func:`serve` to
expose it over HTTP, and :class:`HubClient` to talk to it; :func:`open_hub`
picks between the two from a location string.

The HTTP service (FastAPI) is imported on first use of :func:`create_app`,
:func:`serve` or :data:`DEFAULT_MAX_UPLOAD_BYTES`, so readers of the hub do
not pay for it.
"""

from typing import TYPE_CHECKING, Any

from fednet.hub.bundle import prepare_publish, read_adapter_dir, sha256_hex
from fednet.hub.client import HubClient, open_hub
from fednet.hub.keys import (
    check_trusted_key,
    decode_public_key,
    encode_public_key,
    generate_private_key,
    load_private_key,
    load_public_key,
    save_private_key,
    save_public_key,
    sign_manifest,
    verify_manifest,
)
from fednet.hub.manifest import Manifest, VersionSpec
from fednet.hub.peers import PeerInfo
from fednet.hub.store import HubStore
from fednet.hub.trust import TrustStore, fingerprint

if TYPE_CHECKING:
    from fednet.hub.service import DEFAULT_MAX_UPLOAD_BYTES, create_app, serve

_LAZY = {"DEFAULT_MAX_UPLOAD_BYTES", "create_app", "serve"}

__all__ = [
    "DEFAULT_MAX_UPLOAD_BYTES",
    "HubClient",
    "HubStore",
    "Manifest",
    "PeerInfo",
    "TrustStore",
    "VersionSpec",
    "check_trusted_key",
    "create_app",
    "decode_public_key",
    "encode_public_key",
    "fingerprint",
    "generate_private_key",
    "load_private_key",
    "load_public_key",
    "open_hub",
    "prepare_publish",
    "read_adapter_dir",
    "save_private_key",
    "save_public_key",
    "serve",
    "sha256_hex",
    "sign_manifest",
    "verify_manifest",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from fednet.hub import service

        return getattr(service, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
