"""Arrow data of stage outputs: datasets directories, the resumable shards a stage keeps while it works, reads.

Every output is written by datasets' own writers: `Dataset.save_to_disk` lays out the directory (Arrow files,
state.json, dataset_info.json), so `datasets.load_from_disk` keeps reading what we wrote whatever its layout
becomes; the shards a resumable stage keeps while it works are written with `datasets.arrow_writer.ArrowWriter`
(the Arrow IPC stream files datasets reads), each carrying the stage fingerprint in its metadata. The same rows
give the same bytes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from .temp_files import naming_a_full_disk, replacing

STATE = "state.json"
SHARDS = "shards"  # the sub-directory of a resumable stage's work directory holding its finished shards


@contextlib.contextmanager
def _datasets_quiet() -> Iterator[None]:
    """datasets draws a bar of its own while it saves; a stage shows only its own progress."""
    import datasets

    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled:
            datasets.enable_progress_bars()


def save_dataset(out: Path, table: pa.Table, schema: pa.Schema, fp: str, num_shards: int) -> None:
    """Write `table` (cast to the declared schema) into directory `out` with `Dataset.save_to_disk`, in
    `num_shards` contiguous files; the dataset's fingerprint is the stage's."""
    import datasets
    from datasets.table import InMemoryTable

    table = table.cast(schema) if table.schema != schema else table
    dataset = datasets.Dataset(InMemoryTable(table.replace_schema_metadata(None)), fingerprint=fp[:16])
    with naming_a_full_disk(out), _datasets_quiet():
        dataset.save_to_disk(str(out), num_shards=max(1, num_shards))


def write_dataset(out: Path, table: pa.Table, schema: pa.Schema, fp: str, rows_per_shard: int = 500_000) -> None:
    """Write a whole table as a datasets directory, in files of at most `rows_per_shard` rows."""
    save_dataset(out, table, schema, fp, -(-table.num_rows // rows_per_shard))


def shard_name(i: int, n: int) -> str:
    return f"data-{i:05d}-of-{n:05d}.arrow"


def write_shard(path: Path, table: pa.Table, schema: pa.Schema, fp: str) -> None:
    """One finished shard of a resumable stage, written atomically with datasets' ArrowWriter; its metadata
    carries the stage fingerprint `fp`, which a resumed run checks before it trusts the file."""
    from datasets.arrow_writer import ArrowWriter

    table = table.cast(schema) if table.schema != schema else table
    path.parent.mkdir(exist_ok=True)
    with replacing(path) as tmp:
        with ArrowWriter(schema=schema, path=str(tmp), fingerprint=fp) as writer:
            writer.write_table(table)
            writer.finalize()
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())


class PartWriter:
    """Streams tables into numbered Arrow files of exactly `rows_per_file` rows (the last one shorter) in
    `part_dir`, each written atomically by `write_shard`: the files, and so the dataset `assemble_shards` makes
    of them, depend on the rows alone, not on how the caller cut them."""

    def __init__(self, part_dir: Path, schema: pa.Schema, fp: str, rows_per_file: int):
        self.part_dir, self.schema, self.fp, self.rows_per_file = part_dir, schema, fp, rows_per_file
        self.pending: list[pa.Table] = []
        self.pending_rows = 0
        self.files = 0
        part_dir.mkdir(parents=True, exist_ok=True)

    def add(self, table: pa.Table) -> None:
        self.pending.append(table)
        self.pending_rows += table.num_rows
        while self.pending_rows >= self.rows_per_file:
            self._flush(self.rows_per_file)

    def close(self) -> None:
        if self.pending_rows or not self.files:
            self._flush(self.pending_rows)

    def _flush(self, rows: int) -> None:
        table = pa.concat_tables(self.pending) if self.pending else self.schema.empty_table()
        write_shard(self.part_dir / f"data-{self.files:05d}.arrow", table.slice(0, rows), self.schema, self.fp)
        rest = table.slice(rows)
        self.pending, self.pending_rows = ([rest] if rest.num_rows else []), rest.num_rows
        self.files += 1


def read_arrow_file(path: Path) -> pa.Table:
    """One Arrow IPC stream file (the format datasets writes), memory-mapped."""
    with pa.memory_map(str(path)) as source:
        return pa.ipc.open_stream(source).read_all()


def shard_fingerprint(path: Path) -> str | None:
    """The fingerprint a shard was written with (ArrowWriter's `fingerprint`, in datasets' file metadata)."""
    with pa.memory_map(str(path)) as source:
        meta = pa.ipc.open_stream(source).schema.metadata or {}
    try:
        return json.loads(meta[b"huggingface"]).get("fingerprint")
    except (KeyError, ValueError, AttributeError):
        return None


def shard_problem(path: Path, rows: int, fp: str) -> str | None:
    """Why a finished shard left by an earlier run cannot be trusted (None when it can): it must be a readable
    Arrow stream of exactly `rows` rows written with fingerprint `fp`."""
    try:
        found = shard_fingerprint(path)
        if found != fp:
            return f"written by another run (fingerprint {str(found)[:12]}, expected {fp[:12]})"
        n = read_arrow_file(path).num_rows
    except (OSError, pa.ArrowException) as e:
        return f"unreadable ({type(e).__name__})"
    return None if n == rows else f"holds {n} rows, not {rows}"


def assemble_shards(work_dir: Path, schema: pa.Schema, fp: str) -> None:
    """Turn the finished shards in `work_dir/shards` into the stage's dataset directory (one file per shard,
    same names), then drop the shards."""
    names = sorted(p.name for p in (work_dir / SHARDS).glob("data-*.arrow"))
    tables = [read_arrow_file(work_dir / SHARDS / name) for name in names]
    table = pa.concat_tables([t.replace_schema_metadata(None) for t in tables]) if tables else schema.empty_table()
    save_dataset(work_dir, table, schema, fp, len(names))
    del tables, table  # the memory maps, before their files go
    shutil.rmtree(work_dir / SHARDS)


def dataset_files(in_dir: str | Path) -> list[Path]:
    """The Arrow files of a stage output directory, in row order (as its state.json lists them)."""
    state = json.loads((Path(in_dir) / STATE).read_text("utf-8"))
    return [Path(in_dir) / f["filename"] for f in state["_data_files"]]


def read_table(in_dir: str | Path, columns: list[str] | None = None) -> pa.Table:
    """The whole table of a stage output (memory-mapped; only `columns` if given)."""
    tables = [read_arrow_file(p) for p in dataset_files(in_dir)]
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    return table.select(columns) if columns is not None else table
