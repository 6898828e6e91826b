"""Fine-tuning a teacher: cross-entropy, AdamW with linear warm-up and decay, batches of `batch_size` examples
grouped by length, gradient clipping, and an evaluation after each epoch (and every `eval_steps` steps) that keeps
the best weights and writes a checkpoint (weights, optimiser, schedule, counters, RNGs) that a killed run resumes
from exactly. The loop reads top to bottom; evaluation scores dev rows exactly as the `score` stage scores.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import get_linear_schedule_with_warmup

from .. import batching, checkpoints
from .. import metrics as task_metrics
from ..devices import autocast, default_batch_tokens
from ..errors import DistillError
from ..settings import TrainSettings
from .scorer import Encoded, collate, predict_logits, to_device


@dataclass
class LabelledRows:
    """A tokenised split with gold label ids."""

    enc: Encoded
    labels: np.ndarray  # [n] int64


GROUP_ROWS = 32 * 64  # rows are sorted by length within shuffled groups of this many (64 batches of 32)


@dataclass
class FinetuneResult:
    """The loop's counters and record; saved in every checkpoint."""

    history: list[dict[str, Any]] = field(default_factory=list)  # one entry per evaluation
    best: dict[str, Any] | None = None  # the history entry whose weights the model holds at the end
    steps: int = 0
    loss_sum: float = 0.0  # training loss × rows since the last evaluation
    loss_rows: int = 0


@dataclass
class Checkpointing:
    """Where the loop saves its checkpoint, and the stage fingerprint that a resumed run must match."""

    path: Path
    fingerprint: str


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Decay matrices only: decaying biases and LayerNorm gains just pulls them away from their useful scale."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]


def lr_schedule(optimizer: torch.optim.Optimizer, total_steps: int, warmup_ratio: float,
                ) -> torch.optim.lr_scheduler.LambdaLR:
    """Learning-rate multiplier 0 → 1 over the first `warmup_ratio` of the steps, then 1 → 0 at `total_steps`."""
    return get_linear_schedule_with_warmup(optimizer, int(warmup_ratio * total_steps), total_steps)


def plan_epochs(lengths: np.ndarray, s: TrainSettings) -> list[list[np.ndarray]]:
    """Every epoch's batches of `s.batch_size` examples (length-grouped), drawn up front from the seed: the
    schedule knows the total step count, and a resumed run finds the same batches. `s.epochs` must be set."""
    rng = np.random.default_rng(s.seed)
    return [batching.by_rows(lengths, s.batch_size, rng, GROUP_ROWS) for _ in range(s.epochs)]


def planned_steps(lengths: np.ndarray, s: TrainSettings) -> int:
    """Optimiser steps in all of `plan_epochs(lengths, s)`: the length of the schedule."""
    return sum(len(plan) for plan in plan_epochs(lengths, s))


def eval_batch_tokens(s: TrainSettings, device: torch.device) -> int:
    """Padded tokens per evaluation batch: the setting, or the device's default."""
    return s.eval_batch_tokens or default_batch_tokens(device)


def predict_labels(model: torch.nn.Module, split: LabelledRows, *, batch_tokens: int, device: torch.device,
                   amp_dtype: torch.dtype | None, pad_id: int) -> np.ndarray:
    """The model's argmax label of every row of `split`, scored exactly as the `score` stage scores (in eval
    mode; the model's training mode is restored)."""
    was_training = model.training
    model.eval()
    try:
        return predict_logits(model, split.enc, batch_tokens=batch_tokens, device=device, amp_dtype=amp_dtype,
                              pad_id=pad_id).argmax(axis=1)
    finally:
        model.train(was_training)


def evaluate(model: torch.nn.Module, dev: dict[str, LabelledRows], metric_names: Sequence[str], *,
             batch_tokens: int, device: torch.device, amp_dtype: torch.dtype | None, pad_id: int,
             ) -> dict[str, dict[str, float]]:
    """The task's metrics on each dev split, scored exactly as the `score` stage scores."""
    return {name: task_metrics.compute(metric_names, predict_labels(model, split, batch_tokens=batch_tokens,
                                                                    device=device, amp_dtype=amp_dtype,
                                                                    pad_id=pad_id), split.labels)
            for name, split in dev.items()}


def train_step(model: torch.nn.Module, train: LabelledRows, rows: np.ndarray, optimizer: torch.optim.Optimizer,
               schedule: torch.optim.lr_scheduler.LRScheduler, grad_clip: float, *, device: torch.device,
               amp_dtype: torch.dtype | None, pad_id: int) -> float:
    """One optimiser step on `rows`; returns the batch's mean loss."""
    batch = to_device(collate(train.enc, rows, pad_id), device)
    labels = torch.from_numpy(train.labels[rows]).to(device)  # [B]
    with autocast(device, amp_dtype):
        logits = model(**batch).logits  # [B, C]
    loss = torch.nn.functional.cross_entropy(logits.float(), labels)
    if not torch.isfinite(loss):
        step = schedule.last_epoch + 1  # the schedule counts the steps taken
        raise DistillError(f"the training loss became {loss.item()} at step {step}; lower --lr, "
                           "or use --device cpu (float32) to rule out bf16 overflow")
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    schedule.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()


