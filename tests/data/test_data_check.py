"""``fednet data check``: the figures a user sees before a federation reads a file."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from fednet.cli import main


def _tsv(path: Path) -> Path:
    texts = [f"line one of {i}\nline two\twith a tab" for i in range(25)] + ["dup", "dup"]
    labels = ["1" if i % 2 else "1.0" for i in range(25)] + ["1", ""]
    pd.DataFrame({"body": texts, "y": labels}).to_csv(path, sep="\t", index=False)
    return path


def test_data_check_json_reports_exactly_the_rows_of_a_multiline_tsv(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _tsv(tmp_path / "quoted.tsv")
    assert (
        main(["data", "check", str(path), "--text-column", "body", "--label-column", "y", "--json"])
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["rows_read"] == 27
    assert report["rows_kept"] == 26
    assert report["dropped"] == {"empty-label": 1}
    assert report["label_counts"] == {"1": 13, "1.0": 13}
    assert report["duplicate_rows"] == 0  # the second "dup" was dropped for its empty label
    assert report["encoding"] == "utf-8"


def test_data_check_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _tsv(tmp_path / "quoted.tsv")
    assert main(["data", "check", str(path), "--text-column", "body", "--label-column", "y"]) == 0
    out = capsys.readouterr().out
    assert "rows read:  27" in out and "rows kept:  26" in out and "empty-label  1" in out
    assert "encoding:   utf-8 (default)" in out


def test_data_check_names_a_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "l.csv"
    path.write_bytes(b"text,label\ncaf\xe9,x\n")
    assert main(["data", "check", str(path)]) == 2
    assert "not valid utf-8: byte 0xe9" in capsys.readouterr().err
    assert main(["data", "check", str(path), "--encoding", "latin-1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["encoding"] == "iso8859-1"
