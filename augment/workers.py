"""How many worker processes to start for a piece of work, and the process-pool mapper that runs a callable
class over chunks of work in them.

The library does not read cgroups: the caller knows best what it may use (the pipeline passes its cgroup-aware
CPU count as `cpu_limit`). Without one, the CPU affinity mask is the limit: `os.cpu_count()` counts the host's
cores, which in a container can be many more than this process may run on.

A *mapper* is any function `mapper(cls, kwargs, items)` that builds `cls(**kwargs)` once per worker and yields
`worker(item)` for every item, in the items' order. `ProcessMapper` is the library's own (worker processes on
this machine); the pipeline plugs in another (Ray actors) without the library knowing of it.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

Mapper = Callable[[type, dict, Sequence[Any]], Iterator[Any]]


def affinity_cpus() -> int:
    """CPUs in this process's affinity mask (all cores where the platform has no affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def worker_count(requested: int | None, tasks: int, cpu_limit: int | None = None) -> int:
    """Worker processes for `tasks` independent tasks: `requested` (None: one per CPU), capped by the CPUs this
    process may use (`cpu_limit`, default the affinity mask) and by the number of tasks; at least 1."""
    limit = max(1, cpu_limit if cpu_limit is not None else affinity_cpus())
    wanted = limit if requested is None else requested
    return max(1, min(wanted, limit, tasks))


_instance: Any = None


def _build(cls: type, kwargs: dict) -> None:
    global _instance
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # one process per CPU: no thread pools inside them
    _instance = cls(**kwargs)


def _call(item: Any) -> Any:
    return _instance(item)


class ProcessMapper:
    """Runs a callable class over items in worker processes (one instance per process, built once), results in
    the items' order. With one worker it runs in this process. At most `ahead` items per worker are in flight,
    so results a slow consumer has not taken yet never pile up in memory."""

    def __init__(self, workers: int | None = 1, cpu_limit: int | None = None, ahead: int = 2):
        self.workers, self.cpu_limit, self.ahead = workers, cpu_limit, ahead

    def __call__(self, cls: type, kwargs: dict, items: Sequence[Any]) -> Iterator[Any]:
        n = worker_count(self.workers, len(items), self.cpu_limit)
        if n == 1:
            worker = cls(**kwargs)
            for item in items:
                yield worker(item)
            return
        with ProcessPoolExecutor(n, initializer=_build, initargs=(cls, kwargs)) as pool:
            pending: deque = deque()
            for item in items:
                pending.append(pool.submit(_call, item))
                if len(pending) >= n * self.ahead:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
