"""What a load did to a user's rows: read, kept, dropped by reason, duplicates, encoding.

A :class:`LoadReport` accounts for every row: ``rows_read == rows_kept +
sum(dropped.values())``. Loaders log it, clients put it in their profile and
the run's ``summary.json``, and ``fednet data check`` prints it.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DROP_REASONS", "LoadReport", "duplicate_figures"]

DROP_REASONS: tuple[str, ...] = ("blank-line", "empty-text", "empty-label")
"""Why a row is not kept: every field empty (a blank line of a CSV or TSV file),
a missing or blank text, or a missing or blank label."""


def duplicate_figures(texts: Sequence[str], labels: Sequence[object]) -> tuple[int, int, int]:
    """(rows repeating an earlier text, distinct repeated texts, texts with several labels)."""
    counts = Counter(texts)
    seen: dict[str, set[object]] = {}
    for t, y in zip(texts, labels, strict=True):
        seen.setdefault(t, set()).add(y)
    rows = sum(n - 1 for n in counts.values())
    repeated = sum(1 for n in counts.values() if n > 1)
    conflicting = sum(1 for ys in seen.values() if len(ys) > 1)
    return rows, repeated, conflicting


@dataclass(frozen=True)
class LoadReport:
    """The figures of one load.

    Parameters
    ----------
    source : str
        The file (or catalogue name) read.
    rows_read : int
        Rows the parser produced (records, not lines: a quoted field may span lines).
    rows_kept : int
        Rows in the dataset.
    dropped : dict[str, int]
        Rows not kept, by reason (:data:`DROP_REASONS`); only non-zero counts.
    label_counts : dict[str, int]
        Kept rows per class name.
    duplicate_rows : int
        Kept rows whose text equals an earlier kept row's text.
    duplicate_texts : int
        Distinct texts that occur more than once.
    conflicting_texts : int
        Distinct texts that occur with more than one label.
    encoding : str
        Codec the file was decoded with (``"utf-8"`` for Parquet).
    encoding_source : str
        How the codec was chosen: ``"given"``, ``"byte-order mark"``,
        ``"default"`` or ``"parquet"``.
    """

    source: str
    rows_read: int
    rows_kept: int
    dropped: dict[str, int] = field(default_factory=dict)
    label_counts: dict[str, int] = field(default_factory=dict)
    duplicate_rows: int = 0
    duplicate_texts: int = 0
    conflicting_texts: int = 0
    encoding: str = ""
    encoding_source: str = ""

    def __post_init__(self) -> None:
        if self.rows_read != self.rows_kept + sum(self.dropped.values()):
            raise ValueError(
                f"report of {self.source!r} does not add up: {self.rows_read} read, "
                f"{self.rows_kept} kept, dropped {self.dropped}"
            )

    def with_source(
        self,
        *,
        source: str,
        rows_read: int,
        encoding: str,
        encoding_source: str,
        extra_drops: Mapping[str, int] | None = None,
    ) -> LoadReport:
        """A copy naming the file, its codec, and the rows dropped before the builder."""
        dropped = dict(self.dropped)
        for reason, n in (extra_drops or {}).items():
            if n:
                dropped[reason] = dropped.get(reason, 0) + n
        return dataclasses.replace(
            self,
            source=source,
            rows_read=rows_read,
            dropped=dropped,
            encoding=encoding,
            encoding_source=encoding_source,
        )

    @property
    def rows_dropped(self) -> int:
        """Rows not kept, whatever the reason."""
        return sum(self.dropped.values())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with ``rows_dropped`` added."""
        out = dataclasses.asdict(self)
        out["rows_dropped"] = self.rows_dropped
        return out

    def describe(self) -> str:
        """One log line with every figure."""
        drops = ", ".join(f"{n} {r}" for r, n in sorted(self.dropped.items())) or "none"
        return (
            f"{self.source}: {self.rows_read} rows read, {self.rows_kept} kept, "
            f"{self.rows_dropped} dropped ({drops}); {self.duplicate_rows} duplicate rows "
            f"({self.conflicting_texts} texts with conflicting labels); "
            f"encoding {self.encoding or '-'} ({self.encoding_source or '-'})"
        )
