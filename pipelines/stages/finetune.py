"""`distill finetune-teacher`: fine-tune a transformers encoder into the task's teacher.

Any encoder directory or hub id becomes a sequence classifier with the task's labels (a new head when it has
none), is trained on the train split with cross-entropy (the usual recipe: AdamW, batches of 32 examples
grouped by length, 10% warm-up then linear decay, gradient clipping; epochs by data size unless given, `--lr
auto` for a small search of the rate on the holdout), and is evaluated on every dev split after each epoch (and
every --eval-steps steps), with a checkpoint each time that a killed run resumes from. The best evaluation on
the holdout's first metric is kept (`select_on: holdout`, the default: 5% of the training examples, at most
2,000, left out of training; `pipelines.holdout`), or on the first dev split's with `select_on: dev`. With
`refit` (by default on splits of at most REFIT_MAX_EXAMPLES examples, where the held-out 5% costs accuracy and a
second fit little time) a fresh model is then trained on every training example, the holdout included, for the
share of the schedule at which the kept checkpoint was chosen, and that model is the teacher: the holdout
chooses, and is not lost to training. The
output is a standard Hugging Face directory (safetensors weights, config with id2label, tokenizer) plus
metrics.json, so `distill score --teacher DIR` and `from_pretrained(DIR)` both read it.

On CUDA the forward pass runs under bf16 autocast when the GPU supports it; on CPU in float32. Given the seed,
a run is reproducible on the same device (the device's precision is part of the fingerprint). metrics.json
also holds `check` (`teacher.verdict`): the kept teacher on the holdout against the majority class, which
`distill run` reads to stop before scoring a teacher that learnt nothing.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from .. import store
from ..devices import DEVICES, resolve_device, set_cpu_threads
from ..flags import add_flags, from_flags, setting
from ..holdout import (HOLDOUT_SPLIT, SELECT_ON, HoldoutMask, holdout_examples, holdout_sha256, split_scores,
                       text_keys, twins)
from ..errors import ConfigError
from ..progress import peak_memory_mb, progress
from ..settings import LR_SEARCH, TrainSettings, epochs_for
from ..tasks import Split, TaskSpec, data_dir, find_split_file, read_split, with_test_split
from . import StageResult
from .common import add_task_args, task_from_args

if TYPE_CHECKING:
    import torch

    from ..hub import ModelFiles
    from ..teacher.finetune import LabelledRows

STAGE = "finetune-teacher"
STAGE_VERSION = 4  # bump whenever the weights written change for the same inputs (2: batches of 32; 3: refit;
# 4: the held-out examples' twins left out of training)
METRICS_FILE = "metrics.json"
CHECKPOINT = "checkpoint.pt"  # in the work directory while the stage runs; not part of the teacher written
REFIT_CHECKPOINT = "refit-checkpoint.pt"  # likewise, the refit's
LR_SEARCH_FILE = "lr-search.json"  # likewise: a resumed run does not search again
LR_SEARCH_ROWS = 2000  # training examples each rate of `lr: auto` is tried on
REFIT = ("auto", "on", "off")
REFIT_MAX_EXAMPLES = 10_000  # `refit: auto` refits training splits of at most this many examples


@dataclass
class FinetuneConfig:
    """Settings of the finetune-teacher stage; the optimisation recipe is in `train`."""

    task: TaskSpec
    out: Path = setting(help="output model directory (created atomically)")
    data: Path | None = None  # task data directory or file; the demo task has a default
    model: str | None = setting(
        None,
        help="backbone directory or hub id; left out: all-MiniLM-L6-v2 from its PyPI package")
    train: TrainSettings = field(default_factory=TrainSettings)
    limit: int | None = setting(None, help="only the first N training examples (quick runs)")
    max_length: int = setting(128, help="tokens per example, longer ones are truncated")
    device: str = setting("auto", help="auto | cpu | cuda", choices=DEVICES)
    trust_remote_code: bool = setting(False, help="let the model directory run its own Python code")
    select_on: str = setting(
        "holdout", choices=SELECT_ON,
        help="holdout (one in 20 of the training examples, at most 2,000, left out of training; the students hold out "
             "the same ones) | dev (the first dev split): where the best checkpoint is chosen")
    refit: str = setting(
        "auto", choices=REFIT,
        help="after choosing the checkpoint on the holdout, train a fresh model on all the training examples (the "
             f"holdout too) for as many steps and keep it | auto: on for splits of at most {REFIT_MAX_EXAMPLES:,} "
             "examples (there holding out one in 20 costs accuracy, and a second fit little time) | on | off")

    def problems(self) -> list[str]:
        out = self.train.problems()
        if self.limit is not None and self.limit < 1:
            out.append(f"[limit] must be >= 1, got {self.limit}")
        if self.max_length < 2:
            out.append(f"[max_length] must be >= 2, got {self.max_length}")
        if self.device not in DEVICES:
            out.append(f"[device] must be one of {', '.join(DEVICES)}, got '{self.device}'")
        if self.train.lr == "auto" and self.select_on != "holdout":
            out.append("[lr] auto chooses the rate on the holdout: it needs select_on: holdout")
        if self.select_on not in SELECT_ON:
            out.append(f"[select_on] must be one of {', '.join(SELECT_ON)}, got '{self.select_on}'")
        if self.refit not in REFIT:
            out.append(f"[refit] must be one of {', '.join(REFIT)}, got '{self.refit}'")
        elif self.refit == "on" and self.select_on != "holdout":
            out.append("[refit] on trains on the holdout after choosing on it: it needs select_on: holdout")
        return out

    def refits(self, n_examples: int) -> bool:
        """Whether a training split of `n_examples` is refitted on in full after the selection."""
        if self.select_on != "holdout" or self.refit == "off":
            return False
        return self.refit == "on" or n_examples <= REFIT_MAX_EXAMPLES

    def refit_source(self) -> str:
        """What decided `refits`: the setting itself, select_on (dev: nothing was held out), or the data size."""
        if self.refit != "auto":
            return "config"
        return "data size" if self.select_on == "holdout" else "select_on"


def _precision(device: torch.device) -> tuple[str, torch.dtype | None]:
    """bf16 autocast on GPUs that have it (no loss scaling needed, unlike fp16); float32 elsewhere."""
    import torch

    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16", torch.bfloat16
    return "float32", None


def fingerprint(inputs: dict, model_identity: dict, results_config: dict, precision: str, device_type: str) -> str:
    """What decides the fine-tuned weights: the data, the backbone, the settings, the precision, the device type
    (a GPU's kernels round differently from a CPU's over thousands of steps) and the library versions."""
    return store.fingerprint(f"{STAGE}@{STAGE_VERSION}", inputs, model_identity, results_config, precision,
                             device_type, store.result_versions())


@dataclass
class FinetunePlan:
    """What a run reads and the fingerprint of what it would write, known before any model is loaded."""

    task: TaskSpec
    splits: tuple  # (train without the holdout, dev splits with the holdout first, holdout size, refit split)
    settings: TrainSettings  # epochs resolved by data size
    files: ModelFiles  # the backbone
    device: torch.device
    precision: str
    amp_dtype: torch.dtype | None
    inputs: dict
    config: dict
    fingerprint: str


def plan(cfg: FinetuneConfig) -> FinetunePlan:
    """Validate the config, read the splits, hold out, resolve the epochs, the backbone and the device, and
    fingerprint the output."""
    from .. import hub  # torch and transformers: imported when the stage runs, not for --help

    problems = cfg.problems()
    if problems:
        raise ConfigError(problems)
    data = data_dir(cfg.task, cfg.data)
    train_split, task = read_split(cfg.task, data, "train", limit=cfg.limit)
    task = with_test_split(task, data)  # evaluated after dev, chosen on never
    dev_splits = {name: read_split(task, data, name)[0] for name in task.dev_splits}
    full_split = train_split if cfg.refits(len(train_split)) else None
    train_split, dev_splits, held_out = hold_out(cfg, train_split, dev_splits)
    settings = replace(cfg.train, epochs=cfg.train.epochs or epochs_for(len(train_split)))
    files = hub.locate_model(cfg.model or hub.default_backbone(), cfg.trust_remote_code)
    device = resolve_device(cfg.device)
    precision, amp_dtype = _precision(device)
    inputs = {name: store.hash_path(find_split_file(data, name)) for name in ("train", *task.dev_splits)}
    config = {"task": task.to_dict(), "model": files.name, "train": asdict(cfg.train), "limit": cfg.limit,
              "max_length": cfg.max_length, "device": cfg.device, "trust_remote_code": cfg.trust_remote_code,
              "select_on": cfg.select_on, "refit": cfg.refit}
    results_config = {k: v for k, v in config.items() if k not in ("model", "device")}
    fp = fingerprint(inputs, files.identity(), results_config, precision, device.type)
    return FinetunePlan(task, (train_split, dev_splits, held_out, full_split), settings, files, device, precision,
                        amp_dtype, inputs, config, fp)


def run(cfg: FinetuneConfig) -> StageResult:
    p = plan(cfg)
    task, settings, files, device, fp = p.task, p.settings, p.files, p.device, p.fingerprint
    train_split, full_split = p.splits[0], p.splits[3]
    if store.is_complete(cfg.out, fp):
        return StageResult(Path(cfg.out), True, f"finetune-teacher: up to date, {cfg.out} (fingerprint {fp[:12]})")

    chosen = {"epochs": settings.epochs, "epochs_from": "config" if cfg.train.epochs else "data size",
              "refit": full_split is not None, "refit_from": cfg.refit_source()}
    with store.stage_run(STAGE, cfg.out, fp, p.config, inputs=p.inputs, seed=cfg.train.seed, resumable=True,
                         extra={"task": task.to_dict(), "num_labels": task.num_labels,
                                "base_model": {"name": files.name, "path": str(files.path), **files.identity(),
                                               "revision": files.revision},
                                "device": str(device), "precision": p.precision, "holdout": p.splits[2]}) as run_:
        metrics = _fit(cfg, run_, task, files, p.splits, settings, device, p.amp_dtype)
        run_.extra["train_settings"] = {**chosen, "lr": metrics["lr"]}  # the rate lr: auto chose, too
        run_.commit()
    best = metrics["best"]
    scores = " ".join(f"{name} {task.metrics[0]} {vals[task.metrics[0]]:.4f}" for name, vals in best["dev"].items())
    warn = f"; WARNING: {'; '.join(metrics['check']['reasons'])}" if metrics["check"]["failed"] else ""
    return StageResult(Path(cfg.out), False,
                       f"finetune-teacher: {task.name} {scores} (best of {len(metrics['history'])} evaluations on "
                       f"{next(iter(best['dev']))}, step {best['step']}) after {metrics['steps']} steps "
                       f"({settings.epochs} epochs, lr {metrics['lr']:g}) on {len(train_split):,} rows"
                       f"{_refit_summary(metrics.get('refit'), task)} in {run_.stats['wall_s']:.0f}s -> {cfg.out}{warn}")


def _refit_summary(refit: dict | None, task: TaskSpec) -> str:
    if not refit:
        return ""
    scores = "".join(f", {name} {task.metrics[0]} {vals[task.metrics[0]]:.4f}" for name, vals in refit["dev"].items())
    return f"; refitted on all {refit['examples']:,} for {refit['steps']} of {refit['of_steps']} steps{scores}"


def _fit(cfg: FinetuneConfig, run_: store.StageRun, task: TaskSpec, files, splits: tuple, settings: TrainSettings,
         device, amp_dtype) -> dict:
    """Load, tokenise, (search the rate,) fine-tune with checkpoints, judge and save the teacher into the work
    directory; returns metrics.json's document."""
    from .. import hub
    from ..teacher import checks, finetune

    train_split, dev_splits, held_out, full_split = splits
    threads = set_cpu_threads()
    with run_.timed("load"):
        tokenizer = hub.load_tokenizer(files.path, cfg.trust_remote_code)
        model = _new_classifier(cfg, files, device, task)
    checks.check_max_length(model.config, tokenizer, cfg.max_length, files.name)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    with run_.timed("tokenize"):
        train = _labelled(tokenizer, train_split, cfg.max_length)
        dev = {name: _labelled(tokenizer, split, cfg.max_length) for name, split in dev_splits.items()}
    search = None
    if settings.lr == "auto":
        with run_.timed("lr_search"):
            search = search_lr(cfg, run_.work_dir, task, files, train, dev, settings, device, amp_dtype, pad_id)
        settings = replace(settings, lr=search["lr"])
    steps = finetune.planned_steps(train.enc.lengths, settings)
    with run_.timed("train"), progress(steps, "fine-tuning", "step") as bar:
        result = finetune.finetune(model, train, dev, task.metrics, settings, device=device, amp_dtype=amp_dtype,
                                   pad_id=pad_id, progress=bar.update,
                                   checkpoint=finetune.Checkpointing(run_.work_dir / CHECKPOINT, run_.fingerprint))
    check = judge(model, task, dev, settings, device, amp_dtype, pad_id)
    refit = None
    if full_split is not None:
        del model  # the first fit's weights are no longer needed: only its choice of step is
        model, refit = _refit(cfg, run_, (task, files, tokenizer), full_split, dev, settings, result,
                              device, amp_dtype, pad_id)
    with run_.timed("save"):
        hub.save_teacher(model, tokenizer, run_.work_dir)
    metrics = {"task": task.name, "metric": f"{next(iter(dev))}.{task.metrics[0]}", **selected(result.best, held_out),
               "select_on": cfg.select_on, "history": result.history, "train_rows": len(train_split),
               "steps": result.steps, "epochs": settings.epochs, "batch_size": settings.batch_size,
               "lr": settings.lr, "lr_search": search, "check": check, "base_model": files.name,
               "seconds": run_.timings["train"], **({"dev": refit["dev"], "refit": refit} if refit else {})}
    store.write_json(run_.work_dir / METRICS_FILE, metrics)
    for name in (CHECKPOINT, REFIT_CHECKPOINT, LR_SEARCH_FILE):
        (run_.work_dir / name).unlink(missing_ok=True)
    run_.stats.update(train_rows=len(train_split), dev_rows={k: len(v.labels) for k, v in dev.items()},
                      steps=result.steps, evaluations=len(result.history), threads=threads,
                      train_tokens_per_s=round(int(train.enc.lengths.sum()) * settings.epochs
                                               / max(run_.timings["train"], 1e-9), 1),
                      peak_memory_mb=peak_memory_mb())
    return metrics


