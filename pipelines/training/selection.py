"""Which epoch is kept, and the loop's counters: after each epoch the kept weights are evaluated on the holdout
(or the first dev split with select_on: dev) and every dev split; the best by `selection_key` is kept, and the
run stops after `patience` epochs without a better one. Dev splits are only reported, unless select_on: dev.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import metrics as task_metrics
from ..holdout import HOLDOUT_SPLIT, split_scores

if TYPE_CHECKING:
    from ..tasks import TaskSpec

HOLDOUT_LOSS = "cross_entropy"  # in the holdout's metrics: the tie-break of selection_key


@dataclass
class TrainState:
    """The loop's counters, saved in every checkpoint."""

    epoch: int = 0  # epochs finished
    step: int = 0  # optimiser steps taken
    best_score: list[float] | None = None  # selection_key of the best epoch
    best_epoch: int = 0
    bad_epochs: int = 0  # epochs since the best
    stopped: bool = False  # early stopping fired
    history: list[dict] = field(default_factory=list)
    best_entry: int = -1  # the history entry of the kept weights


@dataclass(frozen=True)
class Selection:
    """Where and by what the kept epoch is chosen."""

    select_on: str  # holdout | dev
    split: str  # the evaluated split that chooses
    metric: str  # its metric that chooses (higher is better)
    patience: int  # epochs without a better score before the run stops

    @classmethod
    def of(cls, select_on: str, task: TaskSpec, patience: int) -> Selection:
        split = HOLDOUT_SPLIT if select_on == "holdout" else task.dev_splits[0]
        return cls(select_on, split, task.metrics[0], patience)

    def key(self, scores: dict) -> list[float]:
        """What an epoch is ranked by: the selection split's metric, and on the holdout its gold labels' mean
        cross-entropy (lower is better) to break ties, which a small holdout's accuracy often has."""
        split = scores[self.split]
        return [split[self.metric]] + ([-split[HOLDOUT_LOSS]] if HOLDOUT_LOSS in split else [])

    def record(self, state: TrainState, epoch: int, figures: dict, scores: dict, lr: float, *,
               epoch_end: bool = True) -> bool:
        """Count the finished epoch `epoch` (`state.epoch`) into `state` (history, best score, early stopping);
        True when it is the best. Students evaluate at epoch ends only."""
        dev, held_out = split_scores(scores)
        state.history.append({"epoch": state.epoch, "step": state.step, "train_loss": figures["train_loss"],
                              "dev": dev, **({HOLDOUT_SPLIT: held_out} if held_out is not None else {}), "lr": lr,
                              **{k: v for k, v in figures.items() if k != "train_loss"}})
        score = self.key(scores)
        if state.best_score is None or score > state.best_score:  # lexicographic: the metric, then the tie-break
            state.best_score, state.best_epoch, state.bad_epochs = score, state.epoch, 0
            state.best_entry = len(state.history) - 1
            return True
        state.bad_epochs += 1
        state.stopped = state.bad_epochs >= self.patience
        return False

    def final(self, scores: dict, holdout_record: dict | None, filtered: dict[str, int]) -> dict[str, Any]:
        """metrics.json's (and stats.json's) figures of the kept weights: `dev` (every dev split), `holdout` (with
        select_on: holdout), `selection` (what chose the epoch) and `filtered` (what the filters removed)."""
        dev, held = split_scores(scores)
        selection = {"select_on": self.select_on, "split": self.split, "metric": self.metric,
                     **(holdout_record or {})}
        return {"dev": dev, **({HOLDOUT_SPLIT: held} if held is not None else {}), "selection": selection,
                "filtered": filtered}


def split_metrics(task: TaskSpec, name: str, logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The task's metrics of one evaluated split; the holdout adds its mean cross-entropy (`Selection.key`)."""
    out = task_metrics.compute(task.metrics, logits.argmax(1), labels)
    if name == HOLDOUT_SPLIT:
        out[HOLDOUT_LOSS] = task_metrics.mean_cross_entropy(logits, labels)
    return out
