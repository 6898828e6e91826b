"""The students' objective (`fitter.Objective`), the same for both families: per-row losses of the configured
`losses.DistillLoss` against the teacher's cached logits and the rows' hard labels. A family's subclass says only
how a batch of rows becomes logits (`logits`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from ..losses import DistillLoss

if TYPE_CHECKING:
    from ..student.config import TrainConfig


class DistillObjective:
    """Per-row losses against `teacher` (float32 [N, C]) and `labels` (int64 [N], -1: no hard label)."""

    def __init__(self, cfg: TrainConfig, teacher: np.ndarray, labels: np.ndarray, device: torch.device):
        self.device = device
        self.loss_fn = DistillLoss("ce" if cfg.baseline else cfg.loss, cfg.alpha, cfg.temperature)
        self.teacher = torch.from_numpy(teacher).to(device)  # [N, C]
        self.labels = torch.from_numpy(labels).to(device)  # [N]

    def targets(self, rows: np.ndarray) -> int:
        return self.loss_fn.targets(self.labels[torch.from_numpy(rows).to(self.device)])

    def logits(self, rows: np.ndarray) -> torch.Tensor:
        raise NotImplementedError

    def row_losses(self, logits: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
        idx = torch.from_numpy(rows).to(self.device)
        return self.loss_fn.row_losses(logits, self.teacher[idx], self.labels[idx])
