"""A user's rows are never lost, dropped in silence or changed: quoting, numbers, encodings."""

from __future__ import annotations

import codecs
import csv
import json
import logging
from pathlib import Path

import pandas as pd
import pytest

from fednet.data import label_names, load_local_file, read_local_file

MULTILINE = [
    "first line\nsecond line",
    'a "quoted" word, and a comma',
    "tab\tinside",
    "plain",
    "ends with newline\n",
    "three\nline\nfield",
]


def _multiline_frame(n: int = 30) -> pd.DataFrame:
    texts = [f"{MULTILINE[i % len(MULTILINE)]} #{i}" for i in range(n)]
    labels = ["pos" if i % 3 else "neg" for i in range(n)]
    labels[4] = ""  # two rows without a label: dropped, and counted
    labels[11] = ""
    return pd.DataFrame({"text": texts, "label": labels})


@pytest.mark.parametrize("sep,suffix", [("\t", ".tsv"), (",", ".csv")])
def test_multiline_quoted_fields_keep_every_row(tmp_path: Path, sep: str, suffix: str) -> None:
    frame = _multiline_frame()
    path = tmp_path / f"pandas{suffix}"
    frame.to_csv(path, sep=sep, index=False)  # quotes fields with newlines, as pandas does
    assert path.read_text().count("\n") > len(frame) + 1  # records span several lines

    ds, report = read_local_file(path)
    assert report.rows_read == 30
    assert report.rows_kept == 28
    assert report.dropped == {"empty-label": 2}
    expected = [t for t, y in zip(frame["text"], frame["label"], strict=True) if y]
    assert ds["text"] == expected  # exactly as written, line breaks and tabs included


def test_spreadsheet_style_tsv_with_crlf_and_quoted_line_breaks(tmp_path: Path) -> None:
    path = tmp_path / "sheet.tsv"
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_ALL, lineterminator="\r\n")
        w.writerow(["text", "label"])
        for i in range(12):
            w.writerow([f"cell {i}\nwith a break", "a" if i % 2 else "b"])
    ds, report = read_local_file(path)
    assert (report.rows_read, report.rows_kept, report.dropped) == (12, 12, {})
    assert ds["text"][0] == "cell 0\nwith a break"


def test_blank_lines_are_counted_not_silent(tmp_path: Path) -> None:
    path = tmp_path / "gaps.csv"
    path.write_text("text,label\na,x\n\nb,y\n,y\n", encoding="utf-8")
    ds, report = read_local_file(path)
    assert ds["text"] == ["a", "b"]
    assert report.rows_read == 4
    assert report.dropped == {"blank-line": 1, "empty-text": 1}


def test_numeric_looking_text_and_labels_stay_as_written(tmp_path: Path) -> None:
    path = tmp_path / "numbers.csv"
    path.write_text(
        "text,label\n007,1\n1.50,1.0\n1e3,01\nNaN,1\n12345678901234567890,1.0\n",
        encoding="utf-8",
    )
    ds = load_local_file(path)
    assert ds["text"] == ["007", "1.50", "1e3", "NaN", "12345678901234567890"]
    names = label_names(ds)
    assert names == ["01", "1", "1.0"]  # three spellings, three classes: none merged
    assert [names[i] for i in ds["label"]] == ["1", "1.0", "01", "1", "1.0"]


def test_json_numbers_as_text_stay_as_written(tmp_path: Path) -> None:
    path = tmp_path / "n.jsonl"
    path.write_text('{"text": 1.50, "label": "a"}\n{"text": "x", "label": "b"}\n')
    assert load_local_file(path)["text"] == ["1.50", "x"]
    path.write_text('{"text": "y", "label": 1.0}\n{"text": "x", "label": 1}\n')
    with pytest.raises(TypeError, match="class names"):
        load_local_file(path)  # refused, not merged with 1


ROWS = [("café crème", "é"), ("naïve – “quoted”", "ü"), ("plain", "é")]


