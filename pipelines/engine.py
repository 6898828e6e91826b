"""Engines: where a stage's parallel work runs. `local` (this machine: worker processes, one per GPU when there
are several) or `ray` (Ray actors on a local Ray instance or a cluster, pipelines/ray_engine.py). Every engine
gives the same bytes: the work is cut the same way whatever runs it, and results are put together in order.

Two shapes of work:
- `mapper`: a callable class mapped over chunks, results in order (augmentation's tagging and generation).
- `run_shards`: a resumable stage's shards, each written atomically by the worker that computed it (scoring).
  The stage cuts its input into fixed contiguous shards; `missing_shards` finds the ones without a trustworthy
  file (a file a killed run left is checked first: row count and fingerprint). A shard worker is a callable
  class with `run(shards, progress)`; within one worker, `overlapped` prepares the next shard (tokenising) and
  writes the previous one on a helper thread while the current one is computed, so the device never waits.

Every engine has the same interface (`Engine`): a stage asks it where its workers go (`plan_slots`) and hands it
the shards (`run_shards`), whichever engine it is.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from augment.workers import Mapper, ProcessMapper

from . import store
from .devices import available_cpus
from .flags import setting

log = logging.getLogger(__name__)

ENGINES = ("local", "ray")


def engine_setting() -> Any:
    return setting("local", choices=ENGINES,
                   help="where the work runs: local (this machine's worker processes) or ray (Ray actors on a local "
                        "Ray instance, or on the cluster at --ray-address); the output is the same")


def ray_address_setting() -> Any:
    return setting(None, help="--engine ray: join the running Ray cluster at ADDR (the head's host:port, from "
                              "`ray start --head`); default: start a local Ray instance")


def workers_setting(help: str) -> Any:
    return setting(0, help=f"{help}; the output is the same whatever the count")


def engine_problems(engine: str, workers: int) -> list[str]:
    out = [] if engine in ENGINES else [f"[engine] must be one of {', '.join(ENGINES)}, got '{engine}'"]
    return out + ([f"[workers] must be >= 0, got {workers}"] if workers < 0 else [])


class Engine(Protocol):
    """What a stage uses of an engine (`LocalEngine`, `ray_engine.RayEngine`)."""

    name: str
    workers: int  # for mapped chunks

    def mapper(self, cls: type, kwargs: dict, items: Any) -> Iterator[Any]:
        """The library's mapper protocol (augment.workers): `cls(**kwargs)` once per worker, results in order."""

    def plan_slots(self, device: str, workers: int) -> list[dict]:
        """Where a shard worker's replicas run: per slot a `device` and a CPU `threads` count (None: torch's own);
        `workers` is what the user asked for (0: the engine's own choice)."""

    def shard_workers(self, slots: list[dict]) -> int:
        """How many workers run the shards on these slots (what the stage's stats report)."""

    def run_shards(self, cls: type, kwargs: dict, slots: list[dict], todo: list[int], rows: Callable[[int], int],
                   progress: Callable[[int], Any], in_process: dict | None = None) -> list[Any]:
        """`cls(**kwargs, **slot)` over the shard numbers `todo` (`rows(i)`: the rows of shard i), each worker's
        `run(shards, progress)` writing its shards; `in_process`: kwargs only a worker planned to run in this very
        process gets (objects that need not travel: the source already open). Returns what the workers returned
        for every shard."""


# ----------------------------------------------------------------------------------------------- shards

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


def overlapped(todo: list[int], prepare: Callable[[int], Any], compute: Callable[[Any], Any],
               write: Callable[[int, Any, Any], Any]) -> list[Any]:
    """`write(i, prepared, compute(prepare(i)))` for every shard i in order, with preparing the next shard and
    writing the previous one on a helper thread while the current one computes; at most one shard waits in
    memory for its write. Returns what each write returned."""
    out: list[Any] = []
    with ThreadPoolExecutor(max_workers=1) as pool:
        ahead: Future | None = pool.submit(prepare, todo[0]) if todo else None
        writing: Future | None = None
        for k, i in enumerate(todo):
            prepared = ahead.result()
            if writing is not None:
                out.append(writing.result())
            ahead = pool.submit(prepare, todo[k + 1]) if k + 1 < len(todo) else None
            result = compute(prepared)
            writing = pool.submit(write, i, prepared, result)
        if writing is not None:
            out.append(writing.result())
    return out


