"""Load a local CSV, TSV, JSON, JSON-lines or Parquet file as a text-classification set.

Nothing is changed in silence:

- CSV and TSV follow RFC 4180 quoting (a quoted field may hold the separator,
  doubled quotes and line breaks, as pandas and spreadsheet programs write it);
- every cell is read as the text written in the file: ``1`` and ``1.0`` are two
  different labels, ``007`` stays ``007``; a label column whose every value is a
  plain integer (``0``, ``12``, ``-3``) is read as class ids;
- text files must decode strictly: UTF-8 (with or without a byte-order mark),
  UTF-16 or UTF-32 with a byte-order mark, or the ``encoding`` given; anything
  else is refused with an error naming the byte that does not decode;
- every row read is either kept or counted under a drop reason in the
  :class:`~fednet.data.report.LoadReport`, which is logged.
"""

from __future__ import annotations

import codecs
import csv
import decimal
import io
import json
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
from datasets import Dataset

from fednet.config import DATA_FILE_SUFFIXES
from fednet.data.data_utils import LABEL_COLUMN, TEXT_COLUMN, build_text_label_dataset
from fednet.data.report import LoadReport

__all__ = [
    "SUPPORTED_SUFFIXES",
    "decode_text_file",
    "load_local_file",
    "read_local_file",
    "read_table",
]

logger = logging.getLogger(__name__)

SUPPORTED_SUFFIXES: tuple[str, ...] = DATA_FILE_SUFFIXES

_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16: it starts with the UTF-16 LE mark
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_PLAIN_INT = re.compile(r"^-?(0|[1-9][0-9]*)$")


def _check_columns(path: Path, present: list[str], wanted: dict[str, str]) -> None:
    """Raise if a requested column is missing, naming it and listing the present ones."""
    for key, column in wanted.items():
        if column not in present:
            raise ValueError(
                f"`{key}` {column!r} is not a column of {str(path)!r}; columns present: {present!r}"
            )


def _guess(raw: bytes) -> str:
    """A hint naming the encoding the bytes most likely are in, or ''."""
    try:
        from charset_normalizer import from_bytes
    except ImportError:  # pragma: no cover - an optional hint only
        return ""
    best = from_bytes(raw[:65536]).best()
    return f"; it may be {best.encoding!r}" if best is not None else ""


def decode_text_file(path: Path, encoding: str | None = None) -> tuple[str, str, str]:
    """Decode a text file strictly; never replace a byte with U+FFFD.

    Parameters
    ----------
    path : pathlib.Path
        The file.
    encoding : str or None
        A Python codec name (``"cp1252"``, ``"latin-1"``, ``"utf-16-le"``); by
        default the file must be UTF-8, or carry a UTF-8, UTF-16 or UTF-32
        byte-order mark.

    Returns
    -------
    tuple[str, str, str]
        The text (without a byte-order mark), the codec used, and how it was
        chosen: ``"given"``, ``"byte-order mark"`` or ``"default"``.

    Raises
    ------
    ValueError
        If ``encoding`` is not a codec, a byte does not decode (the message
        names the codec, the byte, its offset and line, and a likely encoding),
        or the text holds NUL characters (UTF-16 or UTF-32 without a mark).
    """
    raw = path.read_bytes()
    if encoding:
        try:
            codec = codecs.lookup(encoding).name
        except LookupError:
            raise ValueError(f"`encoding` {encoding!r} is not a known text encoding") from None
        how = "given"
    else:
        codec, how = next(
            ((c, "byte-order mark") for b, c in _BOMS if raw.startswith(b)), None
        ) or (
            "utf-8",
            "default",
        )
    try:
        text = raw.decode(codec)
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        hint = "" if encoding else _guess(raw)
        fix = (
            "check the client's `encoding`"
            if encoding
            else "set the client's `encoding` (or `--encoding`) to the file's encoding"
        )
        raise ValueError(
            f"{str(path)!r} is not valid {codec}: byte 0x{raw[e.start]:02x} at offset "
            f"{e.start} (line {line}) does not decode ({e.reason}){hint}; {fix}"
        ) from None
    text = text.removeprefix("\ufeff")
    if "\x00" in text:
        raise ValueError(
            f"{str(path)!r} decoded as {codec} holds NUL characters: it looks like UTF-16 or "
            "UTF-32 without a byte-order mark; set the client's `encoding` (e.g. 'utf-16-le')"
        )
    return text, codec, how