def _refit(cfg: FinetuneConfig, run_: store.StageRun, model_parts: tuple, full_split: Split,
           dev: dict[str, LabelledRows], settings: TrainSettings, first, device, amp_dtype, pad_id: int):
    """`refit`: a fresh model (the same seed) trained on every training example, the holdout included, for the
    share of its schedule at which the first fit's kept checkpoint was chosen (the end of the same epoch, when
    the choice fell at an epoch's end). Nothing is chosen here, on dev least of all: the last weights are kept,
    and dev is only evaluated. A killed refit resumes from its own checkpoint. Returns (model, metrics.json's
    `refit` record)."""
    from ..teacher import finetune

    task, files, tokenizer = model_parts
    train = _labelled(tokenizer, full_split, cfg.max_length)
    planned = finetune.planned_steps(train.enc.lengths, settings)
    stop = max(1, round(first.best["step"] * planned / first.steps))
    model = _new_classifier(cfg, files, device, task)
    with run_.timed("refit"), progress(stop, "refitting on all examples", "step") as bar:
        result = finetune.finetune(model, train, {k: v for k, v in dev.items() if k != HOLDOUT_SPLIT}, task.metrics,
                                   settings, device=device, amp_dtype=amp_dtype, pad_id=pad_id, progress=bar.update,
                                   checkpoint=finetune.Checkpointing(run_.work_dir / REFIT_CHECKPOINT,
                                                                     run_.fingerprint), stop_at=stop)
    return model, {"examples": len(full_split), "steps": stop, "of_steps": planned, "from_step": first.best["step"],
                   "of_first_steps": first.steps, "dev": result.best["dev"], "history": result.history,
                   "seconds": run_.timings["refit"]}


