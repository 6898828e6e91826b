"""`distill run NAME_OR_PATH [--data DIR] [--teacher DIR_OR_ID] [--out DIR] [--set key=value ...]`: the whole
pipeline from one config.

augment → (finetune-teacher) → score → train (distilled) → train (baseline) → report, each stage in its own
directory under the run directory. Every stage is cached by fingerprint, and each fingerprint chains its inputs',
so after a change only the stages downstream of it run again, and a run interrupted anywhere resumes where it
stopped (scoring and training resume inside the stage too). `run.json` in the run directory lists each stage's
output and status as the run goes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from augment.recipe import RecipeConfig

from .. import config as C
from .. import store
from ..errors import ConfigError
from ..tasks import read_split
from . import StageResult
from .common import data_dir, resolve_task

if TYPE_CHECKING:  # the stage modules import torch: loaded only when a run starts
    from .score import ScoreConfig

# Layout of a run directory.
TRANSFER, TEACHER, SCORED, STUDENT, BASELINE = "transfer", "teacher", "scored", "student", "baseline"
RUN_JSON = "run.json"
SPEED_ROWS = 872  # dev sentences timed for the report's speed column (all of SST-2 dev)


def _split_fields(values: dict, cls: type) -> tuple[dict, dict]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in values.items() if k in names}, {k: v for k, v in values.items() if k not in names}


class _Progress:
    """Records each stage's status in run.json (atomically, after every change) and prints a line per stage."""

    def __init__(self, out: Path, cfg: C.RunConfig):
        self.path = out / RUN_JSON
        self.doc = {"config": cfg.name, "settings": cfg.to_dict(), "stages": []}

    def step(self, stage: str, fn: Callable[[], StageResult]) -> StageResult:
        entry = {"stage": stage, "out": None, "status": "running", "seconds": 0.0}
        self.doc["stages"].append(entry)
        store.write_json(self.path, self.doc)
        t0 = time.perf_counter()
        try:
            result = fn()
        except BaseException as e:
            entry.update(status="interrupted" if isinstance(e, KeyboardInterrupt) else "failed",
                         error=str(e)[:500], seconds=round(time.perf_counter() - t0, 2))
            store.write_json(self.path, self.doc)
            raise
        entry.update(out=str(result.out_dir), status="cached" if result.skipped else "done",
                     seconds=round(time.perf_counter() - t0, 2))
        store.write_json(self.path, self.doc)
        print(f"[{stage}] {result.summary}", file=sys.stderr, flush=True)
        return result


def run(cfg: C.RunConfig, out: Path | None = None) -> StageResult:
    from .augment import AugmentConfig
    from .augment import run as augment
    from .finetune import FinetuneConfig
    from .finetune import run as finetune
    from .score import ScoreConfig
    from .score import run as score
    from .train import TrainConfig
    from .train import run as train
    from ..teacher import TrainSettings

    top = cfg.top
    out = Path(out or top["out"] or Path("runs") / cfg.name)
    task = resolve_task(top["task"], top["text_col"], top["text_pair_col"], top["label_col"], top["labels"])
    data = data_dir(task, top["data"])
    if not cfg.teacher["model"] and not cfg.teacher["finetune"]:
        raise ConfigError("[teacher.model] is required: pass --teacher with a fine-tuned teacher directory or hub "
                          "id; or --set teacher.finetune=true to fine-tune a backbone (default MiniLM-L6) first")
    if not cfg.teacher["finetune"]:
        from ..teacher import locate_model

        locate_model(cfg.teacher["model"])  # a missing directory or unreachable hub id fails now, not after augment
    out.mkdir(parents=True, exist_ok=True)
    progress = _Progress(out, cfg)
    seed = top["seed"]
    generic = {"text_col": top["text_col"], "text_pair_col": top["text_pair_col"], "label_col": top["label_col"],
               "labels": top["labels"]} if top["text_col"] else {}

    recipe_args, augment_args = _split_fields(cfg.sections["augment"], RecipeConfig)
    progress.step("augment", lambda: augment(AugmentConfig(
        task=task, out=out / TRANSFER, data=data, recipe=RecipeConfig(**recipe_args, seed=seed), **augment_args)))

    teacher = cfg.teacher["model"]
    if cfg.teacher["finetune"]:
        settings, rest = _split_fields(cfg.sections["finetune"], TrainSettings)
        ft = FinetuneConfig(task=task, out=out / TEACHER, data=data, train=TrainSettings(**settings, seed=seed),
                            **rest, **({"model": teacher} if teacher else {}))
        teacher = str(progress.step("finetune-teacher", lambda: finetune(ft)).out_dir)

    score_cfg = ScoreConfig(teacher=str(teacher), out=out / SCORED, transfer=out / TRANSFER, **cfg.sections["score"])
    progress.step("score", lambda: score(score_cfg))

    def student(baseline: bool) -> Callable[[], StageResult]:
        return lambda: train(TrainConfig(scored=out / SCORED, task=task, out=out / (BASELINE if baseline else STUDENT),
                                         data=data, seed=seed, baseline=baseline, **generic,
                                         **cfg.sections["student"]))

    progress.step("train", student(False))
    if top["baseline"]:
        progress.step("train-baseline", student(True))
    report_path = progress.step("report", lambda: _report(cfg, out, task, data, score_cfg, progress)).out_dir
    return StageResult(out, False, f"run: done; report at {report_path}")


