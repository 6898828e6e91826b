"""Label mapping, a step of its own: raw label values -> label ids, and (for generic tasks without a label list)
the label list itself, inferred from a split's values."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..errors import DataError
from .registry import TaskSpec, default_metrics
from .rows import Rows


def label_key(value: object) -> str:
    """A raw label as the string the task's `label_values` hold: True -> '1', 2.0 -> '2', None -> ''."""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return "" if value is None else str(value).strip()


def infer_labels(task: TaskSpec, rows: Rows) -> TaskSpec:
    """The task with its label list filled in from `rows` when it has none (generic tasks without `--labels`
    take theirs from the first labelled split read, normally train): the distinct values sorted, integers
    0..K-1 in their own order. A task that has a label list is returned as it is."""
    if task.label_values:
        return task
    values = sorted({label_key(rec.get("label")) for _, rec in rows.records} - {""})
    if all(v.lstrip("-").isdigit() for v in values):
        ints = sorted(int(v) for v in values)
        if ints == list(range(len(ints))):
            values = [str(i) for i in ints]
    if len(values) < 2:
        raise DataError(f"the {rows.split} split has fewer than 2 distinct labels ({values}); pass --labels",
                        str(rows.path))
    return replace(task, label_names=tuple(values), label_values=tuple(values), metrics=default_metrics(len(values)))


def encode_labels(task: TaskSpec, rows: Rows) -> np.ndarray:
    """The label id of every record, by the task's `label_values`; an unknown value stops with its line."""
    lookup = {v: i for i, v in enumerate(task.label_values)}
    labels = np.empty(len(rows.records), dtype=np.int64)
    for k, (ln, rec) in enumerate(rows.records):
        value = rec.get("label")
        key = label_key(value)
        if key not in lookup:
            raise DataError(f"unknown label {value!r}; expected one of {', '.join(task.label_values)}",
                            str(rows.path), ln, task.label_col)
        labels[k] = lookup[key]
    return labels
