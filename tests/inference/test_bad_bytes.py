"""Bytes that are not text in requests to a peer: a clear 4xx in the peer's error shape."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from fednet.hub import HubStore
from fednet.inference import AdapterEngine, MicroBatcher
from fednet.inference.peer import create_peer_app

from ..loopback import serving

JSON = {"content-type": "application/json"}


@pytest.fixture
def peer_url(hub_store: HubStore) -> Iterator[str]:
    engine = AdapterEngine("tiny-bert", source=hub_store)
    batcher = MicroBatcher(engine, window_s=0.0)
    app = create_peer_app(engine, batcher, peer_id="p", adapters=["spam-0-shared"])
    try:
        with serving(app) as url:
            yield url
    finally:
        batcher.close()


def _shape(response: httpx.Response) -> dict[str, str]:
    body = response.json()
    assert set(body) == {"error", "type"} and all(isinstance(v, str) for v in body.values())
    return body


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (
            b'{"texts": ["caf\xe9 au lait"]}',
            400,
            "not valid UTF-8: byte 0xe9 at offset 15",
        ),  # Latin-1, not UTF-8
        (b'{"texts": ["\xff\xfe"]}', 400, "not valid UTF-8"),
        (b'{"texts": ["ok", "\\ud800 alone"]}', 422, "`texts[1]` holds a lone surrogate"),
        (b'{"texts": ["ok"], "adapter": "spam\\udc80"}', 422, "`name` must be 1-128 characters"),
    ],
)
def test_peer_answers_bad_bytes_in_its_error_shape(
    peer_url: str,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    body: bytes,
    status: int,
    message: str,
) -> None:
    response = httpx.post(f"{peer_url}/v1/classify", content=body, headers=JSON, timeout=30)
    assert response.status_code == status, response.text
    assert message in _shape(response)["error"]
    good = httpx.post(f"{peer_url}/v1/classify", json={"texts": ["win a prize"]}, timeout=30)
    assert good.status_code == 200 and good.json()["adapter"] == "spam-0-shared"
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err + caplog.text
    assert not [r for r in caplog.records if r.exc_info]
