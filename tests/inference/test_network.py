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
from fednet.hub.publish import client_key, keys_dir_trust, publish_run
from fednet.hub.trust import TrustStore
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
        # the readers pinned every publisher's key (in memory, and in a file for the CLI)
        self.trust = keys_dir_trust(root / "keys")
        self.trust_file = root / "trust.json"

    def client(self) -> HubClient:
        return HubClient(self.url, token=TOKEN, timeout=5.0, trust=self.trust)

    def network(self, **kwargs: Any) -> Network:
        return Network(self.url, trust=self.trust, **kwargs)


@pytest.fixture(scope="module")
def env(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("network")
    store = HubStore(root / "hub", peer_timeout=1.5)
    with serving(create_app(store, write_token=TOKEN)) as url:
        with HubClient(url, token=TOKEN, trust={}) as publisher:
            publish_run(run_dir, publisher, vet=None, keys_dir=root / "keys")
        trust = keys_dir_trust(root / "keys")
        file = TrustStore(root / "trust.json")
        for owner, keys in trust.as_mapping().items():
            file.add(owner, keys[0])
        peers: dict[str, PeerServer] = {}
        try:
            for cid in THREAD_PEERS:
                hub = HubClient(url, token=TOKEN, timeout=5.0, trust=trust)
                peers[cid] = PeerServer(
                    hub,
                    peer_id=cid,
                    adapters=owned_adapters(hub, cid),
                    config=PeerConfig(heartbeat_s=0.3),
                    cache_dir=root / "cache" / cid,
                    key=client_key(root / "keys", cid),
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
    with env.network() as net:
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
    with env.network(local=True, cache_dir=env.root / "local") as local:
        mine = local.ask(SPAM, k=1)
        assert mine.calls[0].peer_id == "local"
        assert mine.calls[0].adapter == "spam-0-personalized"  # not served: no peer bias
        served = [c for c in local.refresh() if c.adapter == "spam-1-personalized"]
        same = local.ask(SPAM, k=1, candidates=served)
        remote = httpx.post(
            f"{env.peers['spam-1'].url}/v1/classify",
            json={"texts": [SPAM], "adapter": "spam-1-personalized"},
        ).json()
        assert remote["labels"] == [same.label]
        assert remote["confidences"][0] == pytest.approx(same.confidence, abs=1e-5)
    # a peer answers only for the adapters it registered
    refused = httpx.post(
        f"{env.peers['news-0'].url}/v1/classify",
        json={"texts": [SPAM], "adapter": "spam-0-personalized"},
    )
    assert refused.status_code == 404 and "does not serve" in refused.json()["error"]


def test_learned_router_takes_feedback(env: Env) -> None:
    config = AskConfig(router=RouterConfig(name="learned"))
    with env.network(config=config) as net:
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
        ({"texts": ["x"], "adapter": "ghost"}, 404, "does not serve adapter 'ghost'"),
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
        "--key",
        str(env.root / "keys" / "spam-0.key"),
        "--trust-file",
        str(env.trust_file),
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
        with env.network(config=config) as net:
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
    assert cli_main(["ask", TWEET, "--hub", env.url, "--json"]) == 2  # nothing pinned: refused
    assert "no adapter on the hub is signed by a trusted key" in capsys.readouterr().err
    trusted = ["--trust-file", str(env.trust_file)]
    assert cli_main(["ask", TWEET, "--hub", env.url, "--json", *trusted]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["task"] == "tweets-sentiment" and out["calls"][0]["peer_id"] == "tweets-0"
    assert cli_main(["hub", "ls", "--hub", env.url, "--peers", *trusted]) == 0
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
    # a peer never hot-loads an adapter it did not register, damaged or not
    url = env.peers["news-0"].url
    for name in ("spam-0-shared", "tweets-0-shared"):
        refused = httpx.post(
            f"{url}/v1/classify", json={"texts": ["x"], "adapter": name}, timeout=10
        )
        assert refused.status_code == 404 and "does not serve" in refused.json()["error"]
    # locally, the damaged adapters are skipped with the reason in the provenance
    config = AskConfig(router=RouterConfig(top_k=8), confidence_threshold=1.0)
    with env.network(local=True, config=config, cache_dir=env.root / "l2") as net:
        answer = net.ask(SPAM)
        # a manifest whose signature does not verify is never routed to
        assert "does not verify" in net.untrusted["tweets-0-shared"]
    errors = {c.adapter: c.error for c in answer.calls if not c.ok}
    assert "is tampered" in str(errors["spam-0-shared"])
    assert "is tampered" in str(errors["spam-1-shared"])
    assert "tweets-0-shared" not in {c.adapter for c in answer.calls}
    assert len(answer.answered_by) == 5
    with env.client() as hub:
        assert {p.peer_id for p in hub.peers() if p.up} >= set(THREAD_PEERS)