@pytest.mark.parametrize(
    "codec,given,detected",
    [
        ("cp1252", "cp1252", "cp1252"),
        ("latin-1", "latin-1", "iso8859-1"),
        ("utf-16", None, "utf-16"),  # with a byte-order mark: found without asking
        ("utf-8-sig", None, "utf-8-sig"),
    ],
)
def test_non_utf8_files_decode_exactly_with_the_encoding_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, codec: str, given: str | None, detected: str
) -> None:
    rows = (
        ROWS
        if codec != "latin-1"
        else [(t.replace("–", "-").replace("“", '"').replace("”", '"'), y) for t, y in ROWS]
    )
    path = tmp_path / "enc.csv"
    path.write_bytes(("text,label\n" + "".join(f"{t},{y}\n" for t, y in rows)).encode(codec))
    with caplog.at_level(logging.INFO, logger="fednet.data"):
        ds, report = read_local_file(path, encoding=given)
    assert ds["text"] == [t for t, _ in rows]
    assert label_names(ds) == ["é", "ü"]
    assert report.encoding == detected
    assert f"encoding {detected}" in caplog.text
    assert not any("\ufffd" in t for t in ds["text"])


@pytest.mark.parametrize(
    "data,match",
    [
        ("café,x\n".encode("cp1252"), r"not valid utf-8: byte 0xe9 at offset \d+ \(line 2\)"),
        ("ok,x\n".encode("utf-16-le"), "NUL characters.*UTF-16"),
    ],
)
def test_undecodable_files_are_refused_naming_the_problem(
    tmp_path: Path, data: bytes, match: str
) -> None:
    path = tmp_path / "bad.csv"
    head = "text,label\n".encode("utf-16-le" if b"\x00" in data else "utf-8")
    path.write_bytes(head + data)
    with pytest.raises(ValueError, match=match):
        load_local_file(path)


def test_wrong_encoding_given_is_refused_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "w.csv"
    path.write_bytes(b"text,label\nx\x81y,a\n")  # 0x81 is undefined in cp1252
    with pytest.raises(ValueError, match="not valid cp1252: byte 0x81"):
        load_local_file(path, encoding="cp1252")
    with pytest.raises(ValueError, match="not a known text encoding"):
        load_local_file(path, encoding="no-such-codec")


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_utf8_byte_order_mark_in_json_and_json_lines(tmp_path: Path, suffix: str) -> None:
    rows = [{"text": "héllo", "label": "a"}, {"text": "bye", "label": "b"}]
    body = json.dumps(rows) if suffix == ".json" else "".join(json.dumps(r) + "\n" for r in rows)
    path = tmp_path / f"bom{suffix}"
    path.write_bytes(codecs.BOM_UTF8 + body.encode("utf-8"))
    ds, report = read_local_file(path)
    assert ds["text"] == ["héllo", "bye"]
    assert report.encoding == "utf-8-sig"


def test_report_adds_up_and_counts_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    pd.DataFrame(
        {"text": ["a", "a", "b", "c", "c", "c", " "], "label": ["x", "x", "y", "x", "y", "x", "y"]}
    ).to_csv(path, index=False)
    _, report = read_local_file(path)
    assert report.rows_read == report.rows_kept + report.rows_dropped == 7
    assert report.dropped == {"empty-text": 1}
    assert report.label_counts == {"x": 4, "y": 2}
    assert (report.duplicate_rows, report.duplicate_texts, report.conflicting_texts) == (3, 2, 1)


@pytest.mark.parametrize(
    "body,match",
    [
        ('"hello" she said,x\n', r"not valid CSV \(RFC 4180 quoting\): line 2"),
        ('"never closed,x\nnext,y\n', "not valid CSV"),
        ("a,x,extra\n", "has 3 fields, the header has 2"),
    ],
)
def test_malformed_quoting_is_refused_not_rewritten(tmp_path: Path, body: str, match: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("text,label\n" + body, encoding="utf-8")
    with pytest.raises(ValueError, match=match):
        load_local_file(path)
