"""Tasks: the built-in GLUE tasks and the generic column-mapped formats, read into plain columns.

  registry.py  TaskSpec, the built-in TASKS, get_task / generic_task / resolve_task, data_dir, DEMO_DIR
  readers.py   one reader per format, chosen by suffix (GLUE TSV, CSV, TSV, JSONL, Parquet, TXT, datasets dirs)
  labels.py    label mapping: infer_labels (a generic task's label list) and encode_labels (values -> ids)
  split.py     read_split: rows, validated texts, label ids; with_test_split (a labelled test.* split)

Light on purpose (numpy at most): `distill --help` imports this package.
"""

from .labels import encode_labels, infer_labels, label_key
from .readers import GENERIC_SUFFIXES, READERS, decode_lines, find_split_file, read_rows, reader_for
from .registry import DEMO_DIR, TASKS, TaskSpec, data_dir, default_metrics, generic_task, get_task, resolve_task
from .rows import Rows, Split
from .split import TEST_SPLIT, read_split, validate_texts, with_test_split

__all__ = [
    "DEMO_DIR", "GENERIC_SUFFIXES", "READERS", "TASKS", "TEST_SPLIT", "Rows", "Split", "TaskSpec", "data_dir",
    "decode_lines", "default_metrics", "encode_labels", "find_split_file", "generic_task", "get_task",
    "infer_labels", "label_key", "read_rows", "read_split", "reader_for", "resolve_task", "validate_texts",
    "with_test_split",
]
