"""Bad input to ``fednet simulate``: one line naming key and value, exit 2, nothing written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fednet.cli import main

TINY = Path("configs/tiny.toml").read_text()


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "preset.toml"
    p.write_text(text)
    return p


def run_cli(capsys, tmp_path, preset_text=None, extra=()):
    run_dir = tmp_path / "out"
    args = ["simulate", "--run-dir", str(run_dir), *extra]
    if preset_text is not None:
        args += ["--config", str(write(tmp_path, preset_text))]
    code = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert not run_dir.exists(), "a failed run must write nothing"
    return code, err


CASES = {
    "unknown key": (TINY.replace("seed = 7", "seed = 7\nsede = 8"), ["federation.sede"]),
    "wrong type": (TINY.replace("rounds = 2", 'rounds = "two"'), ["federation.rounds", "two"]),
    "rank zero": (TINY.replace("lora-rank = 4", "lora-rank = 0", 1), ["lora-rank", "0"]),
    "unknown data set": (
        TINY.replace('dataset = "bbc-news"', 'dataset = "bbc-nwes"'),
        ["dataset", "bbc-nwes", "valid"],
    ),
    "unknown base model": (
        TINY.replace('base-model = "tiny-bert"', 'base-model = "gpt-9"'),
        ["base-model", "gpt-9"],
    ),
    "missing file": (
        TINY.replace('dataset = "bbc-news"', 'dataset = "/nope/x.csv"'),
        ["dataset", "/nope/x.csv"],
    ),
    "unknown section": (TINY + "\n[extras]\nx = 1\n", ["extras"]),
    "bad partition index": (TINY.replace("partition = 1", "partition = 5", 1), ["partition", "5"]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_preset(capsys, tmp_path, name):
    text, needles = CASES[name]
    code, err = run_cli(capsys, tmp_path, text)
    assert code == 2
    assert len(err) == 1 and err[0].startswith("fednet: error:"), err
    for n in needles:
        assert n in err[0], (n, err[0])


def test_missing_column(capsys, tmp_path):
    csv = tmp_path / "d.csv"
    csv.write_text("body,label\n" + "".join(f"t{i},{i % 2}\n" for i in range(40)))
    text = TINY.replace('dataset = "bbc-news"', f'dataset = "{csv}"')
    code, err = run_cli(capsys, tmp_path, text)
    assert code == 2 and "text" in err[0] and "body" in err[0], err


def test_empty_partition(capsys, tmp_path):
    csv = tmp_path / "d.csv"
    csv.write_text("text,label\n" + "".join(f"t{i},{'ab'[i % 2]}\n" for i in range(6)))
    text = TINY.replace(
        'id = "news-0"\ndataset = "bbc-news"',
        f'id = "news-0"\ndataset = "{csv}"\npartitioner = "iid"\nnum-partitions = 5\npartition = 4',
    )
    code, err = run_cli(capsys, tmp_path, text)
    assert code == 2 and "news-0" in err[0] and ("empty" in err[0] or "small" in err[0]), err


def test_bad_rounds_argument(capsys, tmp_path):
    code, err = run_cli(capsys, tmp_path, TINY, extra=["--rounds", "0"])
    assert code == 2 and "--rounds" in err[0] and "0" in err[0]


def test_console_script_exit_status_and_no_traceback(tmp_path):
    preset = write(tmp_path, TINY.replace("lora-rank = 4", "lora-rank = -1", 1))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "fednet.cli",
            "simulate",
            "--config",
            str(preset),
            "--run-dir",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("fednet: error:")
    assert not (tmp_path / "out").exists()


def test_progress_is_logged_to_stderr(capsys):
    import logging

    from fednet.logs import setup_logging

    setup_logging()
    logging.getLogger("fednet.strategies.fedlora").info("round %s: %s loss %.4f", 1, "c0", 0.5)
    assert "round 1: c0 loss 0.5000" in capsys.readouterr().err
