"""Runs a stage's per-shard work over the shards still missing: the seam where another engine (several GPUs,
Ray Data) plugs in next.

A resumable stage cuts its input into fixed contiguous shards. `missing_shards` finds the ones without a
trustworthy file (a file a killed run left is checked first: row count and fingerprint); `LocalEngine` runs the
stage's three steps over them in this process, overlapped: one helper thread prepares the next shard
(tokenising) and writes the previous one while the current one is computed, so the device never waits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Shards:
    """`num_rows` rows cut into contiguous shards of `shard_rows` (the last one shorter)."""

    num_rows: int
    shard_rows: int

    @property
    def count(self) -> int:
        return max(1, -(-self.num_rows // self.shard_rows))

    def rows(self, i: int) -> int:
        return max(0, min(self.shard_rows, self.num_rows - i * self.shard_rows))

    def name(self, i: int) -> str:
        return store.shard_name(i, self.count)


def missing_shards(shard_dir: Path, shards: Shards, fp: str) -> list[int]:
    """The shards without a trustworthy file in `shard_dir`. A file left by an earlier run is kept only if it
    holds the right number of rows and was written with fingerprint `fp`; one that fails is logged, deleted and
    done again. Half-written temporary files of a killed run are removed."""
    for stale in shard_dir.glob(".*.tmp-*"):
        stale.unlink()
    todo = []
    for i in range(shards.count):
        path = shard_dir / shards.name(i)
        if path.is_file():
            problem = store.shard_problem(path, shards.rows(i), fp)
            if problem is None:
                continue
            log.warning("%s: %s; doing it again", path.name, problem)
            path.unlink()
        todo.append(i)
    return todo


class LocalEngine:
    """Runs a stage's shard work in this process: `prepare(i)` (CPU: read and tokenise shard i), `compute(
    prepared)` (the device), `write(i, prepared, result)` (the shard's file). Preparing the next shard and writing
    the previous one happen on a helper thread while the current one computes; at most one shard waits in
    memory for its write."""

    def run(self, todo: list[int], prepare: Callable[[int], Any], compute: Callable[[Any], Any],
            write: Callable[[int, Any, Any], None]) -> None:
        with ThreadPoolExecutor(max_workers=1) as pool:
            ahead: Future | None = pool.submit(prepare, todo[0]) if todo else None
            writing: Future | None = None
            for k, i in enumerate(todo):
                prepared = ahead.result()
                if writing is not None:
                    writing.result()
                ahead = pool.submit(prepare, todo[k + 1]) if k + 1 < len(todo) else None
                result = compute(prepared)
                writing = pool.submit(write, i, prepared, result)
            if writing is not None:
                writing.result()
