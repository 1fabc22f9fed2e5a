"""A reader's trust store: the owner keys it pinned, in a keyring file.

A hub only stores and serves, so it is not trusted: a reader accepts a
manifest only when its owner's key is pinned here (or when the manifest
carries a key rotation signed by a pinned key). The file is JSON::

    {"version": 1,
     "owners": {"spam-0": [{"key": "<base64>", "fingerprint": "SHA256:...",
                            "added": "2026-...Z", "source": "manual"}]}}

Its location is, in order: the ``path`` given, ``$FEDNET_TRUST_FILE``, or
``$XDG_CONFIG_HOME/fednet/trust.json`` (``~/.config/fednet/trust.json``).
A missing file is an empty store, which trusts nothing. Trust on first use
happens only when a reader is built with ``tofu=True``; every key it pins is
written to the file and logged.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature

from fednet.atomic import write_atomic
from fednet.errors import SignatureError, UntrustedKeyError
from fednet.hub.keys import (
    Ed25519PrivateKey,
    decode_public_key,
    encode_public_key,
    normalize_public_key,
    verify_manifest,
)
from fednet.hub.manifest import Manifest, check_name, utc_now_iso

__all__ = [
    "TRUST_FILE_ENV",
    "PinnedKey",
    "TrustStatus",
    "TrustStore",
    "default_trust_path",
    "fingerprint",
    "read_key_argument",
    "rotation_payload",
    "sign_rotation",
    "verify_rotation",
]

logger = logging.getLogger(__name__)

TRUST_FILE_ENV = "FEDNET_TRUST_FILE"
"""Environment variable naming the trust store file."""

TrustStatus = Literal["trusted", "unpinned"]
"""What :meth:`TrustStore.status` says of a manifest whose signature verifies."""


def default_trust_path() -> Path:
    """``$FEDNET_TRUST_FILE``, else ``$XDG_CONFIG_HOME/fednet/trust.json``."""
    env = os.environ.get(TRUST_FILE_ENV)
    if env:
        return Path(env)
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "fednet" / "trust.json"


def fingerprint(public_key: str) -> str:
    """``SHA256:<hex>`` of the raw 32-byte Ed25519 key, in the first 16 bytes.

    Parameters
    ----------
    public_key : str
        Base64 or hex of the raw key.
    """
    raw = base64.b64decode(normalize_public_key(public_key))
    return "SHA256:" + hashlib.sha256(raw).hexdigest()[:32]


def rotation_payload(name: str, new_public_key: str) -> bytes:
    """Bytes the previous key signs to hand ``name`` over to ``new_public_key``."""
    return f"fednet-key-rotation\0{name}\0{normalize_public_key(new_public_key)}".encode()


def sign_rotation(name: str, new_public_key: str, old_key: Ed25519PrivateKey) -> str:
    """Base64 signature by ``old_key`` handing ``name`` over to ``new_public_key``.

    Put it in the new version's ``Manifest.rotation`` (before signing that
    manifest with the new key).
    """
    return base64.b64encode(old_key.sign(rotation_payload(name, new_public_key))).decode("ascii")


def verify_rotation(manifest: Manifest, old_public_key: str) -> bool:
    """Whether ``manifest.rotation`` is ``old_public_key``'s hand-over of its name."""
    if not manifest.rotation:
        return False
    try:
        signature = base64.b64decode(manifest.rotation, validate=True)
        decode_public_key(old_public_key).verify(
            signature, rotation_payload(manifest.name, manifest.owner_public_key)
        )
    except (ValueError, binascii.Error, InvalidSignature):
        return False
    return True


@dataclass(frozen=True)
class PinnedKey:
    """One key pinned for an owner.

    ``retired`` is set (ISO 8601 UTC) when the owner rotated away from the key:
    the ``created_at`` of the first manifest carrying that rotation. A retired
    key is trusted only for manifests created before then, and signs no
    rotation. (A holder of the retired key can still write an earlier
    ``created_at``: retirement stops new claims, not backdated ones.)
    """

    owner: str
    key: str
    added: str
    source: str
    retired: str = ""

    @property
    def fingerprint(self) -> str:
        """``SHA256:...`` of the key."""
        return fingerprint(self.key)

    def to_dict(self) -> dict[str, str]:
        """JSON-ready record (owner left out: it is the map key)."""
        out = {
            "key": self.key,
            "fingerprint": self.fingerprint,
            "added": self.added,
            "source": self.source,
        }
        if self.retired:
            out["retired"] = self.retired
        return out

    def trusts(self, manifest: Manifest) -> bool:
        """Whether this key may have signed ``manifest``: not retired, or retired
        after the manifest was created."""
        return not self.retired or _utc(manifest.created_at) < _utc(self.retired)


