"""`distill train`: fit a BiLSTM student to the teacher's logits on the scored set (or, with --baseline, to the
gold labels of the original rows only: the paper's "BiLSTM without distillation").

Reads top to bottom: load the scored set -> tokenise once -> vocabulary and embeddings -> model -> optimiser ->
resume -> loop (batch, forward, loss, backward, clip, step; per epoch: dev evaluation, early stopping,
checkpoint) -> best weights -> student directory (weights, vocab, config, metrics, TorchScript, ONNX, predict.py).

Each row's loss mixes cross-entropy on its hard label (gold labels on the originals, or with --hard-labels
teacher the teacher's argmax on every row) with the distillation loss by --alpha; rows without a hard label
learn from the teacher alone (see pipelines/losses.py). Rows that give the objective no target at all (rows
without a gold label under --loss ce) are left out of training.

A killed run resumes from its checkpoint (in the stage's work directory, named by fingerprint; written at each
epoch's end and inside an epoch every --checkpoint-minutes) and ends with exactly the weights an uninterrupted
run would have: the checkpoint holds the model, optimiser, scheduler, every RNG state and the loop counters, and
every epoch's batches are planned from the seed before the first step (`pipelines.training`).

The defaults were chosen on SST-2; how, with every number measured, is in docs/student-tuning.md.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from .. import store
from ..errors import ConfigError, TeacherMismatchError
from ..flags import add_flags, from_flags
from ..student.config import DEFAULT_THREADS, TrainConfig
from ..tasks import TaskSpec, data_dir, find_split_file, read_split, with_test_split
from . import StageResult
from .common import add_task_args, task_of_input

if TYPE_CHECKING:
    import torch

    from ..training.selection import TrainState

STAGE = "train"
# Bump when the bytes a config produces change. 2: the moving average ramps its decay up. 3: alpha mixes per row,
# mse sums over classes (the squared L2 distance), rows without a target under `ce` are left out. 4: rows whose text
# is a held-out original's (twins) are left out too, and under --limit the holdout is drawn from every row.
STAGE_VERSION = 4
# The BiLSTM's Adam: fused (one kernel a step) rounds otherwise than the loop it replaced, so students made with
# the loop are not reused.
ADAM = "fused"
# The transformer student's loop. 2: its schedule is sized from the batches it runs (planned for every epoch up
# front), and its batches are counted in rows by default; students of the old loop are not reused.
TRANSFORMER_LOOP = 2


def hash_split_files(data: Path, splits: tuple[str, ...]) -> dict[str, str]:
    """sha256 of each split's file (or of a datasets directory's files): the dev data is part of the result."""
    return {split: store.hash_path(find_split_file(data, split)) for split in splits}


def resolve_labels(task: TaskSpec, data: Path | None, scored_manifest: dict) -> TaskSpec:
    """A generic task without a label list takes the one its transfer set was made with (recorded in the
    manifest), or else reads it from the train split, as the augment stage did."""
    if task.label_values:
        return task
    recorded = (scored_manifest.get("task") or {}).get("label_values")
    if recorded:
        return replace(task, label_names=tuple(recorded), label_values=tuple(recorded),
                       metrics=tuple((scored_manifest.get("task") or {}).get("metrics") or task.metrics))
    _, task = read_split(task, data_dir(task, data), "train")
    return task


def stage_fingerprint(cfg: TrainConfig, task: TaskSpec, scored_manifest: dict, device_type: str,
                      init: dict | None = None) -> str:
    """Chains the scored set's fingerprint with the settings, the dev files, the vectors (or, for a transformer,
    `init`: what --student-init's model computes with, `student_init_record`) and the versions of the packages
    whose kernels compute the student (another torch may give other floats)."""
    from ..student.vectors import resolve_vectors, vectors_identity

    dev_files = hash_split_files(data_dir(task, cfg.data), task.dev_splits)
    parts = [scored_manifest["fingerprint"], cfg.hashed_settings(device_type), task.to_dict(), dev_files]
    if cfg.family == "transformer":  # the model it starts from, and the precision it trains in
        from ..devices import resolve_dtype

        identity = {k: v for k, v in init.items() if k.endswith("_sha256")} if init else None
        parts += [identity, resolve_dtype("auto", device_type), TRANSFORMER_LOOP]
    else:
        parts += [vectors_identity(resolve_vectors(cfg.vectors)), ADAM if cfg.optimizer == "adam" else None]
    return store.fingerprint(f"{STAGE}@{STAGE_VERSION}", *parts, store.result_versions())


def student_init_record(cfg: TrainConfig) -> dict | None:
    """--student-init's model, a directory or a hub id (fetched as a teacher is, safetensors first), as the
    manifest records it: its name, local path and hashes. None when the student is made from the teacher."""
    if cfg.family != "transformer" or not cfg.student_init:
        return None
    from ..hub import locate_model

    files = locate_model(cfg.student_init)
    return {"name": files.name, "path": str(files.path), **files.identity(), "revision": files.revision}


def run(cfg: TrainConfig, *, on_epoch_end: Callable[[TrainState], None] | None = None) -> StageResult:
    """Train (or resume, or skip when the output is already complete). `on_epoch_end` is called after each
    epoch's checkpoint is written (tests use it to interrupt a run). With seeds > 1, `run_seeds`."""
    problems = cfg.problems()
    if problems:
        raise ConfigError(problems)
    if cfg.seeds is not None and len(cfg.seeds) > 1:
        return run_seeds(cfg)
    if cfg.seeds:  # one seed
        cfg = replace(cfg, seed=cfg.seeds[0], seeds=None)
    return train_one(cfg, on_epoch_end=on_epoch_end)


