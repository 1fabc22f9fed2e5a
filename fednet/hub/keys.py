"""Ed25519 owner keys: create, store, load, sign and verify manifests.

Each publisher (a federation client) holds one Ed25519 key. It signs the
canonical JSON of a manifest (:meth:`Manifest.signing_payload`); anyone can
verify with the public key embedded in the manifest, and a hub can pin which
keys it accepts for each owner.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Collection, Mapping
from dataclasses import replace
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from fednet.atomic import write_atomic
from fednet.errors import SignatureError, UntrustedKeyError
from fednet.hub.manifest import Manifest

__all__ = [
    "Ed25519PrivateKey",
    "Ed25519PublicKey",
    "TrustedKeys",
    "generate_private_key",
    "save_private_key",
    "save_public_key",
    "load_private_key",
    "load_public_key",
    "encode_public_key",
    "decode_public_key",
    "normalize_public_key",
    "sign_manifest",
    "verify_manifest",
    "check_trusted_key",
]

logger = logging.getLogger(__name__)

TrustedKeys = Mapping[str, Collection[str]]
"""Owner id to the public keys (base64 or hex) allowed to sign for it."""


def generate_private_key() -> Ed25519PrivateKey:
    """Return a fresh Ed25519 private key."""
    return Ed25519PrivateKey.generate()


def save_private_key(
    key: Ed25519PrivateKey, path: str | Path, *, passphrase: bytes | None = None
) -> None:
    """Write ``key`` as PKCS#8 PEM readable by the owner only (mode 0600).

    Parameters
    ----------
    key : Ed25519PrivateKey
        The key to save.
    path : str or Path
        Destination; replaced atomically if it exists.
    passphrase : bytes, optional
        Encrypts the PEM when given.
    """
    if not isinstance(key, Ed25519PrivateKey):
        raise TypeError(f"`key` must be an Ed25519PrivateKey, got {type(key).__name__}")
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    write_atomic(path, pem, mode=0o600)
    logger.debug("saved private key to %s", path)


def save_public_key(key: Ed25519PublicKey | Ed25519PrivateKey, path: str | Path) -> None:
    """Write the public half of ``key`` as SubjectPublicKeyInfo PEM (mode 0644)."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    write_atomic(path, pem, mode=0o644)


def load_private_key(path: str | Path, *, passphrase: bytes | None = None) -> Ed25519PrivateKey:
    """Read an Ed25519 private key from a PEM file.

    Raises
    ------
    ValueError
        If the file is not a readable PEM private key (wrong passphrase included).
    TypeError
        If the key is not Ed25519.
    """
    data = Path(path).read_bytes()
    try:
        key = serialization.load_pem_private_key(data, password=passphrase)
    except (ValueError, TypeError) as e:
        raise ValueError(f"cannot load private key from {str(path)!r}: {e}") from e
    if not isinstance(key, Ed25519PrivateKey):
        raise TypeError(f"key in {str(path)!r} must be Ed25519, got {type(key).__name__}")
    return key


def load_public_key(path: str | Path) -> Ed25519PublicKey:
    """Read an Ed25519 public key from a PEM file."""
    data = Path(path).read_bytes()
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as e:
        raise ValueError(f"cannot load public key from {str(path)!r}: {e}") from e
    if not isinstance(key, Ed25519PublicKey):
        raise TypeError(f"key in {str(path)!r} must be Ed25519, got {type(key).__name__}")
    return key


def encode_public_key(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """Return the raw 32-byte public key as standard base64 (44 characters)."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def decode_public_key(text: str) -> Ed25519PublicKey:
    """Parse a public key written as base64 or hex of its raw 32 bytes.

    Raises
    ------
    ValueError
        If ``text`` is neither 64 hex digits nor base64 of 32 bytes.
    """
    if not isinstance(text, str):
        raise TypeError(f"`owner_public_key` must be a str, got {type(text).__name__}")
    raw: bytes | None
    try:
        raw = bytes.fromhex(text) if len(text) == 64 else base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error):
        raw = None
    if raw is None or len(raw) != 32:
        raise ValueError(
            f"`owner_public_key` must be base64 or hex of 32 raw Ed25519 bytes, got {text!r}"
        )
    return Ed25519PublicKey.from_public_bytes(raw)


def normalize_public_key(text: str) -> str:
    """Return ``text`` (base64 or hex) in the canonical base64 form."""
    return encode_public_key(decode_public_key(text))


def sign_manifest(manifest: Manifest, key: Ed25519PrivateKey) -> Manifest:
    """Return a copy of ``manifest`` carrying ``key``'s public key and signature."""
    if not isinstance(key, Ed25519PrivateKey):
        raise TypeError(f"`key` must be an Ed25519PrivateKey, got {type(key).__name__}")
    keyed = replace(manifest, owner_public_key=encode_public_key(key), signature="")
    signature = key.sign(keyed.signing_payload())
    return replace(keyed, signature=base64.b64encode(signature).decode("ascii"))


def verify_manifest(manifest: Manifest) -> None:
    """Check ``manifest``'s signature against its embedded public key.

    Raises
    ------
    SignatureError
        If the manifest is unsigned, its key or signature is malformed, or the
        signature does not match the manifest's contents.
    """
    if not manifest.signature:
        raise SignatureError(f"manifest {manifest.ref} by owner {manifest.owner!r} is unsigned")
    if not manifest.owner_public_key:
        raise SignatureError(f"manifest {manifest.ref} has a signature but no owner_public_key")
    try:
        public = decode_public_key(manifest.owner_public_key)
        signature = base64.b64decode(manifest.signature, validate=True)
    except (ValueError, binascii.Error) as e:
        raise SignatureError(
            f"manifest {manifest.ref} has a malformed key or signature: {e}"
        ) from e
    try:
        public.verify(signature, manifest.signing_payload())
    except InvalidSignature as e:
        raise SignatureError(
            f"signature of manifest {manifest.ref} by owner {manifest.owner!r} does not verify"
        ) from e


def check_trusted_key(manifest: Manifest, trusted: TrustedKeys | None) -> None:
    """Check that ``manifest`` is signed with a key allowed for its owner.

    Parameters
    ----------
    manifest : Manifest
        A manifest whose signature already verifies.
    trusted : mapping or None
        Owner id to allowed public keys. ``None`` trusts any key.

    Raises
    ------
    UntrustedKeyError
        If the owner is missing from ``trusted`` or its key is not listed.
    """
    if trusted is None:
        return
    allowed = trusted.get(manifest.owner)
    if allowed is None:
        raise UntrustedKeyError(
            f"owner {manifest.owner!r} of {manifest.ref} has no trusted key; "
            f"known owners are {sorted(trusted)}"
        )
    key = normalize_public_key(manifest.owner_public_key)
    if key not in {normalize_public_key(k) for k in allowed}:
        raise UntrustedKeyError(
            f"manifest {manifest.ref} is signed with key {key} which is not trusted "
            f"for owner {manifest.owner!r}"
        )