class TrustStore:
    """Owner keys a reader trusts, kept in a JSON keyring file.

    Parameters
    ----------
    path : str or Path, optional
        The keyring file (default :func:`default_trust_path`). ``None`` with
        ``keys`` keeps the store in memory only.
    tofu : bool
        Trust on first use: an owner with no pinned key gets the key of the
        first verified manifest seen, written to the file and logged.
    keys : mapping, optional
        Owner id to public keys, pinned in memory on top of the file.

    Raises
    ------
    ValueError
        If the file is not a valid keyring (it is never silently replaced).
    """

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        tofu: bool = False,
        keys: Mapping[str, Iterable[str]] | None = None,
    ) -> None:
        self.path = (
            Path(path) if path is not None else (None if keys is not None else default_trust_path())
        )
        self.tofu = bool(tofu)
        self._lock = threading.Lock()
        self._owners: dict[str, list[PinnedKey]] = self._read()
        for owner, owner_keys in (keys or {}).items():
            for key in owner_keys:
                self._pin(owner, key, "given", save=False)

    def __repr__(self) -> str:
        return f"TrustStore(path={str(self.path)!r}, owners={len(self._owners)}, tofu={self.tofu})"

    # -- file ------------------------------------------------------------------------

    def _read(self) -> dict[str, list[PinnedKey]]:
        if self.path is None or not self.path.is_file():
            return {}
        where = str(self.path)
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ValueError(f"trust store {where!r} is not readable JSON: {e}") from e
        if not isinstance(data, dict) or data.get("version") != 1:
            raise ValueError(f"trust store {where!r} must be a JSON object with version 1")
        owners = data.get("owners", {})
        if not isinstance(owners, dict):
            raise ValueError(f"trust store {where!r}: `owners` must be an object")
        out: dict[str, list[PinnedKey]] = {}
        for owner, entries in owners.items():
            check_name(f"owner in {where}", owner)
            if not isinstance(entries, list):
                raise ValueError(f"trust store {where!r}: keys of {owner!r} must be a list")
            for entry in entries:
                if not isinstance(entry, dict) or "key" not in entry:
                    raise ValueError(f"trust store {where!r}: bad entry for {owner!r}: {entry!r}")
                key = normalize_public_key(entry["key"])
                retired = str(entry.get("retired", ""))
                if retired:
                    try:
                        _utc(retired)
                    except ValueError as e:
                        raise ValueError(
                            f"trust store {where!r}: `retired` of a key of {owner!r}: {e}"
                        ) from e
                out.setdefault(owner, []).append(
                    PinnedKey(
                        owner,
                        key,
                        str(entry.get("added", "")),
                        str(entry.get("source", "")),
                        retired,
                    )
                )
        return out

    def save(self) -> None:
        """Write the keyring atomically (mode 0600; its directory is made 0700)."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        data: dict[str, Any] = {
            "version": 1,
            "owners": {
                owner: [p.to_dict() for p in keys] for owner, keys in sorted(self._owners.items())
            },
        }
        write_atomic(self.path, (json.dumps(data, indent=2) + "\n").encode(), mode=0o600)

    # -- keys --------------------------------------------------------------------------

    def _pin(self, owner: str, key: str, source: str, *, save: bool) -> PinnedKey:
        check_name("owner", owner)
        key = normalize_public_key(key)
        entries = self._owners.setdefault(owner, [])
        for entry in entries:
            if entry.key == key:
                return entry
        pinned = PinnedKey(owner, key, utc_now_iso(), source)
        entries.append(pinned)
        if save:
            self.save()
        return pinned

    def add(self, owner: str, key: str, *, source: str = "manual") -> PinnedKey:
        """Pin ``key`` (base64 or hex) for ``owner`` and save the file."""
        with self._lock:
            return self._pin(owner, key, source, save=True)

    def remove(self, owner: str, key: str | None = None) -> int:
        """Unpin ``key`` (or, without it, every key) of ``owner``; return how many.

        ``key`` may be the key itself or its fingerprint.
        """
        with self._lock:
            entries = self._owners.get(owner, [])
            keep = [
                e
                for e in entries
                if key is not None and key not in (e.key, e.fingerprint) and not _same(key, e.key)
            ]
            removed = len(entries) - len(keep)
            if keep:
                self._owners[owner] = keep
            else:
                self._owners.pop(owner, None)
            if removed:
                self.save()
            return removed

    def keys(self, owner: str) -> list[str]:
        """Keys pinned for ``owner``."""
        return [e.key for e in self._owners.get(owner, [])]

    def pins(self, owner: str, key: str) -> bool:
        """Whether ``key`` (base64 or hex; anything else is not pinned) is pinned for ``owner``."""
        return any(_same(key, pinned) for pinned in self.keys(owner))

    def entries(self) -> list[PinnedKey]:
        """Every pinned key, by owner."""
        return [e for owner in sorted(self._owners) for e in self._owners[owner]]

    def as_mapping(self) -> dict[str, list[str]]:
        """Owner id to pinned keys."""
        return {owner: [e.key for e in keys] for owner, keys in self._owners.items()}

    # -- checking ----------------------------------------------------------------------

    def _trusting_entry(self, manifest: Manifest, key: str) -> PinnedKey | None:
        """The pinned entry that makes ``key`` trusted for ``manifest.owner``, if any.

        That is the entry of ``key`` itself, or a pinned key whose rotation to
        ``key`` the manifest carries. The signature must already verify and the
        lock be held; nothing is pinned.
        """
        pinned = self._owners.get(manifest.owner, [])
        for entry in pinned:
            if entry.key == key:
                return entry if entry.trusts(manifest) else None
        for entry in pinned:
            if not entry.retired and verify_rotation(manifest, entry.key):
                return entry
        return None

    def _retire(self, entry: PinnedKey, when: str) -> None:
        """Mark ``entry`` retired at ``when`` (the lock held); the caller saves."""
        keys = self._owners[entry.owner]
        keys[keys.index(entry)] = dataclasses.replace(entry, retired=when)

    def status(self, manifest: Manifest) -> TrustStatus:
        """Whether ``manifest`` verifies under a key trusted for its owner, pinning nothing.

        The same verdict as :meth:`check` without its side effects: a rotation
        from a pinned key counts as trusted but its new key is not pinned, and
        trust on first use is not applied (an owner without keys is
        ``"unpinned"``). For listing and showing what a hub serves.

        Parameters
        ----------
        manifest : Manifest
            The manifest as the hub served it.

        Returns
        -------
        {"trusted", "unpinned"}
            ``"trusted"`` when the key is pinned for the owner or rotated to from
            a pinned key; ``"unpinned"`` when the signature verifies but the key
            is not trusted for the owner.

        Raises
        ------
        SignatureError
            If the manifest is unsigned, or its signature does not verify (a
            field was changed after signing).
        """
        verify_manifest(manifest)
        key = normalize_public_key(manifest.owner_public_key)
        with self._lock:
            return "unpinned" if self._trusting_entry(manifest, key) is None else "trusted"

    def check(self, manifest: Manifest) -> None:
        """Verify ``manifest``'s signature and that its key is trusted for its owner.

        A key is trusted when it is pinned for the owner, or when the manifest
        carries a rotation to it signed by a pinned key (the new key is then
        pinned too). With ``tofu`` an owner without keys gets this one. To ask
        without pinning anything, use :meth:`status`.

        Raises
        ------
        SignatureError
            If the signature does not verify.
        UntrustedKeyError
            Naming the owner, the key's fingerprint and the pinned fingerprints.
        """
        verify_manifest(manifest)
        key = normalize_public_key(manifest.owner_public_key)
        with self._lock:
            entry = self._trusting_entry(manifest, key)
            if entry is not None:
                if entry.key != key:
                    self._retire(entry, manifest.created_at)
                    self._pin(manifest.owner, key, f"rotation from {entry.fingerprint}", save=True)
                    logger.info(
                        "owner %s rotated to key %s (signed by pinned %s)",
                        manifest.owner,
                        fingerprint(key),
                        entry.fingerprint,
                    )
                return
            pinned = self._owners.get(manifest.owner, [])
            if not pinned and self.tofu:
                self._pin(manifest.owner, key, f"tofu {manifest.ref}", save=True)
                logger.warning(
                    "trust on first use: pinned key %s for owner %s from %s in %s",
                    fingerprint(key),
                    manifest.owner,
                    manifest.ref,
                    self.path,
                )
                return
            retired = [e for e in pinned if e.key == key and e.retired]
            if retired:
                raise UntrustedKeyError(
                    f"{manifest.ref} is signed by owner {manifest.owner!r} with key "
                    f"{fingerprint(key)}, which the owner retired at {retired[0].retired} "
                    f"(a rotation to another key); the manifest says it was created at "
                    f"{manifest.created_at}"
                )
            known = ", ".join(e.fingerprint for e in pinned) or "none"
        raise UntrustedKeyError(
            f"{manifest.ref} is signed by owner {manifest.owner!r} with key {fingerprint(key)}, "
            f"which is not in the trust store {self.path or '(in memory)'} (pinned for "
            f"{manifest.owner!r}: {known}); pin it with `fednet trust add {manifest.owner} "
            f"{key}` if you trust it"
        )

    def is_trusted(self, manifest: Manifest) -> bool:
        """Whether :meth:`check` passes."""
        try:
            self.check(manifest)
        except SignatureError:
            return False
        return True


def _utc(text: str) -> datetime:
    """An ISO 8601 time as an aware UTC datetime (``Z`` accepted)."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    return value.astimezone(UTC)


def read_key_argument(text: str) -> str:
    """A public key given as base64, hex, or the path of a ``.pub`` PEM file."""
    path = Path(text)
    if path.is_file():
        from fednet.hub.keys import load_public_key

        return encode_public_key(load_public_key(path))
    return normalize_public_key(text)


def _same(a: str, b: str) -> bool:
    try:
        return normalize_public_key(a) == normalize_public_key(b)
    except (TypeError, ValueError):
        return False


def public_key_of(key: Ed25519PrivateKey) -> str:
    """Base64 public key of ``key`` (for pinning one's own key)."""
    return encode_public_key(key)
