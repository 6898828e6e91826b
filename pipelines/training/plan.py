"""Every epoch's batches, planned before the first optimiser step.

A linear warm-up and decay needs the number of optimiser steps the run will take. Counting them from another
batching than the epochs use (say one global length sort, where each epoch sorts within shuffled groups and cuts
more batches) sizes the schedule wrong: the rate reaches zero early and the rest of the run trains at zero. So
the plan draws each epoch's batches with the same function and Generator the epoch will use, in order, and
keeps only the Generator's state before each epoch and the batch count: the batches themselves are drawn again
when the epoch runs (cheap: a permutation and a sort), so memory holds one epoch's batches, not all of them.
A resumed run plans from the same seed and finds the same batches.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

Draw = Callable[[np.random.Generator], list[np.ndarray]]  # one epoch's batches of row indices


@dataclass(frozen=True)
class EpochPlan:
    """The batches of epochs 1..len(counts), and how many optimiser steps they make with `accum` batches a step."""

    draw: Draw
    starts: tuple[dict, ...]  # the Generator's state before each epoch's batches were drawn
    counts: tuple[int, ...]  # batches per epoch
    accum: int = 1  # batches per optimiser step (gradient accumulation)

    @property
    def epochs(self) -> int:
        return len(self.counts)

    def batches(self, epoch: int) -> list[np.ndarray]:
        """Epoch `epoch`'s (1-based) batches, exactly as planned."""
        rng = np.random.default_rng()
        rng.bit_generator.state = copy.deepcopy(self.starts[epoch - 1])
        batches = self.draw(rng)
        if len(batches) != self.counts[epoch - 1]:  # the draw is not a pure function of the Generator
            raise RuntimeError(f"epoch {epoch} drew {len(batches)} batches, {self.counts[epoch - 1]} were planned")
        return batches

    def steps(self, epoch: int) -> int:
        """Optimiser steps of epoch `epoch`: its batches in groups of `accum` (the last group may be short)."""
        return -(-self.counts[epoch - 1] // self.accum)

    @property
    def total_steps(self) -> int:
        """The length of the schedule: every planned epoch's optimiser steps."""
        return sum(self.steps(e) for e in range(1, self.epochs + 1))

    def __iter__(self) -> Iterator[list[np.ndarray]]:
        return (self.batches(e) for e in range(1, self.epochs + 1))


def plan_epochs(draw: Draw, epochs: int, rng: np.random.Generator, accum: int = 1) -> EpochPlan:
    """Plan `epochs` epochs of `draw(rng)`, drawn in turn from `rng` (which is left after the last of them)."""
    starts, counts = [], []
    for _ in range(epochs):
        starts.append(copy.deepcopy(rng.bit_generator.state))
        counts.append(len(draw(rng)))
    return EpochPlan(draw, tuple(starts), tuple(counts), max(1, accum))
