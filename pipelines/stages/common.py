"""Pieces every stage's command line shares: task selection, progress bars, peak memory."""

from __future__ import annotations

import argparse
import resource
import sys
from pathlib import Path

from tqdm import tqdm

from ..errors import DataError
from ..tasks import TaskSpec, generic_task, get_task


def add_task_args(parser: argparse.ArgumentParser) -> None:
    """--task/--data and the generic column mapping (for files that are not one of the built-in tasks)."""
    parser.add_argument("--task", help="built-in task (sst2, mrpc, rte, cola, qqp, mnli, demo) or 'generic'")
    parser.add_argument("--data", type=Path, required=False,
                        help="directory with train.* and dev.* files (or one file); the demo task has a default")
    g = parser.add_argument_group("generic tasks (CSV/TSV/JSONL/Parquet files or datasets directories)")
    g.add_argument("--text-col", help="column holding the text")
    g.add_argument("--text-pair-col", help="column holding the second text of a pair")
    g.add_argument("--label-col", default="label", help="column holding the label (default: label)")
    g.add_argument("--labels", help="comma-separated label values in id order (default: sorted values of train)")


def task_from_args(args: argparse.Namespace) -> TaskSpec:
    return resolve_task(args.task, args.text_col, args.text_pair_col, args.label_col,
                        args.labels.split(",") if args.labels else None)


def resolve_task(name: str | None, text_col: str | None = None, pair_col: str | None = None,
                 label_col: str | None = "label", labels: list[str] | None = None) -> TaskSpec:
    """A built-in task by name, or a generic one when a text column is given."""
    if text_col:
        return generic_task(text_col, pair_col, label_col, labels, name=name or "generic")
    if not name or name == "generic":
        raise DataError("pass --task with a built-in task name, or --text-col (and --label-col) for your own file")
    return get_task(name)


def data_dir(task: TaskSpec, data: Path | str | None) -> Path:
    if data is not None:
        return Path(data)
    if task.default_data is not None:
        return task.default_data
    raise DataError(f"task '{task.name}' needs --data: the directory holding its train and dev files")


LOG_INTERVAL_S = 30.0  # seconds between progress lines in a log


class _LogLines(tqdm):
    """A progress bar for logs: one plain line at most every LOG_INTERVAL_S seconds, where a terminal bar would
    redraw itself with carriage returns (unreadable in a batch job's log file). Nothing at 0%, so a loop that
    ends within the interval leaves no line at all."""

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if msg == "" or (msg is None and self.n == 0):  # tqdm clears a closed bar with an empty message
            return False
        print(msg or str(self), file=self.fp, flush=True)
        return True


def progress(total: int, desc: str, unit: str = "ex") -> tqdm:
    """A progress bar on stderr: live on a terminal; in a log (stderr redirected, CI) a line every 30 s.
    TQDM_DISABLE=1 silences both."""
    if sys.stderr.isatty():
        return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, dynamic_ncols=True, leave=False,
                    file=sys.stderr)
    return _LogLines(total=total, desc=desc, unit=unit, unit_scale=True, ncols=100, ascii=True, leave=False,
                     mininterval=LOG_INTERVAL_S, maxinterval=LOG_INTERVAL_S, file=sys.stderr)


def peak_memory_mb() -> float:
    """Peak resident memory of this process and of its finished worker processes (the larger), in MiB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(max(own, children) / 1024, 1)
