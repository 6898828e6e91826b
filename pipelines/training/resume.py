"""One checkpoint file per training run (in the stage's work directory), written at every evaluation (the end of
each epoch, and inside one with the teacher's `eval_every`) and, every `every_s` seconds of training, inside the
epoch in progress: the weights, optimiser, schedule and moving average (`Fitter.state`), the loop's counters and
the best weights so far, every RNG, and where the epoch stands (`EpochPosition`: batches done and the running
sums; None at an epoch's end). The batches come from the plan (`plan.EpochPlan`), drawn again from the seed, so
a killed run that loads the file skips the done batches of the same epoch and ends with the weights of an
uninterrupted run, having lost at most `every_s` seconds of work. Files are written atomically and tied to the
stage's fingerprint (`pipelines.checkpoints`).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .. import checkpoints
from ..errors import DataError
from .fitter import Fitter
from .selection import TrainState

CHECKPOINT = "checkpoint.pt"


@dataclass
class EpochPosition:
    """Where the epoch in progress stands, and the sums of its figures."""

    epoch: int  # 1-based, as TrainState.epoch counts the finished ones
    done: int = 0  # batches finished (whole optimiser steps)
    loss_sum: float = 0.0  # the loss summed over the rows with a target, since the last evaluation
    targets: int = 0
    rows: int = 0
    norm_sum: float = 0.0  # gradient norms before clipping, summed over the steps
    clipped: int = 0  # steps whose norm was over the clip
    steps: int = 0
    seconds: float = 0.0  # training time spent on this epoch, over every run that trained it


@dataclass
class Resumed:
    """What a run took up from a killed run's checkpoint."""

    state: TrainState
    best: dict | None  # the best weights so far
    position: EpochPosition | None  # inside an epoch; None: at the end of `state.epoch`

    def record(self) -> dict:
        """stats.json's `resumed`: the epochs the checkpoint had finished and, from inside an epoch, the batches
        done there (stats.json's total_s and wall_s are then this process's alone)."""
        inside = {"batches_done": self.position.done, "in_epoch": self.position.epoch} if self.position else {}
        return {"epochs_done": self.state.epoch, **inside}


class Checkpoints:
    """Saves the run at every evaluation and every `every_s` seconds inside an epoch (0: never inside one) to
    `path` (None: nowhere, and nothing to resume)."""

    def __init__(self, path: Path | None, fp: str, fitter: Fitter, rng: np.random.Generator | None = None,
                 every_s: float = 0.0):
        self.path, self.fp, self.fitter, self.rng, self.every_s = path, fp, fitter, rng, every_s
        self.due = float("inf")

    def load(self) -> Resumed | None:
        """A killed run's checkpoint, with the fitter and every RNG restored to it; None when there is none."""
        if self.path is None or not self.path.is_file():
            return None
        ckpt = checkpoints.load(self.path, self.fp, self.rng)
        if "state" not in ckpt:
            raise DataError("the checkpoint was written by an older version of the training loop; delete it to "
                            "train from scratch", str(self.path))
        self.fitter.restore(ckpt)
        position = EpochPosition(**ckpt["position"]) if ckpt.get("position") else None
        return Resumed(TrainState(**ckpt["state"]), ckpt["best_model"], position)

    def start_epoch(self) -> None:
        self.due = time.monotonic() + self.every_s if self.every_s > 0 else float("inf")

    def save(self, state: TrainState, best: dict | None, position: EpochPosition | None = None) -> None:
        if self.path is None:
            return
        checkpoints.save(self.path, self.fp, {**self.fitter.state(), "state": asdict(state), "best_model": best,
                                              "position": asdict(position) if position else None}, self.rng)
        self.start_epoch()

    def due_now(self) -> bool:
        return time.monotonic() >= self.due

    def remove(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)
