"""What every stage's command line shares: the task selection flags, and the task a stage's input was made for."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import ConfigError
from ..tasks import TaskSpec, resolve_task

TASK_FLAGS = (("task", "name"), ("text_col", "text_col"), ("text_pair_col", "pair_col"), ("label_col", "label_col"))


def add_task_args(parser: argparse.ArgumentParser, *, from_input: str | None = None) -> None:
    """--task/--data and the generic column mapping (for files that are not one of the built-in tasks). With
    `from_input` (the flag of the stage's input), every one of them defaults to what that input was made for."""
    recorded = f" (default: what {from_input} was made for)" if from_input else ""
    g = parser.add_argument_group("task" + (f": read from {from_input}, give these only to check or move it"
                                             if from_input else ""))
    g.add_argument("--task", help="built-in task (sst2, mrpc, rte, cola, qqp, mnli, demo) or a name of your own "
                                  f"with --text-col{recorded}")
    g.add_argument("--data", type=Path, required=False,
                   help="directory with train.* and dev.* files (or one file); the demo task has a default"
                        + recorded)
    g.add_argument("--text-col", help="your own task: column holding the text")
    g.add_argument("--text-pair-col", help="your own task: column holding the second text of a pair")
    g.add_argument("--label-col", default=None if from_input else "label",
                   help="your own task: column holding the label (default: label)")
    g.add_argument("--labels", help="your own task: comma-separated label values in id order (default: sorted "
                                    "values of train)")


def task_from_args(args: argparse.Namespace) -> TaskSpec:
    return resolve_task(args.task, args.text_col, args.text_pair_col, args.label_col or "label",
                        args.labels.split(",") if args.labels else None)


def task_of_input(args: argparse.Namespace, manifest: dict, what: str) -> tuple[TaskSpec, Path | None]:
    """The task and data directory that a stage's input (`what`: its flag and path) records in its manifest;
    task flags given as well must agree with it (an error names both values), and --data moves the data. An
    input that records no labelled task (made before 0.2, or scored from unlabelled --input text) takes the
    flags, as before."""
    recorded = manifest.get("task_spec") or manifest.get("task")
    if not isinstance(recorded, dict) or recorded.get("label_col") is None:
        return task_from_args(args), args.data
    task = TaskSpec.from_dict(recorded)
    clashes = [f"--{flag.replace('_', '-')} {getattr(args, flag)!r} but {what} was made for "
               f"{'task' if key == 'name' else key} {recorded.get(key)!r}" for flag, key in TASK_FLAGS
               if getattr(args, flag) is not None and getattr(args, flag) != recorded.get(key)
               and not (flag == "task" and getattr(args, flag) == "generic")]
    if args.labels and args.labels.split(",") != list(recorded.get("label_values") or []):
        clashes.append(f"--labels {args.labels!r} but {what} was made for labels "
                       f"{','.join(recorded.get('label_values') or [])!r}")
    if clashes:
        raise ConfigError([f"[task] {c}: leave the task flags out to use what it records" for c in clashes])
    data = args.data if args.data is not None else manifest.get("data")
    return task, Path(data) if data is not None else None
