"""Independent jobs side by side in spawned processes: the students of several seeds (and their baselines).

A BiLSTM student trains on one CPU thread (a second makes it slower), so on a machine with P cores P students
train in the time of one. `run_side_by_side(fn, jobs, workers)` calls `fn(job)` for every job, in `workers`
processes (in this process when one is enough), and returns the results in the jobs' order. Each job's
progress bar prints plain lines named after its label (live bars of several processes would overwrite each
other). The first failure is raised once the jobs already running have stopped; the jobs not started are
cancelled. Every job here writes its own stage directory, so a killed group resumes job by job.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

from . import progress

T = TypeVar("T")


def run_side_by_side(fn: Callable[[Any], T], jobs: Sequence[Any], workers: int,
                     labels: Sequence[str] | None = None) -> list[T]:
    labels = list(labels) if labels is not None else [str(i) for i in range(len(jobs))]
    if workers <= 1 or len(jobs) <= 1:
        return [fn(job) for job in jobs]
    ctx = multiprocessing.get_context("spawn")  # torch and OpenMP do not survive fork
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=ctx) as pool:
        futures = [pool.submit(_labelled_call, fn, job, label) for job, label in zip(jobs, labels)]
        try:
            return [f.result() for f in futures]
        except BaseException:
            for f in futures:
                f.cancel()
            raise


def _labelled_call(fn: Callable[[Any], T], job: Any, label: str) -> T:
    progress.set_label(label)
    return fn(job)