def _report(cfg: C.RunConfig, out: Path, task, data: Path, score_cfg: ScoreConfig,
            progress: _Progress) -> StageResult:
    from .. import report as R

    dev = {}
    for split in task.dev_splits:
        dev[split], _ = read_split(task, data, split)
    teacher = score_cfg.teacher  # measured on dev with the max_length it scored the transfer set with
    rows = [R.measure_teacher(teacher, task, dev, SPEED_ROWS, max_length=score_cfg.max_length,
                              trust_remote_code=score_cfg.trust_remote_code),
            R.measure_student(out / STUDENT, "BiLSTM student (distilled)", dev, SPEED_ROWS)]
    if cfg.top["baseline"]:
        rows.append(R.measure_student(out / BASELINE, "BiLSTM student (no distillation)", dev, SPEED_ROWS))
    stages = [dict(s) for s in progress.doc["stages"] if s["stage"] != "report"]
    path = R.write_report(
        out, run_name=cfg.name, task=task, teacher=teacher, rows=rows,
        transfer_stats=json.loads((out / TRANSFER / store.STATS).read_text("utf-8")),
        agreement=R.teacher_agreement(out / SCORED), stages=stages, settings=cfg.to_dict(),
        speed_rows=min(SPEED_ROWS, len(next(iter(dev.values())))),
        command=" ".join(["distill", *sys.argv[1:]]) if sys.argv else "distill run",
        machine=f"{os.cpu_count()} CPU cores, {platform.machine()}")
    return StageResult(path, False, f"report: {path}")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the whole pipeline from a config (built-in name or YAML file)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", metavar="NAME_OR_PATH",
                   help=f"a built-in config ({', '.join(C.builtin_configs())}) or a YAML file")
    p.add_argument("--out", type=Path, default=None, help="run directory (default: the config's out, or runs/NAME)")
    p.add_argument("--data", default=None, metavar="DIR", help="the task's files: short for --set data=DIR")
    p.add_argument("--teacher", default=None, metavar="DIR_OR_HUB_ID",
                   help="a fine-tuned teacher: short for --set teacher.model=DIR_OR_HUB_ID")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting, e.g. --set student.epochs=3 --set augment.limit=5000 (repeatable)")
    p.set_defaults(func=_from_args)


def overrides_from_args(args: argparse.Namespace) -> list[str]:
    """--data and --teacher as ordinary overrides, before the --set ones (a JSON string is a YAML string, so a
    directory named `null` or `123` stays a string)."""
    shortcuts = [(key, value) for key, value in (("data", args.data), ("teacher.model", args.teacher)) if value]
    return [f"{key}={json.dumps(value)}" for key, value in shortcuts] + args.overrides


def _from_args(args: argparse.Namespace) -> StageResult:
    return run(C.load(args.config, overrides_from_args(args)), args.out)
