"""The loop every model of the project trains with (the BiLSTM and transformer students, the teacher), read top
to bottom: for each planned epoch, its batches in groups of `accum` (one optimiser step each, `Fitter.step`);
inside the epoch, an evaluation every `eval_every` steps (the teacher's option) or a checkpoint when one is due;
at its end the kept weights evaluated, the evaluation recorded (the trainer's `Keeper`: the best weights so far,
early stopping) and a checkpoint written. A refit takes only the plan's first `stop_at` steps. The trainers set
up the model, the `Objective`, the evaluation, the keeper and the plan, and call `train`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ..progress import progress
from .fitter import Fitter, Objective
from .plan import EpochPlan
from .resume import Checkpoints, EpochPosition, Resumed
from .selection import TrainState


class Keeper(Protocol):
    """Records an evaluation into the loop's counters and says whether its weights are the best so far (and
    when the run should stop: `state.stopped`)."""

    def record(self, state: TrainState, epoch: int, figures: dict, scores: dict, lr: float, *,
               epoch_end: bool) -> bool: ...


@dataclass
class Run:
    """What the loop runs, set up once by a trainer."""

    fitter: Fitter
    objective: Objective
    plan: EpochPlan
    keeper: Keeper
    evaluate: Callable[[], dict]  # the kept weights' metrics on every evaluated split
    saves: Checkpoints
    eval_every: int = 0  # also evaluate every this many optimiser steps inside an epoch (0: at epoch ends only)
    stop_at: int | None = None  # take only the plan's first `stop_at` optimiser steps (a refit)
    on_step: Callable[[int], Any] | None = None  # a caller's progress (called with 1 a step) instead of a bar

    def stopping(self, state: TrainState) -> bool:
        return self.stop_at is not None and state.step >= self.stop_at


def figures_of(position: EpochPosition) -> dict:
    """An evaluation's training figures: the loss since the last evaluation, the epoch's speed and norms."""
    steps = max(1, position.steps)
    return {"train_loss": round(position.loss_sum / max(1, position.targets), 6),
            "train_s": round(position.seconds, 2), "rows_per_s": round(position.rows / max(position.seconds, 1e-9), 1),
            "grad_norm": round(position.norm_sum / steps, 4), "clipped": round(position.clipped / steps, 4)}


def evaluated(job: Run, state: TrainState, position: EpochPosition, best: dict | None, *, epoch_end: bool
              ) -> dict | None:
    """Evaluate the kept weights, record it (a CPU copy of them when they are the best), and checkpoint; the best
    weights so far."""
    if job.keeper.record(state, position.epoch, figures_of(position), job.evaluate(), job.fitter.lr,
                         epoch_end=epoch_end):
        best = {k: v.detach().to("cpu", copy=True) for k, v in job.fitter.kept.state_dict().items()}
    position.loss_sum, position.targets = 0.0, 0  # the next evaluation's loss counts from here
    job.saves.save(state, best, None if epoch_end else position)
    return best


def train_epoch(job: Run, position: EpochPosition, state: TrainState, best: dict | None) -> dict | None:
    """Epoch `position.epoch` from `position` (its start, or where a killed run's checkpoint left it), with its
    evaluations inside; the best weights so far. `state.step` counts the optimiser steps."""
    fitter, accum = job.fitter, job.plan.accum
    batches = job.plan.batches(position.epoch)
    t0, seconds_before = time.perf_counter(), position.seconds
    fitter.model.train()
    job.saves.start_epoch()
    bar = progress(len(batches), f"train epoch {position.epoch}", "batch", initial=position.done,
                   disable=job.on_step is not None)
    for start in range(position.done, len(batches), accum):
        if job.stopping(state):
            break
        f = fitter.step(batches[start:start + accum], job.objective)
        state.step += 1
        position.done, position.loss_sum, position.targets = min(start + accum, len(batches)), \
            position.loss_sum + f.loss_sum, position.targets + f.targets
        position.rows, position.norm_sum, position.steps = position.rows + f.rows, position.norm_sum + f.norm, \
            position.steps + 1
        position.clipped += int(fitter.clip > 0 and f.norm > fitter.clip)
        position.seconds = seconds_before + time.perf_counter() - t0
        bar.update(position.done - start)
        if job.on_step is not None:
            job.on_step(1)
        inside = position.done < len(batches) and not job.stopping(state)
        if inside and job.eval_every and state.step % job.eval_every == 0:
            best = evaluated(job, state, position, best, epoch_end=False)
            fitter.model.train()
        elif inside and job.saves.due_now():
            job.saves.save(state, best, position)
    bar.close()
    return best


def run(job: Run, resumed: Resumed | None, on_epoch_end: Callable[[TrainState], None] | None = None,
        ) -> tuple[TrainState, dict | None]:
    """The epochs still to run, each ended by an evaluation and a checkpoint; `on_epoch_end(state)` after it
    (tests use it to interrupt a run). Returns the counters and the best weights."""
    state, best = (resumed.state, resumed.best) if resumed else (TrainState(), None)
    position = resumed.position if resumed else None
    while state.epoch < job.plan.epochs and not state.stopped and not job.stopping(state):
        position = position or EpochPosition(state.epoch + 1)
        best = train_epoch(job, position, state, best)
        state.epoch += 1
        best = evaluated(job, state, position, best, epoch_end=True)
        position = None
        if on_epoch_end is not None:
            on_epoch_end(state)
    return state, best


def train(job: Run, stage: Any | None = None, on_epoch_end: Callable[[TrainState], None] | None = None,
          ) -> tuple[TrainState, dict | None, dict | None]:
    """`run` from a killed run's checkpoint when there is one: the counters, the best weights and stats.json's
    `resumed` record (None from the start); the training seconds go into `stage.timings["train"]`."""
    resumed = job.saves.load()
    record = resumed.record() if resumed else None  # before the loop moves the counters on
    if resumed is not None and job.on_step is not None:
        job.on_step(resumed.state.step)
    state, best = run(job, resumed, on_epoch_end)
    if stage is not None:
        stage.timings["train"] = round(sum(h.get("train_s", 0.0) for h in state.history), 4)
    return state, best, record


def planned_figures(plan: EpochPlan, state: TrainState) -> dict:
    """stats.json's record of the schedule: the optimiser steps planned and taken (equal unless stopped early)."""
    return {"planned_steps": plan.total_steps, "steps": state.step}
