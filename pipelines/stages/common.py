"""What every stage's command line shares: the task selection flags."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..tasks import TaskSpec, resolve_task


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
