"""The reader's trust store and the hub's tokens, through the library and the CLI."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from fednet.cli import main
from fednet.errors import UntrustedKeyError
from fednet.hub import HubStore, encode_public_key, generate_private_key, save_public_key
from fednet.hub.bundle import prepare_publish
from fednet.hub.trust import TrustStore, fingerprint, sign_rotation


def test_trust_cli_add_ls_remove(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key, other = generate_private_key(), generate_private_key()
    pub = tmp_path / "spam-0.pub"
    save_public_key(key, pub)
    file = tmp_path / "trust.json"
    assert main(["trust", "add", "spam-0", str(pub), "--trust-file", str(file)]) == 0
    assert (
        main(["trust", "add", "spam-0", encode_public_key(other), "--trust-file", str(file)]) == 0
    )
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    capsys.readouterr()
    assert main(["trust", "ls", "--trust-file", str(file)]) == 0
    listing = capsys.readouterr().out
    assert fingerprint(encode_public_key(key)) in listing and listing.count("spam-0") == 2
    by_print = fingerprint(encode_public_key(other))
    assert main(["trust", "remove", "spam-0", by_print, "--trust-file", str(file)]) == 0
    assert TrustStore(file).keys("spam-0") == [encode_public_key(key)]
    assert main(["trust", "remove", "spam-0", "--trust-file", str(file)]) == 0
    assert TrustStore(file).keys("spam-0") == []
    assert main(["trust", "remove", "spam-0", "--trust-file", str(file)]) == 2
    assert main(["trust", "add", "spam-0", "not-a-key", "--trust-file", str(file)]) == 2


def test_a_broken_trust_file_is_an_error_never_replaced(tmp_path: Path) -> None:
    file = tmp_path / "trust.json"
    file.write_text("{not json")
    with pytest.raises(ValueError, match="not readable JSON"):
        TrustStore(file)
    file.write_text(json.dumps({"version": 1, "owners": {"../x": []}}))
    with pytest.raises(ValueError, match="owner"):
        TrustStore(file)
    assert file.read_text() == json.dumps({"version": 1, "owners": {"../x": []}})


def test_rotation_is_followed_only_from_a_pinned_key(
    adapter_dir: Path, make_draft, tmp_path: Path
) -> None:
    from dataclasses import replace

    old, new, stranger = (generate_private_key() for _ in range(3))
    signed, _ = prepare_publish(adapter_dir, make_draft(), new)
    trust = TrustStore(tmp_path / "t.json")
    trust.add("client-1", encode_public_key(old))
    forged = replace(signed, rotation=sign_rotation("sst2-lora", encode_public_key(new), stranger))
    with pytest.raises(UntrustedKeyError, match="owner 'client-1'"):
        trust.check(forged)
    genuine = replace(signed, rotation=sign_rotation("sst2-lora", encode_public_key(new), old))
    trust.check(genuine)
    assert TrustStore(tmp_path / "t.json").keys("client-1") == [
        encode_public_key(old),
        encode_public_key(new),
    ]


def test_hub_token_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = str(tmp_path / "hub")
    assert main(["hub", "token", "create", "--root", root, "--scopes", "read,publish"]) == 0
    token = capsys.readouterr().out.strip()
    assert token.startswith("fnt_")
    with HubStore(root) as store:
        assert store.tokens.scopes(token) == {"read", "publish"}
        assert store.tokens.scopes(token + "x") == frozenset()
    assert main(["hub", "token", "ls", "--root", root]) == 0
    listing = capsys.readouterr().out
    assert "publish,read" in listing and token not in listing
    assert main(["hub", "token", "create", "--root", root, "--scopes", "admin"]) == 2
    token_id = token.split("_")[1]
    assert main(["hub", "token", "revoke", token_id, "--root", root]) == 0
    assert main(["hub", "token", "revoke", token_id, "--root", root]) == 2


def test_status_judges_as_check_does_and_pins_nothing(
    adapter_dir: Path, make_draft, tmp_path: Path
) -> None:
    from dataclasses import replace

    from fednet.errors import SignatureError

    old, new, stranger = (generate_private_key() for _ in range(3))
    signed, _ = prepare_publish(adapter_dir, make_draft(), old)
    file = tmp_path / "t.json"
    trust = TrustStore(file, tofu=True)
    assert trust.status(signed) == "unpinned"  # tofu would pin it; status does not
    assert not file.exists() and trust.keys("client-1") == []
    trust.add("client-1", encode_public_key(old))
    before = file.read_bytes()
    assert trust.status(signed) == "trusted"
    rotated, _ = prepare_publish(adapter_dir, make_draft(), new)
    genuine = replace(rotated, rotation=sign_rotation("sst2-lora", encode_public_key(new), old))
    forged = replace(rotated, rotation=sign_rotation("sst2-lora", encode_public_key(new), stranger))
    assert trust.status(genuine) == "trusted"
    assert trust.status(forged) == "unpinned"
    for tampered in (
        replace(signed, epsilon=0.1),
        replace(signed, metrics={"accuracy": 0.99}),
        replace(signed, owner="client-2"),
        replace(signed, signature=""),
    ):
        with pytest.raises(SignatureError) as raised:
            trust.status(tampered)
        assert not isinstance(raised.value, UntrustedKeyError)
    assert file.read_bytes() == before and trust.keys("client-1") == [encode_public_key(old)]
    # check, by the same rules, follows the rotation and pins the new key
    trust.check(genuine)
    assert trust.keys("client-1") == [encode_public_key(old), encode_public_key(new)]


def test_a_rotated_away_key_signs_nothing_new_and_cannot_rotate_again(tmp_path):
    """The attack: an owner rotates from a key it believes compromised to a new one;
    whoever holds the old key still signs manifests the reader trusts, and can even
    rotate the name to a key of its own."""
    from dataclasses import replace

    from fednet.errors import UntrustedKeyError
    from fednet.hub.keys import encode_public_key, generate_private_key, sign_manifest
    from fednet.hub.manifest import Manifest
    from fednet.hub.trust import TrustStore, sign_rotation

    old, new, thief = generate_private_key(), generate_private_key(), generate_private_key()
    store = TrustStore(tmp_path / "trust.json", keys={"c0": [encode_public_key(old)]})
    draft = Manifest(name="c0-shared", owner="c0", base_model="m", rank=4, task="t")
    before = sign_manifest(replace(draft, created_at="2026-01-01T00:00:00Z"), old)
    store.check(before)
    rotated = replace(
        draft,
        created_at="2026-06-01T00:00:00Z",
        rotation=sign_rotation("c0-shared", encode_public_key(new), old),
    )
    store.check(sign_manifest(rotated, new))  # the owner moves to the new key

    forged = sign_manifest(
        replace(draft, name="c0-personalized", created_at="2026-07-01T00:00:00Z"), old
    )
    assert store.status(forged) == "unpinned"
    with pytest.raises(UntrustedKeyError, match="retired"):
        store.check(forged)
    stolen = replace(
        draft,
        created_at="2026-01-02T00:00:00Z",  # backdated, to look older than the rotation
        rotation=sign_rotation("c0-shared", encode_public_key(thief), old),
    )
    with pytest.raises(UntrustedKeyError):
        store.check(sign_manifest(stolen, thief))
    assert not store.pins("c0", encode_public_key(thief))
    # what the old key signed before the rotation still verifies, also after a reload
    reloaded = TrustStore(tmp_path / "trust.json")
    assert reloaded.status(before) == "trusted"
    assert reloaded.status(forged) == "unpinned"
