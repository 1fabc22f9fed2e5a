"""Bytes that are not text in requests to the hub service: a 4xx in its error shape."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from fednet.hub import Manifest
from fednet.hub.bundle import prepare_publish
from fednet.hub.keys import Ed25519PrivateKey

from .conftest import WRITE_TOKEN

AUTH = {"Authorization": f"Bearer {WRITE_TOKEN}", "content-type": "application/json"}


def _shape(response: httpx.Response) -> str:
    body = response.json()
    assert set(body) == {"error", "type"} and all(isinstance(v, str) for v in body.values())
    return body["error"]


def test_hub_answers_bad_bytes_in_its_error_shape(
    hub_url: str,
    adapter_dir: Path,
    make_draft: Callable[..., Manifest],
    key: Ed25519PrivateKey,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    import base64

    signed, files = prepare_publish(adapter_dir, make_draft(), key)
    upload = {
        "manifest": signed.to_dict(),
        "files": {n: base64.b64encode(d).decode() for n, d in files.items()},
    }
    text = json.dumps(upload)
    with httpx.Client(base_url=hub_url, headers=AUTH, timeout=30) as http:
        latin1 = text.replace('"sst2"', '"caf\u00e9"', 1).encode("latin-1")
        r = http.post("/v1/adapters", content=latin1)
        assert r.status_code == 400, r.text
        assert "request body is not valid UTF-8: byte 0xe9" in _shape(r)
        surrogate = text.replace('"sst2"', '"sst2\\ud800"', 1).encode("ascii")
        r = http.post("/v1/adapters", content=surrogate)
        assert r.status_code == 422, r.text
        assert "`manifest.task` holds a lone surrogate" in _shape(r)
        peer = b'{"peer_id": "p1", "endpoint": "http://x\\udc80", "base_model": "tiny-bert"}'
        r = http.post("/v1/peers", content=peer)
        assert r.status_code == 422, r.text
        assert "`endpoint` holds a lone surrogate" in _shape(r)
        r = http.get("/v1/adapters/sst2%ED%A0%80")
        assert r.status_code in (404, 422), r.text
        _shape(r)
        assert http.post("/v1/adapters", content=text.encode()).status_code == 201
        assert http.get("/v1/peers").json() == {"peers": []}
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err + caplog.text
    assert not [r for r in caplog.records if r.exc_info]
