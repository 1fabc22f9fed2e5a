"""The adapter engine: one base, hot-swapped adapters, mixed batches, verified loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fednet.errors import IntegrityError, NotFoundError, SignatureError
from fednet.hub import HubStore
from fednet.inference import AdapterEngine, MicroBatcher

from .conftest import break_signature
from .fake_run import frozen_embeddings


def test_hot_swap_sources_and_lru_never_reload_the_base(
    hub_store: HubStore, tmp_path: Path
) -> None:
    engine = AdapterEngine("tiny-bert", source=hub_store, cache_dir=tmp_path, cache_size=2)
    engine.ensure("spam-0-shared")
    assert engine.last_load[0] == "hub"
    engine.ensure("spam-0-shared")
    assert engine.last_load[0] == "memory"
    engine.ensure("news-0-shared")
    engine.ensure("tweets-0-shared")  # evicts spam-0-shared (least recently used)
    assert engine.loaded == ["news-0-shared@v1", "tweets-0-shared@v1"]
    engine.ensure("spam-0-shared")
    assert engine.last_load[0] == "disk"  # files were cached, re-hashed, re-attached
    assert engine.base_loads == 1
    assert engine._model.base_model.model is engine.base  # noqa: SLF001


def test_mixed_batch_matches_one_adapter_at_a_time(hub_store: HubStore) -> None:
    engine = AdapterEngine("tiny-bert", source=hub_store)
    spam, news = engine.ensure("spam-0-personalized"), engine.ensure("news-0-personalized")
    texts_a, texts_b = ["win a prize now", "call me later"], ["the election result"]
    passes = engine.forward_passes
    mixed = engine.classify_groups([(spam, texts_a), (news, texts_b)])
    assert engine.forward_passes == passes + 1
    alone = [engine.classify(texts_a, spam), engine.classify(texts_b, news)]
    for got, want in zip(mixed, alone, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    assert mixed[0].shape == (2, 2) and mixed[1].shape == (1, 5)
    assert torch.allclose(mixed[0].sum(-1), torch.ones(2))
    # the two adapters really differ, and the base is untouched for routing
    assert not torch.allclose(engine.classify(["x y"], spam), engine.classify(["x y"], spam) * 0)
    torch.testing.assert_close(
        engine.embed(["win a prize now"]),
        frozen_embeddings(["win a prize now"]),
        atol=1e-5,
        rtol=1e-4,
    )


def test_micro_batcher_shares_one_forward_pass(hub_store: HubStore) -> None:
    engine = AdapterEngine("tiny-bert", source=hub_store)
    engine.ensure("spam-0-shared")
    engine.ensure("tweets-0-shared")
    batcher = MicroBatcher(engine, window_s=0.3)
    try:
        passes = engine.forward_passes
        futures = [
            batcher.submit(["free cash prize"], "spam-0-shared"),
            batcher.submit(["@united late again", "great crew"], "tweets-0-shared"),
            batcher.submit(["hi"], "spam-0-shared"),
        ]
        results = [f.result(timeout=30) for f in futures]
        assert engine.forward_passes == passes + 1
        assert [r.batch_requests for r in results] == [3, 3, 3]
        assert results[1].probabilities.shape == (2, 3)
        failed = batcher.submit(["x"], "no-such-adapter")
        with pytest.raises(NotFoundError, match="no-such-adapter"):
            failed.result(timeout=30)
    finally:
        batcher.close()


def test_verification_failures_are_named(hub_store: HubStore) -> None:
    engine = AdapterEngine("tiny-bert", source=hub_store)
    manifest = hub_store.resolve("spam-1-shared")
    blob = hub_store.blob_path(manifest.files["head.safetensors"])
    blob.write_bytes(blob.read_bytes()[:-1] + b"!")
    with pytest.raises(IntegrityError, match="'head.safetensors' is tampered"):
        engine.ensure("spam-1-shared")
    break_signature(hub_store, "news-0-shared")
    with pytest.raises(SignatureError, match="does not verify"):
        engine.ensure("news-0-shared")
    with pytest.raises(NotFoundError, match="'ghost' not found"):
        engine.ensure("ghost")
    assert engine.loaded == []


def test_wrong_base_and_bad_arguments(hub_store: HubStore) -> None:
    with pytest.raises(ValueError, match="`cache_size` must be an int >= 1"):
        AdapterEngine("tiny-bert", cache_size=0)
    with pytest.raises(ValueError, match="unknown base model 'gpt'"):
        AdapterEngine("gpt")
    engine = AdapterEngine("tiny-bert", source=hub_store)
    engine.base_model = "minilm-l6"  # pretend this engine runs another base
    with pytest.raises(ValueError, match="is for base model 'tiny-bert'"):
        engine.ensure("spam-0-shared")
    with pytest.raises(NotFoundError, match="no hub"):
        AdapterEngine("tiny-bert").ensure("spam-0-shared")


def _broken_copy(hub_store: HubStore, name: str, dest: Path, how: str):  # type: ignore[no-untyped-def]
    """``name``'s files in ``dest`` with one flaw; returns its manifest."""
    manifest = hub_store.fetch(name, "latest", dest)
    weights = dest / "adapter_model.safetensors"
    if how == "truncated":  # the header is whole, the tensor data cut short: peft fails mid-load
        weights.write_bytes(weights.read_bytes()[:-64])
    else:  # "rank": the config claims r=8 over tensors of rank 4
        config = json.loads((dest / "adapter_config.json").read_text())
        config["r"] = 8
        (dest / "adapter_config.json").write_text(json.dumps(config))
    # the owner itself signed the flawed files: hashes and signature hold, the adapter does not
    from dataclasses import replace

    from fednet.hub import load_private_key, sha256_hex
    from fednet.hub.keys import sign_manifest

    files = {n: sha256_hex((dest / n).read_bytes()) for n in manifest.files}
    key = load_private_key(dest.parent / "keys" / f"{manifest.owner}.key")
    return sign_manifest(replace(manifest, files=files), key)


def _lora_modules(model: torch.nn.Module) -> list[str]:
    return [n for n, _ in model.named_modules() if n.endswith(("lora_A", "lora_B"))]


@pytest.mark.parametrize("how", ["truncated", "rank"])
def test_a_failed_load_leaves_no_half_loaded_adapter(
    hub_store: HubStore, tmp_path: Path, how: str
) -> None:
    texts = ["win a prize now", "see you at home"]
    engine = AdapterEngine("tiny-bert", source=hub_store)
    bad = _broken_copy(hub_store, "spam-1-shared", tmp_path / "bad", how)
    # the first load fails: the base keeps no LoRA layer
    with pytest.raises(ValueError, match="spam-1-shared@v1"):
        engine.load_dir(tmp_path / "bad", bad)
    assert _lora_modules(engine.base) == [] and engine.loaded == []
    good = engine.ensure("spam-0-shared")
    before = engine.classify(texts, good)
    layers = sorted(_lora_modules(engine._model))  # noqa: SLF001
    for _ in range(3):  # every later failure is removed again too
        with pytest.raises(ValueError, match="spam-1-shared@v1"):
            engine.load_dir(tmp_path / "bad", bad)
    assert list(engine._model.peft_config) == [good.key]  # noqa: SLF001
    assert sorted(_lora_modules(engine._model)) == layers  # noqa: SLF001
    assert engine.loaded == ["spam-0-shared@v1"]
    torch.testing.assert_close(engine.classify(texts, good), before)
    fresh = AdapterEngine("tiny-bert", source=hub_store)
    torch.testing.assert_close(fresh.classify(texts, fresh.ensure("spam-0-shared")), before)
