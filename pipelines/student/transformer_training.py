"""Training the transformer student (DistilBERT-style) from a scored set, without loading the teacher model.

Set-up: the scored set's rows (the same selection and checks as the BiLSTM's: `training.rows`), tokenised with
the teacher's tokenizer (masked words as its mask token, `pipelines.encoding`) -> the student made from the
teacher's layers (or from `--student-init`) -> every epoch's batches planned (`training.plan`) -> AdamW (no decay
on biases and norms) with a linear warm-up and a decay that reaches zero at the plan's last step. The loop is the
project's one (`training.loop`): `grad_accum` batches per step, the loss of `losses.DistillLoss` (KL at T scaled
by T², by default), bf16 autocast where the device computes it natively; evaluation, selection on the holdout,
early stopping and a checkpoint after each epoch, and one inside the epoch every `checkpoint_minutes`, as its
epochs can take hours on a CPU. What it writes: the student as a Hugging Face model directory (save_pretrained:
weights, config, tokenizer), metrics.json and student.json.

Batches hold `batch_size` rows (32), sorted by length within shuffled groups of 2,048 rows, as the teacher's
fine-tune batches are; `batch_tokens` cuts them by a padded-token budget instead. Counted in rows, a small
transfer set still makes enough optimiser steps: 4,096-token batches of SST-2 phrases hold about 270 rows, so
1,500 sentences x 5 draws made 28 steps an epoch, and the student ended below a BiLSTM that never saw the
teacher (docs/benchmarks.md has the measurements).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from .. import batching, store
from ..devices import autocast, resolve_dtype, torch_dtype
from ..encoding import Encoded, collate, encode
from ..errors import DataError
from ..holdout import HOLDOUT_SPLIT
from ..hub import load_classifier, load_tokenizer
from ..tasks import TaskSpec, data_dir, read_split
from ..training.fitter import Fitter, decay_groups, linear_schedule, seed_everything
from ..training.loop import Run, planned_figures, train
from ..training.objective import DistillObjective
from ..training.plan import plan_epochs
from ..training.resume import CHECKPOINT, Checkpoints
from ..training.rows import HeldOut, select_rows
from ..training.selection import Selection, TrainState, split_metrics
from .io import METRICS
from .piece_cache import kept_encoding, piece_tokens
from .transformer_export import export_transformer
from .transformer import check_tokenizers_agree, encoder_blocks, parse_layers, student_from_teacher

if TYPE_CHECKING:
    from collections.abc import Callable

    from .config import TrainConfig

STUDENT_FILE = "student.json"  # what kind of student a directory holds, and what it was made from
GROUP_ROWS = 2048  # training rows are sorted by length within shuffled groups of this many
EVAL_BATCH_TOKENS = 4096  # padded tokens per evaluation batch (speed only)


class LogitsOf(nn.Module):
    """A Hugging Face classifier as a function of its inputs returning logits (what Fitter, checkpoints and the
    ONNX export see)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        kwargs = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        return self.model(input_ids=input_ids, attention_mask=attention_mask, **kwargs).logits


@dataclass
class TokenRows:
    """Training rows tokenised once, with their targets."""

    enc: Encoded
    teacher: np.ndarray  # float32 [N, C]
    labels: np.ndarray  # int64 [N], -1: no hard label
    counts: dict
    holdout: HeldOut | None = None


def scored_teacher_dir(record: Any) -> Path | None:
    """The teacher directory a scored set's manifest names, when this machine has it."""
    path = Path(record["path"]) if isinstance(record, dict) and record.get("path") else None
    return path if path is not None and (path / "config.json").is_file() else None


def load_rows(cfg: TrainConfig, task: TaskSpec, tokenizer: Any) -> TokenRows:
    """The scored set's rows the objective learns from (`training.rows.select_rows`, as for the BiLSTM), their
    word pieces taken from the token cache (the whole set tokenised once per tokenizer: `piece_cache`)."""
    rows = select_rows(cfg, task)
    cache = piece_tokens(cfg.scored, rows, tokenizer, cfg.max_length, task.is_pair)
    enc = kept_encoding(cache, rows.kept_rows())
    counts = {"rows": len(rows), "gold_rows": int((rows.gold >= 0).sum()), "tokens": int(enc.lengths.sum()),
              "filtered": rows.filtered, "token_cache": cache.record()}
    return TokenRows(enc, rows.teacher, rows.labels, counts, rows.holdout)


