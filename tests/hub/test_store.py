"""The local HubStore: publish, resolve, fetch, tampering, trust, atomicity, peers."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from peft import PeftModel, get_peft_model_state_dict
from safetensors.torch import load_file
from transformers import BertModel

import fednet.hub.store as store_module
from fednet.errors import IntegrityError, NotFoundError, SignatureError, UntrustedKeyError
from fednet.hub import HubClient, HubStore, Manifest, encode_public_key, open_hub, sha256_hex
from fednet.hub.bundle import prepare_publish, read_adapter_dir
from fednet.hub.keys import Ed25519PrivateKey

from .conftest import tiny_bert_config

Draft = Callable[..., Manifest]


def assert_loads_with_peft(adapter_src: Path, fetched: Path) -> None:
    """The fetched directory loads in PEFT and carries the published LoRA weights."""
    model = PeftModel.from_pretrained(BertModel(tiny_bert_config()), str(fetched))
    loaded = get_peft_model_state_dict(model)
    original = load_file(str(adapter_src / "adapter_model.safetensors"))
    assert set(loaded) == set(original)
    for name, tensor in original.items():
        torch.testing.assert_close(loaded[name], tensor)
    assert any(t.abs().sum() > 0 for n, t in original.items() if "lora_B" in n)


def test_publish_assigns_versions_and_resolves(
    store: HubStore, adapter_dir: Path, make_draft: Draft, key: Ed25519PrivateKey
) -> None:
    first = store.publish(adapter_dir, make_draft(), key)
    second = store.publish(adapter_dir, make_draft(round=4), key)
    store.publish(adapter_dir, make_draft(name="other"), key)
    assert (first.version, second.version) == (1, 2)
    assert store.list_versions("sst2-lora") == [1, 2]
    assert store.resolve("sst2-lora", "latest") == second
    assert store.resolve("sst2-lora", 1) == first
    assert [(m.name, m.version) for m in store.list()] == [("other", 1), ("sst2-lora", 2)]
    assert first.sketch == "sketch.safetensors"
    assert set(first.files) == {
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
        "head.safetensors",
        "sketch.safetensors",
    }
    data = (adapter_dir / "adapter_model.safetensors").read_bytes()
    blob = store.blob_path(sha256_hex(data))
    assert blob.parent.name == blob.name[:2] and blob.read_bytes() == data
    assert store.owner_key("client-1") == encode_public_key(key)


def test_not_found_names_what_exists(
    store: HubStore, adapter_dir: Path, make_draft: Draft, key: Ed25519PrivateKey
) -> None:
    with pytest.raises(NotFoundError, match="'missing' not found; available: none"):
        store.resolve("missing")
    store.publish(adapter_dir, make_draft(), key)
    with pytest.raises(NotFoundError, match=r"no version 5; available versions: \[1\]"):
        store.resolve("sst2-lora", 5)
    with pytest.raises(NotFoundError, match="available: sst2-lora"):
        store.list_versions("nope")
    with pytest.raises(NotFoundError, match="no file 'x.bin'"):
        store.read_file("sst2-lora", 1, "x.bin")


def test_fetch_round_trip_loads_in_peft(
    store: HubStore, adapter_dir: Path, make_draft: Draft, key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    published = store.publish(adapter_dir, make_draft(), key)
    dest = tmp_path / "out" / "adapter"
    fetched = store.fetch("sst2-lora", "latest", dest)
    assert fetched == published
    for name in published.files:
        assert (dest / name).read_bytes() == (adapter_dir / name).read_bytes()
    assert not [p for p in dest.parent.iterdir() if p.name.startswith(".")]
    assert_loads_with_peft(adapter_dir, dest)
    head = store.read_file("sst2-lora", 1, "head.safetensors")
    assert head == (adapter_dir / "head.safetensors").read_bytes()


def test_tampered_blob_is_named_on_read(
    store: HubStore, adapter_dir: Path, make_draft: Draft, key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    manifest = store.publish(adapter_dir, make_draft(), key)
    blob = store.blob_path(manifest.files["adapter_model.safetensors"])
    blob.write_bytes(blob.read_bytes()[:-1] + b"\0")
    with pytest.raises(IntegrityError, match="'adapter_model.safetensors' is tampered") as info:
        store.fetch("sst2-lora", 1, tmp_path / "dest")
    assert str(blob) in str(info.value)
    assert not (tmp_path / "dest").exists()
    with pytest.raises(IntegrityError, match="adapter_model.safetensors"):
        store.read_file("sst2-lora", 1, "adapter_model.safetensors")
    assert store.read_file("sst2-lora", 1, "adapter_config.json")


def test_rejects_unsigned_and_wrongly_signed(
    store: HubStore,
    adapter_dir: Path,
    make_draft: Draft,
    key: Ed25519PrivateKey,
    other_key: Ed25519PrivateKey,
) -> None:
    signed, files = prepare_publish(adapter_dir, make_draft(), key)
    with pytest.raises(SignatureError, match="unsigned"):
        store.publish_signed(replace(signed, signature=""), files)
    with pytest.raises(SignatureError, match="does not verify"):
        store.publish_signed(replace(signed, owner_public_key=encode_public_key(other_key)), files)
    with pytest.raises(SignatureError, match="does not verify"):
        store.publish_signed(replace(signed, epsilon=0.1), files)
    assert store.list() == []


def test_hash_mismatch_names_the_file(
    store: HubStore, adapter_dir: Path, make_draft: Draft, key: Ed25519PrivateKey
) -> None:
    signed, files = prepare_publish(adapter_dir, make_draft(), key)
    files["head.safetensors"] = b"not the head"
    del files["README.md"]
    with pytest.raises(IntegrityError) as info:
        store.publish_signed(signed, files)
    message = str(info.value)
    assert "'head.safetensors' has sha256" in message and "'README.md'" in message
    assert store.list() == [] and not list(store.blob_root.rglob("*.tmp"))


def test_owner_key_is_pinned_on_first_use(
    store: HubStore,
    adapter_dir: Path,
    make_draft: Draft,
    key: Ed25519PrivateKey,
    other_key: Ed25519PrivateKey,
) -> None:
    store.publish(adapter_dir, make_draft(), key)
    with pytest.raises(UntrustedKeyError, match="owner 'client-1' is pinned"):
        store.publish(adapter_dir, make_draft(name="fresh-name"), other_key)
    # another owner may not take over the name either: it is bound to client-1's key
    with pytest.raises(UntrustedKeyError, match="bound to owner 'client-1'"):
        store.publish(adapter_dir, make_draft(owner="client-2"), other_key)
    store.publish(adapter_dir, make_draft(name="other-name", owner="client-2"), other_key)
    assert store.list_versions("sst2-lora") == [1]


def test_trusted_keys_registry(
    tmp_path: Path,
    adapter_dir: Path,
    make_draft: Draft,
    key: Ed25519PrivateKey,
    other_key: Ed25519PrivateKey,
) -> None:
    registry = {"client-1": [encode_public_key(key)]}
    with HubStore(tmp_path / "hub", trusted_keys=registry) as hub:
        hub.publish(adapter_dir, make_draft(), key)
        with pytest.raises(UntrustedKeyError, match="not trusted"):
            hub.publish(adapter_dir, make_draft(name="fresh-name"), other_key)
        with pytest.raises(UntrustedKeyError, match="no trusted key"):
            hub.publish(adapter_dir, make_draft(name="fresh-name", owner="client-9"), key)
        assert hub.owner_key("client-1") is None  # the registry, not first use, decides


def test_failed_db_insert_leaves_nothing_visible(
    store: HubStore,
    adapter_dir: Path,
    make_draft: Draft,
    key: Ed25519PrivateKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def crash(*args: object) -> Manifest:
        raise OSError("disk full")

    monkeypatch.setattr(HubStore, "_insert_manifest", crash)
    with pytest.raises(OSError, match="disk full"):
        store.publish(adapter_dir, make_draft(), key)
    monkeypatch.undo()
    assert store.list() == [] and store.names() == []
    assert store.owner_key("client-1") is None
    assert store.verify() == []
    assert store.publish(adapter_dir, make_draft(), key).version == 1


def test_crash_between_blob_writes_leaves_no_half_state(
    store: HubStore,
    adapter_dir: Path,
    make_draft: Draft,
    key: Ed25519PrivateKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = {"n": 0}
    original = store_module.write_atomic

    def flaky(path: Path, data: bytes) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("power cut")
        original(path, data)

    monkeypatch.setattr(store_module, "write_atomic", flaky)
    with pytest.raises(OSError, match="power cut"):
        store.publish(adapter_dir, make_draft(), key)
    monkeypatch.undo()
    with pytest.raises(NotFoundError):
        store.resolve("sst2-lora")
    assert not [p for p in store.blob_root.rglob("*") if p.name.startswith(".")]
    written = [p for p in store.blob_root.rglob("*") if p.is_file()]
    assert len(written) == 2 and all(sha256_hex(p.read_bytes()) == p.name for p in written)
    assert store.publish(adapter_dir, make_draft(), key).version == 1


def test_interrupted_atomic_write_removes_its_temp_file(
    store: HubStore,
    adapter_dir: Path,
    make_draft: Draft,
    key: Ed25519PrivateKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_replace(src: str, dst: str) -> None:
        raise OSError("rename failed")

    monkeypatch.setattr("fednet.hub.bundle.os.replace", no_replace)
    with pytest.raises(OSError, match="rename failed"):
        store.publish(adapter_dir, make_draft(), key)
    monkeypatch.undo()
    assert [p for p in store.blob_root.rglob("*") if p.is_file()] == []
    assert store.list() == []


def test_verify_collects_every_problem(
    store: HubStore, adapter_dir: Path, make_draft: Draft, key: Ed25519PrivateKey
) -> None:
    assert store.verify() == []
    one = store.publish(adapter_dir, make_draft(name="one"), key)
    store.publish(adapter_dir, make_draft(name="two"), key)
    store.blob_path(one.files["head.safetensors"]).write_bytes(b"garbage")
    store.blob_path(one.files["adapter_config.json"]).unlink()
    with store._engine.begin() as conn:  # rewrite a stored manifest behind the store's back
        forged = replace(store.resolve("two"), metrics={"accuracy": 1.0})
        conn.execute(
            store_module.adapters_table.update()
            .where(store_module.adapters_table.c.name == "two")
            .values(manifest=forged.to_json())
        )
    problems = store.verify()
    # Both versions share content-addressed blobs: 2 blob problems each, plus the signature.
    assert len(problems) == 5, problems
    for ref in ("one@v1", "two@v1"):
        assert sum(ref in p and "'head.safetensors' is tampered" in p for p in problems) == 1
        assert sum(ref in p and "'adapter_config.json' is missing" in p for p in problems) == 1
    assert sum("two@v1" in p and "does not verify" in p for p in problems) == 1
    assert len(store.verify("one")) == 2
    with pytest.raises(SignatureError):
        store.fetch("two", 1, store.root / "x")


def test_peers_heartbeat_and_timeout(
    tmp_path: Path, key: Ed25519PrivateKey, adapter_dir: Path, make_draft: Any
) -> None:
    now = [1000.0]
    own = {"owner": "client-1", "key": key}
    with HubStore(tmp_path / "hub", peer_timeout=30.0, clock=lambda: now[0]) as hub:
        hub.publish(adapter_dir, make_draft(), key)  # peers serve their owner's adapters
        peer = hub.register_peer("peer-a", "http://a:9000", "tiny-bert", ["sst2-lora"], **own)
        assert peer.up and peer.adapters == ("sst2-lora",)
        hub.register_peer("peer-b", "http://b:9000", "tiny-bert", **own)
        now[0] += 20
        hub.heartbeat("peer-a", **own)
        now[0] += 20
        states = {p.peer_id: p.up for p in hub.peers()}
        assert states == {"peer-a": True, "peer-b": False}
        assert [p.up for p in hub.peers(alive_within=60)] == [True, True]
        assert [p.up for p in hub.peers(alive_within=5)] == [False, False]
        with pytest.raises(NotFoundError, match="'ghost' is not registered"):
            hub.heartbeat("ghost", **own)
        with pytest.raises(ValueError, match="`alive_within`"):
            hub.peers(alive_within=0)
        with pytest.raises(ValueError, match="`peer_id`"):
            hub.register_peer("bad id", "http://x", "m", **own)
        with pytest.raises(NotFoundError, match="'x', which is not in the hub"):
            hub.register_peer("peer-b", "http://b2:9000", "tiny-bert", ["x"], **own)
        updated = hub.register_peer("peer-b", "http://b2:9000", "tiny-bert", ["sst2-lora"], **own)
        assert updated.endpoint == "http://b2:9000" and updated.up
        assert len(hub.peers()) == 2


def test_any_sqlalchemy_url(
    tmp_path: Path, adapter_dir: Path, make_draft: Draft, key: Ed25519PrivateKey
) -> None:
    with HubStore(tmp_path / "hub", db_url="sqlite://") as hub:
        hub.publish(adapter_dir, make_draft(), key)
        assert hub.resolve("sst2-lora").version == 1
    assert not (tmp_path / "hub" / "hub.db").exists()


def test_reopened_store_sees_its_data(
    tmp_path: Path, adapter_dir: Path, make_draft: Draft, key: Ed25519PrivateKey
) -> None:
    with HubStore(tmp_path / "hub") as hub:
        hub.publish(adapter_dir, make_draft(), key)
    reopened = open_hub(str(tmp_path / "hub"))
    assert isinstance(reopened, HubStore)
    assert reopened.list_versions("sst2-lora") == [1]
    assert isinstance(open_hub("http://127.0.0.1:1"), HubClient)


def test_publish_checks_the_adapter_dir(
    store: HubStore, adapter_dir: Path, make_draft: Draft, key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match=r"`rank` is 8 .* r=4"):
        store.publish(adapter_dir, make_draft(rank=8), key)
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "adapter_config.json").write_text(json.dumps({"r": 4}))
    with pytest.raises(ValueError, match=r"missing PEFT files \['adapter_model.safetensors'\]"):
        store.publish(partial, make_draft(), key)
    assert set(read_adapter_dir(adapter_dir)) >= {"adapter_config.json", "head.safetensors"}


def test_a_hub_made_before_signed_peers_opens_and_binds_on_first_signed_registration(
    tmp_path: Path, key: Ed25519PrivateKey, other_key: Ed25519PrivateKey
) -> None:
    import sqlite3

    from fednet.errors import UntrustedKeyError as Untrusted

    root = tmp_path / "old"
    root.mkdir()
    with sqlite3.connect(root / "hub.db") as db:
        db.execute(
            "CREATE TABLE peers (peer_id VARCHAR(128) PRIMARY KEY, endpoint TEXT NOT NULL, "
            "base_model TEXT NOT NULL, adapters TEXT NOT NULL, registered FLOAT NOT NULL, "
            "last_heartbeat FLOAT NOT NULL)"
        )
        db.execute("INSERT INTO peers VALUES ('p', 'http://a:1', 'tiny-bert', '[]', 1.0, 1.0)")
    with HubStore(root) as hub:
        assert [(p.peer_id, p.owner) for p in hub.peers()] == [("p", "")]
        hub.register_peer("p", "http://a:2", "tiny-bert", owner="o", key=key)
        with pytest.raises(Untrusted, match="bound to owner 'o'"):
            hub.register_peer("p", "http://evil:2", "tiny-bert", owner="o", key=other_key)
        assert hub.peers()[0].endpoint == "http://a:2"
