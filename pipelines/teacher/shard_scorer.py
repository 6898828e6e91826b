"""The shard scorer: a teacher replica that scores shards of a source into files, as a callable class (one per
process, GPU or Ray actor; pipelines/engine.py runs it on either engine).

Each shard is written atomically (datasets' ArrowWriter, the stage fingerprint in its metadata) into the
stage's work directory, so a killed run resumes at the first missing shard. A worker on another node checks
that it sees the paths and the teacher the job was planned with, and says which node it is when it does not.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from .. import store
from ..engine import Shards, overlapped
from ..errors import DataError, MissingResourceError
from .score_source import Source, open_source

if TYPE_CHECKING:
    from ..hub import ModelFiles


def logits_array(logits: np.ndarray) -> pa.FixedSizeListArray:
    return pa.FixedSizeListArray.from_arrays(pa.array(logits.reshape(-1), pa.float32()), logits.shape[1])


class ShardScorer:
    """Scores shards of a source into files (a callable class: one per process, GPU or Ray actor). Set up once:
    the source, opened again in this worker and checked to be the one the job fingerprinted, and the teacher.
    `run(shards, progress)` scores and writes the given shards (engine.overlapped: tokenising the next shard and
    writing the previous one overlap the current one's scoring); `__call__` is the Ray Data batch shape."""

    def __init__(self, source: dict, source_fp: str, files: ModelFiles, fp: str, shard_dir: str, shard_rows: int,
                 device: str, dtype: str, max_length: int, batch_tokens: int | None, threads: int | None,
                 trust_remote_code: bool, opened: Source | None = None):
        """`opened`: the source the driver opened, when this worker runs in the driver's own process (it is not
        read and hashed a second time)."""
        from .scorer import TeacherScorer

        self.source = opened if opened is not None else open_source(**visible(source))
        if self.source.fingerprint != source_fp:
            raise DataError(f"{node()} reads other rows than the job was planned on (fingerprint "
                            f"{self.source.fingerprint[:12]}, expected {source_fp[:12]}); did the input change?",
                            str(self.source.path))
        self.shard_dir = Path(visible({"shards": shard_dir}, writable=True)["shards"])
        self.scorer = TeacherScorer(teacher_files(files, trust_remote_code), device=device, dtype=dtype,
                                    max_length=max_length, batch_tokens=batch_tokens, threads=threads,
                                    trust_remote_code=trust_remote_code)
        self.schema = store.scored_schema(self.source.table.schema, self.scorer.num_labels)
        self.shards, self.fp = Shards(self.source.table.num_rows, shard_rows), fp

    def run(self, todo: list[int], progress: Callable[[int], Any] | None = None) -> list[dict[str, int]]:
        table, shard_rows = self.source.table, self.shards.shard_rows

        def prepare(i: int) -> tuple[pa.Table, Any]:
            rows = table.slice(i * shard_rows, shard_rows)
            pairs = rows["text_pair"].to_pylist() if "text_pair" in rows.column_names else None
            return rows, self.scorer.encode(rows["text"].to_pylist(), pairs)

        def compute(prepared: tuple[pa.Table, Any]) -> np.ndarray:
            return self.scorer.score(prepared[1], progress=progress)

        def write(i: int, prepared: tuple[pa.Table, Any], logits: np.ndarray) -> dict[str, int]:
            rows, enc = prepared
            out = rows.append_column("teacher_logits", logits_array(logits))
            store.write_shard(self.shard_dir / self.shards.name(i), out, self.schema, self.fp)
            return {"shard": i, "rows": len(enc), "tokens": int(enc.lengths.sum()), "threads": self.scorer.threads,
                    "batch_tokens": self.scorer.batch_tokens}

        return overlapped(todo, prepare, compute, write)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        done = self.run([int(i) for i in batch["shard"]])
        return {k: np.array([d[k] for d in done], dtype=np.int64) for k in done[0]}


def node() -> str:
    return f"node {socket.gethostname()} (pid {os.getpid()})"


def visible(paths: dict, writable: bool = False) -> dict:
    """`paths` as given, after checking that this worker sees every path in it (and may write there)."""
    for key, value in paths.items():
        if key.endswith("col") or value is None:
            continue
        path = Path(value)
        if not path.exists() or (writable and not os.access(path, os.W_OK)):
            raise DataError(f"{node()} cannot {'write to' if writable else 'see'} this path: with --engine ray "
                            "every node must reach the input and output paths (a shared filesystem, mounted at "
                            "the same place)", str(path))
    return paths


def teacher_files(files: ModelFiles, trust_remote_code: bool) -> ModelFiles:
    """The teacher's files in this worker: the driver's directory where it is visible, else the hub id fetched
    again (into this node's cache), which must then hash to the same weights."""
    from .. import hub

    if files.path.is_dir():
        return files
    try:
        fetched = hub.locate_model(files.name, trust_remote_code)
    except MissingResourceError:  # a directory this node does not see
        visible({"teacher": files.path})
        raise
    if fetched.identity() != files.identity():
        raise DataError(f"{node()} fetched other weights for {files.name} than the job was planned with",
                        str(fetched.path))
    return fetched

