"""The rows a teacher scores: a transfer set (or an earlier scored set, whose old logits are dropped), or plain
text (a text file, table file or datasets directory) shaped like a transfer set, with what identifies them.

Opened by the score stage and again in every shard worker (`shard_scorer`), which checks it reads the rows the
job was planned on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from augment import MASK_SYMBOL

from .. import store
from ..errors import DataError
from ..tasks import generic_task, read_split

TRANSFER_COLUMNS = ("text", "label", "source_index", "is_original", "ops")
# What `open_transfer` takes: a transfer set, or a scored set (scored again, e.g. by another teacher).
TRANSFER_STAGES = ("augment", "score")


@dataclass
class Source:
    """The rows to score, as transfer-set columns in row order, and what identifies them."""

    table: pa.Table
    fingerprint: str
    task: dict | None  # the transfer set's TaskSpec.to_dict(); None for plain text
    path: Path

    @property
    def is_pair(self) -> bool:
        return "text_pair" in self.table.column_names

    def has_mask(self) -> bool:
        cols = ["text", "text_pair"] if self.is_pair else ["text"]
        return any(pc.any(pc.match_substring(self.table[c], MASK_SYMBOL)).as_py() for c in cols)


def open_transfer(path: Path) -> Source:
    """A transfer set (or an earlier scored set, whose old logits are dropped)."""
    manifest = store.require_stage_output(path, TRANSFER_STAGES, "--transfer")
    table = store.read_table(path)
    if "teacher_logits" in table.column_names:
        table = table.drop_columns(["teacher_logits"])
    missing = [c for c in TRANSFER_COLUMNS if c not in table.column_names]
    if missing:
        raise DataError(f"not a transfer set: no column(s) {', '.join(missing)}; rebuild it with `distill augment`",
                        str(path))
    return Source(table.replace_schema_metadata(None), manifest["fingerprint"], manifest.get("task"), path)


def open_plain(path: Path, text_col: str, pair_col: str | None) -> Source:
    """Unlabelled rows from a text file, table file or datasets directory, shaped like a transfer set."""
    task = generic_task(text_col, pair_col, label_col=None)
    if path.is_dir() and (path / store.STATE).is_file():
        split, _ = read_split(task, path.parent, path.name, labelled=False)  # a datasets directory itself
    else:
        split, _ = read_split(task, path, "train", labelled=False)
    n = len(split)
    columns = {"text": pa.array(split.texts, pa.string())}
    if split.text_pairs is not None:
        columns["text_pair"] = pa.array(split.text_pairs, pa.string())
    columns.update(label=pa.nulls(n, pa.int64()), source_index=pa.array(np.arange(n, dtype=np.int64)),
                   draw=pa.nulls(n, pa.int32()), is_original=pa.array(np.ones(n, dtype=bool)),
                   ops=pa.ListArray.from_arrays(pa.array(np.zeros(n + 1, np.int32)), pa.array([], pa.string())))
    table = pa.table(columns, schema=store.transfer_schema(split.text_pairs is not None))
    fp = store.fingerprint("plain-input", store.hash_path(Path(split.path)), text_col, pair_col)
    return Source(table, fp, None, path)


def open_source(transfer: str | None = None, input: str | None = None, text_col: str = "text",
                text_pair_col: str | None = None) -> Source:
    return open_transfer(Path(transfer)) if transfer is not None else open_plain(Path(input), text_col,
                                                                                  text_pair_col)
