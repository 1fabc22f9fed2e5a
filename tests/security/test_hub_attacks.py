"""Attacks on the hub and its readers, each refused with a clear error.

Every test plays an attacker against a real hub service on loopback: a
compromised hub that re-signs weights, another publisher taking over a name,
someone redirecting or keeping alive a peer they do not own, hostile names,
and writes without the right token.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, select

from fednet.errors import HubError, SignatureError, UntrustedKeyError
from fednet.hub import HubClient, HubStore, Manifest, encode_public_key, open_hub
from fednet.hub.bundle import prepare_publish
from fednet.hub.db import name_keys_table, owner_keys_table, tokens_table
from fednet.hub.keys import Ed25519PrivateKey, generate_private_key
from fednet.hub.peers import sign_peer_request
from fednet.hub.tokens import hash_token
from fednet.hub.trust import TrustStore, fingerprint, sign_rotation

from .conftest import LiveHub


def _payload(manifest: Manifest, files: dict[str, bytes]) -> dict[str, Any]:
    return {
        "manifest": manifest.to_dict(),
        "files": {n: base64.b64encode(d).decode() for n, d in files.items()},
    }


def _altered(adapter_dir: Path, tmp_path: Path) -> Path:
    """A copy of the adapter whose weights are changed (a backdoor, say)."""
    out = tmp_path / "altered"
    out.mkdir()
    for path in adapter_dir.iterdir():
        (out / path.name).write_bytes(path.read_bytes())
    weights = out / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\x00\x00\x80\x3f")
    return out


# -- a hub that re-signs altered weights with its own key ------------------------------


def test_hub_resigning_altered_weights_is_refused_by_pinned_readers(
    live_hub: LiveHub,
    adapter_dir: Path,
    make_draft: Any,
    key: Ed25519PrivateKey,
    tmp_path: Path,
) -> None:
    draft = make_draft(name="spam-0-shared", owner="spam-0")
    with HubClient(live_hub.url, token=live_hub.publish, trust={}) as owner:
        owner.publish(adapter_dir, draft, key)
    pinned = TrustStore(tmp_path / "trust.json")
    pinned.add("spam-0", encode_public_key(key))
    with HubClient(live_hub.url, trust=pinned) as reader:
        reader.fetch("spam-0-shared", 1, tmp_path / "good")

    # the hub's operator forgets every binding and publishes altered weights under
    # the same owner and name, signed with a key of its own
    hub_key = generate_private_key()
    with live_hub.store._engine.begin() as conn:  # noqa: SLF001 - the attacker owns the DB
        conn.execute(delete(name_keys_table))
        conn.execute(delete(owner_keys_table))
    live_hub.store.publish(_altered(adapter_dir, tmp_path), draft, hub_key)

    with (
        HubClient(live_hub.url, trust=pinned) as reader,
        pytest.raises(UntrustedKeyError) as refused,
    ):
        reader.fetch("spam-0-shared", "latest", tmp_path / "bad")
    message = str(refused.value)
    assert "owner 'spam-0'" in message and fingerprint(encode_public_key(hub_key)) in message
    assert fingerprint(encode_public_key(key)) in message  # and what was pinned instead
    assert not (tmp_path / "bad").exists()
    # the local store opened by a reader, and a reader with nothing pinned, refuse too
    with (
        open_hub(live_hub.store.root, trust=pinned) as local,
        pytest.raises(UntrustedKeyError, match="owner 'spam-0'"),
    ):
        local.fetch("spam-0-shared", "latest", tmp_path / "bad")
    with HubClient(live_hub.url) as stranger, pytest.raises(UntrustedKeyError, match="none"):
        stranger.fetch("spam-0-shared", 1, tmp_path / "bad")


def test_trust_on_first_use_only_when_asked_and_written_down(
    live_hub: LiveHub, adapter_dir: Path, make_draft: Any, key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    live_hub.store.publish(adapter_dir, make_draft(owner="spam-0"), key)
    path = tmp_path / "trust.json"
    with (
        HubClient(live_hub.url, trust=TrustStore(path)) as reader,
        pytest.raises(UntrustedKeyError, match="not in the trust store"),
    ):
        reader.fetch("sst2-lora", 1, tmp_path / "a")
    assert not path.exists()
    with HubClient(live_hub.url, trust=TrustStore(path, tofu=True)) as reader:
        reader.fetch("sst2-lora", 1, tmp_path / "a")
    written = json.loads(path.read_text())
    entry = written["owners"]["spam-0"][0]
    assert entry["key"] == encode_public_key(key) and entry["source"].startswith("tofu")
    assert path.stat().st_mode & 0o777 == 0o600
    # once pinned, another key for the same owner is refused even with tofu
    live_hub.store.publish(adapter_dir, make_draft(name="other", owner="spam-0"), key)
    with live_hub.store._engine.begin() as conn:  # noqa: SLF001
        conn.execute(delete(owner_keys_table))
    live_hub.store.publish(
        adapter_dir, make_draft(name="third", owner="spam-0"), generate_private_key()
    )
    with (
        HubClient(live_hub.url, trust=TrustStore(path, tofu=True)) as reader,
        pytest.raises(UntrustedKeyError, match="owner 'spam-0'"),
    ):
        reader.fetch("third", 1, tmp_path / "b")


# -- a name hijack by another key ---------------------------------------------------------


def test_name_hijack_by_another_key_is_refused(
    live_hub: LiveHub,
    adapter_dir: Path,
    make_draft: Any,
    key: Ed25519PrivateKey,
    other_key: Ed25519PrivateKey,
) -> None:
    with HubClient(live_hub.url, token=live_hub.publish, trust={}) as hub:
        hub.publish(adapter_dir, make_draft(name="spam-0-shared", owner="spam-0"), key)
        # mallory holds a publish token, but not spam-0's key
        for owner in ("spam-0", "mallory"):
            draft = make_draft(name="spam-0-shared", owner=owner)
            with pytest.raises(UntrustedKeyError, match="'spam-0-shared'") as refused:
                hub.publish(adapter_dir, draft, other_key)
            assert fingerprint(encode_public_key(other_key)) in str(refused.value)
        # a rotation signed by mallory's own key is no rotation
        forged = sign_rotation("spam-0-shared", encode_public_key(other_key), other_key)
        signed, files = prepare_publish(
            adapter_dir, make_draft(name="spam-0-shared", owner="spam-0"), other_key
        )
        with pytest.raises(UntrustedKeyError, match="no rotation signed by the bound key"):
            hub.publish_signed(replace(signed, rotation=forged), files)
        assert hub.list_versions("spam-0-shared") == [1]
        # the owner itself may hand the name to a new key
        new_key = generate_private_key()
        handover = sign_rotation("spam-0-shared", encode_public_key(new_key), key)
        signed, files = prepare_publish(
            adapter_dir, make_draft(name="spam-0-shared", owner="spam-0"), new_key
        )
        assert hub.publish_signed(replace(signed, rotation=handover), files).version == 2
        with pytest.raises(UntrustedKeyError, match="bound to key"):
            hub.publish(adapter_dir, make_draft(name="spam-0-shared", owner="spam-0"), key)
    assert live_hub.store.name_keys("spam-0-shared") == [
        encode_public_key(key),
        encode_public_key(new_key),
    ]
    # a reader that pinned the old key follows the signed rotation, and only that one
    reader_trust = TrustStore(None, keys={"spam-0": [encode_public_key(key)]})
    with HubClient(live_hub.url, trust=reader_trust) as reader:
        assert reader.resolve("spam-0-shared").version == 2
        reader.read_file("spam-0-shared", 2, "adapter_config.json")
    assert encode_public_key(new_key) in reader_trust.keys("spam-0")


# -- peers: endpoint redirect, forged heartbeat, bad endpoints ------------------------


def test_endpoint_redirect_by_a_non_owner_is_refused(
    live_hub: LiveHub, key: Ed25519PrivateKey, other_key: Ed25519PrivateKey
) -> None:
    with HubClient(live_hub.url, token=live_hub.heartbeat, trust={}) as hub:
        hub.register_peer("spam-0", "http://127.0.0.1:9001", "tiny-bert", owner="spam-0", key=key)
        with pytest.raises(UntrustedKeyError, match="bound to owner 'spam-0'"):
            hub.register_peer(
                "spam-0", "http://evil.test:80", "tiny-bert", owner="mallory", key=other_key
            )
        with pytest.raises(UntrustedKeyError):
            hub.register_peer(
                "spam-0", "http://evil.test:80", "tiny-bert", owner="spam-0", key=other_key
            )
        # the owner's own signed registration, with the endpoint swapped, does not verify
        genuine = sign_peer_request(
            key,
            action="register",
            peer_id="spam-0",
            owner="spam-0",
            endpoint="http://127.0.0.1:9001",
            base_model="tiny-bert",
        )
        with pytest.raises(SignatureError, match="does not verify"):
            hub.register_peer_signed(replace(genuine, endpoint="http://evil.test:80"))
        # and replaying an old genuine registration is refused
        time.sleep(0.01)
        hub.register_peer("spam-0", "http://127.0.0.1:9002", "tiny-bert", owner="spam-0", key=key)
        with pytest.raises(SignatureError, match="not newer"):
            hub.register_peer_signed(genuine)
        assert [p.endpoint for p in hub.peers()] == ["http://127.0.0.1:9002"]


def test_heartbeat_forged_for_another_peer_is_refused(
    live_hub: LiveHub, key: Ed25519PrivateKey, other_key: Ed25519PrivateKey
) -> None:
    now = [1000.0]
    with HubClient(live_hub.url, token=live_hub.heartbeat, trust={}) as hub:
        hub.register_peer("spam-0", "http://127.0.0.1:9001", "tiny-bert", owner="spam-0", key=key)
        with pytest.raises(UntrustedKeyError, match="not signed by its owner 'spam-0'"):
            hub.heartbeat("spam-0", owner="mallory", key=other_key)
        with pytest.raises(UntrustedKeyError):
            hub.heartbeat("spam-0", owner="spam-0", key=other_key)
        beat = sign_peer_request(key, action="heartbeat", peer_id="spam-0", owner="spam-0")
        hub.heartbeat_signed(beat)
        with pytest.raises(SignatureError, match="not newer"):  # a captured heartbeat, replayed
            hub.heartbeat_signed(beat)
        stale = sign_peer_request(
            key, action="heartbeat", peer_id="spam-0", owner="spam-0", timestamp=now[0]
        )
        with pytest.raises(SignatureError, match="from the hub's clock"):
            hub.heartbeat_signed(stale)
        # a heartbeat for one peer cannot be posted under another peer's path
        with httpx.Client(base_url=live_hub.url) as http:
            other = sign_peer_request(key, action="heartbeat", peer_id="spam-0", owner="spam-0")
            response = http.post(
                "/v1/peers/news-0/heartbeat",
                json=other.to_dict(),
                headers={"Authorization": f"Bearer {live_hub.heartbeat}"},
            )
            assert response.status_code == 422 and "not 'news-0'" in response.json()["error"]


@pytest.mark.parametrize(
    ("endpoint", "why"),
    [
        ("file:///etc/passwd", "http or https"),
        ("gopher://127.0.0.1:70/", "http or https"),
        ("javascript:alert(1)", "http or https"),
        ("http://", "name a host"),
        ("http://127.0.0.1:0", "1..65535"),
        ("http://127.0.0.1:70000", "not a valid URL"),
        ("http://user:pw@127.0.0.1:9001", "user info"),
        ("http://127.0.0.1:9001/?next=http://evil.test", "query"),
        ("http://127.0.0.1:9001 /x", "without spaces"),
    ],
)
def test_unchecked_endpoints_are_refused(
    live_hub: LiveHub, key: Ed25519PrivateKey, endpoint: str, why: str
) -> None:
    with HubClient(live_hub.url, token=live_hub.heartbeat, trust={}) as hub:
        with pytest.raises(ValueError, match=why):
            hub.register_peer("spam-0", endpoint, "tiny-bert", owner="spam-0", key=key)
        body = {
            "action": "register",
            "peer_id": "spam-0",
            "owner": "spam-0",
            "public_key": encode_public_key(key),
            "timestamp": time.time(),
            "signature": "",
            "endpoint": endpoint,
            "base_model": "tiny-bert",
            "adapters": [],
        }
        with httpx.Client(base_url=live_hub.url) as http:  # bypassing the client's own check
            response = http.post(
                "/v1/peers", json=body, headers={"Authorization": f"Bearer {live_hub.heartbeat}"}
            )
        assert response.status_code == 422 and why in response.json()["error"]
    assert live_hub.store.peers() == []


# -- unauthenticated writes and heartbeats ---------------------------------------------------


def test_unauthenticated_or_wrongly_scoped_writes_are_refused(
    live_hub: LiveHub, adapter_dir: Path, make_draft: Any, key: Ed25519PrivateKey
) -> None:
    signed, files = prepare_publish(adapter_dir, make_draft(), key)
    register = sign_peer_request(
        key,
        action="register",
        peer_id="p",
        owner="client-1",
        endpoint="http://127.0.0.1:9001",
        base_model="tiny-bert",
    )
    beat = sign_peer_request(key, action="heartbeat", peer_id="p", owner="client-1")
    writes = [
        ("/v1/adapters", _payload(signed, files), "publish"),
        ("/v1/peers", register.to_dict(), "heartbeat"),
        ("/v1/peers/p/heartbeat", beat.to_dict(), "heartbeat"),
    ]
    with httpx.Client(base_url=live_hub.url) as http:
        for path, body, scope in writes:
            anonymous = http.post(path, json=body)
            assert anonymous.status_code == 401, path
            assert f"{scope!r} scope" in anonymous.json()["error"]
            for token in ("dev-token", "", live_hub.read):
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                assert http.post(path, json=body, headers=headers).status_code in (401, 403)
            wrong = live_hub.heartbeat if scope == "publish" else live_hub.publish
            refused = http.post(path, json=body, headers={"Authorization": f"Bearer {wrong}"})
            assert refused.status_code == 403
            assert refused.json()["error"] == f"bearer token does not have the {scope!r} scope"
    assert live_hub.store.list() == [] and live_hub.store.peers() == []
    with HubClient(live_hub.url, trust={}) as anonymous, pytest.raises(HubError, match="401"):
        anonymous.publish_signed(signed, files)


def test_the_hub_keeps_only_token_hashes(live_hub: LiveHub, tmp_path: Path) -> None:
    with live_hub.store._engine.connect() as conn:  # noqa: SLF001
        rows = list(conn.execute(select(tokens_table)))
    assert {r.sha256 for r in rows} == {
        hash_token(t) for t in (live_hub.publish, live_hub.heartbeat, live_hub.read)
    }
    database = (live_hub.store.root / "hub.db").read_bytes()
    for wal in live_hub.store.root.glob("hub.db-*"):
        database += wal.read_bytes()
    for token in (live_hub.publish, live_hub.heartbeat, live_hub.read):
        assert token.encode() not in database
        assert token.split("_", 2)[2].encode() not in database
    assert live_hub.store.tokens.revoke(live_hub.publish.split("_")[1])
    assert live_hub.store.tokens.scopes(live_hub.publish) == frozenset()


# -- path traversal in ids, tasks and adapter names ---------------------------------------


@pytest.mark.parametrize(
    "field",
    [
        {"name": "../../etc/passwd"},
        {"name": "spam-0/../../x"},
        {"owner": "../keys/spam-0"},
        {"task": "../../../tmp/x"},
        {"task": "sms-spam/../../x"},
    ],
)
def test_path_traversal_in_manifest_names_is_refused(
    live_hub: LiveHub, adapter_dir: Path, make_draft: Any, key: Ed25519PrivateKey, field: dict
) -> None:
    signed, files = prepare_publish(adapter_dir, make_draft(), key)
    body = _payload(signed, files)
    body["manifest"].update(field)
    with httpx.Client(base_url=live_hub.url) as http:
        response = http.post(
            "/v1/adapters", json=body, headers={"Authorization": f"Bearer {live_hub.publish}"}
        )
    assert response.status_code == 422
    assert f"`{next(iter(field))}`" in response.json()["error"]
    assert live_hub.store.list() == []


def test_path_traversal_in_file_names_and_peer_ids_is_refused(
    live_hub: LiveHub, adapter_dir: Path, make_draft: Any, key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    signed, files = prepare_publish(adapter_dir, make_draft(), key)
    body = _payload(signed, files)
    body["manifest"]["files"]["../../outside"] = "0" * 64
    body["files"]["../../outside"] = base64.b64encode(b"x").decode()
    auth = {"Authorization": f"Bearer {live_hub.publish}"}
    with httpx.Client(base_url=live_hub.url) as http:
        response = http.post("/v1/adapters", json=body, headers=auth)
        assert response.status_code == 422 and "plain file name" in response.json()["error"]
        assert http.get("/v1/adapters/..%2F..%2Fetc").status_code in (404, 422)
        beat = sign_peer_request(key, action="heartbeat", peer_id="p", owner="client-1")
        hb = http.post(
            "/v1/peers/..%2Fx/heartbeat",
            json=beat.to_dict(),
            headers={"Authorization": f"Bearer {live_hub.heartbeat}"},
        )
        assert hb.status_code in (404, 422)
    with (
        HubClient(live_hub.url, token=live_hub.heartbeat, trust={}) as hub,
        pytest.raises(ValueError, match="`peer_id`"),
    ):
        hub.register_peer("../x", "http://127.0.0.1:1", "tiny-bert", owner="p", key=key)
    assert not (tmp_path.parent / "outside").exists()
    assert live_hub.store.list() == []


def test_publish_verifies_before_anything_is_bound(
    live_hub: LiveHub, adapter_dir: Path, make_draft: Any, key: Ed25519PrivateKey
) -> None:
    """A refused publish binds no name: a bad first attempt cannot squat one."""
    signed, files = prepare_publish(adapter_dir, make_draft(name="squat"), key)
    with (
        HubClient(live_hub.url, token=live_hub.publish, trust={}) as hub,
        pytest.raises(SignatureError),
    ):
        hub.publish_signed(replace(signed, round=9), files)
    assert live_hub.store.name_keys("squat") == []
    with HubStore(live_hub.store.root) as again:
        assert again.list() == []


def test_a_peer_cannot_claim_another_owners_adapter(
    live_hub: LiveHub,
    adapter_dir: Path,
    make_draft: Any,
    key: Ed25519PrivateKey,
    other_key: Ed25519PrivateKey,
) -> None:
    """Mallory, with a heartbeat token and her own key, registers a peer that "serves"
    spam-0's adapter, so that readers send her spam-0's queries."""
    from fednet.errors import NotFoundError
    from fednet.hub.db import peers_table
    from fednet.routing.candidates import candidates_from_hub

    with HubClient(live_hub.url, token=live_hub.publish, trust={}) as hub:
        hub.publish(adapter_dir, make_draft(name="spam-0-shared", owner="spam-0"), key)
    with HubClient(live_hub.url, token=live_hub.heartbeat, trust={}) as hub:
        with pytest.raises(UntrustedKeyError, match="serves only its owner's adapters"):
            hub.register_peer(
                "mallory",
                "http://127.0.0.1:9666",
                "tiny-bert",
                adapters=["spam-0-shared"],
                owner="mallory",
                key=other_key,
            )
        with pytest.raises(NotFoundError, match="not in the hub"):
            hub.register_peer(
                "mallory", "http://127.0.0.1:9666", "tiny-bert", adapters=["nothing"],
                owner="mallory", key=other_key,
            )  # fmt: skip
        hub.register_peer(
            "spam-0",
            "http://127.0.0.1:9001",
            "tiny-bert",
            adapters=["spam-0-shared"],
            owner="spam-0",
            key=key,
        )
    # a compromised hub lists peers of its own making: readers drop every pair whose peer
    # is not registered by the adapter's owner under a key they pinned for that owner
    rogue = {
        "endpoint": "http://127.0.0.1:9666",
        "base_model": "tiny-bert",
        "adapters": json.dumps(["spam-0-shared"]),
        "registered": time.time(),
        "last_heartbeat": time.time(),
        "last_signed": time.time(),
    }
    with live_hub.store._engine.begin() as conn:  # noqa: SLF001 - the test plays the hub
        conn.execute(
            peers_table.insert().values(
                peer_id="mallory", owner="mallory", public_key=encode_public_key(other_key), **rogue
            )
        )
        conn.execute(
            peers_table.insert().values(
                peer_id="spam-0b", owner="spam-0", public_key=encode_public_key(other_key), **rogue
            )
        )
    reader_trust = TrustStore(None, keys={"spam-0": [encode_public_key(key)]})
    with HubClient(live_hub.url, token=live_hub.read, trust=reader_trust) as reader:
        found = candidates_from_hub(reader, with_sketches=False, trust=reader_trust)
    assert [(c.peer_id, c.adapter) for c in found] == [("spam-0", "spam-0-shared")]
