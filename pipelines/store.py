"""Stage output directories: chained fingerprints, atomic writes, manifests, resumable Arrow shards.

An output directory is a contract: it exists only once it is complete (it is built in a work directory beside
the target and renamed into place, `manifest.json` written last), and its manifest's fingerprint says exactly
which inputs and settings made it. A stage whose output already carries the fingerprint it would compute is
skipped. Fingerprints hash declared data (canonical JSON of configs, file hashes), never live Python objects.

Safe to point at a user's disk: a stage replaces only a directory whose manifest this tool wrote (tool name,
known stage, 64-hex fingerprint) or an empty one, and refuses anything else before it starts; the old output is
swapped out atomically and only then deleted; a lock beside the output stops a second process on it at once.

The data is written by `datasets` itself (`Dataset.save_to_disk`, and `ArrowWriter` for the shards of a
resumable stage), so `datasets.load_from_disk(dir)` memory-maps it and plain pyarrow reads its Arrow files; the
same rows give the same bytes. The schemas of the transfer and scored sets are declared here, once.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as _dt
import errno
import fcntl
import glob
import hashlib
import json
import os
import platform
import re
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import pyarrow as pa

from .errors import DistillError

MANIFEST = "manifest.json"
STATS = "stats.json"
STATE = "state.json"

# Packages whose versions change results; recorded in every manifest.
_VERSIONED = ("distill-pipelines", "numpy", "pyarrow", "datasets", "spacy", "torch", "transformers", "tokenizers")


# ----------------------------------------------------------------------------------------------- fingerprints

def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: the one byte form of a config that fingerprints hash."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_json_default)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    raise TypeError(f"cannot fingerprint a {type(obj).__name__}: pass declared data (str, int, float, lists, dicts)")


def fingerprint(*parts: Any) -> str:
    """sha256 over the canonical JSON of the parts; 64 hex characters."""
    return hashlib.sha256(canonical_json(list(parts)).encode("utf-8")).hexdigest()


def hash_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def hash_files(paths: list[str | Path], root: str | Path | None = None) -> str:
    """One sha256 over several files: each file's relative name and content hash, in sorted name order."""
    entries = []
    for p in paths:
        name = str(Path(p).relative_to(root)) if root is not None else Path(p).name
        entries.append((name, hash_file(p)))
    return fingerprint(sorted(entries))


def hash_path(path: str | Path) -> str:
    """sha256 of a file, or of every file under a directory (names and contents)."""
    path = Path(path)
    if path.is_dir():
        return hash_files(sorted(p for p in path.rglob("*") if p.is_file()), root=path)
    return hash_file(path)


# Packages whose versions change a model stage's numbers (kernels, tokenisation): part of those fingerprints.
RESULT_PACKAGES = ("torch", "transformers", "tokenizers")


