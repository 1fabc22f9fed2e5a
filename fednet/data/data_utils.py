"""Helpers shared by the data loaders: one canonical ``text``/``label`` shape.

Every loader in :mod:`fednet.data` returns a :class:`datasets.Dataset` with
exactly two columns, ``text`` (string) and ``label`` (a
:class:`datasets.ClassLabel`), so models, partitioners and metrics never need
to know where the data came from.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from datasets import ClassLabel, Dataset, DatasetInfo, Features, Value

from fednet.data.report import LoadReport, duplicate_figures

__all__ = [
    "TEXT_COLUMN",
    "LABEL_COLUMN",
    "build_text_label_dataset",
    "to_text_label_dataset",
    "check_text_label_dataset",
    "label_names",
    "label_ids",
    "check_fraction",
    "check_seed",
]

logger = logging.getLogger(__name__)

TEXT_COLUMN = "text"
LABEL_COLUMN = "label"


def _is_missing(value: object) -> bool:
    """Return whether ``value`` is a missing cell (``None`` or a float NaN)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def _normalise_label(value: object, *, row: int) -> str | int:
    """Turn one raw label into a ``str`` or an ``int``.

    Strings are kept exactly as written. Integral floats (``1.0``, as a
    Parquet int column with gaps holds) become ``int``; bools become
    ``"False"``/``"True"``; anything else that is not a string or an integer
    is rejected.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real) and float(value).is_integer():
        return int(float(value))
    raise TypeError(
        f"`{LABEL_COLUMN}` must hold class names (str) or class ids (int), "
        f"got {value!r} ({type(value).__name__}) at row {row}"
    )


def _build_class_label(
    labels: list[str | int], label_names: Sequence[str] | None
) -> tuple[ClassLabel, list[int]]:
    """Map normalised labels to class ids and build the matching feature."""
    kinds = {type(label) for label in labels}
    if len(kinds) > 1:
        raise TypeError(
            f"`{LABEL_COLUMN}` mixes class names (str) and class ids (int); use one kind"
        )
    is_int = kinds == {int}

    if label_names is not None:
        names = [str(name) for name in label_names]
        if len(set(names)) != len(names) or not names:
            raise ValueError(f"`label_names` must be unique and non-empty, got {names!r}")
        if is_int:
            bad = sorted({v for v in labels if not 0 <= int(v) < len(names)})
            if bad:
                raise ValueError(
                    f"`{LABEL_COLUMN}` ids must be in [0, {len(names)}) to match "
                    f"`label_names` {names!r}, got {bad[:10]!r}"
                )
            return ClassLabel(names=names), [int(v) for v in labels]
        index = {name: i for i, name in enumerate(names)}
        unknown = sorted({str(v) for v in labels if v not in index})
        if unknown:
            raise ValueError(
                f"`{LABEL_COLUMN}` has values not in `label_names` {names!r}: {unknown[:10]!r}"
            )
        return ClassLabel(names=names), [index[str(v)] for v in labels]

    # No names given: sort the distinct values (numerically for ids) so the
    # class-id assignment is the same on every client and every run.
    distinct = sorted(set(labels))
    index_of = {value: i for i, value in enumerate(distinct)}
    return ClassLabel(names=[str(v) for v in distinct]), [index_of[v] for v in labels]


def build_text_label_dataset(
    texts: Sequence[object],
    labels: Sequence[object],
    *,
    label_names: Sequence[str] | None = None,
    dataset_name: str | None = None,
) -> tuple[Dataset, LoadReport]:
    """Build the canonical ``text``/``label`` dataset and the report of what was kept.

    Texts and string labels are kept exactly as given (no stripping, no number
    conversion). A row whose text is missing or blank is dropped as
    ``"empty-text"``; one whose label is missing or blank as ``"empty-label"``.

    Parameters
    ----------
    texts : Sequence[object]
        Raw texts; a kept non-string one is converted with ``str``.
    labels : Sequence[object]
        Class names (``str``) or class ids (``int``; integral floats accepted).
    label_names : Sequence[str] or None, optional
        Class names in id order. For integer labels, label ``i`` means
        ``label_names[i]``; for string labels, they fix the id order and every
        label must be one of them. When omitted, the distinct labels are sorted
        (numerically for ids) and their string forms become the names.
    dataset_name : str or None, optional
        Recorded in ``Dataset.info.dataset_name`` and used in error messages.

    Returns
    -------
    tuple[datasets.Dataset, LoadReport]
        Columns ``text`` (``string``) and ``label`` (``ClassLabel``), and the
        figures of the build (its ``source`` is ``dataset_name``).

    Raises
    ------
    ValueError
        If the columns differ in length, no usable row is left, or a label
        does not fit ``label_names``.
    TypeError
        If a label is neither a string nor an integer.
    """
    if len(texts) != len(labels):
        raise ValueError(
            f"`{TEXT_COLUMN}` and `{LABEL_COLUMN}` must have the same length, "
            f"got {len(texts)} and {len(labels)}"
        )
    kept_texts: list[str] = []
    kept_labels: list[str | int] = []
    dropped = {"empty-text": 0, "empty-label": 0}
    for row, (text, label) in enumerate(zip(texts, labels, strict=True)):
        if _is_missing(text) or not str(text).strip():
            dropped["empty-text"] += 1
            continue
        if _is_missing(label):
            dropped["empty-label"] += 1
            continue
        norm = _normalise_label(label, row=row)
        if isinstance(norm, str) and not norm.strip():
            dropped["empty-label"] += 1
            continue
        kept_texts.append(str(text))
        kept_labels.append(norm)

    name = dataset_name or "dataset"
    if not kept_texts:
        raise ValueError(
            f"{name!r} has no rows with both a non-empty text and a label "
            f"({len(texts)} rows: {dropped['empty-text']} with an empty text, "
            f"{dropped['empty-label']} with an empty label)"
        )

    class_label, ids = _build_class_label(kept_labels, label_names)
    features = Features({TEXT_COLUMN: Value("string"), LABEL_COLUMN: class_label})
    ds = Dataset.from_dict(
        {TEXT_COLUMN: kept_texts, LABEL_COLUMN: ids},
        features=features,
        info=DatasetInfo(dataset_name=dataset_name, features=features),
    )
    dup_rows, dup_texts, conflicting = duplicate_figures(kept_texts, ids)
    counts = np.bincount(np.asarray(ids, dtype=np.int64), minlength=len(class_label.names))
    report = LoadReport(
        source=name,
        rows_read=len(texts),
        rows_kept=len(kept_texts),
        dropped={r: n for r, n in dropped.items() if n},
        label_counts={class_label.names[i]: int(n) for i, n in enumerate(counts)},
        duplicate_rows=dup_rows,
        duplicate_texts=dup_texts,
        conflicting_texts=conflicting,
    )
    return ds, report


def to_text_label_dataset(
    texts: Sequence[object],
    labels: Sequence[object],
    *,
    label_names: Sequence[str] | None = None,
    dataset_name: str | None = None,
) -> Dataset:
    """Build the canonical ``text``/``label`` dataset from two parallel columns.

    As :func:`build_text_label_dataset`; dropped rows are counted, by reason,
    in a warning, so a stray empty line cannot become a training example and
    no row disappears unreported.
    """
    ds, report = build_text_label_dataset(
        texts, labels, label_names=label_names, dataset_name=dataset_name
    )
    if report.dropped:
        logger.warning("%s", report.describe())
    return ds


def check_text_label_dataset(ds: object, *, source: str) -> Dataset:
    """Check that ``ds`` has the canonical shape and return it.

    Parameters
    ----------
    ds : object
        The value a loader returned.
    source : str
        Where it came from, for the error message.

    Returns
    -------
    datasets.Dataset
        ``ds`` itself.

    Raises
    ------
    TypeError
        If ``ds`` is not a ``Dataset`` with exactly ``text`` (string) and
        ``label`` (``ClassLabel``) columns.
    """
    if not isinstance(ds, Dataset):
        raise TypeError(f"{source} must return a datasets.Dataset, got {type(ds).__name__}")
    columns = sorted(ds.column_names)
    if columns != sorted([TEXT_COLUMN, LABEL_COLUMN]):
        raise TypeError(
            f"{source} must return exactly the columns "
            f"[{TEXT_COLUMN!r}, {LABEL_COLUMN!r}], got {ds.column_names!r}"
        )
    label_feature = ds.features[LABEL_COLUMN]
    if not isinstance(label_feature, ClassLabel):
        raise TypeError(
            f"{source} must return a ClassLabel `{LABEL_COLUMN}` column, "
            f"got {type(label_feature).__name__}"
        )
    text_feature = ds.features[TEXT_COLUMN]
    if not (isinstance(text_feature, Value) and text_feature.dtype in {"string", "large_string"}):
        raise TypeError(f"{source} must return a string `{TEXT_COLUMN}` column, got {text_feature}")
    return ds


def check_fraction(value: object, *, key: str) -> float:
    """Check that ``value`` is a number strictly between 0 and 1 and return it.

    Raises
    ------
    TypeError
        If ``value`` is not a real number.
    ValueError
        If it is not in the open interval (0, 1).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"`{key}` must be a float in (0, 1), got {value!r}")
    if not 0.0 < float(value) < 1.0:
        raise ValueError(f"`{key}` must be in (0, 1), got {value!r}")
    return float(value)


