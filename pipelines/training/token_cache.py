"""The scored set tokenised once per tokenizer, on disk, and read by every student trained from it: each seed,
baseline, ablation subset, filter and resume of both families (before, each of them tokenised the whole set
again: a `distill run` with three seeds, a baseline and an ablation tokenised it five times or more).

An entry holds flat int32 token ids and int64 row offsets (CSR: row i is `ids[offsets[i]:offsets[i + 1]]`), per
side of a pair, as raw little-endian arrays (`ArrayWriter`: appended a piece at a time while the set is
tokenised, so building one holds a piece, not the set) that are memory-mapped when read; a student takes its kept rows from them
(`training.rows`) and builds what it needs (the BiLSTM its vocabulary, from the kept rows' counts alone). It is
keyed by the scored set's fingerprint, the tokenizer's identity (its rules and settings, hashed), the rows read
(--limit) and CACHE_VERSION, so a cache never answers for other text or another tokenizer.

Entries live under $DISTILL_CACHE/tokens (default ~/.cache/distill-pipelines/tokens), outside every stage's
output; each is written into a temporary folder and renamed into place when complete, so a killed build leaves
no entry (only its `.tmp-` folder, which may be deleted), and two builds of one entry at once both finish, one
keeping its copy. Delete the folder to reclaim the space: the next student builds its entry again.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CACHE_ENV = "DISTILL_CACHE"
CACHE_VERSION = 2  # bump when what an entry holds for the same key changes
META = "meta.json"  # written last: an entry without it is not complete


def cache_root() -> Path:
    base = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "distill-pipelines"
    return Path(base) / "tokens"


@dataclass
class TokenCache:
    """One entry: its folder, whether it was there already, and the seconds its build took (0 on a hit)."""

    path: Path
    hit: bool
    build_s: float

    def array(self, name: str) -> np.ndarray:
        """A stored array, memory-mapped read-only."""
        dtype = self.meta["arrays"][name]
        path = self.path / f"{name}.bin"
        if path.stat().st_size == 0:
            return np.zeros(0, dtype=dtype)
        return np.memmap(path, dtype=dtype, mode="r")

    def has(self, name: str) -> bool:
        return name in self.meta["arrays"]

    @functools.cached_property
    def meta(self) -> dict:
        return json.loads((self.path / META).read_text("utf-8"))

    def record(self) -> dict:
        """stats.json's `token_cache`."""
        return {"key": self.path.name, "hit": self.hit, "build_s": round(self.build_s, 2)}


def entry_key(scored_fingerprint: str, identity: dict) -> str:
    blob = json.dumps({"scored": scored_fingerprint, "version": CACHE_VERSION, **identity}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


class ArrayWriter:
    """A flat array written a piece at a time to `folder/name.bin` (little-endian `dtype`)."""

    def __init__(self, folder: Path, name: str, dtype: str):
        self.name, self.dtype = name, np.dtype(dtype).newbyteorder("<")
        self.file = open(folder / f"{name}.bin", "wb")  # noqa: SIM115 (closed by close())
        self.length = 0

    def append(self, values: np.ndarray) -> None:
        self.file.write(np.ascontiguousarray(values, dtype=self.dtype).tobytes())
        self.length += len(values)

    def close(self) -> dict:
        """What meta.json's `arrays` records of it."""
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        return {self.name: self.dtype.str}


def cached(scored_fingerprint: str, identity: dict, build: Callable[[Path], dict]) -> TokenCache:
    """The entry for this scored set and tokenizer identity; `build(folder)` writes its arrays (`ArrayWriter`)
    into an empty folder and returns what meta.json records (`arrays`: name -> dtype, and any figures), when
    there is none yet."""
    final = cache_root() / entry_key(scored_fingerprint, identity)
    if (final / META).is_file():
        return TokenCache(final, True, 0.0)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    t0 = time.perf_counter()
    try:
        meta = build(tmp)
        (tmp / META).write_text(json.dumps({**meta, "identity": identity, "scored": scored_fingerprint,
                                            "version": CACHE_VERSION}, indent=1), "utf-8")
        try:
            os.rename(tmp, final)
        except OSError:  # another build finished first (or a stale, incomplete entry is in the way)
            if not (final / META).is_file():
                raise
            shutil.rmtree(tmp)  # our own temporary folder, never another's
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return TokenCache(final, False, time.perf_counter() - t0)


def source_hash(*modules: object) -> str:
    """The source of the modules whose code decides the tokens (an edit there makes a new entry)."""
    import inspect

    h = hashlib.sha256()
    for m in modules:
        h.update(inspect.getsource(m).encode())
    return h.hexdigest()[:16]