def result_versions(names: tuple[str, ...] = RESULT_PACKAGES) -> dict[str, str | None]:
    """Installed versions of `names` (None where one is missing), for a stage's fingerprint: a finished output
    made with another torch or tokenizers is not reused, as its numbers may differ."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _VERSIONED:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


# ----------------------------------------------------------------------------------------------- manifests

TOOL = "distill-pipelines"  # written into every manifest: the mark of a directory this tool may replace
# The stages that write output directories (their manifests' `stage`).
STAGE_NAMES = ("augment", "finetune-teacher", "score", "train")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def read_manifest(out_dir: str | Path) -> dict[str, Any] | None:
    """The manifest of a stage output this tool wrote: a JSON object naming this tool, a known stage and a
    64-hex fingerprint. None for anything else (no file, unreadable, another program's manifest.json)."""
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(doc, dict) or doc.get("tool") != TOOL or doc.get("stage") not in STAGE_NAMES:
        return None
    return doc if isinstance(doc.get("fingerprint"), str) and _HEX64.match(doc["fingerprint"]) else None


def is_complete(out_dir: str | Path, fp: str) -> bool:
    """True when `out_dir` holds a finished stage output made with fingerprint `fp`."""
    manifest = read_manifest(out_dir)
    return manifest is not None and manifest.get("fingerprint") == fp


def require_stage_output(in_dir: str | Path, stage: str | tuple[str, ...], what: str) -> dict[str, Any]:
    """The manifest of a finished input directory of the given stage(s), or a clear error naming the fix."""
    stages = (stage,) if isinstance(stage, str) else stage
    manifest = read_manifest(in_dir)
    if manifest is None:
        raise DistillError(
            f"{in_dir}: not a finished stage output (no {MANIFEST} written by {TOOL}); pass the directory "
            f"written by `distill {stages[0]}` as {what}"
        )
    if manifest.get("stage") not in stages:
        raise DistillError(
            f"{in_dir}: is the output of stage '{manifest.get('stage')}', but {what} must come from "
            + " or ".join(f"`distill {s}`" for s in stages)
        )
    return manifest


def check_replaceable(out_dir: Path) -> None:
    """Refuse, before any work, an output path this tool may not replace: a file, or a directory that is
    neither empty nor a stage output whose manifest this tool wrote."""
    if out_dir.is_symlink():
        raise DistillError(f"{out_dir}: is a symbolic link; pass the directory it points to as --out")
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise DistillError(f"{out_dir}: exists and is not a directory; choose another --out")
    if read_manifest(out_dir) is None and any(out_dir.iterdir()):
        raise DistillError(
            f"{out_dir}: exists and is not a distill stage output (no {MANIFEST} written by {TOOL}); nothing was "
            "touched: choose another --out, or remove it yourself"
        )


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_json(path: str | Path, obj: Any) -> None:
    """Write JSON atomically (temp file in the same directory, fsync, rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, sort_keys=True, ensure_ascii=False, default=_json_default)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# ----------------------------------------------------------------------------------------------- stage outputs

@dataclass
class StageRun:
    """A stage output under construction: write files into `work_dir`; `commit` puts it in place of `out_dir`."""

    stage: str
    out_dir: Path
    fingerprint: str
    config: dict[str, Any]
    inputs: dict[str, str] = field(default_factory=dict)  # input name -> input fingerprint
    seed: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # recorded in the manifest (teacher name, label map…)
    stats: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    # What else must match before a killed run's finished work is resumed, beyond the fingerprint: scoring puts
    # its device type here, so float32 shards of a CPU and a GPU never mix in one output.
    work_key: str = ""

    @property
    def work_dir(self) -> Path:
        # Named after the fingerprint (and work key), so a resumable stage killed mid-way (even kill -9) finds its
        # finished shards again, and a run with other settings never mixes with them.
        key = fingerprint(self.fingerprint, self.work_key) if self.work_key else self.fingerprint
        return self.out_dir.parent / f".{self.out_dir.name}.partial-{key[:16]}"

    @contextlib.contextmanager
    def timed(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = round(self.timings.get(name, 0.0) + time.perf_counter() - t0, 4)

    def manifest(self) -> dict[str, Any]:
        return {
            "tool": TOOL,
            "stage": self.stage,
            "fingerprint": self.fingerprint,
            "config": self.config,
            "seed": self.seed,
            "inputs": self.inputs,
            "versions": package_versions(),
            "timings_s": self.timings,
            "wall_s": round(time.time() - self.started, 3),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            **self.extra,
        }

    def commit(self) -> None:
        """Write stats and manifest (last), then put the work directory in place of `out_dir` atomically."""
        self.stats.setdefault("wall_s", round(time.time() - self.started, 3))
        write_json(self.work_dir / STATS, self.stats)
        write_json(self.work_dir / MANIFEST, self.manifest())
        (self.work_dir / PARTIAL_MARKER).unlink(missing_ok=True)  # the manifest marks it as ours from now on
        _fsync_dir(self.work_dir)
        check_replaceable(self.out_dir)  # again: hours may have passed since the stage started
        replace_dir(self.work_dir, self.out_dir)


# ----------------------------------------------------------------------------------------------- replacing

PARTIAL_MARKER = ".distill-partial"  # in every work directory, so only our own are ever cleared
_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one atomic step (Linux `renameat2(RENAME_EXCHANGE)`); False where the
    system or file system cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def aside_path(out_dir: Path) -> Path:
    return out_dir.parent / f".{out_dir.name}.replaced"


def replace_dir(new: Path, out_dir: Path) -> None:
    """Put directory `new` at `out_dir`. A kill at any instant leaves a complete output there, old or new: the
    two are swapped atomically where the system can, and the old one is deleted only once it is out of the way.
    Elsewhere the old output is renamed aside first, and `recover_replaced` puts it back if a kill comes
    between the two renames."""
    if not out_dir.exists():
        os.replace(new, out_dir)
    elif _exchange(new, out_dir):
        _fsync_dir(out_dir.parent)
        shutil.rmtree(new)  # `new` now holds the old output
    else:
        aside = aside_path(out_dir)
        os.replace(out_dir, aside)
        os.replace(new, out_dir)
        _fsync_dir(out_dir.parent)
        shutil.rmtree(aside)
    _fsync_dir(out_dir.parent)


def recover_replaced(out_dir: Path) -> None:
    """After a kill between the two renames of `replace_dir`'s fallback: put the old output back (it is ours:
    its manifest says so), or drop the aside copy when the new output made it into place."""
    aside = aside_path(out_dir)
    if not aside.is_dir() or read_manifest(aside) is None:
        return
    if out_dir.exists():
        shutil.rmtree(aside)
    else:
        os.replace(aside, out_dir)


def _ours(work_dir: Path) -> bool:
    """A work directory this tool made: it holds our marker, or (once complete) our manifest."""
    return (work_dir / PARTIAL_MARKER).is_file() or read_manifest(work_dir) is not None


def clear_stale_work(out_dir: Path, keep: Path) -> None:
    """Remove work directories of `out_dir` left by killed runs with other settings (never resumable), and
    only those this tool made. The name is glob-escaped: `--out 'exp[1]'` must not match `.exp1.partial-*`."""
    for stale in out_dir.parent.glob(glob.escape(f".{out_dir.name}.partial-") + "*"):
        if stale != keep and stale.is_dir() and _ours(stale):
            shutil.rmtree(stale, ignore_errors=True)


# ----------------------------------------------------------------------------------------------- locking

def lock_path(out_dir: Path) -> Path:
    return out_dir.parent / f".{out_dir.name}.lock"


@contextlib.contextmanager
def output_lock(out_dir: Path) -> Iterator[None]:
    """Hold an advisory lock on `out_dir` for the life of a stage: a second process on the same output stops
    at once instead of deleting the first one's partial work. The lock file beside the output is removed on
    release (a waiting process that opened it before then notices the file changed and opens it again)."""
    path = lock_path(out_dir)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise DistillError(f"{out_dir}: another distill process (pid {holder}) is writing this output; wait "
                               "for it to finish, or stop it") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the previous holder removed the file between our open and our lock: take the new one
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)


@contextlib.contextmanager
def stage_run(stage: str, out_dir: str | Path, fp: str, config: dict[str, Any], *, resumable: bool = False,
              **kwargs: Any) -> Iterator[StageRun]:
    """Open a stage output, under its lock. On error or interrupt the work directory is removed, unless the
    stage is resumable (its finished shards are then kept for the next run). On success the caller must call
    `run.commit()`. An output path this tool may not replace is refused here, before any work."""
    if stage not in STAGE_NAMES:
        raise ValueError(f"unknown stage {stage!r}; add it to store.STAGE_NAMES")
    out_dir = Path(out_dir)
    check_replaceable(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with output_lock(out_dir):
        recover_replaced(out_dir)
        check_replaceable(out_dir)
        run = StageRun(stage=stage, out_dir=out_dir, fingerprint=fp, config=config, **kwargs)
        clear_stale_work(out_dir, keep=run.work_dir)
        if run.work_dir.exists() and (not resumable or read_manifest(run.work_dir) is not None):
            shutil.rmtree(run.work_dir)  # not resumable, or an old output displaced by a killed commit
        run.work_dir.mkdir(exist_ok=True)
        write_json(run.work_dir / PARTIAL_MARKER, {"tool": TOOL, "stage": stage, "fingerprint": fp})
        try:
            yield run
        except BaseException:
            if not resumable:
                shutil.rmtree(run.work_dir, ignore_errors=True)
            raise


# ----------------------------------------------------------------------------------------------- schemas

def transfer_schema(is_pair: bool) -> pa.Schema:
    """The transfer-set contract (DESIGN.md §4): the one place it is declared."""
    fields = [pa.field("text", pa.string(), nullable=False)]
    if is_pair:
        fields.append(pa.field("text_pair", pa.string(), nullable=False))
    fields += [
        pa.field("label", pa.int64()),  # gold label id of originals; null for synthetic rows
        pa.field("source_index", pa.int64(), nullable=False),  # row of the original in the split
        pa.field("draw", pa.int32()),  # the draw (0 .. n_iter - 1) that made a synthetic row; null for originals
        pa.field("is_original", pa.bool_(), nullable=False),
        pa.field("ops", pa.list_(pa.string()), nullable=False),  # rules that changed the row: mask, pos, ngram
    ]
    return pa.schema(fields)


def scored_schema(source: pa.Schema, num_labels: int) -> pa.Schema:
    """The scored-set contract (DESIGN.md §4): the input's columns, then one float32 logit per class."""
    return source.append(pa.field("teacher_logits", pa.list_(pa.float32(), num_labels), nullable=False))


# ----------------------------------------------------------------------------------------------- Arrow data
#
# Every output is written by datasets' own writers: `Dataset.save_to_disk` lays out the directory (Arrow files,
# state.json, dataset_info.json), so `datasets.load_from_disk` keeps reading what we wrote whatever its layout
# becomes; the shards a resumable stage keeps while it works are written with `datasets.arrow_writer.ArrowWriter`
# (the Arrow IPC stream files datasets reads), each carrying the stage fingerprint in its metadata. The same rows
# give the same bytes.

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
    with _datasets_quiet():
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
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with ArrowWriter(schema=schema, path=str(tmp), fingerprint=fp) as writer:
        writer.write_table(table)
        writer.finalize()
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


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