def check_seed(value: object, *, key: str = "seed") -> int:
    """Check that ``value`` is a non-negative int and return it.

    Raises
    ------
    TypeError
        If ``value`` is not an int.
    ValueError
        If it is negative.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"`{key}` must be an int, got {value!r}")
    if value < 0:
        raise ValueError(f"`{key}` must be >= 0, got {value!r}")
    return value


def label_names(ds: Dataset) -> list[str]:
    """Return the class names of a canonical dataset, in class-id order.

    Parameters
    ----------
    ds : datasets.Dataset
        A dataset with a ``ClassLabel`` ``label`` column.

    Returns
    -------
    list[str]
        ``ds.features["label"].names``.
    """
    feature = ds.features.get(LABEL_COLUMN)
    if not isinstance(feature, ClassLabel):
        raise TypeError(
            f"`{LABEL_COLUMN}` must be a ClassLabel column, got {type(feature).__name__}"
        )
    return list(feature.names)


def label_ids(ds: Dataset) -> npt.NDArray[np.int64]:
    """Return the ``label`` column as a NumPy array of class ids, in row order.

    Reads the column in one slice; iterating ``ds["label"]`` goes row by row.
    """
    if LABEL_COLUMN not in ds.column_names:
        raise ValueError(f"dataset has no `{LABEL_COLUMN}` column; columns: {ds.column_names!r}")
    return np.asarray(ds.with_format("numpy")[LABEL_COLUMN][:], dtype=np.int64)