def side_by_side_workers(cfg: TrainConfig) -> int:
    """Students of this config that train at once: one per CPU for the one-thread BiLSTM (per `threads` CPUs
    with more), one at a time for the transformer, which uses every core itself."""
    from ..devices import available_cpus

    if cfg.family != "bilstm":
        return 1
    return max(1, available_cpus() // (cfg.threads or DEFAULT_THREADS))


def run_together(cfgs: list[TrainConfig], labels: list[str]) -> list[StageResult]:
    """Several students (seeds, baselines) side by side in processes (`parallel.run_side_by_side`)."""
    from ..parallel import run_side_by_side

    workers = min(side_by_side_workers(c) for c in cfgs) if cfgs else 1
    return run_side_by_side(train_one, cfgs, workers, labels)


def run_seeds(cfg: TrainConfig) -> StageResult:
    """`--seeds 0,1,2`: a student per seed into OUT/seed-S/, side by side; their mean ± sample std."""
    import time

    import numpy as np

    from ..student.io import load_metrics

    out = Path(cfg.out)
    if store.read_manifest(out) is not None:
        raise ConfigError([f"[out] {out} is a student directory; --seeds writes OUT/seed-N/ directories: pass "
                           "another --out"])
    seeds = list(cfg.seeds)
    cfgs = [replace(cfg, seed=s, seeds=None, out=out / f"seed-{s}") for s in seeds]
    t0 = time.perf_counter()
    results = run_together(cfgs, [f"seed {s}" for s in seeds])
    wall = time.perf_counter() - t0
    docs = [load_metrics(r.out_dir) for r in results]
    one = np.mean([json.loads((r.out_dir / store.STATS).read_text("utf-8"))["total_s"] for r in results])
    metric, split = docs[0]["metric"], next(iter(docs[0]["dev"]))
    values = np.array([d["dev"][split][metric] for d in docs])
    kind = "baseline" if cfg.baseline else f"distilled ({docs[0]['loss']})"
    return StageResult(out, all(r.skipped for r in results),
                       f"train {docs[0]['task']}: {len(seeds)} {kind} students, {split} {metric} "
                       f"{values.mean():.4f} ± {values.std(ddof=1):.4f} "
                       f"(sample std; {', '.join(f'{v:.4f}' for v in values)}; "
                       f"seeds {', '.join(map(str, seeds))}) in {wall:.0f}s, {side_by_side_workers(cfg)} at a time "
                       f"(each {one:.0f}s on average) -> {out}/seed-*")


@dataclass
class TrainPlan:
    """One student's resolved config, task, scored set, device and the fingerprint of what it would write."""

    cfg: TrainConfig  # the family's defaults filled in
    task: TaskSpec
    scored_manifest: dict
    device: torch.device
    init: dict | None  # student_init_record
    fingerprint: str


def check_teacher_unchanged(cfg: TrainConfig, record: dict | None) -> None:
    """A transformer student is made from the layers of the teacher directory its scored set names, and the
    scored set's fingerprint holds that teacher's hashes at scoring time: a directory fine-tuned again in place
    since then would give a student of other weights under the old fingerprint. Its weights are hashed again
    here, and a mismatch is refused."""
    from ..hub import locate_model
    from ..student.transformer_training import scored_teacher_dir

    teacher_dir = scored_teacher_dir(record)
    if teacher_dir is None or not record.get("weights_sha256"):
        return  # no directory on this machine: the stage says so when it needs one
    now = locate_model(teacher_dir).weights_sha256
    if now != record["weights_sha256"]:
        raise TeacherMismatchError(
            f"{teacher_dir}: the teacher's weights changed since it scored {cfg.scored} (sha256 {now[:12]}, "
            f"scored with {record['weights_sha256'][:12]}; fine-tuned again in place?): the student would be "
            "made from other weights than its teacher's logits came from; score the set again with this teacher, "
            "or pass --student-init with the model to make the student from")


def plan(cfg: TrainConfig) -> TrainPlan:
    """Validate the config against its scored set (the labels must be the task's) and fingerprint the output."""
    from ..devices import resolve_device

    problems = cfg.problems()
    if problems:
        raise ConfigError(problems)
    cfg = cfg.resolved()  # the family's defaults for what was left to them
    scored_manifest = store.require_stage_output(cfg.scored, "score", "--scored")
    task = resolve_labels(cfg.task, cfg.data, scored_manifest)
    task = with_test_split(task, data_dir(task, cfg.data))  # evaluated after dev, chosen on never
    scored_labels = (scored_manifest.get("task") or {}).get("label_names")
    if scored_labels and list(scored_labels) != list(task.label_names):
        raise TeacherMismatchError(
            f"{cfg.scored}: the scored set's labels are {list(scored_labels)} but task '{task.name}' has "
            f"{list(task.label_names)}; train with the task the set was made for")
    device = resolve_device(cfg.device)
    init = student_init_record(cfg)
    if cfg.family == "transformer" and init is None:
        check_teacher_unchanged(cfg, scored_manifest.get("teacher"))
    return TrainPlan(cfg, task, scored_manifest, device, init,
                     stage_fingerprint(cfg, task, scored_manifest, device.type, init))


def train_one(cfg: TrainConfig, *, on_epoch_end: Callable[[TrainState], None] | None = None) -> StageResult:
    """One student: the stage proper."""
    from ..devices import set_cpu_threads, torch_threads
    from ..student.io import load_metrics  # torch: imported when the stage runs, not for --help
    from ..student.bilstm_training import fit
    from ..student.transformer_training import fit_transformer

    p = plan(cfg)
    cfg, task, scored_manifest, device, init, fp = p.cfg, p.task, p.scored_manifest, p.device, p.init, p.fingerprint
    out = Path(cfg.out)
    if store.is_complete(out, fp):
        return StageResult(out, True, _summary(load_metrics(out), out, cached=True))
    extra = {"task": task.name, "task_spec": task.to_dict(), "data": str(data_dir(task, cfg.data).resolve()),
             "teacher": scored_manifest.get("teacher"), "baseline": cfg.baseline,
             **({"student_init": init} if init else {})}
    threads = cfg.threads or (DEFAULT_THREADS if cfg.family == "bilstm" else set_cpu_threads())
    with torch_threads(threads), \
            store.stage_run(STAGE, out, fp, _jsonable(cfg.fingerprint_dict(device.type)), resumable=True,
                            seed=cfg.seed, inputs={"scored": scored_manifest["fingerprint"]}, extra=extra) as stage:
        metrics_doc = (fit_transformer if cfg.family == "transformer" else fit)(cfg, task, stage, device,
                                                                                 on_epoch_end)
        stage.commit()
    return StageResult(out, False, _summary(metrics_doc, out))


def _summary(m: dict, out: Path, cached: bool = False) -> str:
    splits = ({"holdout": m["holdout"]} if m.get("holdout") else {}) | m["dev"]
    dev = "; ".join(f"{split} " + " ".join(f"{k}={v:.4f}" for k, v in vals.items()) for split, vals in splits.items())
    kind = "baseline (gold labels, ce)" if m.get("baseline") else f"distilled ({m.get('loss')})"
    kind = f"{m['student']} {kind}" if m.get("student", "bilstm") != "bilstm" else kind
    return (f"train {m['task']}: {kind} student, {dev} (best epoch {m['best_epoch']} of {m['epochs_run']}"
            f" on {(m.get('selection') or {}).get('split', 'dev')})"
            f" -> {out}" + (" [cached]" if cached else ""))


def _jsonable(d: dict) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in d.items()}


# ----------------------------------------------------------------------------------------------- CLI

def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command's options, from TrainConfig's fields (the `distill` parser gives it its name and help)."""
    add_task_args(p, from_input="--scored")
    add_flags(p, TrainConfig, skip=("task", "data"))
    p.set_defaults(func=_from_args)


def _from_args(args: argparse.Namespace) -> StageResult:
    task, data = task_of_input(args, store.require_stage_output(args.scored, "score", "--scored"),
                               f"--scored {args.scored}")
    return run(from_flags(TrainConfig, args, task=task, data=data))
