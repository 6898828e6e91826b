"""`distill run CONFIG --dry-run`: what a run would do, checked and estimated, with nothing written.

The run is planned as `distill run` plans it (every problem said at once), then for each stage: its directory,
whether it is cached (an output with the fingerprint the stage would compute), resumable (a killed run's work
directory for that fingerprint) or to run; the rows and tokens to score; and a time estimate from a few seconds
of measured throughput on this machine's device and precision (`pipelines.throughput`): the first SAMPLE
originals augmented in a temporary directory (rows per original, seconds per original), the teacher scoring
their rows, and a few optimiser steps of the teacher being fine-tuned and of each student family at its batch
size. A stage whose input is not made yet has no fingerprint: it runs. Estimates leave out early stopping and
start-up costs; they say how long, not to the minute.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from .. import config as run_config
from .. import store
from . import StageResult
from .run import TRANSFER, RunPlan, plan_run, run_settings
from .train import TrainConfig, side_by_side_workers

SAMPLE = 200  # originals augmented to measure the recipe's rows per original and its speed
TEACHER_ROWS = 512  # rows of the sample the teacher scores to measure its speed


@dataclass
class StageState:
    """One stage of the run as the dry run sees it."""

    stage: str
    out: Path
    state: str  # cached | resume | run
    rows: str = ""  # what it reads or writes, in words
    seconds: float | None = None  # the estimate, None where nothing is left to do
    how: str = ""  # what the estimate was measured on
    side_by_side: int = 1  # students trained at once in one group (BiLSTMs: one process per CPU)


@dataclass
class Sample:
    """What the measurements need: the sample's rows, the run's row counts, rates measured so far."""

    texts: list[str]
    pairs: list[str] | None
    originals: int  # of the whole run
    rows: float  # of the whole transfer set (measured when it exists, else estimated from the sample)
    synthetic_per_original: float
    seconds_per_original: float
    tokens_per_row: float = 0.0


def work_state(out: Path, fp: str | None, work_key: str = "") -> str:
    """cached (the output has `fp`), resume (a killed run's work for `fp` is there) or run."""
    if fp is None:
        return "run"
    if store.is_complete(out, fp):
        return "cached"
    return "resume" if store.work_dir_for(out, fp, work_key).is_dir() else "run"


def dry_run(cfg: run_config.RunConfig, out: Path | None = None) -> StageResult:
    """The run directory, and the dry run's text: the resolved config, then a table of the stages (state, rows,
    estimate)."""
    plan = plan_run(cfg, out)
    with tempfile.TemporaryDirectory(prefix="distill-dry-run-") as tmp:
        states = stage_states(cfg, plan, Path(tmp))
    return StageResult(plan.out, True, render(cfg, plan, states))


def stage_states(cfg: run_config.RunConfig, plan: RunPlan, tmp: Path) -> list[StageState]:
    """Every stage in run order, with its state and estimate; the sample is made under `tmp`."""
    from . import augment

    aug = augment.plan(plan.augment)
    states = [StageState("augment", plan.augment.out, work_state(plan.augment.out, aug.fingerprint))]
    sample = measure_sample(plan, aug, states[0].state == "cached", tmp)
    states[0].rows = f"{sample.originals:,} originals -> ~{sample.rows:,.0f} rows"
    states[0].seconds = None if states[0].state == "cached" else sample.seconds_per_original * sample.originals
    states[0].how = f"{SAMPLE} originals augmented now" if states[0].seconds is not None else ""
    teacher = str(plan.score.teacher)
    if plan.finetune is not None:
        states.append(finetune_state(plan, sample))
        teacher = str(states[-1].out) if states[-1].state == "cached" else None
    states.append(score_state(plan, sample, teacher, states[0].state == "cached"))
    states += student_states(plan, sample, teacher, states[-1].state == "cached")
    states.append(StageState("report", plan.out, "run", rows="dev metrics and speed of every model"))
    return states


def measure_sample(plan: RunPlan, aug, transfer_cached: bool, tmp: Path) -> Sample:
    """The rows the later stages are timed on and the transfer set's size: read from the transfer set when it is
    cached; else from the first SAMPLE originals augmented under `tmp` (one worker, the run's recipe and
    tagger), which also give the seconds per original."""
    from . import augment

    originals = len(aug.split)
    source = plan.augment.out
    if not transfer_cached:
        limit = min(SAMPLE, plan.augment.limit or SAMPLE)
        source = augment.run(replace(plan.augment, out=tmp / TRANSFER, limit=limit, input=None, engine="local",
                                     workers=1)).out_dir
    stats = json.loads((source / store.STATS).read_text("utf-8"))
    timings = (store.read_manifest(source) or {}).get("timings_s", {})
    per_original = (timings.get("tag", 0.0) + timings.get("generate", 0.0)) / max(1, stats["originals"])
    synthetic = stats["synthetic"] / max(1, stats["originals"])
    rows = float(stats["rows"]) if transfer_cached else originals * (1 + synthetic)
    texts, pairs = spread_rows(source, TEACHER_ROWS)
    return Sample(texts, pairs, originals, rows, synthetic, per_original)


def spread_rows(transfer: Path, n: int) -> tuple[list[str], list[str] | None]:
    """`n` rows spread evenly over a transfer set (its originals and synthetic rows alike)."""
    import numpy as np

    table = store.read_table(transfer)
    rows = np.unique(np.linspace(0, table.num_rows - 1, min(n, table.num_rows)).astype(np.int64))
    part = table.take(rows)
    pairs = part.column("text_pair").to_pylist() if "text_pair" in part.column_names else None
    return part.column("text").to_pylist(), pairs


def finetune_state(plan: RunPlan, sample: Sample) -> StageState:
    """The teacher's fine-tuning: its steps (epochs by data size, the rate search, the refit) at the measured
    seconds per step of the backbone on batches of the sample."""
    from .. import hub
    from ..throughput import encoder_training_rate
    from . import finetune

    p = finetune.plan(plan.finetune)
    state = StageState("finetune-teacher", plan.finetune.out, work_state(plan.finetune.out, p.fingerprint))
    train_rows, held_out, refit = len(p.splits[0]), (p.splits[2] or {}).get("examples", 0), p.splits[3]
    epochs, batch = p.settings.epochs, p.settings.batch_size
    rows = train_rows * epochs
    rows += finetune.LR_SEARCH_ROWS * epochs * len(finetune.LR_SEARCH) if p.settings.lr == "auto" else 0
    rows += len(refit) * epochs if refit is not None else 0
    state.rows = (f"{train_rows:,} examples x {epochs} epochs" + (f", {held_out:,} held out" if held_out else "")
                  + (", then a refit on all (at most as long)" if refit is not None else ""))
    if state.state != "cached":
        model = hub.load_classifier(p.files.path, p.device, label_names=p.task.label_names,
                                    trust_remote_code=plan.finetune.trust_remote_code)
        rate = encoder_training_rate(model, hub.load_tokenizer(p.files.path, plan.finetune.trust_remote_code),
                                     sample.texts, sample.pairs, batch, plan.finetune.max_length, p.device,
                                     p.precision)
        state.seconds, state.how = rate.seconds(rows), f"{rate.rows_per_s:,.0f} rows/s ({rate.device} {rate.dtype})"
    return state


def score_state(plan: RunPlan, sample: Sample, teacher: str | None, transfer_cached: bool) -> StageState:
    """Scoring: the teacher's rows/s on the sample (the backbone's when the teacher is not fine-tuned yet: the
    same encoder, so the same speed), and the fingerprint once both the transfer set and the teacher exist."""
    from .. import hub
    from ..throughput import teacher_rate
    from .score import output_fingerprint

    cfg = plan.score
    timed = teacher or str(hub.locate_model(plan.finetune.model or hub.default_backbone()).path)
    rate, sample.tokens_per_row = teacher_rate(timed, sample.texts, sample.pairs, device=cfg.device,
                                               dtype=cfg.dtype, max_length=cfg.max_length,
                                               batch_tokens=cfg.batch_tokens,
                                               trust_remote_code=cfg.trust_remote_code)
    fp = None
    if teacher is not None and transfer_cached:
        files = hub.locate_model(teacher, cfg.trust_remote_code)
        fp, _ = output_fingerprint(cfg, store.read_manifest(plan.augment.out)["fingerprint"], files, rate.device)
    state = StageState("score", cfg.out, work_state(cfg.out, fp, rate.device),
                       rows=f"~{sample.rows:,.0f} rows, ~{sample.rows * sample.tokens_per_row:,.0f} tokens")
    if state.state != "cached":
        state.seconds = rate.seconds(sample.rows)
        state.how = f"{rate.rows_per_s:,.0f} rows/s ({rate.device} {rate.dtype})"
    return state


def student_states(plan: RunPlan, sample: Sample, teacher: str | None, scored: bool) -> list[StageState]:
    """Each student: its fingerprint when the scored set exists; its epochs over its rows at the measured rate
    of its family (BiLSTMs side by side, one process per CPU, as the run trains them)."""
    from . import train

    rates: dict[tuple, object] = {}
    states = []
    for name, cfg in plan.students.items():
        fp = train.plan(cfg).fingerprint if scored else None
        resolved = cfg.resolved()
        state = StageState(name, cfg.out, work_state(cfg.out, fp))
        rows = student_rows(resolved, sample, plan.augment.recipe.draws(plan.task.is_pair))
        state.rows = f"~{rows:,.0f} rows x {resolved.epochs} epochs (at most)"
        if state.state != "cached":
            key = (resolved.family, resolved.batch_size)
            if key not in rates:
                rates[key] = student_rate(plan, resolved, sample, teacher)
            rate = rates[key]
            state.side_by_side = side_by_side_workers(resolved) if resolved.family == "bilstm" else 1
            state.seconds = rate.seconds(rows * resolved.epochs)
            state.how = f"{rate.rows_per_s:,.0f} rows/s ({rate.device} {rate.dtype})"
        states.append(state)
    return states


def student_rows(cfg: TrainConfig, sample: Sample, n_iter: int) -> float:
    """The rows a student trains on: the originals alone for a baseline and the `originals` ablation, the first
    k of the recipe's `n_iter` draws for a size ablation, else the whole transfer set (filters and rule
    ablations only remove rows)."""
    if cfg.baseline or cfg.max_draws == 0:
        return float(sample.originals)
    if cfg.max_draws is not None:
        return sample.originals * (1 + sample.synthetic_per_original * min(1.0, cfg.max_draws / max(1, n_iter)))
    return sample.rows


def vocabulary_size(cfg: TrainConfig, sample: Sample) -> int:
    """The BiLSTM's trained vocabulary, roughly: the sample's distinct words grown as the square root of the
    rows (Heaps' law), at most `max_vocab`. It sets the cost of each step's update of the embedding table."""
    distinct = len({w for t in sample.texts + (sample.pairs or []) for w in t.lower().split()})
    grown = int(distinct * (sample.rows / max(1, len(sample.texts))) ** 0.5)
    return max(1000, min(cfg.max_vocab or grown, grown))


def student_rate(plan: RunPlan, cfg: TrainConfig, sample: Sample, teacher: str | None):
    """Measured training rows/s of one student family at its batch size."""
    from .. import hub
    from ..devices import resolve_device
    from ..student.config import DEFAULT_THREADS
    from ..throughput import bilstm_training_rate, encoder_training_rate, transformer_student_dtype

    if cfg.family == "bilstm":
        dim = cfg.embed_dim if cfg.vectors == "none" else 50
        return bilstm_training_rate(sample.texts, sample.pairs, num_labels=plan.task.num_labels, embed_dim=dim,
                                    hidden=cfg.hidden, fc=cfg.fc, batch_size=cfg.batch_size,
                                    max_length=cfg.max_length, threads=cfg.threads or DEFAULT_THREADS,
                                    vocab_size=vocabulary_size(cfg, sample), device=cfg.device)
    from ..student.transformer_training import make_student

    source = cfg.student_init or teacher or plan.finetune.model or hub.default_backbone()
    files = hub.locate_model(source)
    model, _ = make_student(replace(cfg, student_init=None), plan.task, files.path)
    device = resolve_device(cfg.device)
    return encoder_training_rate(model, hub.load_tokenizer(files.path), sample.texts, sample.pairs,
                                 cfg.batch_size, cfg.max_length, device, transformer_student_dtype(device))


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 90:
        return f"~{seconds:.0f} s"
    return f"~{seconds / 60:.0f} min" if seconds < 5400 else f"~{seconds / 3600:.1f} h"


def wall_seconds(states: list[StageState]) -> float | None:
    """The estimated wall time of the stages that run: one after another, but the students of the side-by-side
    group at once (as long as the longest of them, or their sum shared by the processes, whichever is more)."""
    todo = [s for s in states if s.seconds is not None]
    if not todo:
        return None
    group = [s.seconds for s in todo if s.side_by_side > 1]
    alone = sum(s.seconds for s in todo if s.side_by_side <= 1)
    together = max(max(group), sum(group) / max(s.side_by_side for s in todo)) if group else 0.0
    return alone + together


def render(cfg: run_config.RunConfig, plan: RunPlan, states: list[StageState]) -> str:
    """The resolved config as YAML, then one line per stage and the total."""
    settings = yaml.safe_dump(json.loads(json.dumps(run_settings(cfg, plan.out), default=str)), sort_keys=False)
    lines = [f"# distill run {cfg.name} --dry-run: nothing was written", "", "# the resolved config", settings,
             "# the stages (cached: reused; resume: a stopped run's work is kept and goes on; run: from the start)"]
    width = max(len(s.stage) for s in states)
    for s in states:
        lines.append(f"{s.stage:<{width}}  {s.state:<6}  {_duration(s.seconds):>8}  {s.out}  {s.rows}"
                     + (f"  [{s.how}]" if s.how else ""))
    total = wall_seconds(states)
    lines.append(f"\nestimated: {_duration(total) if total is not None else 'nothing to do'} in all for the "
                 "stages that run, from throughput measured now on this machine (the training loops: early "
                 "stopping may end them sooner; each student adds a few seconds to start and export)")
    group = [s for s in states if s.side_by_side > 1]
    if group:
        lines.append(f"the {len(group)} BiLSTM students train side by side, {group[0].side_by_side} at a time")
    return "\n".join(lines)
