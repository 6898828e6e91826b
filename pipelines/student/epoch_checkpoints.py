"""Checkpoints inside an epoch, for students whose epochs are long (the transformer on a CPU: about 50 minutes an
epoch of the full SST-2 transfer set on 2 AVX-512 cores).

Every `every_s` seconds of training the epoch in progress is saved to its own file beside the epoch checkpoint
(`training.CHECKPOINT`): the weights, optimiser, schedule, every RNG, the state the batch Generator had before the
epoch's batches were drawn, how many batches are done and the epoch's running sums. A killed run loads the epoch
checkpoint as before, then this file when it belongs to the epoch about to run: the epoch draws the same batches
from the saved state, skips the done ones and goes on, so the run ends with the weights of an uninterrupted one
and loses at most `every_s` seconds of work. The file is removed once the epoch's own checkpoint is written; one
that a kill in between left (of an epoch that has since finished) is ignored, and its RNGs are not restored.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from .. import checkpoints
from .training import Fitter, fitter_state, restore_fitter

EPOCH_CHECKPOINT = "checkpoint-in-epoch.pt"


@dataclass
class EpochPosition:
    """Where the epoch in progress stands: what a resumed epoch starts from, and the sums of its figures."""

    epoch: int  # 1-based, as TrainState.epoch counts the finished ones
    rng_start: dict  # the batch Generator's state before this epoch's batches were drawn
    done: int = 0  # batches finished (whole optimiser steps)
    loss_sum: float = 0.0  # the loss summed over the rows with a target
    targets: int = 0
    norm_sum: float = 0.0  # gradient norms before clipping, summed over the steps
    steps: int = 0
    seconds: float = 0.0  # training time spent on this epoch, over every run that trained it


class EpochCheckpoints:
    """Saves and restores the epoch in progress (see the module's docstring); `every_s` 0 saves nothing, but a
    file that a run with checkpoints left is still resumed from."""

    def __init__(self, path: Path, fp: str, fitter: Fitter, rng: np.random.Generator, every_s: float):
        self.path, self.fp, self.fitter, self.rng, self.every_s = path, fp, fitter, rng, every_s
        self.due = float("inf")
        self.resumed: EpochPosition | None = None  # the first position restored from a file, if any

    def start(self, epoch: int) -> EpochPosition:
        """The saved position in `epoch`, with the fitter and every RNG restored to it, or a fresh position;
        either way the batch Generator is left in the state that the epoch's batches are drawn from."""
        position = None
        if self.path.is_file():
            ckpt = checkpoints.read(self.path, self.fp)
            if ckpt["position"]["epoch"] == epoch:
                restore_fitter(self.fitter, ckpt)
                checkpoints.restore_rngs(ckpt, self.rng)
                position = EpochPosition(**ckpt["position"])
                self.resumed = self.resumed or replace(position)  # a copy: the epoch moves `position` on
        if position is None:
            position = EpochPosition(epoch, self.rng.bit_generator.state)
        self.rng.bit_generator.state = position.rng_start
        self.due = time.monotonic() + self.every_s if self.every_s > 0 else float("inf")
        return position

    def after_step(self, position: EpochPosition) -> None:
        """Save `position` (with the fitter and the RNGs as they are now) when `every_s` has passed since the
        epoch started or was last saved."""
        if time.monotonic() < self.due:
            return
        checkpoints.save(self.path, self.fp, {**fitter_state(self.fitter), "position": asdict(position)}, self.rng)
        self.due = time.monotonic() + self.every_s

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