def finetune(model: torch.nn.Module, train: LabelledRows, dev: dict[str, LabelledRows], metric_names: Sequence[str],
             s: TrainSettings, *, device: torch.device, amp_dtype: torch.dtype | None, pad_id: int,
             progress: Callable[[int], Any] | None = None, checkpoint: Checkpointing | None = None,
             stop_at: int | None = None) -> FinetuneResult:
    """Fine-tune `model` in place with cross-entropy, evaluating on `dev` after each epoch (and every
    `s.eval_steps` steps). At the end the model holds the weights of the best evaluation on the first split of
    `dev` (the holdout, when the stage selects on one), by the first metric. Deterministic given `s.seed` on CPU.
    With `checkpoint`, every evaluation saves one, and a checkpoint found there is resumed from.

    With `stop_at` (a refit), only the first `stop_at` steps of the schedule planned for `s.epochs` are taken
    (the learning rate follows that schedule, evaluations too, plus one at the last step), nothing is selected,
    and the model keeps the last weights: `best` is then the last evaluation."""
    torch.manual_seed(s.seed)
    plans = plan_epochs(train.enc.lengths, s)
    optimizer = torch.optim.AdamW(_param_groups(model, s.weight_decay), lr=s.lr)
    schedule = lr_schedule(optimizer, sum(len(p) for p in plans), s.warmup_ratio)
    if stop_at is not None:
        plans = truncated(plans, stop_at)
    eval_tokens = eval_batch_tokens(s, device)
    result, best_state = FinetuneResult(), None
    if checkpoint is not None and checkpoint.path.is_file():
        result, best_state = _resume(checkpoint, model, optimizer, schedule)
        if progress is not None:
            progress(result.steps)

    def evaluate_and_keep(epoch: int) -> None:
        nonlocal best_state
        scores = evaluate(model, dev, metric_names, batch_tokens=eval_tokens, device=device, amp_dtype=amp_dtype,
                          pad_id=pad_id)
        if _record(result, epoch, scores, schedule.get_last_lr()[0], metric_names[0], last=stop_at is not None):
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}  # CPU copy
        if checkpoint is not None:
            checkpoints.save(checkpoint.path, checkpoint.fingerprint, {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": schedule.state_dict(),
                "best_model": best_state, "result": asdict(result)})

    model.train()
    step = 0
    for epoch, plan in enumerate(plans, start=1):
        for k, rows in enumerate(plan):
            step += 1
            if step <= result.steps:
                continue  # done before the checkpoint this run resumed from
            loss = train_step(model, train, rows, optimizer, schedule, s.grad_clip, device=device,
                              amp_dtype=amp_dtype, pad_id=pad_id)
            result.steps, result.loss_sum, result.loss_rows = step, result.loss_sum + loss * len(rows), \
                result.loss_rows + len(rows)
            if progress is not None:
                progress(1)
            if s.eval_steps and step % s.eval_steps == 0 and k < len(plan) - 1:
                evaluate_and_keep(epoch)
        if step > (result.history[-1]["step"] if result.history else 0):
            evaluate_and_keep(epoch)
    if best_state is not None:  # never with stop_at: nothing was selected
        model.load_state_dict(best_state)
    return result


def truncated(plans: list[list[np.ndarray]], steps: int) -> list[list[np.ndarray]]:
    """The epochs' batch plans cut after their first `steps` batches in all (empty epochs dropped)."""
    out, left = [], steps
    for plan in plans:
        if left <= 0:
            break
        out.append(plan[:left])
        left -= len(out[-1])
    return out


def _record(result: FinetuneResult, epoch: int, scores: dict, lr: float, metric: str, last: bool = False) -> bool:
    """Add an evaluation to the history; whether it is the best so far (on the first split, by `metric`), or,
    with `last`, always (nothing is selected: the last evaluation is the one kept)."""
    entry = {"step": result.steps, "epoch": epoch, "train_loss": round(result.loss_sum / max(1, result.loss_rows), 6),
             "lr": lr, "dev": scores}
    result.history.append(entry)
    result.loss_sum, result.loss_rows = 0.0, 0
    if last:
        result.best = entry
        return False  # no copy of the weights is kept: the model's own are the ones wanted
    first = next(iter(scores))
    if result.best is None or scores[first][metric] > result.best["dev"][first][metric]:
        result.best = entry
        return True
    return False


def _resume(checkpoint: Checkpointing, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
            schedule: torch.optim.lr_scheduler.LRScheduler) -> tuple[FinetuneResult, dict | None]:
    """The loop's record and best weights from a killed run's checkpoint, with the model, optimiser, schedule
    and RNGs restored to the moment it was written."""
    ckpt = checkpoints.load(checkpoint.path, checkpoint.fingerprint)
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    schedule.load_state_dict(ckpt["scheduler"])
    return FinetuneResult(**ckpt["result"]), ckpt["best_model"]