# ----------------------------------------------------------------------------------------------- local engine

_progress_queue: Any = None


def _slot_init(queue: Any) -> None:
    global _progress_queue
    _progress_queue = queue


def _run_slot(cls: type, kwargs: dict, shards: list[int]) -> list[Any]:
    return cls(**kwargs).run(shards, _progress_queue.put)


def _drain(queue: Any, progress: Callable[[int], Any]) -> None:
    while (n := queue.get()) is not None:
        progress(n)


class LocalEngine:
    """This machine: `workers` processes for mapped chunks; for shards, one process per slot (a GPU, or a share
    of the CPU cores), shards dealt round-robin, or this process alone when there is one slot."""

    name = "local"

    def __init__(self, workers: int = 0):
        self.cpus = available_cpus()
        self.workers = min(workers or self.cpus, self.cpus)

    @property
    def mapper(self) -> Mapper:
        return ProcessMapper(self.workers, self.cpus)

    def plan_slots(self, device: str, workers: int) -> list[dict]:
        """One slot per visible GPU (CUDA_VISIBLE_DEVICES respected; `workers` caps it), or on a CPU one process
        with every core, or `workers` processes sharing the cores."""
        import torch

        from .devices import resolve_device

        if resolve_device(device).type == "cuda":
            n = torch.cuda.device_count()
            return [{"device": f"cuda:{k}", "threads": None} for k in range(min(workers or n, n))]
        cpus = available_cpus()
        n = max(1, min(workers or 1, cpus))
        return [{"device": "cpu", "threads": None if n == 1 else max(1, cpus // n)} for _ in range(n)]

    def shard_workers(self, slots: list[dict]) -> int:
        return len(slots)

    def run_shards(self, cls: type, kwargs: dict, slots: list[dict], todo: list[int], rows: Callable[[int], int],
                   progress: Callable[[int], Any], in_process: dict | None = None) -> list[Any]:
        """`cls(**kwargs, **slots[k]).run(shards, progress)` over shards todo[k::n], one process per slot
        (spawned: CUDA cannot be forked); results of every slot, in slot order. A single slot is run in this
        process, with `in_process` added to its kwargs. (The workers report their own rows: `rows` is not used.)"""
        extra = (in_process or {}) if len(slots) == 1 else {}
        slot_kwargs = [{**kwargs, **s, **extra} for s in slots]
        n = min(len(slot_kwargs), max(1, len(todo)))
        if n == 1:
            return cls(**slot_kwargs[0]).run(todo, progress)
        ctx = multiprocessing.get_context("spawn")
        queue = ctx.Queue()
        drain = threading.Thread(target=_drain, args=(queue, progress), daemon=True)
        drain.start()
        try:
            with ProcessPoolExecutor(n, mp_context=ctx, initializer=_slot_init, initargs=(queue,)) as pool:
                futures = [pool.submit(_run_slot, cls, slot_kwargs[k], todo[k::n]) for k in range(n)]
                return [r for f in futures for r in f.result()]
        finally:
            queue.put(None)
            drain.join()


@contextlib.contextmanager
def open_engine(name: str, workers: int = 0, ray_address: str | None = None) -> Iterator[Engine]:
    """The engine a stage runs on, started (and, for a Ray instance this process started, stopped again)."""
    if name == "ray":
        from .ray_engine import RayEngine

        with RayEngine.started(workers, ray_address) as engine:
            yield engine
        return
    if ray_address is not None:
        log.warning("--ray-address is ignored with --engine local")
    yield LocalEngine(workers)
