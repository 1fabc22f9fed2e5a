"""Adapters made outside fednet: plain peft adapters that do not fit the base model they name."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fednet.cli import main
from fednet.hub import HubStore, generate_private_key, save_private_key
from fednet.hub.keys import Ed25519PrivateKey, load_private_key
from fednet.hub.trust import TrustStore, public_key_of
from fednet.models import create_base_model

from .conftest import READ_TOKEN, WRITE_TOKEN
from .foreign import peft_adapter, signed_upload, small_bert, smuggle


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return peft_adapter(tmp_path_factory.mktemp("good") / "a", create_base_model("tiny-bert"), 32)


@pytest.fixture(scope="module")
def other_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An adapter of another, smaller BERT (hidden size 16)."""
    return peft_adapter(tmp_path_factory.mktemp("small") / "a", small_bert(), 16)


@pytest.fixture(scope="module")
def lying_rank(good: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny-bert adapter (tensors of rank 4) with ``r`` edited to 8 in its config."""
    out = tmp_path_factory.mktemp("lying") / "a"
    shutil.copytree(good, out)
    config = json.loads((out / "adapter_config.json").read_text())
    config["r"] = 8
    (out / "adapter_config.json").write_text(json.dumps(config))
    return out


def _push(hub: str, path: Path, key: Path, *extra: str) -> int:
    argv = ["hub", "push", str(path), "--hub", hub, "--name", "mine", "--owner", "me"]
    return main([*argv, "--key", str(key), "--task", "t", *extra])


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "me.key"
    save_private_key(generate_private_key(), path)
    return path


def test_push_refuses_an_adapter_of_another_base_model(
    other_base: Path, key_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hub = str(tmp_path / "hub")
    assert _push(hub, other_base, key_file, "--base-model", "tiny-bert") == 2
    err = capsys.readouterr().err
    assert "does not fit base model 'tiny-bert'" in err
    assert (
        "tensor base_model.model.encoder.layer.0.attention.self.query.lora_A.weight has shape "
        "[4, 16]; encoder.layer.0.attention.self.query of tiny-bert (32 -> 32) at r=4 needs [4, 32]"
    ) in err
    assert "Traceback" not in err
    with HubStore(hub) as store:
        assert store.list() == []


def test_push_refuses_a_config_rank_that_disagrees_with_the_tensors(
    lying_rank: Path, key_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hub = str(tmp_path / "hub")
    assert _push(hub, lying_rank, key_file, "--base-model", "tiny-bert") == 2
    err = capsys.readouterr().err
    assert (
        "tensor base_model.model.encoder.layer.0.attention.self.query.lora_A.weight has rank 4 "
        "(shape [4, 32]) but adapter_config.json has r=8"
    ) in err
    assert _push(hub, lying_rank, key_file, "--base-model", "gpt-9") == 2
    from fednet.models import available_base_models

    known = ", ".join(available_base_models())
    assert "tiny-bert" in known
    assert f"base model 'gpt-9' is not registered; known: {known}" in capsys.readouterr().err


def test_push_accepts_a_plain_peft_adapter_that_fits(
    good: Path, key_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hub = str(tmp_path / "hub")
    assert _push(hub, good, key_file, "--base-model", "tiny-bert") == 0
    assert "published mine@v1" in capsys.readouterr().out
    assert main(["hub", "verify", "--hub", hub]) == 1  # readers trust pinned keys only
    assert "not in the trust store" in capsys.readouterr().out
    TrustStore().add("me", public_key_of(load_private_key(key_file)))
    assert main(["hub", "verify", "--hub", hub]) == 0


@pytest.mark.parametrize("served", [False, True], ids=["local", "http"])
def test_verify_names_adapters_that_do_not_fit(
    other_base: Path,
    lying_rank: Path,
    good: Path,
    tmp_path: Path,
    serve_store,  # type: ignore[no-untyped-def]
    capsys: pytest.CaptureFixture[str],
    served: bool,
) -> None:
    key = generate_private_key()
    with HubStore(tmp_path / "hub") as store:
        smuggle(store, other_base, "small", key)
        smuggle(store, lying_rank, "lying", key)
        smuggle(store, good, "fine", key)
        for m in store.list():  # the reader pinned the owner's key: only the fit is at issue
            TrustStore().add(m.owner, public_key_of(key))
        problems = store.verify()
        assert len(problems) == 2, problems
        assert any(
            p.startswith("adapter small@v1 does not fit base model 'tiny-bert'") for p in problems
        )
        assert any("lying@v1" in p and "has rank 4" in p and "r=8" in p for p in problems)
        if served:
            with serve_store(store, read_token=READ_TOKEN) as url:
                rc = main(["hub", "verify", "--hub", url, "--token", WRITE_TOKEN])
        else:
            rc = main(["hub", "verify", "--hub", str(tmp_path / "hub")])
    out = capsys.readouterr().out
    assert rc == 1
    assert "small" in out and "[4, 16]" in out and "has rank 4" in out
    assert '"checked": 3, "problems": 2' in out


def test_store_refuses_a_signed_upload_that_does_not_fit(
    store: HubStore, other_base: Path, key: Ed25519PrivateKey
) -> None:
    signed, files = signed_upload(other_base, "small", key)
    with pytest.raises(ValueError, match=r"small@v0 does not fit base model 'tiny-bert'"):
        store.publish_signed(signed, files)
    assert store.list() == []