def _new_classifier(cfg: FinetuneConfig, files, device, task: TaskSpec):
    """The backbone with the task's classification head, initialised from the seed."""
    import torch

    from .. import hub

    torch.manual_seed(cfg.train.seed)  # the new classification head's initialisation
    return hub.load_classifier(files.path, device, trust_remote_code=cfg.trust_remote_code,
                               label_names=task.label_names)


def search_lr(cfg: FinetuneConfig, work_dir: Path, task: TaskSpec, files, train: LabelledRows,
              dev: dict[str, LabelledRows], settings: TrainSettings, device, amp_dtype, pad_id: int) -> dict:
    """`lr: auto`: each rate of LR_SEARCH fine-tunes a fresh model on the same LR_SEARCH_ROWS training examples
    (a seeded draw) for the run's epochs, and the best on the holdout (ties: the smaller rate) is kept. Recorded
    in the work directory, so a resumed run does not search again."""
    from ..teacher import finetune

    saved = work_dir / LR_SEARCH_FILE
    if saved.is_file():
        return json.loads(saved.read_text("utf-8"))
    rows = np.sort(np.random.default_rng(settings.seed).permutation(len(train.labels))[:LR_SEARCH_ROWS])
    subset = finetune.LabelledRows(train.enc.take(rows), train.labels[rows])
    holdout = {HOLDOUT_SPLIT: dev[HOLDOUT_SPLIT]}
    tried, steps = [], finetune.planned_steps(subset.enc.lengths, settings)
    with progress(steps * len(LR_SEARCH), f"lr search ({len(LR_SEARCH)} rates)", "step") as bar:
        for lr in LR_SEARCH:
            model = _new_classifier(cfg, files, device, task)
            result = finetune.finetune(model, subset, holdout, task.metrics, replace(settings, lr=lr),
                                       device=device, amp_dtype=amp_dtype, pad_id=pad_id, progress=bar.update)
            tried.append({"lr": lr, HOLDOUT_SPLIT: result.best["dev"][HOLDOUT_SPLIT], "steps": result.steps})
    metric = task.metrics[0]
    best = max(tried, key=lambda t: (t[HOLDOUT_SPLIT][metric], -t["lr"]))
    search = {"lr": best["lr"], "rows": len(rows), "epochs": settings.epochs, "tried": tried}
    store.write_json(saved, search)
    return search


