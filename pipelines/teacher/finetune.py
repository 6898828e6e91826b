"""Fine-tuning a teacher: cross-entropy, AdamW with linear warm-up and decay, length-grouped token-budget
batches, gradient clipping, and an evaluation after each epoch (and every `eval_steps` steps) that keeps the best
weights. The loop reads top to bottom; evaluation scores dev rows exactly as the `score` stage scores.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from transformers import get_linear_schedule_with_warmup

from .. import batching
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


@dataclass
class FinetuneResult:
    history: list[dict[str, Any]] = field(default_factory=list)  # one entry per evaluation
    best: dict[str, Any] | None = None  # the history entry whose weights the model holds at the end
    steps: int = 0


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
    """Every epoch's batches, drawn up front from the seed (so the schedule knows the total step count)."""
    rng = np.random.default_rng(s.seed)
    return [batching.by_tokens(lengths, s.batch_tokens, rng) for _ in range(s.epochs)]


def evaluate(model: torch.nn.Module, dev: dict[str, LabelledRows], metric_names: Sequence[str], *,
             batch_tokens: int, device: torch.device, amp_dtype: torch.dtype | None, pad_id: int,
             ) -> dict[str, dict[str, float]]:
    """The task's metrics on each dev split, scored exactly as the `score` stage scores."""
    was_training = model.training
    model.eval()
    try:
        out = {}
        for name, split in dev.items():
            logits = predict_logits(model, split.enc, batch_tokens=batch_tokens, device=device,
                                    amp_dtype=amp_dtype, pad_id=pad_id)
            out[name] = task_metrics.compute(metric_names, logits.argmax(axis=1), split.labels)
        return out
    finally:
        model.train(was_training)


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
             progress: Callable[[int], Any] | None = None) -> FinetuneResult:
    """Fine-tune `model` in place with cross-entropy, evaluating on `dev` after each epoch (and every
    `s.eval_steps` steps). At the end the model holds the weights of the best evaluation on the first split of
    `dev` (the holdout, when the stage selects on one), by the first metric. Deterministic given `s.seed` on CPU."""
    torch.manual_seed(s.seed)
    plans = plan_epochs(train.enc.lengths, s)
    optimizer = torch.optim.AdamW(_param_groups(model, s.weight_decay), lr=s.lr)
    schedule = lr_schedule(optimizer, sum(len(p) for p in plans), s.warmup_ratio)
    eval_tokens = s.eval_batch_tokens or default_batch_tokens(device)
    first_split, first_metric = next(iter(dev)), metric_names[0]
    result, best_state = FinetuneResult(), None
    loss_sum, loss_rows, step = 0.0, 0, 0

    def evaluate_and_keep(epoch: int) -> None:
        nonlocal best_state, loss_sum, loss_rows
        scores = evaluate(model, dev, metric_names, batch_tokens=eval_tokens, device=device, amp_dtype=amp_dtype,
                          pad_id=pad_id)
        entry = {"step": step, "epoch": epoch, "train_loss": round(loss_sum / max(1, loss_rows), 6),
                 "lr": schedule.get_last_lr()[0], "dev": scores}
        result.history.append(entry)
        loss_sum, loss_rows = 0.0, 0
        if result.best is None or scores[first_split][first_metric] > result.best["dev"][first_split][first_metric]:
            result.best = entry
            # A CPU copy, so keeping the best costs no device memory.
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}

    model.train()
    for epoch, plan in enumerate(plans, start=1):
        for k, rows in enumerate(plan):
            loss = train_step(model, train, rows, optimizer, schedule, s.grad_clip, device=device,
                              amp_dtype=amp_dtype, pad_id=pad_id)
            step += 1
            loss_sum, loss_rows = loss_sum + loss * len(rows), loss_rows + len(rows)
            if progress is not None:
                progress(1)
            if s.eval_steps and step % s.eval_steps == 0 and k < len(plan) - 1:
                evaluate_and_keep(epoch)
        evaluate_and_keep(epoch)

    if best_state is not None:
        model.load_state_dict(best_state)
    result.steps = step
    return result
