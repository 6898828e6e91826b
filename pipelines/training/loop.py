"""The epochs of a training run, read top to bottom: for each planned epoch, its batches in groups of `accum` (one
optimiser step each, `Fitter.step`), a checkpoint inside the epoch when one is due; at its end, the kept weights
evaluated, the epoch recorded (`Selection.record`: the best weights, early stopping) and a checkpoint written.
The trainers (the BiLSTM, the transformer student, the teacher) set up the model, the `Objective`, the
evaluation and the plan, and call `run`.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..progress import progress
from .fitter import Fitter, Objective
from .plan import EpochPlan
from .resume import Checkpoints, EpochPosition, Resumed
from .selection import Selection, TrainState


@dataclass
class Run:
    """What the loop runs, set up once by a trainer."""

    fitter: Fitter
    objective: Objective
    plan: EpochPlan
    selection: Selection
    evaluate: Callable[[], dict]  # the kept weights' metrics on every evaluated split
    saves: Checkpoints


def train_epoch(run: Run, position: EpochPosition, state: TrainState, best: dict | None) -> dict:
    """Epoch `position.epoch` from `position` (its start, or where a killed run's checkpoint left it); the epoch's
    figures for the history (`state.step` counts its optimiser steps)."""
    fitter, accum = run.fitter, run.plan.accum
    batches = run.plan.batches(position.epoch)
    t0, seconds_before = time.perf_counter(), position.seconds
    fitter.model.train()
    run.saves.start_epoch()
    bar = progress(len(batches), f"train epoch {position.epoch}", "batch", initial=position.done)
    for start in range(position.done, len(batches), accum):
        group = batches[start:start + accum]
        f = fitter.step(group, run.objective)
        state.step += 1
        position.done, position.loss_sum, position.targets = start + len(group), position.loss_sum + f.loss_sum, \
            position.targets + f.targets
        position.rows, position.norm_sum, position.steps = position.rows + f.rows, position.norm_sum + f.norm, \
            position.steps + 1
        position.clipped += int(fitter.clip > 0 and f.norm > fitter.clip)
        position.seconds = seconds_before + time.perf_counter() - t0
        bar.update(len(group))
        if run.saves.due_now() and position.done < len(batches):
            run.saves.save(state, best, position)
    bar.close()
    steps = max(1, position.steps)
    return {"train_loss": round(position.loss_sum / max(1, position.targets), 6),
            "train_s": round(position.seconds, 2), "rows_per_s": round(position.rows / max(position.seconds, 1e-9), 1),
            "grad_norm": round(position.norm_sum / steps, 4), "clipped": round(position.clipped / steps, 4)}


def run(job: Run, resumed: Resumed | None, on_epoch_end: Callable[[TrainState], None] | None = None,
        ) -> tuple[TrainState, dict | None]:
    """The epochs still to run: each trained, then the kept weights evaluated and recorded (best weights, early
    stopping) and a checkpoint written; `on_epoch_end(state)` after it (tests use it to interrupt a run). Returns
    the counters and the best weights."""
    state, best = (resumed.state, resumed.best) if resumed else (TrainState(), None)
    position = resumed.position if resumed else None
    while state.epoch < job.plan.epochs and not state.stopped:
        position = position or EpochPosition(state.epoch + 1)
        figures = train_epoch(job, position, state, best)
        position = None
        if job.selection.record(state, figures, job.evaluate(), job.fitter.lr):
            best = copy.deepcopy(job.fitter.kept.state_dict())
        job.saves.save(state, best)
        if on_epoch_end is not None:
            on_epoch_end(state)
    return state, best


def planned_figures(plan: EpochPlan, state: TrainState) -> dict:
    """stats.json's record of the schedule: the optimiser steps planned and taken (equal unless stopped early)."""
    return {"planned_steps": plan.total_steps, "steps": state.step}


def stage_train_seconds(state: TrainState) -> float:
    return round(sum(h["train_s"] for h in state.history), 4)


def train(job: Run, stage: Any, on_epoch_end: Callable[[TrainState], None] | None = None,
          ) -> tuple[TrainState, dict | None, dict | None]:
    """`run` from a killed run's checkpoint when there is one: the counters, the best weights and stats.json's
    `resumed` record (None from the start); the training seconds go into `stage.timings["train"]`."""
    resumed = job.saves.load()
    record = resumed.record() if resumed else None  # before the loop moves the counters on
    state, best = run(job, resumed, on_epoch_end)
    stage.timings["train"] = stage_train_seconds(state)
    return state, best, record
