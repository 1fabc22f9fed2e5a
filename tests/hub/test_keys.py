"""Ed25519 key files and manifest signatures."""

from __future__ import annotations

import base64
import stat
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from fednet.errors import SignatureError, UntrustedKeyError
from fednet.hub.keys import (
    Ed25519PrivateKey,
    check_trusted_key,
    decode_public_key,
    encode_public_key,
    load_private_key,
    load_public_key,
    save_private_key,
    save_public_key,
    sign_manifest,
    verify_manifest,
)
from fednet.hub.manifest import Manifest


def test_private_key_round_trip_is_owner_only(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    path = tmp_path / "keys" / "owner.pem"
    save_private_key(key, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert encode_public_key(load_private_key(path)) == encode_public_key(key)
    save_public_key(key, tmp_path / "owner.pub")
    assert encode_public_key(load_public_key(tmp_path / "owner.pub")) == encode_public_key(key)


def test_encrypted_private_key_needs_passphrase(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    path = tmp_path / "owner.pem"
    save_private_key(key, path, passphrase=b"hunter2")
    assert encode_public_key(load_private_key(path, passphrase=b"hunter2")) == encode_public_key(
        key
    )
    with pytest.raises(ValueError, match="cannot load private key"):
        load_private_key(path, passphrase=b"wrong")


def test_public_key_accepts_hex_and_base64(key: Ed25519PrivateKey) -> None:
    text = encode_public_key(key)
    raw = base64.b64decode(text)
    assert encode_public_key(decode_public_key(raw.hex())) == text
    with pytest.raises(ValueError, match="owner_public_key"):
        decode_public_key("abc")


def test_sign_and_verify(
    make_draft: Callable[..., Manifest], key: Ed25519PrivateKey, other_key: Ed25519PrivateKey
) -> None:
    signed = sign_manifest(make_draft(), key)
    verify_manifest(signed)
    verify_manifest(replace(signed, version=9))  # the store assigns versions after signing
    with pytest.raises(SignatureError, match="does not verify"):
        verify_manifest(replace(signed, metrics={"accuracy": 0.99}))
    with pytest.raises(SignatureError, match="unsigned"):
        verify_manifest(make_draft())
    forged = replace(signed, owner_public_key=encode_public_key(other_key))
    with pytest.raises(SignatureError, match="does not verify"):
        verify_manifest(forged)
    # The key may be written as hex; the signature covers whichever text is there.
    hex_keyed = replace(
        make_draft(), owner_public_key=base64.b64decode(signed.owner_public_key).hex()
    )
    signature = base64.b64encode(key.sign(hex_keyed.signing_payload())).decode()
    verify_manifest(replace(hex_keyed, signature=signature))


def test_check_trusted_key(
    make_draft: Callable[..., Manifest], key: Ed25519PrivateKey, other_key: Ed25519PrivateKey
) -> None:
    signed = sign_manifest(make_draft(), key)
    check_trusted_key(signed, None)
    check_trusted_key(signed, {"client-1": [encode_public_key(key)]})
    with pytest.raises(UntrustedKeyError, match="not trusted for owner 'client-1'"):
        check_trusted_key(signed, {"client-1": [encode_public_key(other_key)]})
    with pytest.raises(UntrustedKeyError, match="no trusted key"):
        check_trusted_key(signed, {"client-2": [encode_public_key(key)]})
