"""Distillation losses: a registry of per-example losses and the alpha mix with gold-label cross-entropy.

    total = alpha * CE(student, gold)  [rows with a gold label only; 0 when the batch has none]
          + (1 - alpha) * distill(student, teacher)  [every row]

- `mse` (the default, Tang et al. 2019): mean squared error between student and teacher *logits*. The paper
  argues logits keep information that the softmax flattens (a sure and an unsure teacher can give similar
  probabilities), which is why the scored set caches pre-softmax logits.
- `kl`: KL(softmax(t/T) || softmax(s/T)) * T^2 (Hinton et al. 2015; DistilBERT). Softening by T shrinks the
  gradients by 1/T^2, so the T^2 factor keeps their scale independent of T, and the mix with CE meaningful.
- `ce`: cross-entropy on gold labels only (ignores the teacher; the "no distillation" baseline).

Every function returns one value per example; the batch loss is their mean, so sums over batches weighted by
example counts are exact.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from .errors import ConfigError


def mse_logits(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Per-example mean over classes of (s - t)^2; [B, C] -> [B]. Temperature does not apply to logits."""
    return ((student - teacher) ** 2).mean(dim=1)


def kl_soft(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Per-example KL(softmax(t/T) || softmax(s/T)) * T^2; [B, C] -> [B]. Its batch mean is `batchmean`."""
    t = temperature
    log_p_teacher = F.log_softmax(teacher / t, dim=1)
    log_p_student = F.log_softmax(student / t, dim=1)
    return (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(dim=1) * (t * t)


DISTILL_LOSSES: dict[str, Callable[..., torch.Tensor]] = {"mse": mse_logits, "kl": kl_soft}
LOSSES = (*DISTILL_LOSSES, "ce")


def check_loss(name: str, alpha: float, temperature: float) -> list[str]:
    """Problems with a loss setting (empty when valid), for a ConfigError listing all of them."""
    problems = []
    if name not in LOSSES:
        problems.append(f"[loss] unknown loss '{name}'; choose one of {', '.join(LOSSES)}")
    if not 0.0 <= alpha <= 1.0:
        problems.append(f"[alpha] must be in [0, 1], got {alpha}")
    if not temperature > 0:
        problems.append(f"[temperature] must be > 0, got {temperature}")
    return problems


class DistillLoss:
    """The configured objective. `__call__(student_logits [B, C], teacher_logits [B, C] or None, labels [B] with
    -1 for rows without a gold label)` returns the batch loss (a scalar)."""

    def __init__(self, name: str = "mse", alpha: float = 0.0, temperature: float = 1.0):
        problems = check_loss(name, alpha, temperature)
        if problems:
            raise ConfigError(problems)
        self.name, self.alpha, self.temperature = name, alpha, temperature
        # `ce` is gold-only whatever alpha says.
        self.ce_weight = 1.0 if name == "ce" else alpha
        self.distill = DISTILL_LOSSES.get(name)

    @property
    def needs_teacher(self) -> bool:
        return self.distill is not None and self.ce_weight < 1.0

    def __call__(self, student: torch.Tensor, teacher: torch.Tensor | None, labels: torch.Tensor) -> torch.Tensor:
        total = student.new_zeros(())
        if self.ce_weight > 0:
            gold = labels >= 0  # [B]
            if bool(gold.any()):
                total = total + self.ce_weight * F.cross_entropy(student[gold], labels[gold])
        if self.needs_teacher:
            if teacher is None:
                raise ConfigError(f"[loss] '{self.name}' needs teacher logits; train on a scored set")
            total = total + (1.0 - self.ce_weight) * self.distill(student, teacher, self.temperature).mean()
        return total
