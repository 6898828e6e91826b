"""How many worker processes to start for a piece of work.

The library does not read cgroups: the caller knows best what it may use (the pipeline passes its cgroup-aware
CPU count as `cpu_limit`). Without one, the CPU affinity mask is the limit: `os.cpu_count()` counts the host's
cores, which in a container can be many more than this process may run on.
"""

from __future__ import annotations

import os


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
