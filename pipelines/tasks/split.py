"""Reading one split: raw rows from the format's reader, texts validated, labels mapped to ids."""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from .labels import encode_labels, infer_labels
from .readers import read_rows
from .registry import TaskSpec
from .rows import Rows, Split


def read_split(task: TaskSpec, data: str | Path, split: str, *, labelled: bool = True,
               limit: int | None = None) -> tuple[Split, TaskSpec]:
    """Read one split of a task (the first `limit` rows). Returns the split and the task as read: a generic task
    without a label list gets the one `infer_labels` finds in this split, and a plain-text file gives a generic
    task the column 'text'. With `labelled=False` the label column may be absent (rows then get label -1)."""
    rows = read_rows(task, data, split, labelled=labelled, limit=limit)
    task = rows.task
    texts, pairs = validate_texts(rows)
    labels = None
    if "label" in rows.roles:
        task = infer_labels(task, rows)
        labels = encode_labels(task, rows)
    elif rows.labelled:
        raise DataError(f"no label column '{task.label_col}'", str(rows.path), 1)
    return Split(str(rows.path), texts, pairs, labels), task


def validate_texts(rows: Rows) -> tuple[list[str], list[str] | None]:
    """The texts (and text pairs) of every record; a missing, blank or non-string one stops with its line."""
    texts: list[str] = []
    pairs: list[str] | None = [] if "text pair" in rows.roles else None
    for ln, rec in rows.records:
        for role, out, col in (("text", texts, rows.task.text_col), ("text pair", pairs, rows.task.pair_col)):
            if role not in rows.roles:
                continue
            value = rec.get(role)
            if value is None or not isinstance(value, str) or not value.strip():
                kind = "missing" if value is None or (isinstance(value, str) and not value.strip()) else \
                    f"not a string ({type(value).__name__})"
                raise DataError(f"{role} is {kind}", str(rows.path), ln, col)
            out.append(value)
    return texts, pairs
