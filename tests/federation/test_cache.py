"""The client data cache: same data as a fresh load, read without reloading, keyed."""

from __future__ import annotations

import stat

import pytest

from fednet.config import load_preset
from fednet.federation import cache as K
from fednet.federation import client_data as client_module


@pytest.fixture
def cfg():
    return load_preset("configs/deploy-tiny.toml")


@pytest.fixture(autouse=True)
def no_cache_dir():
    yield
    K.use_cache_dir(None)


def test_without_a_cache_dir_data_is_loaded(cfg, tmp_path):
    c = cfg.client("spam-1")
    assert K.cached_client_data(cfg, c) == client_module.load_client_data(cfg, c)
    assert not any(tmp_path.iterdir())


def test_second_read_comes_from_the_file(cfg, tmp_path, monkeypatch):
    c = cfg.client("spam-1")
    K.use_cache_dir(tmp_path)
    first = K.cached_client_data(cfg, c)
    files = list((tmp_path / "spam-1" / "cache").glob("data-*.json"))
    assert len(files) == 1
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600  # private data stays private

    def no_reload(*_a, **_k):
        raise AssertionError("the data set was loaded again")

    monkeypatch.setattr(client_module, "load_client_data", no_reload)
    assert K.cached_client_data(cfg, c) == first
    assert first.train_texts and first.label_names == ("ham", "spam")


def test_the_key_follows_the_split(cfg, tmp_path):
    c = cfg.client("spam-1")
    K.use_cache_dir(tmp_path)
    K.cached_client_data(cfg, c)
    other = cfg.with_overrides(seed=cfg.seed + 1)
    assert K.data_key(other, c) != K.data_key(cfg, c)
    K.cached_client_data(other, c)
    files = list((tmp_path / "spam-1" / "cache").glob("data-*.json"))
    assert [f.name for f in files] == [f"data-{K.data_key(other, c)[:24]}.json"]


def test_a_damaged_file_is_reloaded(cfg, tmp_path):
    c = cfg.client("spam-1")
    K.use_cache_dir(tmp_path)
    want = K.cached_client_data(cfg, c)
    (f,) = (tmp_path / "spam-1" / "cache").glob("data-*.json")
    f.write_text("{not json")
    assert K.cached_client_data(cfg, c) == want


def test_a_simulation_worker_caches_in_the_runs_cache_dir_and_a_node_in_its_state_dir(
    cfg, tmp_path
):
    from flwr.app import Context, RecordDict

    from fednet.federation.apps import _runtime

    def context(node_config):
        return Context(
            run_id=1, node_id=1, node_config=node_config, state=RecordDict(), run_config={}
        )

    rt = _runtime(None, context({"partition-id": 0}), cfg, tmp_path / "sim-cache")
    assert list((tmp_path / "sim-cache" / rt.client.id / "cache").glob("data-*.json"))
    rt = _runtime(
        None, context({"client-id": "spam-1", "state-dir": str(tmp_path / "node")}), cfg, None
    )
    assert list((tmp_path / "node" / "spam-1" / "cache").glob("data-*.json"))
