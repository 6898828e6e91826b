"""Fine-tuning a teacher: cross-entropy, AdamW with linear warm-up and decay, batches of `batch_size` examples
grouped by length, gradient clipping, and an evaluation after each epoch (and every `eval_steps` steps) that keeps
the best weights and writes a checkpoint (weights, optimiser, schedule, counters, RNGs) that a killed run resumes
from exactly. The plan of every epoch's batches, the schedule sized from it and the optimiser step are the
project's training loop's (`pipelines.training`: `plan`, `fitter`); the evaluation points are the teacher's own.
Evaluation scores dev rows exactly as the `score` stage scores.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from .. import batching
from .. import metrics as task_metrics
from ..devices import default_batch_tokens
from ..settings import TrainSettings
from ..training.fitter import Fitter, decay_groups, linear_schedule
from ..training.loop import Run, train as train_loop
from ..training.plan import EpochPlan, plan_epochs as plan_batches
from ..training.resume import Checkpoints
from ..training.selection import TrainState
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


@dataclass
class Checkpointing:
    """Where the loop saves its checkpoint, and the stage fingerprint that a resumed run must match."""

    path: Path
    fingerprint: str


def lr_schedule(optimizer: torch.optim.Optimizer, total_steps: int, warmup_ratio: float,
                ) -> torch.optim.lr_scheduler.LambdaLR:
    """Learning-rate multiplier 0 → 1 over the first `warmup_ratio` of the steps, then 1 → 0 at `total_steps`."""
    return linear_schedule(optimizer, total_steps, warmup_ratio)


def plan_epochs(lengths: np.ndarray, s: TrainSettings) -> EpochPlan:
    """Every epoch's batches of `s.batch_size` examples (length-grouped), planned up front from the seed: the
    schedule knows the total step count, and a resumed run finds the same batches. `s.epochs` must be set."""
    draw = lambda rng: batching.by_rows(lengths, s.batch_size, rng, GROUP_ROWS)  # noqa: E731
    return plan_batches(draw, s.epochs, np.random.default_rng(s.seed))


def planned_steps(lengths: np.ndarray, s: TrainSettings) -> int:
    """Optimiser steps in all of `plan_epochs(lengths, s)`: the length of the schedule."""
    return plan_epochs(lengths, s).total_steps


class CrossEntropy:
    """The teacher's objective (`training.fitter.Objective`): cross-entropy on the gold labels of a batch."""

    def __init__(self, model: torch.nn.Module, train: LabelledRows, device: torch.device, pad_id: int):
        self.model, self.train, self.device, self.pad_id = model, train, device, pad_id

    def targets(self, rows: np.ndarray) -> int:
        return len(rows)

    def logits(self, rows: np.ndarray) -> torch.Tensor:
        return self.model(**to_device(collate(self.train.enc, rows, self.pad_id), self.device)).logits  # [B, C]

    def row_losses(self, logits: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
        labels = torch.from_numpy(self.train.labels[rows]).to(self.device)  # [B]
        return torch.nn.functional.cross_entropy(logits, labels, reduction="none")


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


def finetune(model: torch.nn.Module, train: LabelledRows, dev: dict[str, LabelledRows], metric_names: Sequence[str],
             s: TrainSettings, *, device: torch.device, amp_dtype: torch.dtype | None, pad_id: int,
             progress: Callable[[int], Any] | None = None, checkpoint: Checkpointing | None = None,
             stop_at: int | None = None) -> FinetuneResult:
    """Fine-tune `model` in place with cross-entropy on the project's training loop (`training.loop`),
    evaluating on `dev` after each epoch (and every `s.eval_steps` steps). At the end the model holds the weights
    of the best evaluation on the first split of `dev` (the holdout, when the stage selects on one), by the first
    metric. Deterministic given `s.seed` on CPU. With `checkpoint`, every evaluation saves one, and a checkpoint
    found there is resumed from.

    With `stop_at` (a refit), only the first `stop_at` steps of the schedule planned for `s.epochs` are taken
    (the learning rate follows that schedule, evaluations too, plus one at the last step), nothing is selected,
    and the model keeps the last weights: `best` is then the last evaluation."""
    torch.manual_seed(s.seed)
    plan = plan_epochs(train.enc.lengths, s)
    optimizer = torch.optim.AdamW(decay_groups(model, s.weight_decay), lr=s.lr)
    fitter = Fitter(model, optimizer, lr_schedule(optimizer, plan.total_steps, s.warmup_ratio), s.grad_clip, device,
                    amp_dtype)
    eval_tokens = eval_batch_tokens(s, device)

    def scores() -> dict:
        return evaluate(model, dev, metric_names, batch_tokens=eval_tokens, device=device, amp_dtype=amp_dtype,
                        pad_id=pad_id)

    saves = Checkpoints(checkpoint.path if checkpoint else None, checkpoint.fingerprint if checkpoint else "", fitter)
    job = Run(fitter, CrossEntropy(model, train, device, pad_id), plan,
              BestEvaluation(metric_names[0], keep_last=stop_at is not None), scores, saves,
              eval_every=s.eval_steps, stop_at=stop_at, on_step=progress)
    state, best_state, _ = train_loop(job)
    if best_state is not None:  # never with stop_at: nothing was selected
        model.load_state_dict(best_state)
    return FinetuneResult(state.history, state.history[state.best_entry] if state.history else None, state.step)


@dataclass
class BestEvaluation:
    """The teacher's `training.loop.Keeper`: every evaluation recorded (step, epoch, the training loss since the
    last one, the rate, every dev split's scores); the best by `metric` on the first split is kept, or with
    `keep_last` (a refit: nothing is selected) the last one. No early stopping."""

    metric: str
    keep_last: bool = False

    def record(self, state: TrainState, epoch: int, figures: dict, scores: dict, lr: float, *,
               epoch_end: bool) -> bool:
        state.history.append({"step": state.step, "epoch": epoch, "train_loss": figures["train_loss"], "lr": lr,
                              "dev": scores})
        if self.keep_last:
            state.best_entry = len(state.history) - 1
            return False  # no copy of the weights is kept: the model's own are the ones wanted
        score = [scores[next(iter(scores))][self.metric]]
        if state.best_score is None or score > state.best_score:
            state.best_score, state.best_epoch, state.best_entry = score, epoch, len(state.history) - 1
            return True
        return False
