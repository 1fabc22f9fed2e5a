"""The hub over real HTTP: uvicorn on loopback, talked to with HubClient and httpx."""

from __future__ import annotations

import base64
import socket
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from fednet.errors import HubError, IntegrityError, NotFoundError, SignatureError, UntrustedKeyError
from fednet.hub import HubClient, HubStore, Manifest, encode_public_key
from fednet.hub.bundle import prepare_publish
from fednet.hub.keys import Ed25519PrivateKey

from .conftest import READ_TOKEN, WRITE_TOKEN
from .test_store import assert_loads_with_peft

Draft = Callable[..., Manifest]


def payload(manifest: Manifest, files: dict[str, bytes]) -> dict[str, Any]:
    return {
        "manifest": manifest.to_dict(),
        "files": {n: base64.b64encode(d).decode() for n, d in files.items()},
    }


def test_publish_resolve_fetch_over_http(
    client: HubClient, adapter_dir: Path, make_draft: Draft, key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    assert client.health()["status"] == "ok"
    first = client.publish(adapter_dir, make_draft(), key)
    second = client.publish(adapter_dir, make_draft(round=5), key)
    assert (first.version, second.version) == (1, 2)
    assert client.list_versions("sst2-lora") == [1, 2]
    assert client.resolve("sst2-lora", "latest") == second
    assert client.resolve("sst2-lora", 1) == first
    assert [m.ref for m in client.list()] == ["sst2-lora@v2"]
    dest = tmp_path / "fetched"
    assert client.fetch("sst2-lora", 1, dest) == first
    assert_loads_with_peft(adapter_dir, dest)
    sketch = client.read_file("sst2-lora", "latest", "sketch.safetensors")
    assert sketch == (adapter_dir / "sketch.safetensors").read_bytes()


def test_errors_are_clean_json(hub_url: str, client: HubClient) -> None:
    with httpx.Client(base_url=hub_url) as http:
        response = http.get("/v1/adapters/none/latest")
        assert response.status_code == 404
        assert "'none' not found" in response.json()["error"]
        assert http.get("/v1/adapters/none/abc").status_code == 400
        assert http.get("/v1/adapters/bad%20name").status_code == 422
        assert http.get("/v1/nowhere").json() == {"error": "Not Found", "type": "HTTPException"}
        headers = {"Authorization": f"Bearer {WRITE_TOKEN}"}
        bad_json = http.post(
            "/v1/adapters",
            content=b"{oops",
            headers={**headers, "content-type": "application/json"},
        )
        assert bad_json.status_code == 400 and "error" in bad_json.json()
        missing = http.post("/v1/adapters", json={"manifest": {}}, headers=headers)
        assert missing.status_code == 422 and "files" in missing.json()["error"]
        invalid = http.post(
            "/v1/adapters", json={"manifest": {"name": "x"}, "files": {}}, headers=headers
        )
        assert invalid.status_code == 422 and "missing required keys" in invalid.json()["error"]
        assert http.get("/docs").status_code == 200
        assert "/v1/adapters/{name}/{version}" in http.get("/openapi.json").json()["paths"]
    with pytest.raises(NotFoundError, match="'none' not found"):
        client.resolve("none")


def test_tampered_blob_gives_clean_error(
    store: HubStore,
    client: HubClient,
    hub_url: str,
    adapter_dir: Path,
    make_draft: Draft,
    key: Ed25519PrivateKey,
    tmp_path: Path,
) -> None:
    manifest = client.publish(adapter_dir, make_draft(), key)
    store.blob_path(manifest.files["head.safetensors"]).write_bytes(b"swapped")
    with httpx.Client(base_url=hub_url) as http:
        response = http.get("/v1/adapters/sst2-lora/1/files/head.safetensors")
    assert response.status_code == 409
    assert response.json()["type"] == "IntegrityError"
    assert "'head.safetensors' is tampered" in response.json()["error"]
    with pytest.raises(IntegrityError, match="head.safetensors"):
        client.fetch("sst2-lora", 1, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


def test_client_verifies_what_a_lying_server_sends(
    store: HubStore, adapter_dir: Path, make_draft: Draft, key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    manifest = store.publish(adapter_dir, make_draft(), key)
    trust = {"client-1": [encode_public_key(key)]}

    def lying(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/files/adapter_model.safetensors"):
            return httpx.Response(200, content=b"evil weights")
        if "/files/" in request.url.path:
            name = request.url.path.rsplit("/", 1)[1]
            return httpx.Response(200, content=(adapter_dir / name).read_bytes())
        return httpx.Response(200, json=manifest.to_dict())

    lying_transport = httpx.MockTransport(lying)
    with (
        HubClient("http://hub.test", transport=lying_transport, trust=trust) as hub,
        pytest.raises(IntegrityError, match="'adapter_model.safetensors'"),
    ):
        hub.fetch("sst2-lora", 1, tmp_path / "dest")
    forged = replace(manifest, metrics={"accuracy": 1.0})
    forged_transport = httpx.MockTransport(lambda r: httpx.Response(200, json=forged.to_dict()))
    with (
        HubClient("http://hub.test", transport=forged_transport, trust=trust) as hub,
        pytest.raises(SignatureError, match="does not verify"),
    ):
        hub.read_file("sst2-lora", 1, "adapter_config.json")
    untrusted = HubClient(
        "http://hub.test",
        transport=httpx.MockTransport(lambda r: httpx.Response(200, json=manifest.to_dict())),
        trust={"client-1": ["A" * 43 + "="]},
    )
    with untrusted, pytest.raises(UntrustedKeyError):
        untrusted.fetch("sst2-lora", 1, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


def test_unsigned_and_wrongly_signed_rejected_over_http(
    client: HubClient,
    adapter_dir: Path,
    make_draft: Draft,
    key: Ed25519PrivateKey,
    other_key: Ed25519PrivateKey,
    hub_url: str,
) -> None:
    signed, files = prepare_publish(adapter_dir, make_draft(), key)
    with pytest.raises(SignatureError, match="unsigned"):
        client.publish_signed(replace(signed, signature=""), files)
    with pytest.raises(SignatureError, match="does not verify"):
        client.publish_signed(replace(signed, owner_public_key=encode_public_key(other_key)), files)
    with httpx.Client(base_url=hub_url, headers={"Authorization": f"Bearer {WRITE_TOKEN}"}) as http:
        response = http.post("/v1/adapters", json=payload(replace(signed, round=99), files))
        assert response.status_code == 422 and response.json()["type"] == "SignatureError"
        files = {**files, "head.safetensors": b"other"}
        response = http.post("/v1/adapters", json=payload(signed, files))
        assert response.status_code == 422 and response.json()["type"] == "IntegrityError"
        assert "'head.safetensors'" in response.json()["error"]
    assert client.list() == []


def test_owner_key_change_rejected_over_http(
    client: HubClient,
    adapter_dir: Path,
    make_draft: Draft,
    key: Ed25519PrivateKey,
    other_key: Ed25519PrivateKey,
) -> None:
    client.publish(adapter_dir, make_draft(), key)
    with pytest.raises(UntrustedKeyError, match="bound to key"):
        client.publish(adapter_dir, make_draft(), other_key)
    assert client.list_versions("sst2-lora") == [1]


def test_writes_need_the_write_token(
    hub_url: str, adapter_dir: Path, make_draft: Draft, key: Ed25519PrivateKey
) -> None:
    signed, files = prepare_publish(adapter_dir, make_draft(), key)
    with httpx.Client(base_url=hub_url) as http:
        response = http.post("/v1/adapters", json=payload(signed, files))
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["error"].startswith("missing bearer token")
        wrong = {"Authorization": "Bearer nope"}
        assert (
            http.post("/v1/adapters", json=payload(signed, files), headers=wrong).status_code == 403
        )
        assert http.post("/v1/peers/p/heartbeat").status_code == 401
        assert http.get("/v1/adapters").json() == {"adapters": []}  # reads are public
    with HubClient(hub_url) as anonymous, pytest.raises(HubError, match="401"):
        anonymous.publish_signed(signed, files)


def test_read_token_mode(
    store: HubStore,
    serve_store: Callable[..., Any],
    adapter_dir: Path,
    make_draft: Draft,
    key: Ed25519PrivateKey,
) -> None:
    store.publish(adapter_dir, make_draft(), key)
    trust = {"client-1": [encode_public_key(key)]}
    with serve_store(store, read_token=READ_TOKEN) as url:
        with HubClient(url, trust=trust) as anonymous:
            with pytest.raises(HubError, match="401"):
                anonymous.list()
            assert anonymous.health()["status"] == "ok"
        with (
            HubClient(url, token="wrong", trust=trust) as stranger,
            pytest.raises(HubError, match="403"),
        ):
            stranger.resolve("sst2-lora")
        with HubClient(url, token=READ_TOKEN, trust=trust) as reader:
            assert reader.resolve("sst2-lora").version == 1
            with pytest.raises(HubError, match="403.*'heartbeat' scope"):
                reader.register_peer("p", "http://p", "tiny-bert", owner="client-1", key=key)
        with HubClient(url, token=WRITE_TOKEN, trust=trust) as writer:
            assert writer.list_versions("sst2-lora") == [1]


def test_oversized_upload_gets_413(
    store: HubStore,
    serve_store: Callable[..., Any],
    adapter_dir: Path,
    make_draft: Draft,
    key: Ed25519PrivateKey,
) -> None:
    with serve_store(store, max_upload_bytes=2048) as url:
        with HubClient(url, token=WRITE_TOKEN, trust={}) as hub:
            with pytest.raises(HubError, match="413.*exceeds the limit of 2048 bytes"):
                hub.publish(adapter_dir, make_draft(), key)
            # small bodies still pass
            hub.register_peer("p", "http://p", "tiny-bert", owner="client-1", key=key)
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {WRITE_TOKEN}"}) as http:
            chunks = iter([b"x" * 1500, b"x" * 1500])
            response = http.post("/v1/adapters", content=chunks)  # chunked: no Content-Length
            assert response.status_code == 413
    assert store.list() == []


def test_peers_over_http(
    client: HubClient, key: Ed25519PrivateKey, adapter_dir: Path, make_draft: Any
) -> None:
    client.publish(adapter_dir, make_draft(), key)  # a peer serves its owner's published adapters
    peer = client.register_peer(
        "peer-a", "http://a:9000", "tiny-bert", ["sst2-lora"], owner="client-1", key=key
    )
    assert peer.up and peer.adapters == ("sst2-lora",)
    assert peer.owner == "client-1" and peer.public_key == encode_public_key(key)
    assert client.heartbeat("peer-a", owner="client-1", key=key).peer_id == "peer-a"
    time.sleep(0.05)
    assert [p.up for p in client.peers()] == [True]
    assert [p.up for p in client.peers(alive_within=0.01)] == [False]
    with pytest.raises(NotFoundError, match="'ghost'"):
        client.heartbeat("ghost", owner="client-1", key=key)
    with pytest.raises(ValueError, match="`endpoint`"):
        client.register_peer("peer-b", "", "tiny-bert", owner="client-1", key=key)


def test_unreachable_hub_fails_fast() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    start = time.monotonic()
    with HubClient(url, timeout=2.0) as hub, pytest.raises(HubError, match=f"{url} is unreachable"):
        hub.list()
    assert time.monotonic() - start < 2.0


def test_silent_hub_times_out() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()  # accepts connections, never answers
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        start = time.monotonic()
        with HubClient(url, timeout=0.3) as hub, pytest.raises(HubError, match="did not answer"):
            hub.resolve("sst2-lora")
        assert time.monotonic() - start < 3.0