def make_student(cfg: TrainConfig, task: TaskSpec, teacher_dir: Path | None,
                 init_dir: Path | None = None) -> tuple[nn.Module, dict]:
    """The student model and what it was made from: the teacher's layers (one of two by default), or those of
    `init_dir` (--student-init's model, located: all its layers by default) with a head for the task's labels."""
    init = init_dir or teacher_dir
    teacher_dir = teacher_dir or init
    # Another encoder gets a new head for the task's labels (a bare encoder has none; another task's is replaced).
    base = load_classifier(init, torch.device("cpu"),
                               label_names=None if init == teacher_dir else list(task.label_names))
    parent, attr, _ = encoder_blocks(base)
    total = len(getattr(parent, attr))
    layers = parse_layers(cfg.layers, total) if (cfg.layers or init == teacher_dir) else list(range(total))
    return student_from_teacher(base, layers), {"init": str(init), "layers": layers, "init_layers": total}


def make_fitter(cfg: TrainConfig, model: nn.Module, total_steps: int, device: torch.device,
                amp: torch.dtype | None) -> Fitter:
    """AdamW (no decay on biases and norms) with a linear warm-up and decay over `total_steps`."""
    optimizer = torch.optim.AdamW(decay_groups(model, cfg.weight_decay), lr=cfg.lr)
    schedule = linear_schedule(optimizer, total_steps, cfg.warmup_ratio)
    return Fitter(LogitsOf(model), optimizer, schedule, cfg.grad_clip, device, amp)


