"""Distillation losses: a registry of per-row losses and the per-row alpha mix with hard-label cross-entropy.

Each row's loss is

    alpha * CE(student, hard label) + (1 - alpha) * distill(student, teacher)   where the row has a hard label
    distill(student, teacher)                                                   where it has none

and the batch loss is the mean over the batch's rows. Mixing per row keeps a row's weight independent of what
else its batch holds: a batch of length-sorted synthetic rows weighs its rows exactly as a batch of originals.
The hard labels are the gold labels (originals only) or the teacher's argmax (every row); the train stage picks.

- `mse` (the default, Tang et al. 2019): the squared L2 distance between student and teacher *logits*, summed
  over classes, so alpha means the same for 2 and for 6 classes. The paper argues logits keep information that
  the softmax flattens (a sure and an unsure teacher can give similar probabilities), which is why the scored
  set caches pre-softmax logits.
- `kl`: KL(softmax(t/T) || softmax(s/T)) * T^2 (Hinton et al. 2015; DistilBERT). Softening by T shrinks the
  gradients by 1/T^2, so the T^2 factor keeps their scale independent of T, and the mix with CE meaningful.
- `ce`: cross-entropy on hard labels only (ignores the teacher; with gold labels, the "no distillation"
  baseline). Rows without a hard label have no target: the batch loss is the mean over the rows that have one.

The batch loss is a mean over the rows with a target (`DistillLoss.targets` counts them): an epoch's mean loss
over those rows is the sum of batch losses weighted by these counts, not by batch sizes (they differ for `ce`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from .errors import ConfigError
from .settings import check_loss


def mse_logits(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Per-row squared L2 distance ||s - t||^2 (a sum over classes); [B, C] -> [B]. No temperature on logits."""
    return ((student - teacher) ** 2).sum(dim=1)


def kl_soft(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Per-example KL(softmax(t/T) || softmax(s/T)) * T^2; [B, C] -> [B]. Its batch mean is `batchmean`."""
    t = temperature
    log_p_teacher = F.log_softmax(teacher / t, dim=1)
    log_p_student = F.log_softmax(student / t, dim=1)
    return (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(dim=1) * (t * t)


DISTILL_LOSSES: dict[str, Callable[..., torch.Tensor]] = {"mse": mse_logits, "kl": kl_soft}


class DistillLoss:
    """The configured objective. `__call__(student_logits [B, C], teacher_logits [B, C] or None, labels [B] with
    -1 for rows without a hard label)` returns the batch loss (a scalar): the mean of `row_losses` over the rows
    that have a target."""

    def __init__(self, name: str = "mse", alpha: float = 0.0, temperature: float = 1.0):
        problems = check_loss(name, alpha, temperature)
        if problems:
            raise ConfigError(problems)
        self.name, self.alpha, self.temperature = name, alpha, temperature
        self.distill = DISTILL_LOSSES.get(name)

    def has_target(self, labels: torch.Tensor) -> torch.Tensor:
        """[B] bool: the rows this objective can learn from (every row, except unlabelled ones under `ce`)."""
        return labels >= 0 if self.distill is None else torch.ones_like(labels, dtype=torch.bool)

    def targets(self, labels: torch.Tensor) -> int:
        """How many rows of the batch the loss averages over."""
        return int(self.has_target(labels).sum())

    def row_losses(self, student: torch.Tensor, teacher: torch.Tensor | None, labels: torch.Tensor) -> torch.Tensor:
        """[B] per-row losses; 0 for rows without a target."""
        labelled = labels >= 0
        # Unlabelled rows take class 0 only to keep the call valid: torch.where sends them no gradient from it.
        ce = (F.cross_entropy(student, labels.clamp(min=0), reduction="none")
              if self.distill is None or self.alpha > 0 else None)
        if self.distill is None:
            return torch.where(labelled, ce, torch.zeros_like(ce))
        if teacher is None:
            raise ConfigError(f"[loss] '{self.name}' needs teacher logits; train on a scored set")
        d = self.distill(student, teacher, self.temperature)
        if ce is None:
            return d
        return torch.where(labelled, self.alpha * ce + (1.0 - self.alpha) * d, d)

    def __call__(self, student: torch.Tensor, teacher: torch.Tensor | None, labels: torch.Tensor) -> torch.Tensor:
        n = self.has_target(labels).sum().clamp(min=1)
        # With no target the result is a zero that still belongs to the graph: backward() gives zero gradients
        # instead of raising. (The train stage never feeds such a batch: it drops rows without a target.)
        return self.row_losses(student, teacher, labels).sum() / n
