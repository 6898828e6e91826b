"""Reading one split: raw rows from the format's reader, texts validated, labels mapped to ids."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..errors import DataError
from .labels import encode_labels, infer_labels
from .readers import find_split_file, read_rows
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


TEST_SPLIT = "test"


def with_test_split(task: TaskSpec, data: str | Path | None) -> TaskSpec:
    """The task with a labelled `test.*` split of `data` evaluated after its dev splits (and reported beside
    them): never first, so nothing is ever chosen on it. A test file without labels (GLUE's, or a Hugging Face
    test split whose labels are all -1) is left alone, as is a task that already lists it."""
    if data is None or TEST_SPLIT in task.dev_splits or Path(data).is_file():
        return task
    try:
        find_split_file(data, TEST_SPLIT)
    except DataError:
        return task
    rows = read_rows(task, data, TEST_SPLIT, labelled=False)
    if "label" not in rows.roles or all(rec.get("label") in (None, -1, "") for _, rec in rows.records):
        return task
    return replace(task, dev_splits=(*task.dev_splits, TEST_SPLIT))
