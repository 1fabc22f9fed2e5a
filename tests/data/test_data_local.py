"""Local CSV, TSV, JSON, JSON-lines and Parquet files."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from fednet.data import label_names, load_local_file

ROWS = [
    {"body": "great film", "stars": "pos", "id": 1},
    {"body": "dull, and too long", "stars": "neg", "id": 2},
    {"body": 'she said "wow"', "stars": "pos", "id": 3},
    {"body": "", "stars": "neg", "id": 4},  # empty text: dropped
    {"body": "meh", "stars": "mid", "id": 5},
]
KEPT_TEXTS = ["great film", "dull, and too long", 'she said "wow"', "meh"]


def _write(path: Path) -> Path:
    frame = pd.DataFrame(ROWS)
    suffix = path.suffix
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".tsv":
        path.write_text(
            "body\tstars\tid\n" + "".join(f"{r['body']}\t{r['stars']}\t{r['id']}\n" for r in ROWS),
            encoding="utf-8",
        )
    elif suffix == ".json":
        path.write_text(json.dumps(ROWS), encoding="utf-8")
    elif suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    elif suffix == ".parquet":
        frame.to_parquet(path)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".json", ".jsonl", ".parquet"])
def test_load_each_format_with_custom_columns(tmp_path: Path, suffix: str) -> None:
    path = _write(tmp_path / f"reviews{suffix}")
    ds = load_local_file(path, text_column="body", label_column="stars")

    assert ds.column_names == ["text", "label"]
    assert ds["text"] == KEPT_TEXTS
    assert label_names(ds) == ["mid", "neg", "pos"]
    names = label_names(ds)
    assert [names[i] for i in ds["label"]] == ["pos", "neg", "pos", "mid"]
    assert ds.info.dataset_name == f"reviews{suffix}"


def test_json_file_holding_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "lines.json"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    ds = load_local_file(path, text_column="body", label_column="stars")
    assert ds["text"] == KEPT_TEXTS


def test_integer_labels_named_by_value_or_by_label_names(tmp_path: Path) -> None:
    path = tmp_path / "ints.csv"
    pd.DataFrame({"text": ["a", "b", "c", "d"], "label": [2, 0, 10, 2]}).to_csv(path, index=False)

    ds = load_local_file(path)
    assert label_names(ds) == ["0", "2", "10"]
    assert ds["label"] == [1, 0, 2, 1]

    path2 = tmp_path / "ints2.csv"
    pd.DataFrame({"text": ["a", "b", "c"], "label": [1, 0, 2]}).to_csv(path2, index=False)
    named = load_local_file(path2, label_names=["neg", "mid", "pos"])
    assert label_names(named) == ["neg", "mid", "pos"]
    assert named["label"] == [1, 0, 2]


def test_integer_labels_with_a_gap_are_not_floats(tmp_path: Path) -> None:
    path = tmp_path / "gap.csv"
    path.write_text("text,label\na,1\nb,\nc,0\n", encoding="utf-8")
    ds = load_local_file(path)
    assert ds["text"] == ["a", "c"]
    assert label_names(ds) == ["0", "1"]


def test_undecodable_bytes_are_refused_naming_the_byte_or_decoded_as_told(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes(b"text,label\ncaf\xe9,x\nok,y\n")
    with pytest.raises(ValueError, match=r"not valid utf-8: byte 0xe9 at offset 14 \(line 2\)"):
        load_local_file(path)
    ds = load_local_file(path, encoding="latin-1")
    assert ds["text"] == ["caf\u00e9", "ok"]


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        load_local_file(missing)


def test_missing_column_names_it_and_lists_present(tmp_path: Path) -> None:
    for suffix in (".csv", ".parquet", ".jsonl"):
        path = _write(tmp_path / f"reviews{suffix}")
        with pytest.raises(ValueError, match=r"`text_column` 'text'.*\['body', 'stars', 'id'\]"):
            load_local_file(path, label_column="stars")
        with pytest.raises(ValueError, match=r"`label_column` 'label'.*'body'"):
            load_local_file(path, text_column="body")


def test_unknown_extension_and_bad_arguments(tmp_path: Path) -> None:
    path = tmp_path / "data.xlsx"
    path.write_text("x", encoding="utf-8")
    with pytest.raises(ValueError, match=r"unsupported file type '.xlsx'.*\.parquet"):
        load_local_file(path)

    csv_path = _write(tmp_path / "r.csv")
    with pytest.raises(ValueError, match="must differ"):
        load_local_file(csv_path, text_column="body", label_column="body")
    with pytest.raises(TypeError, match="`text_column`"):
        load_local_file(csv_path, text_column="", label_column="stars")


def test_invalid_json_is_a_value_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="broken.json"):
        load_local_file(path)
