"""Attacks through the peers: rogue answers, untrusted adapters, unauthorized callers.

A real hub service and a real peer (tiny-bert adapters of a small published run)
run on loopback; the rogue peer is a real HTTP server registered at the hub by
its own owner, answering whatever it likes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from fednet.errors import UntrustedKeyError
from fednet.hub import HubClient, HubStore, create_app, encode_public_key, generate_private_key
from fednet.hub.publish import client_key, keys_dir_trust, publish_run
from fednet.hub.trust import TrustStore, fingerprint
from fednet.inference import AdapterEngine, AskConfig, Network, PeerServer
from fednet.routing import PriorRouter, RouterConfig

from ..loopback import serving

pytestmark = pytest.mark.integration

SPAM = "WINNER!! claim your free prize now, text WIN to 80086"


@dataclass
class Net:
    store: HubStore
    url: str
    keys: Path
    trust: TrustStore
    heartbeat: str
    honest: PeerServer


@pytest.fixture(scope="module")
def net(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    root = tmp_path_factory.mktemp("peer-attacks")
    store = HubStore(root / "hub")
    publish_run(run_dir, store, vet=None, keys_dir=root / "keys")
    trust = keys_dir_trust(root / "keys")
    beat = store.tokens.create("heartbeat")
    with serving(create_app(store)) as url:
        hub = HubClient(url, token=beat, trust=trust)
        honest = PeerServer(
            hub,
            peer_id="spam-1",
            adapters=["spam-1-personalized"],
            key=client_key(root / "keys", "spam-1"),
            token="peer-secret",
        )
        honest.start()
        try:
            yield Net(store, url, root / "keys", trust, beat, honest)
        finally:
            honest.stop()
            hub.close()
            store.close()


def _rogue(answer: dict[str, Any]) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/classify")
    def classify(_: dict[str, Any]) -> dict[str, Any]:
        return answer

    return app


def _network(net: Net) -> Network:
    config = AskConfig(router=RouterConfig(name="prior", top_k=2), confidence_threshold=1.0)
    return Network(
        net.url,
        config=config,
        trust=net.trust,
        router=PriorRouter(config.router),
        peer_token="peer-secret",
    )


NEWS = ["business", "entertainment", "politics", "sport", "tech"]


@pytest.mark.parametrize(
    ("claim", "why"),
    [
        # answers for an adapter it does not serve
        ({"adapter": "news-0-shared", "task": "bbc-news", "label_names": NEWS}, "adapter"),
        # answers as the adapter it registered, but with another task's labels
        ({"adapter": "spam-0-shared", "task": "bbc-news", "label_names": NEWS}, "task"),
        ({"adapter": "spam-0-shared", "task": "sms-spam", "label_names": NEWS}, "labels"),
    ],
)
def test_rogue_peer_reply_is_dropped_and_shown_in_provenance(
    net: Net, claim: dict[str, Any], why: str
) -> None:
    n = len(claim["label_names"])
    answer = {
        "peer_id": "rogue",
        "version": 1,
        "labels": [claim["label_names"][0]],
        "confidences": [1.0],
        "probabilities": [[1.0] + [0.0] * (n - 1)],
        **claim,
    }
    with serving(_rogue(answer)) as rogue_url:
        # mallory's own key cannot register a peer for spam-0's adapter at all ...
        with (
            HubClient(net.url, token=net.heartbeat, trust=net.trust) as hub,
            pytest.raises(UntrustedKeyError, match="serves only its owner's adapters"),
        ):
            hub.register_peer(
                f"rogue-{why}",
                rogue_url,
                "tiny-bert",
                ["spam-0-shared"],
                owner="mallory",
                key=generate_private_key(),
            )
        # ... so the rogue is a peer of the right owner gone wrong (a stolen key, a bug):
        # its replies are still checked against the signed manifest
        with HubClient(net.url, token=net.heartbeat, trust=net.trust) as hub:
            hub.register_peer(
                f"rogue-{why}",
                rogue_url,
                "tiny-bert",
                ["spam-0-shared"],
                owner="spam-0",
                key=client_key(net.keys, "spam-0"),
            )
        with _network(net) as network:
            candidates = network.refresh()
            rogue = next(c for c in candidates if c.peer_id == f"rogue-{why}")
            honest = next(c for c in candidates if c.peer_id == "spam-1")
            result = network.ask(SPAM, mode="ensemble", candidates=[rogue, honest])
    calls = {c.peer_id: c for c in result.calls}
    assert not calls[f"rogue-{why}"].ok and calls["spam-1"].ok
    error = str(calls[f"rogue-{why}"].error)
    assert "does not match the signed manifest spam-0-shared@v1" in error and why in error
    assert result.answered_by == ["spam-1/spam-1-personalized"]
    assert result.task == "sms-spam" and result.label in ("ham", "spam")
    shown = {c["peer_id"]: c for c in result.to_dict()["calls"]}
    assert "does not match" in shown[f"rogue-{why}"]["error"]


def test_peer_serves_only_registered_adapters_and_can_require_a_token(net: Net) -> None:
    url = net.honest.url
    body = {"texts": [SPAM], "adapter": "spam-1-personalized"}
    assert httpx.post(f"{url}/v1/classify", json=body).status_code == 401
    wrong = httpx.post(f"{url}/v1/classify", json=body, headers={"Authorization": "Bearer x"})
    assert wrong.status_code == 401
    auth = {"Authorization": "Bearer peer-secret"}
    assert httpx.post(f"{url}/v1/classify", json=body, headers=auth).status_code == 200
    other = httpx.post(
        f"{url}/v1/classify", json={"texts": [SPAM], "adapter": "news-0-shared"}, headers=auth
    )
    assert other.status_code == 404 and "does not serve adapter 'news-0-shared'" in other.text
    assert "news-0-shared@v1" not in net.honest.engine.loaded  # type: ignore[union-attr]
    peers = {p.peer_id: p for p in net.store.peers()}
    assert peers["spam-1"].owner == "spam-1"
    assert peers["spam-1"].public_key == encode_public_key(client_key(net.keys, "spam-1"))


def test_peer_engine_and_network_fail_closed_on_untrusted_keys(net: Net, tmp_path: Path) -> None:
    nobody = TrustStore(tmp_path / "empty.json")
    engine = AdapterEngine("tiny-bert", source=net.store, trust=nobody, resolve_ttl_s=0.0)
    with pytest.raises(UntrustedKeyError, match="owner 'spam-0'") as refused:
        engine.ensure("spam-0-shared")
    key = net.trust.keys("spam-0")[0]
    assert fingerprint(key) in str(refused.value)
    assert engine.loaded == []
    with (
        Network(net.url, trust=nobody) as network,
        pytest.raises(UntrustedKeyError, match="no adapter on the hub is signed by a trusted key"),
    ):
        network.ask(SPAM)
    # a partly trusted hub: only the pinned owner's adapters are candidates
    some = TrustStore(None, keys={"spam-1": net.trust.keys("spam-1")})
    with Network(net.url, trust=some, local=True) as network:
        assert {c.owner for c in network.refresh()} == {"spam-1"}
        assert "owner 'news-0'" in network.untrusted["news-0-shared"]


def test_peer_engine_refuses_a_resigned_manifest_even_with_matching_cached_files(
    net: Net, tmp_path: Path
) -> None:
    """The hub keeps the files but re-signs the manifest (say, to change its labels)."""
    from dataclasses import replace

    from fednet.hub.keys import sign_manifest

    engine = AdapterEngine(
        "tiny-bert", source=net.store, trust=net.trust, cache_dir=tmp_path, resolve_ttl_s=0.0
    )
    engine.ensure("tweets-0-shared")
    engine.unload("tweets-0-shared")
    genuine = net.store.resolve("tweets-0-shared")
    hub_key = generate_private_key()
    resigned = sign_manifest(replace(genuine, label_names=("good", "bad", "ugly")), hub_key)

    class LyingHub:
        trust = None

        def resolve(self, name: str, version: Any = "latest") -> Any:
            return resigned.with_version(genuine.version)

        def fetch(self, name: str, version: Any, dest: Any) -> Any:
            raise AssertionError("the disk cache matches; nothing is fetched")

    engine.source = LyingHub()
    with pytest.raises(UntrustedKeyError, match="owner 'tweets-0'"):
        engine.ensure("tweets-0-shared")
    assert engine.loaded == []


def _rewrite_peer(net: Net, peer_id: str, **values: Any) -> None:
    """What a hostile hub operator can do: change a peer's row in its own database."""
    from sqlalchemy import update

    from fednet.hub.db import peers_table

    with net.store._engine.begin() as conn:
        conn.execute(update(peers_table).where(peers_table.c.peer_id == peer_id).values(**values))


def test_a_hub_cannot_send_queries_to_an_endpoint_the_owner_never_signed(net: Net) -> None:
    """The attack: the hub rewrites spam-1's peer record to point at a server of its
    own, which reads every query the router sends there."""
    seen: list[dict[str, Any]] = []
    app = FastAPI()

    @app.post("/v1/classify")
    def classify(body: dict[str, Any]) -> dict[str, Any]:
        seen.append(body)
        return {}

    honest_url = {p.peer_id: p.endpoint for p in net.store.peers()}["spam-1"]
    with serving(app) as rogue_url:
        _rewrite_peer(net, "spam-1", endpoint=rogue_url)
        try:
            assert {p.peer_id: p.endpoint for p in net.store.peers()}["spam-1"] == rogue_url
            with _network(net) as network:
                candidates = network.refresh()
                assert all(c.endpoint != rogue_url for c in candidates)
                assert "spam-1" not in {c.peer_id for c in candidates}
        finally:
            _rewrite_peer(net, "spam-1", endpoint=honest_url)
    assert seen == []
    with _network(net) as network:  # the honest record is a candidate again
        assert any(c.peer_id == "spam-1" for c in network.refresh())
