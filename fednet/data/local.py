"""Load a local CSV, TSV, JSON, JSON-lines or Parquet file as a text-classification set."""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
from datasets import Dataset

from fednet.data.data_utils import LABEL_COLUMN, TEXT_COLUMN, to_text_label_dataset

__all__ = ["SUPPORTED_SUFFIXES", "load_local_file", "read_table"]

logger = logging.getLogger(__name__)

SUPPORTED_SUFFIXES: tuple[str, ...] = (".csv", ".tsv", ".json", ".jsonl", ".parquet")


def _check_columns(path: Path, present: list[str], wanted: dict[str, str]) -> None:
    """Raise if a requested column is missing, naming it and listing the present ones."""
    for key, column in wanted.items():
        if column not in present:
            raise ValueError(
                f"`{key}` {column!r} is not a column of {str(path)!r}; columns present: {present!r}"
            )


def _read_json(path: Path, *, lines: bool) -> pd.DataFrame:
    """Read a JSON array of records or JSON lines, keeping the parsed JSON types."""
    if lines:
        return pd.read_json(path, lines=True, dtype=False, convert_dates=False, encoding="utf-8")
    try:
        return pd.read_json(path, dtype=False, convert_dates=False, encoding="utf-8")
    except ValueError:
        # A ``.json`` file is often JSON lines in practice.
        logger.debug("%s is not a JSON array; reading it as JSON lines", path)
        try:
            return pd.read_json(
                path, lines=True, dtype=False, convert_dates=False, encoding="utf-8"
            )
        except ValueError as e:
            raise ValueError(
                f"{str(path)!r} is neither a JSON array of records nor JSON lines"
            ) from e


def read_table(path: Path, *, columns: dict[str, str]) -> pd.DataFrame:
    """Read the requested columns of a supported file into a data frame.

    Parameters
    ----------
    path : pathlib.Path
        An existing file with a suffix in :data:`SUPPORTED_SUFFIXES`.
    columns : dict[str, str]
        Argument name to column name, e.g. ``{"text_column": "body"}``; the
        argument name is used in the error for a missing column.

    Returns
    -------
    pandas.DataFrame
        The requested columns (at least).

    Raises
    ------
    ValueError
        If the suffix is unsupported, the content cannot be parsed, or a
        column is missing.
    """
    suffix = path.suffix.lower()
    wanted = list(dict.fromkeys(columns.values()))
    if suffix == ".parquet":
        present = list(pq.read_schema(path).names)
        _check_columns(path, present, columns)
        return pq.read_table(path, columns=wanted).to_pandas()
    if suffix in {".csv", ".tsv"}:
        # TSV (IANA text/tab-separated-values) has no quoting: a quote is text.
        try:
            frame = pd.read_csv(
                path,
                sep="\t" if suffix == ".tsv" else ",",
                quoting=csv.QUOTE_NONE if suffix == ".tsv" else csv.QUOTE_MINIMAL,
                encoding="utf-8",
                encoding_errors="replace",
                keep_default_na=False,
                na_values=[""],
            )
        except pd.errors.ParserError as e:
            raise ValueError(f"{str(path)!r} is not a valid {suffix} file: {e}") from e
    elif suffix in {".json", ".jsonl"}:
        frame = _read_json(path, lines=suffix == ".jsonl")
    else:
        raise ValueError(
            f"unsupported file type {suffix or '(none)'!r} for {str(path)!r}; "
            f"expected one of {list(SUPPORTED_SUFFIXES)!r}"
        )
    _check_columns(path, [str(c) for c in frame.columns], columns)
    return frame


def load_local_file(
    path: str | os.PathLike[str],
    *,
    text_column: str = TEXT_COLUMN,
    label_column: str = LABEL_COLUMN,
    label_names: Sequence[str] | None = None,
) -> Dataset:
    """Load a local file as a dataset with ``text`` and ``label`` columns.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.csv``, ``.tsv``, ``.json`` (array of records or JSON lines),
        ``.jsonl`` or ``.parquet`` file. Text files are read as UTF-8; bytes
        that do not decode become U+FFFD.
    text_column : str, optional
        Column holding the text. Default ``"text"``.
    label_column : str, optional
        Column holding class names or integer class ids. Default ``"label"``.
    label_names : Sequence[str] or None, optional
        Class names in id order. Without them string labels are sorted and
        integer ids are named by their string form (``"0"``, ``"1"``, ...).

    Returns
    -------
    datasets.Dataset
        Columns ``text`` (string) and ``label`` (``ClassLabel``). Rows with an
        empty text or label are dropped.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist or is not a file.
    ValueError
        If the suffix is unsupported or a column is missing (the message lists
        the columns present).
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"data file {str(file)!r} does not exist or is not a file")
    for key, value in (("text_column", text_column), ("label_column", label_column)):
        if not isinstance(value, str) or not value:
            raise TypeError(f"`{key}` must be a non-empty str, got {value!r}")
    if text_column == label_column:
        raise ValueError(f"`text_column` and `label_column` must differ, both are {text_column!r}")
    frame = read_table(file, columns={"text_column": text_column, "label_column": label_column})
    logger.debug("read %d rows from %s", len(frame), file)
    return to_text_label_dataset(
        frame[text_column].tolist(),
        frame[label_column].tolist(),
        label_names=label_names,
        dataset_name=file.name,
    )
