"""Representation maps over the hub's HTTP service: published, pinned, verified."""

from __future__ import annotations

import pytest
import torch

from fednet.errors import UntrustedKeyError
from fednet.hub import HubClient, encode_public_key, generate_private_key
from fednet.hub.maps import MAP_KIND
from fednet.representation import create_map
from fednet.representation.artifact import fetch_map, publish_map, save_map

from .conftest import WRITE_TOKEN


@pytest.fixture
def map_dir(tmp_path):
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 8, generator=gen), torch.randn(64, 6, generator=gen)
    m = create_map("procrustes", source_dim=8, target_dim=6).fit(x, y)
    path = save_map(
        tmp_path / "map",
        m,
        source_model="tiny-mpnet",
        network_space="tiny-bert",
        corpus="chatterbot",
        corpus_sha256="1" * 64,
    )
    return path, m, x


def test_a_map_travels_over_http_and_loads(client, key, map_dir):
    path, m, x = map_dir
    manifest = publish_map(client, path, owner="client-1", key=key)
    assert manifest.kind == MAP_KIND and manifest.version == 1
    fetched, info, stored = fetch_map(client, manifest.name)
    assert stored.owner == "client-1" and info.corpus == "chatterbot"
    assert torch.allclose(fetched(x[:4]), m(x[:4]))


def test_a_reader_refuses_a_map_of_an_unpinned_owner(client, key, hub_url, map_dir):
    path, _, _ = map_dir
    publish_map(client, path, owner="client-1", key=key)
    stranger = {"client-1": [encode_public_key(generate_private_key())]}
    reader = HubClient(hub_url, token=WRITE_TOKEN, timeout=5.0, trust=stranger)
    with reader, pytest.raises(UntrustedKeyError):
        fetch_map(reader, "map-tiny-mpnet-to-tiny-bert-procrustes")
