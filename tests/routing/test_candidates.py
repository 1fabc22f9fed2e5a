"""Candidates from a real hub: manifests, sketches and live peers."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import save

from fednet.hub import HubStore, encode_public_key
from fednet.hub.db import peers_table
from fednet.hub.publish import publish_run
from fednet.hub.trust import TrustStore
from fednet.privacy import Sketch
from fednet.routing import LOCAL_PEER, Candidate, candidates_from_hub, sketch_from_bytes
from tests.inference.fake_run import write_run


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> HubStore:
    root = tmp_path_factory.mktemp("cands")
    run = write_run(root / "run", {"spam-0": ("sms-spam", 0.9), "news-0": ("bbc-news", 0.7)})
    store = HubStore(root / "hub", peer_timeout=5.0)
    publish_run(run, store, vet=None, keys_dir=root / "keys")
    return store


def test_local_candidates_carry_manifest_and_sketch(hub: HubStore) -> None:
    cands = candidates_from_hub(hub, local=True)
    assert [c.adapter for c in cands] == [
        "news-0-personalized",
        "news-0-shared",
        "spam-0-personalized",
        "spam-0-shared",
    ]
    spam = cands[2]
    assert (spam.peer_id, spam.endpoint, spam.task, spam.kind) == (
        LOCAL_PEER,
        None,
        "sms-spam",
        "personalized",
    )
    assert spam.label_names == ("ham", "spam")
    assert spam.accuracy == pytest.approx(0.9)
    assert spam.sketch is not None and spam.sketch.label_names == ("ham", "spam")
    assert spam.sketch.centroids.shape == (2, 32)
    assert candidates_from_hub(hub, local=True, base_models=["minilm-l6"]) == []
    assert all(c.sketch is None for c in candidates_from_hub(hub, local=True, with_sketches=False))


def test_peer_candidates_only_for_live_peers(hub: HubStore) -> None:
    from fednet.hub import generate_private_key, load_private_key

    keys = hub.root.parent / "keys"
    spam = {"owner": "spam-0", "key": load_private_key(keys / "spam-0.key")}
    news = {"owner": "news-0", "key": load_private_key(keys / "news-0.key")}
    hub.register_peer("p1", "http://127.0.0.1:9001", "tiny-bert", ["spam-0-shared"], **spam)
    hub.register_peer("p2", "http://127.0.0.1:9002", "minilm-l6", ["news-0-shared"], **news)
    # a peer that claims another owner's adapter (as the hub reports it) is no candidate
    with hub._engine.begin() as conn:  # noqa: SLF001 - the test plays a hub that lies
        conn.execute(
            peers_table.update()
            .where(peers_table.c.peer_id == "p2")
            .values(adapters='["news-0-shared", "spam-0-shared"]', base_model="tiny-bert")
        )
    mallory = generate_private_key()
    assert [c.key for c in candidates_from_hub(hub, with_sketches=False)] == [
        "p1/spam-0-shared",
        "p2/news-0-shared",
    ]
    with hub._engine.begin() as conn:  # noqa: SLF001
        conn.execute(
            peers_table.update()
            .where(peers_table.c.peer_id == "p2")
            .values(adapters='["news-0-shared"]', base_model="minilm-l6")
        )
    pinned = TrustStore(None, keys={"spam-0": [encode_public_key(mallory)]})
    assert candidates_from_hub(hub, with_sketches=False, trust=pinned) == []
    cands = candidates_from_hub(hub, costs={"p1": 3.0}, latencies={"p1/spam-0-shared": 0.2})
    # unknown adapters and adapters of another base model are not candidates
    assert [(c.key, c.endpoint, c.cost, c.latency_s) for c in cands] == [
        ("p1/spam-0-shared", "http://127.0.0.1:9001", 3.0, 0.2)
    ]
    assert all(p.up for p in hub.peers())
    assert candidates_from_hub(hub, manifests=[]) == []


def test_sketch_from_bytes_layouts() -> None:
    sketch = Sketch(
        centroids=torch.eye(2),
        counts=torch.tensor([3.0, 4.0]),
        label_names=("a", "b"),
        clip=1.0,
        noise_multiplier=1.5,
        epsilon=2.0,
        delta=1e-5,
    )
    back = sketch_from_bytes(save(sketch.to_tensors()))
    assert back.label_names == ("a", "b") and back.epsilon == 2.0
    bare = sketch_from_bytes(
        save({"centroids": torch.ones(3, 4), "counts": torch.ones(3)}), label_names=("x",)
    )
    assert bare.label_names == ("x", "1", "2") and math.isinf(bare.epsilon)
    with pytest.raises(ValueError, match="not a safetensors file"):
        sketch_from_bytes(b"garbage")
    with pytest.raises(ValueError, match="expected .*'centroids' and 'counts'"):
        sketch_from_bytes(save({"weights": torch.ones(2)}))


def test_candidate_checks_its_fields() -> None:
    ok = dict(adapter="a", version=1, base_model="b", task="t", label_names=("x",), owner="o")
    with pytest.raises(ValueError, match="candidate `task` must be a non-empty string"):
        Candidate(**{**ok, "task": ""})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must have label names"):
        Candidate(**{**ok, "label_names": ()})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`cost` must be finite and >= 0"):
        Candidate(**ok, cost=-1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`latency_s` must be >= 0"):
        Candidate(**ok, latency_s=float("nan"))  # type: ignore[arg-type]
    assert Candidate(**ok).key == "local/a"  # type: ignore[arg-type]


def test_tampered_sketch_is_ignored_not_fatal(hub: HubStore, tmp_path: Path) -> None:
    manifest = hub.resolve("news-0-shared")
    assert manifest.sketch is not None
    blob = hub.blob_path(manifest.files[manifest.sketch])
    original = blob.read_bytes()
    try:
        blob.write_bytes(original[:-3] + b"xyz")
        cands = {c.adapter: c for c in candidates_from_hub(hub, local=True)}
        assert cands["news-0-shared"].sketch is None  # logged and dropped
    finally:
        blob.write_bytes(original)


def test_candidates_carry_the_signed_contribution_score(tmp_path: Path) -> None:
    import json

    run = write_run(tmp_path / "run", {"spam-0": ("sms-spam", 0.9), "spam-1": ("sms-spam", 0.8)})
    rows = [
        {"round": 1, "client": "spam-0", "contribution": 0.7, "method": "gradient-projection"},
        {"round": 1, "client": "spam-1", "contribution": 0.3, "method": "gradient-projection"},
    ]
    (run / "contributions.json").write_text(
        json.dumps({"method": "gradient-projection", "rows": rows})
    )
    with HubStore(tmp_path / "hub") as store:
        publish_run(run, store, vet=None, keys_dir=tmp_path / "keys")
        got = {c.adapter: c.contribution for c in candidates_from_hub(store, local=True)}
    assert got == pytest.approx(
        {
            "spam-0-personalized": 0.7,
            "spam-0-shared": 0.7,
            "spam-1-personalized": 0.3,
            "spam-1-shared": 0.3,
        }
    )