def judge(model, task: TaskSpec, dev: dict[str, LabelledRows], settings: TrainSettings, device, amp_dtype,
          pad_id: int) -> dict:
    """`teacher.verdict.assess` of the kept weights on the selection split (the holdout, or the first dev split
    with select_on: dev)."""
    from ..teacher.finetune import eval_batch_tokens, predict_labels
    from ..teacher.verdict import assess

    name = next(iter(dev))
    pred = predict_labels(model, dev[name], batch_tokens=eval_batch_tokens(settings, device), device=device,
                          amp_dtype=amp_dtype, pad_id=pad_id)
    return assess(task.metrics, pred, dev[name].labels, task.num_labels, name)


def selected(best: dict, held_out: dict | None) -> dict:
    """metrics.json's figures of the kept checkpoint: the evaluation, its dev splits' metrics and the holdout's
    (with how it was drawn: `hold_out`'s record)."""
    dev, held = split_scores(best["dev"])
    holdout = {HOLDOUT_SPLIT: held, "holdout_examples": held_out["examples"], "holdout_record": held_out} \
        if held_out else {}
    return {"best": best, "dev": dev, **holdout}


def hold_out(cfg: FinetuneConfig, train: Split, dev: dict[str, Split]) -> tuple[Split, dict[str, Split],
                                                                                 dict | None]:
    """With select_on: holdout, the training split without its holdout (`holdout.holdout_examples`: the slice the
    students of a transfer set made from this split hold out too) nor the held-out examples' twins (the same
    normalised text elsewhere in the split: `pipelines.holdout`), the holdout as the first evaluated split, the
    one the best checkpoint is chosen on, and its record (size, twins left out, sha256); with select_on: dev,
    the split as it is and None."""
    if cfg.select_on != "holdout":
        return train, dev, None
    chosen = holdout_examples(train.labels)
    keys = text_keys(train.texts, train.text_pairs)
    held_keys = keys.take(pa.array(chosen))
    left_out = twins(keys, held_keys)  # the held-out examples, and every other example with one of their texts
    held_out = np.zeros(len(train), dtype=bool)
    held_out[chosen] = True
    twin_count = int((left_out & ~held_out).sum())
    record = HoldoutMask(held_out, len(chosen), len(train), twin_count, twin_count,
                         holdout_sha256(chosen, held_keys)).record()
    return train.take(np.flatnonzero(~left_out)), {HOLDOUT_SPLIT: train.take(chosen), **dev}, record


def _labelled(tokenizer, split, max_length: int) -> LabelledRows:
    from ..teacher.finetune import LabelledRows
    from ..teacher.scorer import encode

    return LabelledRows(encode(tokenizer, split.texts, split.text_pairs, max_length), split.labels)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command's options, from FinetuneConfig's fields (the `distill` parser gives it its name and help)."""
    add_task_args(p)
    add_flags(p, FinetuneConfig, skip=("task", "data"))
    p.set_defaults(func=_from_args)


def _from_args(args: argparse.Namespace) -> StageResult:
    return run(from_flags(FinetuneConfig, args, task=task_from_args(args)))