def batch_tensors(enc: Encoded, rows: np.ndarray, pad_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    batch = collate(enc, rows, pad_id)
    if "attention_mask" not in batch:
        batch["attention_mask"] = np.ones_like(batch["input_ids"])
    return {k: torch.from_numpy(v).to(device) for k, v in batch.items()}


class TransformerObjective(DistillObjective):
    """A batch of training rows -> padded token ids -> the student's logits; the per-row losses are the
    students' own (`training.objective`)."""

    def __init__(self, cfg: TrainConfig, model: nn.Module, data: TokenRows, pad_id: int, device: torch.device):
        super().__init__(cfg, data.teacher, data.labels, device)
        self.model, self.enc, self.pad_id = model, data.enc, pad_id

    def logits(self, rows: np.ndarray) -> torch.Tensor:
        return self.model(**batch_tensors(self.enc, rows, self.pad_id, self.device))


def epoch_batches(cfg: TrainConfig, lengths: np.ndarray):
    """One epoch's batches: `batch_size` rows sorted by length within shuffled groups (the default), or a
    padded-token budget (`batch_tokens`), the batches shuffled."""
    if cfg.batch_tokens:
        return lambda rng: batching.by_tokens(lengths, cfg.batch_tokens, rng)
    return lambda rng: batching.by_rows(lengths, cfg.batch_size, rng, GROUP_ROWS)


@torch.inference_mode()
def predict(model: nn.Module, enc: Encoded, pad_id: int, device: torch.device, amp: torch.dtype | None,
            batch_tokens: int) -> np.ndarray:
    model.eval()
    out = []
    order = batching.by_tokens(enc.lengths, batch_tokens)
    for rows in order:
        with autocast(device, amp):
            out.append(model(**batch_tensors(enc, rows, pad_id, device)).float().cpu().numpy())
    logits = np.concatenate(out) if out else np.zeros((0, 0), np.float32)
    result = np.empty_like(logits)
    result[np.concatenate(order)] = logits
    return result


@dataclass
class DevRows:
    name: str
    enc: Encoded
    labels: np.ndarray


def load_dev(cfg: TrainConfig, task: TaskSpec, tokenizer: Any, held_out: HeldOut | None) -> list[DevRows]:
    """The splits evaluated after each epoch: the holdout first (when there is one), then every dev split."""
    out = []
    if held_out is not None:
        out.append(DevRows(HOLDOUT_SPLIT, encode(tokenizer, held_out.texts, held_out.pairs, cfg.max_length),
                           held_out.labels))
    for split in task.dev_splits:
        s, _ = read_split(task, data_dir(task, cfg.data), split)
        out.append(DevRows(split, encode(tokenizer, s.texts, s.text_pairs, cfg.max_length), s.labels))
    return out


def evaluate(model: nn.Module, dev: list[DevRows], task: TaskSpec, pad_id: int, device: torch.device,
             amp: torch.dtype | None, batch_tokens: int) -> dict[str, dict]:
    return {d.name: split_metrics(task, d.name, predict(model, d.enc, pad_id, device, amp, batch_tokens), d.labels)
            for d in dev}


def made_from_what(cfg: TrainConfig, stage: store.StageRun) -> tuple[Path | None, Path | None, Any]:
    """The teacher directory the scored set names (when this machine has it), --student-init's model (located
    by the stage) and the tokenizer the student reads with: the teacher's, which another encoder must share."""
    teacher_dir = scored_teacher_dir(stage.extra.get("teacher"))
    init = stage.extra.get("student_init")
    init_dir = Path(init["path"]) if init else None
    if teacher_dir is None and init_dir is None:
        raise DataError("the scored set's manifest names no teacher directory on this machine to make the student "
                        "from; pass --student-init with a model directory or hub id", str(cfg.scored))
    tokenizer = load_tokenizer(teacher_dir or init_dir)
    if init_dir is not None and teacher_dir is not None:
        check_tokenizers_agree(tokenizer, load_tokenizer(init_dir), str(teacher_dir), init["name"])
    return teacher_dir, init_dir, tokenizer


def fit_transformer(cfg: TrainConfig, task: TaskSpec, stage: store.StageRun, device: torch.device,
                    on_epoch_end: Callable[[TrainState], None] | None = None) -> dict:
    """Train the transformer student of `cfg` into `stage`'s work directory (or finish a killed run from its
    checkpoint) and write it; returns the metrics document. The caller commits the stage."""
    t_start = time.perf_counter()
    teacher_dir, init_dir, tokenizer = made_from_what(cfg, stage)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    amp = torch_dtype(resolve_dtype("auto", device.type))  # bf16 where native (GPUs, AVX512-BF16/AMX CPUs)
    with stage.timed("tokenize"):
        data = load_rows(cfg, task, tokenizer)
        dev = load_dev(cfg, task, tokenizer, data.holdout)
    rng = seed_everything(cfg.seed)
    model, made_from = make_student(cfg, task, teacher_dir, init_dir)
    model = model.to(device)
    plan = plan_epochs(epoch_batches(cfg, data.enc.lengths), cfg.epochs, rng, cfg.grad_accum)
    fitter = make_fitter(cfg, model, plan.total_steps, device, amp)

    def scores() -> dict:
        return evaluate(fitter.model, dev, task, pad_id, device, amp, EVAL_BATCH_TOKENS)

    job = Run(fitter, TransformerObjective(cfg, fitter.model, data, pad_id, device), plan,
              Selection.of(cfg.select_on, task, cfg.patience), scores,
              Checkpoints(stage.work_dir / CHECKPOINT, stage.fingerprint, fitter, rng, cfg.checkpoint_minutes * 60))
    state, best, resumed = train(job, stage, on_epoch_end)
    fitter.model.load_state_dict(best)
    final = job.keeper.final(scores(), data.holdout.record if data.holdout else None, data.counts["filtered"])
    stage.extra["holdout"] = data.holdout.record if data.holdout else None  # the manifest's, as the teacher's
    metrics_doc = write_student(stage, cfg, task, model, tokenizer, state, final, made_from)
    with stage.timed("export"):
        exported = export_transformer(LogitsOf(model).cpu(), stage.work_dir, check_batch(dev[0], pad_id)) \
            if cfg.export != "none" else {"formats": []}
    job.saves.remove()
    params = sum(p.numel() for p in model.parameters())
    stage.stats.update(data.counts, student="transformer", **made_from, params=params, epochs_run=state.epoch,
                       best_epoch=state.best_epoch, train_s=stage.timings["train"], **final,
                       precision=str(amp).removeprefix("torch.") if amp else "float32",
                       threads=torch.get_num_threads(), device=device.type, export=exported,
                       **planned_figures(plan, state), total_s=round(time.perf_counter() - t_start, 2),
                       resumed=resumed)
    return metrics_doc


def check_batch(dev: DevRows, pad_id: int) -> dict[str, torch.Tensor]:
    """Up to 16 dev rows of mixed lengths, padded: what the ONNX file is checked against."""
    rows = np.arange(min(16, len(dev.enc)))
    return batch_tensors(dev.enc, rows, pad_id, torch.device("cpu"))


def write_student(stage: store.StageRun, cfg: TrainConfig, task: TaskSpec, model: nn.Module, tokenizer: Any,
                  state: TrainState, final: dict, made_from: dict) -> dict:
    """The student as a Hugging Face model directory (float32 weights, config, tokenizer), its metrics and what
    it was made from."""
    work = stage.work_dir
    model.cpu().save_pretrained(work, safe_serialization=True)
    tokenizer.save_pretrained(work)
    store.write_json(work / STUDENT_FILE, {"kind": "transformer", **made_from, "task": task.to_dict(),
                                           "train": stage.config, "stage_fingerprint": stage.fingerprint})
    metrics_doc = {"task": task.name, "metric": task.metrics[0], "baseline": cfg.baseline, "student": "transformer",
                   "loss": "ce" if cfg.baseline else cfg.loss, "best_epoch": state.best_epoch,
                   "epochs_run": state.epoch, "stopped_early": state.stopped, **final, "history": state.history}
    store.write_json(work / METRICS, metrics_doc)
    return metrics_doc