def _records_to_frame(records: list[Any], path: Path) -> pd.DataFrame:
    if not all(isinstance(r, dict) for r in records):
        raise ValueError(f"{str(path)!r} must hold JSON objects (one per row)")
    columns = list(dict.fromkeys(k for r in records for k in r))
    return pd.DataFrame({c: [r.get(c) for r in records] for c in columns}, dtype=object)


def _read_json(path: Path, text: str, *, lines: bool) -> pd.DataFrame:
    """A JSON array of records, an object of columns, or JSON lines; values as parsed.

    JSON numbers with a fraction are kept as written (``1.50`` stays ``"1.50"``
    as text; as a label it is refused rather than merged with ``1``).
    """
    loads = lambda s: json.loads(s, parse_float=decimal.Decimal)  # noqa: E731
    if not lines:
        try:
            data = loads(text)
        except json.JSONDecodeError:
            logger.debug("%s is not one JSON document; reading it as JSON lines", path)
        else:
            if isinstance(data, list):
                return _records_to_frame(data, path)
            if isinstance(data, dict) and all(isinstance(v, (list, dict)) for v in data.values()):
                cols = {k: list(v.values()) if isinstance(v, dict) else v for k, v in data.items()}
                if len({len(v) for v in cols.values()}) > 1:
                    raise ValueError(f"{str(path)!r}: the JSON columns differ in length")
                return pd.DataFrame(cols, dtype=object)
            raise ValueError(f"{str(path)!r} is neither a JSON array of records nor JSON lines")
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(loads(line))
        except json.JSONDecodeError as e:
            what = "JSON lines" if lines else "a JSON array of records nor JSON lines"
            raise ValueError(
                f"{str(path)!r} is {'not ' if lines else 'neither '}{what}: line {number}: {e}"
            ) from None
    return _records_to_frame(records, path)


def _read_delimited(path: Path, text: str, *, sep: str) -> pd.DataFrame:
    """Records of a CSV or TSV text under strict RFC 4180 quoting, every cell a ``str``.

    A quoted field may hold the separator, line breaks and doubled quotes; a
    quote inside an unquoted field is text. Text after a closing quote, or a
    record with more fields than the header, is an error naming its line. A
    short record is padded with empty cells (and so dropped and counted).
    """
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep, strict=True)
    kind = "TSV" if sep == "\t" else "CSV"
    rows: list[list[str]] = []
    try:
        header = next(reader, None)
        if not header:
            raise ValueError(f"{str(path)!r} is empty: no header line")
        for record in reader:
            if len(record) > len(header):
                raise ValueError(
                    f"{str(path)!r}: the record ending on line {reader.line_num} has "
                    f"{len(record)} fields, the header has {len(header)}"
                )
            rows.append(record + [""] * (len(header) - len(record)))
    except csv.Error as e:
        raise ValueError(
            f"{str(path)!r} is not valid {kind} (RFC 4180 quoting): line {reader.line_num}: {e}"
        ) from None
    columns: dict[str, list[str]] = {}
    for j, name in enumerate(header):
        columns.setdefault(name, [r[j] for r in rows])
    return pd.DataFrame(columns, dtype=object)


def read_table(
    path: Path, *, columns: dict[str, str], encoding: str | None = None
) -> tuple[pd.DataFrame, str, str]:
    """Read a supported file into a data frame of the values as written.

    Parameters
    ----------
    path : pathlib.Path
        An existing file with a suffix in :data:`SUPPORTED_SUFFIXES`.
    columns : dict[str, str]
        Argument name to column name, e.g. ``{"text_column": "body"}``; the
        argument name is used in the error for a missing column.
    encoding : str or None
        Codec of a text file (see :func:`decode_text_file`).

    Returns
    -------
    tuple[pandas.DataFrame, str, str]
        The rows (CSV and TSV cells as ``str``; JSON and Parquet values as
        parsed), the codec, and how it was chosen.

    Raises
    ------
    ValueError
        If the suffix is unsupported, the bytes do not decode, the content
        cannot be parsed, or a column is missing.
    """
    suffix = path.suffix.lower()
    wanted = list(dict.fromkeys(columns.values()))
    if suffix == ".parquet":
        present = list(pq.read_schema(path).names)
        _check_columns(path, present, columns)
        # Parquet strings are UTF-8 by the format's definition.
        return pq.read_table(path, columns=wanted).to_pandas(), "utf-8", "parquet"
    if suffix not in SUPPORTED_SUFFIXES:
        raise ValueError(
            f"unsupported file type {suffix or '(none)'!r} for {str(path)!r}; "
            f"expected one of {list(SUPPORTED_SUFFIXES)!r}"
        )
    text, codec, how = decode_text_file(path, encoding)
    if suffix in {".csv", ".tsv"}:
        frame = _read_delimited(path, text, sep="\t" if suffix == ".tsv" else ",")
    else:
        frame = _read_json(path, text, lines=suffix == ".jsonl")
    _check_columns(path, [str(c) for c in frame.columns], columns)
    return frame, codec, how


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or value != value


