"""Stage output directories: manifests, the lock, crash-safe commit and replacement, stale work.

An output directory is a contract: it exists only once it is complete (it is built in a work directory beside
the target and renamed into place, `manifest.json` written last), and its manifest's fingerprint says exactly
which inputs and settings made it. A stage whose output already carries the fingerprint it would compute is
skipped.

Safe to point at a user's disk: a stage replaces only a directory whose manifest this tool wrote (tool name,
known stage, 64-hex fingerprint) or an empty one, and refuses anything else before it starts; the old output is
swapped out atomically and only then deleted; a lock beside the output stops a second process on it at once.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as _dt
import errno
import fcntl
import glob
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

from ..errors import DistillError
from .fingerprints import fingerprint, json_default
from .temp_files import open_lock_file, replacing

MANIFEST = "manifest.json"
STATS = "stats.json"

# Packages whose versions change results; recorded in every manifest.
_VERSIONED = ("distill-pipelines", "numpy", "pyarrow", "datasets", "spacy", "torch", "transformers", "tokenizers")


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
    with replacing(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, sort_keys=True, ensure_ascii=False, default=json_default)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())


# ----------------------------------------------------------------------------------------------- stage outputs

def work_dir_for(out_dir: Path, fp: str, work_key: str = "") -> Path:
    """The work directory of `out_dir`'s output with fingerprint `fp`: named after the fingerprint (and work key),
    so a resumable stage killed mid-way (even kill -9) finds its finished shards again, and a run with other
    settings never mixes with them."""
    key = fingerprint(fp, work_key) if work_key else fp
    return Path(out_dir).parent / f".{Path(out_dir).name}.partial-{key[:16]}"


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
        return work_dir_for(self.out_dir, self.fingerprint, self.work_key)

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


def is_own_work(work_dir: Path) -> bool:
    """A work directory this tool made: it holds our marker, or (once complete) our manifest."""
    return (work_dir / PARTIAL_MARKER).is_file() or read_manifest(work_dir) is not None


def other_work(out_dir: Path, keep: Path | None = None) -> list[Path]:
    """This tool's work directories of `out_dir` (but `keep`): those of stopped runs with other settings, kept
    as they resume when those settings come back (their names hold the fingerprint), and finished outputs a
    killed commit displaced (they hold a manifest). The name is glob-escaped: `--out 'exp[1]'` must not match
    `.exp1.partial-*`."""
    found = out_dir.parent.glob(glob.escape(f".{out_dir.name}.partial-") + "*")
    return sorted(w for w in found if w != keep and w.is_dir() and not w.is_symlink() and is_own_work(w))


def keep_other_work(out_dir: Path, keep: Path) -> None:
    """Before a stage writes `out_dir`: remove the outputs killed commits displaced beside it (never resumed: the
    output they replaced, or that replaced them, is in place), and say which work of other settings stays."""
    kept = []
    for w in other_work(out_dir, keep):
        if read_manifest(w) is not None:
            shutil.rmtree(w, ignore_errors=True)
        else:
            kept.append(w)
    say_kept_work(out_dir, kept)


def output_of(work_dir: Path) -> Path:
    """The output directory a work directory (`.NAME.partial-KEY`) is building."""
    return work_dir.parent / work_dir.name[1:work_dir.name.rindex(".partial-")]


def size_of(path: Path) -> int:
    """Bytes of the files under `path` (links not followed)."""
    return sum(f.lstat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def say_kept_work(out_dir: Path, kept: list[Path]) -> None:
    """One line on stderr when a stage starts beside the kept work of other settings: which, and how big."""
    if kept:
        size = sum(size_of(w) for w in kept) / 1e6
        print(f"[{out_dir.name}] kept beside this run: the work of {len(kept)} stopped run(s) with other settings "
              f"({size:,.1f} MB: {', '.join(w.name for w in kept)}); it resumes if those settings come back, and "
              f"`distill clean {out_dir.parent}` removes it", file=sys.stderr, flush=True)


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
        fd = open_lock_file(path)
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
        keep_other_work(out_dir, keep=run.work_dir)
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
