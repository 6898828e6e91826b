"""The two shapes a split takes: `Rows`, raw values as a reader found them, and `Split`, validated columns."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .registry import TaskSpec

@dataclass
class Rows:
    """One split file's records as read, before validation: `(line, {role: raw value})` pairs, lines 1-based
    (rows of Parquet files and datasets directories are numbered from 1). `roles` are the roles the records carry;
    `task` is the task whose columns were read (a plain-text file gives a generic task the column 'text');
    `labelled` says whether the split must carry labels."""

    path: Path
    task: TaskSpec
    records: list[tuple[int, dict[str, object]]]
    roles: tuple[str, ...]
    labelled: bool = True
    split: str = ""


@dataclass
class Split:
    """One split of a task as plain columns. `labels` holds label ids (-1 where a row has none)."""

    path: str
    texts: list[str]
    text_pairs: list[str] | None = None
    labels: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.texts)

    def take(self, rows: np.ndarray) -> Split:
        """The split's rows at `rows` (indices), in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        return Split(self.path, [self.texts[i] for i in rows],
                     [self.text_pairs[i] for i in rows] if self.text_pairs is not None else None,
                     self.labels[rows] if self.labels is not None else None)