def read_local_file(
    path: str | os.PathLike[str],
    *,
    text_column: str = TEXT_COLUMN,
    label_column: str = LABEL_COLUMN,
    label_names: Sequence[str] | None = None,
    encoding: str | None = None,
) -> tuple[Dataset, LoadReport]:
    """Load a local file as a ``text``/``label`` dataset, with the report of the load.

    Parameters are as in :func:`load_local_file`.

    Returns
    -------
    tuple[datasets.Dataset, LoadReport]
        The kept rows, and the rows read, kept and dropped (by reason), the
        label counts, the duplicates and the encoding.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"data file {str(file)!r} does not exist or is not a file")
    for key, value in (("text_column", text_column), ("label_column", label_column)):
        if not isinstance(value, str) or not value:
            raise TypeError(f"`{key}` must be a non-empty str, got {value!r}")
    if text_column == label_column:
        raise ValueError(f"`text_column` and `label_column` must differ, both are {text_column!r}")
    frame, codec, how = read_table(
        file, columns={"text_column": text_column, "label_column": label_column}, encoding=encoding
    )
    texts = frame[text_column].tolist()
    labels = frame[label_column].tolist()
    blank_lines = 0
    if file.suffix.lower() in {".csv", ".tsv"}:
        blank_rows = {i for i, row in enumerate(frame.itertuples(index=False)) if not any(row)}
        blank_lines = len(blank_rows)
        keep = [i for i in range(len(texts)) if i not in blank_rows]
        texts, labels = [texts[i] for i in keep], [labels[i] for i in keep]
        present = [v for v in labels if not _blank(v)]
        if present and all(_PLAIN_INT.match(v) for v in present):
            labels = [int(v) if not _blank(v) else v for v in labels]
    ds, report = build_text_label_dataset(
        texts, labels, label_names=label_names, dataset_name=file.name
    )
    report = report.with_source(
        source=str(file),
        rows_read=len(frame),
        encoding=codec,
        encoding_source=how,
        extra_drops={"blank-line": blank_lines},
    )
    if report.dropped:
        logger.warning("%s", report.describe())
    elif how in ("given", "byte-order mark"):
        logger.info("%s", report.describe())
    else:
        logger.debug("%s", report.describe())
    return ds, report


def load_local_file(
    path: str | os.PathLike[str],
    *,
    text_column: str = TEXT_COLUMN,
    label_column: str = LABEL_COLUMN,
    label_names: Sequence[str] | None = None,
    encoding: str | None = None,
) -> Dataset:
    """Load a local file as a dataset with ``text`` and ``label`` columns.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.csv``, ``.tsv`` (both RFC 4180), ``.json`` (array of records or
        JSON lines), ``.jsonl`` or ``.parquet`` file.
    text_column : str, optional
        Column holding the text. Default ``"text"``.
    label_column : str, optional
        Column holding class names or integer class ids. Default ``"label"``.
    label_names : Sequence[str] or None, optional
        Class names in id order. Without them string labels are sorted and
        integer ids are named by their string form (``"0"``, ``"1"``, ...).
    encoding : str or None, optional
        Codec of a text file; by default UTF-8, or what its byte-order mark says.

    Returns
    -------
    datasets.Dataset
        Columns ``text`` (string) and ``label`` (``ClassLabel``). Rows with an
        empty text or label, and blank lines, are dropped and counted in the
        logged report (see :func:`read_local_file`).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist or is not a file.
    ValueError
        If the suffix is unsupported, the bytes do not decode, or a column is
        missing (the message lists the columns present).
    """
    return read_local_file(
        path,
        text_column=text_column,
        label_column=label_column,
        label_names=label_names,
        encoding=encoding,
    )[0]
