"""Talking to peers that misbehave: malformed JSON, slowness, refusals, absence."""

from __future__ import annotations

import time
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

from fednet.errors import PeerError
from fednet.inference import AskConfig, PeerClient, PeerConfig, check_query, parse_reply

from ..loopback import serving
from .conftest import free_port

GOOD: dict[str, Any] = {
    "peer_id": "p",
    "adapter": "a",
    "version": 1,
    "task": "t",
    "label_names": ["x", "y"],
    "labels": ["y"],
    "confidences": [0.7],
    "probabilities": [[0.3, 0.7]],
    "batch_requests": 1,
}


def bad_peer() -> FastAPI:
    app = FastAPI()

    @app.post("/garbage/v1/classify")
    def garbage() -> PlainTextResponse:
        return PlainTextResponse("{not json", media_type="application/json")

    @app.post("/wrong/v1/classify")
    def wrong() -> dict[str, Any]:
        return {**GOOD, "labels": ["z"]}

    @app.post("/slow/v1/classify")
    def slow() -> dict[str, Any]:
        time.sleep(2.0)
        return GOOD

    @app.post("/good/v1/classify")
    def good() -> dict[str, Any]:
        return GOOD

    @app.post("/refuse/v1/classify")
    def refuse() -> PlainTextResponse:
        return PlainTextResponse(
            '{"error": "adapter tampered", "type": "IntegrityError"}',
            status_code=409,
            media_type="application/json",
        )

    return app


def test_misbehaving_peers_become_peer_errors() -> None:
    with serving(bad_peer()) as url:
        good = PeerClient(f"{url}/good", timeout=5).classify("hi", "a")
        assert (good.label, good.confidence, good.probabilities) == ("y", 0.7, {"x": 0.3, "y": 0.7})
        with pytest.raises(PeerError, match="malformed JSON"):
            PeerClient(f"{url}/garbage").classify("hi", "a")
        with pytest.raises(PeerError, match="malformed `labels`"):
            PeerClient(f"{url}/wrong").classify("hi", "a")
        with pytest.raises(PeerError, match="refused \\(409\\): adapter tampered"):
            PeerClient(f"{url}/refuse").classify("hi", "a")
        started = time.monotonic()
        with pytest.raises(PeerError, match="did not answer within 0.3s"):
            PeerClient(f"{url}/slow").classify("hi", "a", timeout=0.3)
        assert time.monotonic() - started < 1.5
    with pytest.raises(PeerError, match="is unreachable"):
        PeerClient(f"http://127.0.0.1:{free_port()}").classify("hi", "a")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"labels": None}, "malformed `labels`"),
        ({"probabilities": [[0.5]]}, "malformed `probabilities`"),
        ({"probabilities": [[0.5, "x"]]}, "non-numeric `probabilities`"),
        ({"label_names": []}, "malformed `label_names`"),
        ({"version": "1"}, "malformed adapter fields"),
    ],
)
def test_parse_reply_rejects(change: dict[str, Any], message: str) -> None:
    with pytest.raises(PeerError, match=message):
        parse_reply({**GOOD, **change}, latency_s=0.0, where="peer")
    with pytest.raises(PeerError, match="without 'task'"):
        parse_reply({k: v for k, v in GOOD.items() if k != "task"}, latency_s=0.0, where="p")
    with pytest.raises(PeerError, match="not a JSON object"):
        parse_reply([1], latency_s=0.0, where="p")


def test_query_checks() -> None:
    assert check_query("hello", max_chars=5) == "hello"
    with pytest.raises(ValueError, match="query is empty"):
        check_query("  \n", max_chars=5)
    with pytest.raises(ValueError, match="6 characters; the maximum is 5"):
        check_query("hello!", max_chars=5)
    with pytest.raises(TypeError, match="query must be a str"):
        check_query(None, max_chars=5)


@pytest.mark.parametrize(
    ("factory", "kwargs", "message"),
    [
        (PeerConfig, {"cache_size": 0}, "`peer.cache-size` must be >= 1, got 0"),
        (PeerConfig, {"batch_window_s": 2.0}, "`peer.batch-window-s` must be in"),
        (PeerConfig, {"request_timeout_s": 0}, "`peer.request-timeout-s` must be > 0, got 0"),
        (AskConfig, {"mode": "vote"}, "`ask.mode` must be 'cascade' or 'ensemble', got 'vote'"),
        (AskConfig, {"confidence_threshold": 1.5}, "`ask.confidence-threshold` must be in"),
        (AskConfig, {"max_query_chars": 0}, "`ask.max-query-chars` must be >= 1, got 0"),
        (PeerConfig, {"heartbeat_s": float("inf")}, "`peer.heartbeat-s` must be a finite number"),
        (AskConfig, {"router": {"top_k": 0}}, "`router.top-k` must be >= 1, got 0"),
        (AskConfig, {"peer_cooldown_s": -1}, "`ask.peer-cooldown-s` must be >= 0, got -1"),
    ],
)
def test_configs_name_the_bad_key(factory: type, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        factory(**kwargs)
