"""Maps as hub artifacts: PEFT-style directory, signed, versioned, verified on read."""

from __future__ import annotations

import json

import pytest
import torch

from fednet.errors import IntegrityError, SignatureError
from fednet.hub import HubStore, Manifest, generate_private_key
from fednet.hub.maps import MAP_KIND
from fednet.representation import create_map, fit_quality
from fednet.representation.artifact import fetch_map, load_map, map_name, publish_map, save_map


@pytest.fixture
def map_dir(tmp_path, pairs):
    x, y, xt, yt = pairs
    m = create_map("ridge", source_dim=24, target_dim=16).fit(x, y)
    return save_map(
        tmp_path / "map",
        m,
        source_model="tiny-mpnet",
        network_space="tiny-bert",
        corpus="20newsgroups",
        corpus_sha256="0" * 64,
        quality=fit_quality(m, xt, yt, pool=1000),
    ), m


def test_directory_round_trip(map_dir, pairs):
    path, m = map_dir
    assert sorted(p.name for p in path.iterdir()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    again, info = load_map(path)
    assert torch.allclose(again(pairs[2][:3]), m(pairs[2][:3]))
    assert (info.method, info.source_model, info.network_space) == (
        "ridge",
        "tiny-mpnet",
        "tiny-bert",
    )
    assert info.quality["recall_at_1"] == pytest.approx(
        fit_quality(m, pairs[2], pairs[3]).recall_at_1
    )


def test_publish_fetch_versions_and_owner(tmp_path, map_dir, pairs):
    path, m = map_dir
    key = generate_private_key()
    with HubStore(tmp_path / "hub") as hub:
        first = publish_map(hub, path, owner="maps-org", key=key)
        second = publish_map(hub, path, owner="maps-org", key=key)
        assert first.name == map_name("tiny-mpnet", "tiny-bert", "ridge") == second.name
        assert (first.version, second.version, first.kind) == (1, 2, MAP_KIND)
        assert first.owner == "maps-org" and first.is_signed
        assert set(first.metrics) == {"paired_cosine", "recall_at_1"}
        fetched, info, manifest = fetch_map(hub, first.name, 1)
        assert manifest.owner == "maps-org" and manifest.version == 1
        assert torch.allclose(fetched(pairs[2][:3]), m(pairs[2][:3]))
        assert hub.verify() == []


def test_tampered_map_blob_is_refused(tmp_path, map_dir):
    path, _ = map_dir
    with HubStore(tmp_path / "hub") as hub:
        manifest = publish_map(hub, path, owner="maps-org", key=generate_private_key())
        blob = hub.blob_path(manifest.files["adapter_model.safetensors"])
        data = bytearray(blob.read_bytes())
        data[-1] ^= 0xFF
        blob.chmod(0o644)
        blob.write_bytes(bytes(data))
        with pytest.raises(IntegrityError, match="tampered"):
            fetch_map(hub, manifest.name)


def test_forged_manifest_is_refused(tmp_path, map_dir):
    import dataclasses

    from fednet.hub.bundle import prepare_publish, read_adapter_dir

    path, _ = map_dir
    key = generate_private_key()
    draft = Manifest(
        name="map-x", base_model="tiny-mpnet", rank=16, task="tiny-bert", owner="o", kind=MAP_KIND
    )
    signed, files = prepare_publish(path, draft, key)
    forged = dataclasses.replace(signed, metrics={"recall_at_1": 1.0})
    with HubStore(tmp_path / "hub") as hub, pytest.raises(SignatureError):
        hub.publish_signed(forged, read_adapter_dir(path))
    assert files


def test_map_and_adapter_kinds_do_not_mix(tmp_path, map_dir, adapter_dir_tiny):
    path, _ = map_dir
    key = generate_private_key()
    with HubStore(tmp_path / "hub") as hub:
        as_adapter = Manifest(name="m", base_model="tiny-mpnet", rank=16, task="t", owner="o")
        with pytest.raises(ValueError, match="peft_type 'FEDNET_MAP'; only LORA is served"):
            hub.publish(path, as_adapter, key)
        lora_as_map = Manifest(
            name="l", base_model="tiny-bert", rank=4, task="t", owner="o", kind=MAP_KIND
        )
        with pytest.raises(ValueError, match="lacks map keys"):
            hub.publish(adapter_dir_tiny, lora_as_map, key)
        wrong_source = Manifest(
            name="w", base_model="tiny-bert", rank=16, task="t", owner="o", kind=MAP_KIND
        )
        with pytest.raises(ValueError, match="source_model is 'tiny-mpnet'"):
            hub.publish(path, wrong_source, key)
        assert hub.names() == []


def test_inconsistent_map_directory_is_named(map_dir):
    path, _ = map_dir
    config = json.loads((path / "adapter_config.json").read_text())
    config["tensors"]["map.weight"] = [3, 3]
    (path / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"tensor 'map.weight' has shape \[24, 16\], declared"):
        load_map(path)
