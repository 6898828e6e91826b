"""The optimiser step every trainer takes, set up once (`Fitter`): `accum` batches of rows, each forward pass
under autocast (bf16 where the device computes it natively, else plain float32), the per-row losses summed and
divided by the rows with a target in the whole step (so a step's loss is their mean, however the rows fall into
batches), backward, the gradient norm clipped, the optimiser and schedule stepped, and the moving average of the
weights updated when there is one. A trainer says how rows become losses through an `Objective`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from ..devices import autocast
from ..errors import DistillError


class Objective(Protocol):
    """How a batch of rows (int64 indices into the trainer's data) becomes per-row losses."""

    def targets(self, rows: np.ndarray) -> int:
        """Rows of the batch that have a target (the step's loss is the mean over these)."""

    def logits(self, rows: np.ndarray) -> torch.Tensor:
        """The model's forward pass on the rows: [B, C] (run under the fitter's autocast)."""

    def row_losses(self, logits: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
        """[B] per-row losses of float32 `logits` (0 for rows without a target)."""


@dataclass
class StepFigures:
    loss_sum: float  # the loss summed over the step's rows with a target
    targets: int
    norm: float  # the gradient norm before clipping
    rows: int


@dataclass
class Fitter:
    """What an optimiser step needs: the model, optimiser and schedule, the clip (0: off), the device and the
    autocast dtype (None: float32), and the moving average of the weights (None: off)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    clip: float
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    amp: torch.dtype | None = None
    average: AveragedModel | None = None

    @property
    def kept(self) -> nn.Module:
        """The weights that are evaluated and kept: the model's own, or their moving average."""
        return self.average.module if self.average is not None else self.model

    @property
    def lr(self) -> float:
        return self.scheduler.get_last_lr()[0]

    def step(self, group: Sequence[np.ndarray], objective: Objective) -> StepFigures:
        """One optimiser step over the batches of `group`."""
        targets = max(1, sum(objective.targets(rows) for rows in group))
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum = 0.0
        for rows in group:
            with autocast(self.device, self.amp):
                logits = objective.logits(rows).float()
            loss = objective.row_losses(logits, rows).sum() / targets
            value = loss.item()
            if not math.isfinite(value):
                raise DistillError(f"the training loss became {value} at step {self.scheduler.last_epoch + 1}; "
                                   "lower the learning rate, or train in float32 (--device cpu on a CPU without "
                                   "native bf16) to rule out overflow")
            loss.backward()
            loss_sum += value * targets
        # With clip 0 the bound is infinite: the norm is still measured (scaling by 1.0 changes no bits). The norms
        # tell how often the clip fires, which a change of the loss's scale moves (docs/student-tuning.md).
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip if self.clip > 0 else float("inf"))
        self.optimizer.step()
        self.scheduler.step()
        if self.average is not None:
            update_average(self.average, self.model)
        return StepFigures(loss_sum, targets, float(norm), sum(len(rows) for rows in group))

    def state(self) -> dict[str, Any]:
        """The weights, optimiser, schedule and moving average, as a checkpoint holds them."""
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "ema": self.average.state_dict() if self.average is not None else None}

    def restore(self, ckpt: dict[str, Any]) -> None:
        """Load what `state` saved."""
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if self.average is not None:
            self.average.load_state_dict(ckpt["ema"])


def linear_schedule(optimizer: torch.optim.Optimizer, total_steps: int, warmup: float = 0.0
                    ) -> torch.optim.lr_scheduler.LambdaLR:
    """The rate multiplier 0 -> 1 over the first `warmup` of the steps, then 1 -> 0 at `total_steps` (the plan's
    `total_steps`, so that it reaches 0 exactly at the last step)."""
    from transformers import get_linear_schedule_with_warmup  # ~1 s: only when training

    return get_linear_schedule_with_warmup(optimizer, int(warmup * total_steps), max(1, total_steps))


def decay_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: weight decay on weight matrices only; decaying biases and LayerNorm gains just pulls them
    away from their useful scale."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]


def moving_average(model: nn.Module, decay: float) -> AveragedModel | None:
    """The moving average of `model`'s weights at `decay` per step (None for 0: off)."""
    return AveragedModel(model, multi_avg_fn=ema_update(decay)) if decay else None


def ema_update(decay: float) -> Callable[[list, list, torch.Tensor], None]:
    """The moving average's step for `AveragedModel`: decay min(decay, (1 + n) / (10 + n)) after n updates, as
    TensorFlow's ExponentialMovingAverage with num_updates. A short run (the demo's few hundred steps) then
    averages over a horizon it can fill, instead of staying near its initial weights."""
    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged: torch.Tensor) -> None:
        n = int(num_averaged)
        d = min(decay, (1 + n) / (10 + n))
        for a, c in zip(averaged, current):
            a.lerp_(c, 1.0 - d)
    return update


def update_average(ema: AveragedModel, model: nn.Module) -> None:
    """`ema.update_parameters(model)` for an average of the parameters alone, with the same bits, without its
    regrouping of the tensors at every step: 1.7 ms a step against 0.2 on the BiLSTM (one CPU thread, about 24 ms
    a step)."""
    averaged = [p.detach() for p in ema.module.parameters()]
    current = [p.detach() for p in model.parameters()]
    if int(ema.n_averaged) == 0:
        for a, c in zip(averaged, current):
            a.copy_(c)
    else:
        ema.multi_avg_fn(averaged, current, ema.n_averaged)
    ema.n_averaged += 1


def seed_everything(seed: int) -> np.random.Generator:
    """Seed torch (weight initialisation, dropout) and Python's random; the returned numpy Generator draws the
    batches (`plan.plan_epochs`), and a checkpoint saves its state with the others."""
    import random

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    random.seed(seed)
    return rng
