"""The network end to end: a real hub service and real peer servers on loopback.

Three peers run as uvicorn servers in threads; the peer killed mid-query is a
``fednet peer serve`` subprocess. Tests that damage the hub come last.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fednet.cli import main as cli_main
from fednet.errors import HubError
from fednet.hub import HubClient, HubStore, create_app
from fednet.hub.publish import publish_run
from fednet.inference import AskConfig, Network, PeerConfig, PeerServer, owned_adapters
from fednet.routing import LearnedRouter, RouterConfig, create_router

from ..loopback import serving
from .conftest import TOKEN, break_signature, free_port

pytestmark = pytest.mark.integration

SPAM = "WINNER!! claim your free prize now, text WIN to 80086"
TWEET = "@united thanks for the great flight crew, loved it"
THREAD_PEERS = ("news-0", "spam-1", "tweets-0")


class Env:
    def __init__(self, store: HubStore, url: str, peers: dict[str, PeerServer], root: Path):
        self.store, self.url, self.peers, self.root = store, url, peers, root

    def client(self) -> HubClient:
        return HubClient(self.url, token=TOKEN, timeout=5.0)


@pytest.fixture(scope="module")
def env(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("network")
    store = HubStore(root / "hub", peer_timeout=1.5)
    with serving(create_app(store, write_token=TOKEN)) as url:
        with HubClient(url, token=TOKEN) as publisher:
            publish_run(run_dir, publisher, keys_dir=root / "keys")
        peers: dict[str, PeerServer] = {}
        try:
            for cid in THREAD_PEERS:
                hub = HubClient(url, token=TOKEN, timeout=5.0)
                peers[cid] = PeerServer(
                    hub,
                    peer_id=cid,
                    adapters=owned_adapters(hub, cid),
                    config=PeerConfig(heartbeat_s=0.3),
                    cache_dir=root / "cache" / cid,
                )
                peers[cid].start()
            yield Env(store, url, peers, root)
        finally:
            for peer in peers.values():
                peer.stop()
            store.close()


def test_publish_route_cascade_ensemble_answer(env: Env) -> None:
    with env.client() as hub:
        assert [(p.peer_id, p.up) for p in hub.peers()] == [(c, True) for c in THREAD_PEERS]
        assert len(hub.list()) == 8
    with Network(env.url) as net:
        assert len(net.refresh()) == 6  # three live peers, two adapters each
        spam = net.ask(SPAM)
        assert spam.task == "sms-spam" and spam.label in ("ham", "spam")
        assert spam.answered_by[0] == "spam-1/spam-1-personalized"
        first = spam.calls[0]
        assert first.ok and first.endpoint == env.peers["spam-1"].url and first.latency_s > 0
        assert 0.0 <= spam.confidence <= 1.0 and spam.latency_s >= spam.router_s > 0
        scores = spam.to_dict()["decision"]["scores"]
        assert len(scores) == 6 and {"similarity", "relevance"} <= set(scores[0]["signals"])
        tweet = net.ask(TWEET)
        assert tweet.task == "tweets-sentiment" and tweet.calls[0].peer_id == "tweets-0"
        every = net.ask(SPAM, mode="ensemble", k=6)
        assert len(every.answered_by) == 6 and every.mode == "ensemble"
        assert sum(every.votes.values()) > 0 and every.label in every.votes
    # local mode runs the same signed adapters in-process: the same answer
    with Network(env.url, local=True, cache_dir=env.root / "local") as local:
        mine = local.ask(SPAM, k=1)
        assert mine.calls[0].peer_id == "local"
        assert mine.calls[0].adapter == "spam-0-personalized"  # not served: no peer bias
        remote = httpx.post(
            f"{env.peers['news-0'].url}/v1/classify",
            json={"texts": [SPAM], "adapter": "spam-0-personalized"},
        ).json()
        assert remote["labels"] == [mine.label]
        assert remote["confidences"][0] == pytest.approx(mine.confidence, abs=1e-5)


def test_learned_router_takes_feedback(env: Env) -> None:
    config = AskConfig(router=RouterConfig(name="learned"))
    with Network(env.url, config=config) as net:
        answer = net.ask(TWEET)
        assert answer.decision.router == "learned"
        router = net.router
        assert isinstance(router, LearnedRouter)
        before = router.updates
        net.feedback(answer, true_label="positive", true_task="tweets-sentiment")
        # asked candidates learn their outcome; unasked ones of another task learn that
        # they could not have been right
        other = {
            s.candidate.key
            for s in answer.decision.ranked
            if s.candidate.task != "tweets-sentiment"
        }
        assert len(other) == 4
        assert router.updates - before == len(other | set(answer.answered_by))
        assert set(router.latencies) >= set(answer.answered_by)


def test_peer_refuses_bad_requests_clearly(env: Env) -> None:
    url = env.peers["news-0"].url
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"texts": []}, 400, "at least one text"),
        ({"texts": ["  "]}, 400, "`texts[0]` is empty"),
        ({"texts": ["x" * 2001]}, 413, "2001 characters; the limit is 2000"),
        ({"texts": ["x"] * 65}, 413, "65 texts exceed the limit of 64"),
        ({"texts": ["x"], "adapter": "ghost"}, 404, "'ghost' not found"),
        ({"texts": ["x"], "version": "v9"}, 400, "`version` must be a positive integer"),
        ({"text": "x"}, 400, "invalid request"),
    ]
    for body, status, message in cases:
        response = httpx.post(f"{url}/v1/classify", json=body, timeout=10)
        assert response.status_code == status, body
        assert message in response.json()["error"]
    garbled = httpx.post(
        f"{url}/v1/classify", content=b"{oops", headers={"content-type": "application/json"}
    )
    assert garbled.status_code == 400
    health = httpx.get(f"{url}/v1/health").json()
    assert health["base_loads"] == 1 and health["adapters"][0] == "news-0-personalized"


def test_concurrent_requests_share_a_forward_pass(env: Env) -> None:
    peer = env.peers["tweets-0"]
    assert peer.batcher is not None
    peer.batcher.window_s = 0.5
    try:
        bodies = [{"texts": [TWEET], "adapter": a} for a in peer.adapters] * 2
        results: list[dict[str, Any]] = []
        threads = [
            threading.Thread(
                target=lambda b=b: results.append(
                    httpx.post(f"{peer.url}/v1/classify", json=b, timeout=20).json()
                )
            )
            for b in bodies
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert max(r["batch_requests"] for r in results) >= 2
        assert {r["adapter"] for r in results} == set(peer.adapters)
    finally:
        peer.batcher.window_s = 0.002


def test_peer_killed_mid_query(env: Env) -> None:
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "fednet.cli",
        "peer",
        "serve",
        "--hub",
        env.url,
        "--client",
        "spam-0",
        "--port",
        str(port),
        "--batch-window",
        "1.0",
        "--heartbeat",
        "0.3",
        "--cache-dir",
        str(env.root / "cache" / "spam-0"),
    ]
    log = (env.root / "spam-0.log").open("wb")
    proc = subprocess.Popen(
        cmd, env={**os.environ, "FEDNET_HUB_TOKEN": TOKEN}, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=1).is_success:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, (env.root / "spam-0.log").read_text()
            assert time.monotonic() < deadline, "peer subprocess did not start"
            time.sleep(0.2)
        config = AskConfig(router=RouterConfig(name="prior", top_k=3), confidence_threshold=0.0)
        with Network(env.url, config=config) as net:
            net.router = create_router("prior", config=config.router)
            assert [c.peer_id for c in net.refresh()].count("spam-0") == 2
            threading.Timer(0.5, proc.kill).start()  # while the query waits in its batch
            started = time.monotonic()
            answer = net.ask(SPAM)
            assert time.monotonic() - started < 5
            assert [c.ok for c in answer.calls] == [False, False, True]
            assert answer.answered_by == ["spam-1/spam-1-personalized"]
            assert all("spam-0" in note for note in answer.fallbacks)
            # the dead peer is benched, then the hub marks it down
            assert net.ask(SPAM).calls[0].peer_id == "spam-1"
            time.sleep(2.0)
            with env.client() as hub:
                assert {p.peer_id: p.up for p in hub.peers()}["spam-0"] is False
            assert "spam-0" not in {c.peer_id for c in net.refresh()}
    finally:
        proc.kill()
        proc.wait(timeout=10)
        log.close()


def test_cli_ask_and_ls(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["ask", TWEET, "--hub", env.url, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["task"] == "tweets-sentiment" and out["calls"][0]["peer_id"] == "tweets-0"
    assert cli_main(["hub", "ls", "--hub", env.url, "--peers"]) == 0
    assert "tweets-0" in capsys.readouterr().out
    assert cli_main(["ask", "", "--hub", env.url]) == 2
    assert "query is empty" in capsys.readouterr().err


def test_unreachable_hub_is_a_clear_error_not_a_hang() -> None:
    config = AskConfig(hub_timeout_s=1.0)
    started = time.monotonic()
    with (
        Network(f"http://127.0.0.1:{free_port()}", config=config) as net,
        pytest.raises(HubError, match="unreachable"),
    ):
        net.ask("hello")
    assert time.monotonic() - started < 5
    short = AskConfig(max_query_chars=10)
    with (
        Network(f"http://127.0.0.1:{free_port()}", config=short) as net,
        pytest.raises(ValueError, match="the maximum is 10"),
    ):
        net.ask("a query that is too long")


def test_tampered_blob_and_bad_signature(env: Env) -> None:
    # damage two adapters no peer has loaded yet, then ask a peer to hot-load them
    m = env.store.resolve("spam-0-shared")  # the same blob as spam-1-shared
    blob = env.store.blob_path(m.files["adapter_model.safetensors"])
    blob.write_bytes(blob.read_bytes()[:-2] + b"!!")
    break_signature(env.store, "tweets-0-shared")
    url = env.peers["news-0"].url
    tampered = httpx.post(
        f"{url}/v1/classify", json={"texts": ["x"], "adapter": "spam-0-shared"}, timeout=10
    )
    assert tampered.status_code == 409
    assert "'adapter_model.safetensors' is tampered" in tampered.json()["error"]
    forged = httpx.post(
        f"{url}/v1/classify", json={"texts": ["x"], "adapter": "tweets-0-shared"}, timeout=10
    )
    assert forged.status_code == 409 and "does not verify" in forged.json()["error"]
    # locally, the damaged adapters are skipped with the reason in the provenance
    config = AskConfig(router=RouterConfig(top_k=8), confidence_threshold=1.0)
    with Network(env.url, local=True, config=config, cache_dir=env.root / "l2") as net:
        answer = net.ask(SPAM)
    errors = {c.adapter: c.error for c in answer.calls if not c.ok}
    assert "is tampered" in str(errors["spam-0-shared"])
    assert "is tampered" in str(errors["spam-1-shared"])
    assert "does not verify" in str(errors["tweets-0-shared"])
    assert len(answer.answered_by) == 5
    with env.client() as hub:
        assert {p.peer_id for p in hub.peers() if p.up} >= set(THREAD_PEERS)
