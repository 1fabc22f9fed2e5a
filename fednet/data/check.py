"""``fednet data check FILE``: what a federation would read from a data file, before it runs."""

from __future__ import annotations

import json
import os
from typing import Any

from fednet.data.data_utils import LABEL_COLUMN, TEXT_COLUMN
from fednet.data.local import read_local_file

__all__ = ["check_data_file", "format_check"]


def check_data_file(
    path: str | os.PathLike[str],
    *,
    text_column: str = TEXT_COLUMN,
    label_column: str = LABEL_COLUMN,
    encoding: str | None = None,
) -> dict[str, Any]:
    """Read ``path`` as a client would and return the figures of the load.

    Returns
    -------
    dict
        :meth:`fednet.data.LoadReport.to_dict`: ``rows_read``, ``rows_kept``,
        ``rows_dropped``, ``dropped`` (by reason), ``label_counts``,
        ``duplicate_rows``, ``duplicate_texts``, ``conflicting_texts``,
        ``encoding`` and ``encoding_source``.

    Raises
    ------
    FileNotFoundError, ValueError, TypeError
        As :func:`fednet.data.load_local_file`.
    """
    _, report = read_local_file(
        path, text_column=text_column, label_column=label_column, encoding=encoding
    )
    return report.to_dict()


def format_check(report: dict[str, Any], *, as_json: bool = False) -> str:
    """The figures of :func:`check_data_file` as text for people, or as JSON."""
    if as_json:
        return json.dumps(report, indent=2, sort_keys=True)
    lines = [
        f"file:       {report['source']}",
        f"encoding:   {report['encoding']} ({report['encoding_source']})",
        f"rows read:  {report['rows_read']}",
        f"rows kept:  {report['rows_kept']}",
        f"dropped:    {report['rows_dropped']}",
    ]
    lines += [f"  {reason:<12} {n}" for reason, n in sorted(report["dropped"].items())]
    lines.append(
        f"duplicates: {report['duplicate_rows']} rows repeat an earlier text "
        f"({report['duplicate_texts']} texts repeated, "
        f"{report['conflicting_texts']} with conflicting labels)"
    )
    lines.append(f"labels:     {len(report['label_counts'])}")
    width = max((len(k) for k in report["label_counts"]), default=0)
    lines += [f"  {k:<{width}}  {n}" for k, n in report["label_counts"].items()]
    return "\n".join(lines)
