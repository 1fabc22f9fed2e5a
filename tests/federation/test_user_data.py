"""A user's own data files in a real federation: never touched, every client trains,
every failure named."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from fednet.cli import main
from fednet.config import load_preset
from fednet.federation.recorder import format_summary
from fednet.federation.simulation import simulate

PRESET = """
[federation]
name = "own-files"
base-model = "tiny-bert"
rounds = 1
seed = 3
max-length = 16
eval-examples = 16
personalize-steps = 0

[strategy]
min-clients = {min_clients}

[client-defaults]
local-steps = 2
batch-size = 8
learning-rate = 0.005
lora-rank = 2
"""


def _client(cid: str, dataset: str) -> str:
    return f'\n[[clients]]\nid = "{cid}"\ndataset = "{dataset}"\n'


def _csv(path: Path, classes: tuple[str, ...] = ("pos", "neg"), n: int = 40) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [  # each file its own texts: one data set has one privacy budget, whoever holds it
        f'"{path.stem} review {i}, line one\nline two of {i}",{classes[i % len(classes)]}'
        for i in range(n)
    ]
    path.write_text("text,label\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tree(root: Path, skip: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): _sha(p)
        for p in root.rglob("*")
        if p.is_file() and skip not in p.parents
    }


@pytest.mark.integration
def test_files_by_absolute_relative_and_bare_path_are_untouched_and_every_client_trains(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    work = tmp_path / "work"
    absolute = _csv(tmp_path / "elsewhere" / "abs-reviews.csv")
    _csv(work / "data" / "rel-reviews.csv")
    _csv(work / "bare-reviews.csv")
    preset = work / "preset.toml"
    preset.write_text(
        PRESET.format(min_clients=3)
        + _client("abs", str(absolute))
        + _client("rel", "data/rel-reviews.csv")
        + _client("bare", "bare-reviews.csv")
    )
    monkeypatch.chdir(work)
    before = _tree(tmp_path, tmp_path / "work" / "run")

    code = main(["simulate", "--config", str(preset), "--run-dir", "run"])

    out = capsys.readouterr().out
    assert code == 0, out
    assert _tree(tmp_path, tmp_path / "work" / "run") == before  # nothing written, moved or gone
    summary = json.loads((work / "run" / "summary.json").read_text())
    assert summary["complete"] and summary["clients_finished"] == ["abs", "bare", "rel"]
    assert summary["failed_clients"] == {}
    for cid, task in (("abs", "abs-reviews"), ("rel", "rel-reviews"), ("bare", "bare-reviews")):
        c = summary["clients"][cid]
        assert c["task"] == task and c["accuracy"] is not None
        assert c["data"]["rows-read"] == 40 and c["data"]["rows-kept"] == 40
        assert c["data"]["encoding"] == "utf-8"
        assert (
            work / "run" / "rounds" / "1" / "tiny-bert" / task / "adapter_config.json"
        ).is_file()
    assert "shared" in out and "failed" not in out


def _crash_in_training(msg, context, call_next):  # a Flower mod: this client's training fails
    if msg.metadata.message_type == "train" and context.node_config.get("partition-id") == 2:
        raise RuntimeError("the disk of client crash is full")
    return call_next(msg, context)


@pytest.mark.integration
def test_failed_clients_are_named_and_too_few_finished_is_not_success(tmp_path: Path) -> None:
    good = _csv(tmp_path / "good.csv")
    lonely = _csv(tmp_path / "lonely.csv", classes=("only",))
    crash = _csv(tmp_path / "crash.csv")
    preset = tmp_path / "preset.toml"
    preset.write_text(
        PRESET.format(min_clients=2)
        + _client("good", str(good))
        + _client("lonely", str(lonely))
        + _client("crash", str(crash))
    )
    cfg = load_preset(preset)

    summary = simulate(cfg, tmp_path / "run", mods=(_crash_in_training,))

    assert summary["clients_finished"] == ["good"]
    assert summary["complete"] is False and summary["min_clients"] == 2
    failed = summary["failed_clients"]
    assert set(failed) == {"lonely", "crash"}
    assert "1 class" in failed["lonely"][0]["reason"] and failed["lonely"][0]["stage"] == "profile"
    assert failed["crash"][0]["stage"] == "train" and failed["crash"][0]["round"] == 1
    assert "disk of client crash is full" in failed["crash"][0]["reason"]
    on_disk = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert on_disk["clients"]["crash"]["finished"] is False
    assert on_disk["clients"]["lonely"]["failures"] == failed["lonely"]
    text = format_summary(summary, tmp_path / "run")
    assert "failed: crash (round 1, train)" in text and "fewer than strategy.min-clients" in text
    # the same preset without the crash: the one-class client is refused before anything runs
    code = main(["simulate", "--config", str(preset), "--run-dir", str(tmp_path / "again")])
    assert code == 2 and not (tmp_path / "again").exists()


def test_preflight_refuses_a_client_whose_data_has_one_class(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lonely = _csv(tmp_path / "lonely.csv", classes=("only",))
    good = _csv(tmp_path / "good.csv")
    preset = tmp_path / "preset.toml"
    preset.write_text(
        PRESET.format(min_clients=0) + _client("good", str(good)) + _client("lonely", str(lonely))
    )
    code = main(["simulate", "--config", str(preset), "--run-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2
    assert "clients[lonely].dataset" in err and "1 class ['only']" in err
    assert not (tmp_path / "run").exists()


def test_summary_lines_survive_a_task_without_accuracy() -> None:
    summary = {
        "final": {},
        "tasks": {"t": {"accuracy": None, "personalized": None}},
        "failed_clients": {"a": [{"round": 1, "stage": "train", "reason": "boom"}]},
        "complete": False,
        "clients_finished": [],
        "min_clients": 1,
    }
    text = format_summary(summary, Path("run"))
    assert "shared -" in text and "failed: a (round 1, train): boom" in text


def test_profile_with_unsafe_names_is_refused() -> None:
    from flwr.app import ConfigRecord

    from fednet.strategies.profile import ClientProfile

    good = {
        "client-id": "a",
        "base-model": "tiny-bert",
        "task": "t",
        "label-names": ["x", "y"],
        "lora-rank": 2,
        "lora-alpha": 4.0,
        "num-examples": 10,
        "data-rows-read": 12,
        "data-encoding": "utf-8",
    }
    assert ClientProfile.from_record(1, ConfigRecord(good)).data_report()["rows-read"] == 12
    for key, bad in [
        ("client-id", "../../etc"),
        ("task", "/tmp/x"),
        ("base-model", "a/b"),
        ("data-encoding", "../x"),
        ("data-rows-read", -1),
        ("label-names", ["x"]),
        ("label-names", ["x", "x"]),
    ]:
        with pytest.raises(ValueError, match="profile from node 1"):
            ClientProfile.from_record(1, ConfigRecord({**good, key: bad}))
    with pytest.raises(ValueError, match="unexpected `data-secret`"):
        ClientProfile.from_record(1, ConfigRecord({**good, "data-secret": 1}))
