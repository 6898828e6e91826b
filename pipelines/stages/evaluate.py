"""`distill eval`: score a trained student on a task's labelled split(s) with the task's metrics.

Loads the student directory of either family (`student.served`: a BiLSTM's safetensors weights and vocab.json,
or a transformer student's Hugging Face directory), tokenises the split with the student's own tokeniser,
predicts on the CPU, and reports every metric of the task. Writes nothing; the summary line (or,
with --json, one JSON object) is what the command prints.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .. import metrics as task_metrics
from ..flags import add_flags, from_flags, setting
from ..errors import DataError
from ..tasks import TaskSpec, data_dir, read_split
from . import StageResult
from .common import add_task_args, task_of_input


@dataclass
class EvalConfig:
    student: Path = setting(help="a `distill train` output directory")
    task: TaskSpec
    data: Path | None = None  # the task's files; the demo task has a default
    split: str | None = setting(None, help="split to evaluate (default: every dev split of the task)")
    json: bool = setting(False, help="summary as one JSON object")
    batch_size: int | None = setting(None, help="rows per inference batch (default: 256 for a BiLSTM, 32 for a "
                                                "transformer student)")
    threads: int | None = setting(None, help="torch CPU threads")


def evaluate_student(cfg: EvalConfig) -> dict:
    """{"task", "student", "splits": {split: {metric: value, "rows": n}}, "rows_per_s"}."""
    from ..devices import torch_threads  # torch: imported when the command runs, not for --help

    with torch_threads(cfg.threads):
        return _evaluate(cfg)


def _evaluate(cfg: EvalConfig) -> dict:
    from ..student.served import load_served

    student = load_served(cfg.student)
    task = cfg.task
    recorded = student.task
    if not task.label_values and recorded.get("label_values"):  # a generic task: the labels it was trained with
        task = replace(task, label_names=tuple(recorded["label_names"]),
                       label_values=tuple(recorded["label_values"]), metrics=tuple(recorded["metrics"]))
    if student.label_names and task.label_names and student.label_names != list(task.label_names):
        raise DataError(f"{cfg.student}: the student predicts {student.label_names} but task '{task.name}' has "
                        f"{list(task.label_names)}")
    if student.is_pair != task.is_pair:
        raise DataError(f"{cfg.student}: a {'pair' if student.is_pair else 'single-sentence'} student cannot "
                        f"evaluate task '{task.name}' ({'pairs' if task.is_pair else 'single sentences'})")
    splits = [cfg.split] if cfg.split else list(task.dev_splits)
    out: dict = {"task": task.name, "student": str(cfg.student), "family": student.family, "splits": {}}
    rows, seconds = 0, 0.0
    for split in splits:
        s, task = read_split(task, data_dir(task, cfg.data), split)
        t0 = time.perf_counter()
        pred = student.logits(s.texts, s.text_pairs if task.is_pair else None, cfg.batch_size).argmax(1)
        seconds += time.perf_counter() - t0
        rows += len(s)
        out["splits"][split] = {**task_metrics.compute(task.metrics, pred, s.labels), "rows": len(s),
                                "predicted_distribution": np.bincount(pred, minlength=task.num_labels).tolist()}
    out["rows_per_s"] = round(rows / max(seconds, 1e-9), 1)
    return out


def run(cfg: EvalConfig) -> StageResult:
    result = evaluate_student(cfg)
    if cfg.json:
        return StageResult(Path(cfg.student), False, json.dumps(result, sort_keys=True))
    parts = []
    for split, vals in result["splits"].items():
        metrics = " ".join(f"{k}={v:.4f}" for k, v in vals.items() if k not in ("rows", "predicted_distribution"))
        parts.append(f"{split} {metrics} ({vals['rows']} rows)")
    return StageResult(Path(cfg.student), False, f"eval {result['task']}: " + "; ".join(parts)
                       + f" -> {cfg.student}")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command's options, from EvalConfig's fields (the `distill` parser gives it its name and help)."""
    add_flags(p, EvalConfig, skip=("task", "data"))
    add_task_args(p, from_input="--student")
    p.set_defaults(func=_from_args)


def _from_args(args: argparse.Namespace) -> StageResult:
    from .. import store

    task, data = task_of_input(args, store.require_stage_output(args.student, "train", "--student"),
                               f"--student {args.student}")
    return run(from_flags(EvalConfig, args, task=task, data=data))
