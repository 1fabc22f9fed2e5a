"""Publishing a run: every client's shared and personalised adapter, signed by the client."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from peft import PeftModel

from fednet.errors import UntrustedKeyError
from fednet.hub import HubClient, HubStore, encode_public_key, load_private_key
from fednet.hub.publish import adapter_name, client_key, find_sketch, publish_run
from fednet.models import create_base_model
from tests.inference.fake_run import write_run

from .conftest import WRITE_TOKEN

CLIENTS = {"spam-0": ("sms-spam", 0.9), "news-0": ("bbc-news", 0.7)}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_run(tmp_path_factory.mktemp("run") / "run", CLIENTS)


def test_publish_run_to_a_store(run_dir: Path, tmp_path: Path) -> None:
    with HubStore(tmp_path / "hub") as hub:
        stored = publish_run(run_dir, hub, vet=None, keys_dir=tmp_path / "keys")
        assert [m.ref for m in stored] == [
            "news-0-shared@v1",
            "news-0-personalized@v1",
            "spam-0-shared@v1",
            "spam-0-personalized@v1",
        ]
        shared, personal = stored[2], stored[3]
        assert (shared.kind, shared.owner, shared.task, shared.round, shared.rank) == (
            "shared",
            "spam-0",
            "sms-spam",
            2,
            4,
        )
        assert shared.label_names == ("ham", "spam")
        # a sketch-only run: the weights are not private, only the sketch has an epsilon
        assert (shared.epsilon, shared.update_epsilon) == (None, None)
        assert (shared.sketch_epsilon, shared.delta, shared.accountant) == (1.0, 1e-5, "rdp")
        assert shared.metrics == {"accuracy": 0.9, "loss": 0.5, "num_examples": 4.0}
        assert personal.kind == "personalized" and personal.rank == 2  # its own rank
        assert "loss" not in personal.metrics
        assert shared.sketch == personal.sketch == "sketch.safetensors"
        assert set(shared.files) == {
            "adapter_config.json",
            "adapter_model.safetensors",
            "head.safetensors",
            "sketch.safetensors",
        }
        # signed by the client's own key, which is kept 0600 in keys_dir
        key_file = tmp_path / "keys" / "spam-0.key"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert shared.owner_public_key == encode_public_key(load_private_key(key_file))
        assert hub.owner_key("news-0") != hub.owner_key("spam-0")
        assert hub.verify() == []
        # the published adapter is a PEFT adapter of the base model
        dest = tmp_path / "pulled"
        hub.fetch("spam-0-personalized", "latest", dest)
        PeftModel.from_pretrained(create_base_model("tiny-bert"), str(dest))


def test_publish_again_reuses_keys_and_adds_versions(run_dir: Path, tmp_path: Path) -> None:
    with HubStore(tmp_path / "hub") as hub:
        publish_run(run_dir, hub, vet=None, keys_dir=tmp_path / "keys", clients=["spam-0"])
        again = publish_run(
            run_dir, hub, vet=None, keys_dir=tmp_path / "keys", clients=["spam-0"], kinds=["shared"]
        )
        assert [m.ref for m in again] == ["spam-0-shared@v2"]
        # a different key for the same owner is refused by the pinned hub
        with pytest.raises(UntrustedKeyError, match="spam-0"):
            publish_run(
                run_dir, hub, vet=None, keys_dir=tmp_path / "other-keys", clients=["spam-0"]
            )


def test_publish_run_over_http(
    run_dir: Path, store: HubStore, serve_store: Callable[..., Any], tmp_path: Path
) -> None:
    with serve_store(store) as url:
        stored = publish_run(run_dir, url, vet=None, keys_dir=tmp_path / "keys", token=WRITE_TOKEN)
        assert len(stored) == 4
        with HubClient(url) as client:
            assert [m.name for m in client.list()] == [
                "news-0-personalized",
                "news-0-shared",
                "spam-0-personalized",
                "spam-0-shared",
            ]
            assert client.resolve("news-0-shared").label_names[0] == "business"


def test_helpers(run_dir: Path, tmp_path: Path) -> None:
    assert adapter_name("spam-0", "shared") == "spam-0-shared"
    with pytest.raises(ValueError, match="`kind` must be one of"):
        adapter_name("spam-0", "global")
    with pytest.raises(ValueError, match="adapter name"):
        adapter_name("bad id", "shared")
    assert find_sketch(run_dir, "spam-0") == run_dir / "sketches" / "spam-0.safetensors"
    assert find_sketch(run_dir, "ghost") is None
    key = client_key(tmp_path, "c1")
    assert encode_public_key(client_key(tmp_path, "c1")) == encode_public_key(key)
    assert (tmp_path / "c1.pub").is_file()


def test_bad_runs_are_refused(run_dir: Path, tmp_path: Path) -> None:
    with HubStore(tmp_path / "hub") as hub:
        with pytest.raises(ValueError, match="has no summary.json"):
            publish_run(tmp_path, hub, vet=None, keys_dir=tmp_path / "keys")
        with pytest.raises(ValueError, match=r"clients \['ghost'\] are not in the run"):
            publish_run(run_dir, hub, vet=None, keys_dir=tmp_path / "keys", clients=["ghost"])
        empty = tmp_path / "empty"
        empty.mkdir()
        (empty / "summary.json").write_text(json.dumps({"clients": {}}))
        with pytest.raises(ValueError, match="no rounds"):
            publish_run(empty, hub, vet=None, keys_dir=tmp_path / "keys")


def test_missing_personalized_adapter_is_skipped(run_dir: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    shutil.rmtree(copy / "personalized" / "news-0")
    with HubStore(tmp_path / "hub") as hub:
        names = [m.name for m in publish_run(copy, hub, vet=None, keys_dir=tmp_path / "keys")]
    assert "news-0-personalized" not in names and "news-0-shared" in names


def test_cli_hub_push_ls_show_pull_verify(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fednet.cli import main
    from fednet.hub import generate_private_key, save_private_key

    # no sketches, so no epsilon claims: `--keys-dir` signs an epsilon only when
    # the client's ledger backs it (tests/security/test_release_privacy_claims.py)
    run_dir = write_run(tmp_path / "run", CLIENTS, sketches=False)

    hub = str(tmp_path / "hub")
    assert main(["hub", "push", str(run_dir), "--hub", hub, "--keys-dir", str(tmp_path / "k")]) == 0
    assert "published spam-0-personalized@v1 (personalized, sms-spam, owner spam-0)" in (
        capsys.readouterr().out
    )
    assert main(["hub", "ls", "--hub", hub]) == 0
    listing = capsys.readouterr().out
    assert "spam-0-shared@v1" in listing and "sms-spam" in listing
    assert main(["hub", "show", "news-0-shared@1", "--hub", hub]) == 0
    assert json.loads(capsys.readouterr().out)["task"] == "bbc-news"
    pull = ["hub", "pull", "news-0-shared", str(tmp_path / "pulled"), "--hub", hub]
    assert main(pull) == 2  # news-0's key is not pinned: the reader fails closed
    assert "owner 'news-0'" in capsys.readouterr().err
    assert not (tmp_path / "pulled").exists()
    assert main(["trust", "add", "news-0", str(tmp_path / "k" / "news-0.pub")]) == 0
    assert "pinned news-0 SHA256:" in capsys.readouterr().out
    assert main(pull) == 0
    assert (tmp_path / "pulled" / "head.safetensors").is_file()
    capsys.readouterr()
    # a single adapter directory, signed with a given key
    key = tmp_path / "me.key"
    save_private_key(generate_private_key(), key)
    assert (
        main(
            [
                "hub",
                "push",
                str(tmp_path / "pulled"),
                "--hub",
                hub,
                "--name",
                "mine",
                "--owner",
                "me",
                "--key",
                str(key),
            ]
        )
        == 0
    )
    with HubStore(hub) as store:
        mine = store.resolve("mine")
        assert (mine.task, mine.base_model, mine.label_names[0]) == (
            "bbc-news",
            "tiny-bert",
            "business",
        )
        capsys.readouterr()
        assert main(["hub", "verify", "--hub", hub]) == 1  # only news-0 is pinned so far
        assert "owner 'spam-0'" in capsys.readouterr().out
        assert main(["hub", "verify", "--hub", hub, "--tofu"]) == 0  # pins and writes them
        assert main(["trust", "ls"]) == 0
        pinned = capsys.readouterr().out
        assert all(f"{o} " in pinned for o in ("me", "news-0", "spam-0")) and "tofu" in pinned
        blob = store.blob_path(mine.files["head.safetensors"])
        blob.write_bytes(b"tampered")
    capsys.readouterr()
    assert main(["hub", "verify", "--hub", hub]) == 1
    out = capsys.readouterr().out
    assert (
        "'head.safetensors' is tampered" in out and '"problems": 2' in out
    )  # shared with news-0-shared
    assert main(["hub", "push", str(tmp_path / "pulled"), "--hub", hub]) == 2
    assert "needs --name, --owner, --key" in capsys.readouterr().err


def test_manifest_epsilon_fields_follow_what_was_private(tmp_path: Path) -> None:
    """update_epsilon only for private weights; the note of a reproducible-noise run."""
    run = write_run(tmp_path / "run", {"spam-0": ("sms-spam", 0.9)})
    summary = json.loads((run / "summary.json").read_text())
    summary["clients"]["spam-0"].update(epsilon=3.0, update_epsilon=2.5, sketch_epsilon=1.0)
    summary["privacy"].update(
        updates_private=True, epsilon_note="epsilon not valid: reproducible noise"
    )
    (run / "summary.json").write_text(json.dumps(summary))
    with HubStore(tmp_path / "hub") as hub:
        shared = publish_run(run, hub, vet=None, keys_dir=tmp_path / "keys", kinds=["shared"])[0]
        m = hub.resolve(shared.name, shared.version)
    assert (m.update_epsilon, m.sketch_epsilon, m.epsilon) == (2.5, 1.0, 3.0)
    assert (m.delta, m.accountant) == (1e-5, "rdp")
    assert m.epsilon_note == "epsilon not valid: reproducible noise"


def test_hub_ls_shows_no_weight_epsilon_for_a_sketch_only_run(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fednet.cli import main

    with HubStore(tmp_path / "hub") as hub:
        publish_run(run_dir, hub, vet=None, keys_dir=tmp_path / "keys", clients=["spam-0"])
    assert main(["hub", "ls", "--hub", str(tmp_path / "hub")]) == 0
    header, *rows = capsys.readouterr().out.strip().splitlines()
    assert "UPD-EPS" in header and "SKETCH-EPS" in header
    for row in rows:
        cells = row.split()
        # ... RANK ACC UPD-EPS SKETCH-EPS TOTAL-EPS SKETCH
        assert cells[-4:] == ["-", "1.00", "-", "yes"], row
