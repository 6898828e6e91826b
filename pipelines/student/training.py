"""Training a BiLSTM student from a scored set: the data (tokenised once), the model, the objective, the loop,
checkpoints, and the student directory it writes. `distill train` (pipelines/stages/train.py) checks the config,
fingerprints it and opens the stage; `fit` does the rest.

`fit` reads top to bottom on one screen, in three parts. Set-up: load the scored set -> tokenise once ->
vocabulary and embeddings -> model -> optimiser -> resume. The loop: epochs (batch, forward, loss, backward, clip,
step; dev evaluation, early stopping, checkpoint). Evaluation: the best weights on dev. What it writes (the
student directory: weights, vocab, config, metrics, TorchScript, ONNX, predict.py; stats) is in the functions
below it.
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from .. import batching, checkpoints, metrics as task_metrics, store
from ..errors import DataError, TeacherMismatchError
from ..holdout import HOLDOUT_SPLIT, holdout_rows, split_scores
from ..losses import DistillLoss
from ..progress import progress
from ..settings import parse_formats
from ..tasks import TaskSpec, data_dir, read_split
from .export import export_student
from .filters import steer
from .io import METRICS, count_parameters, save_student
from .models import StudentConfig, build_model, predict_logits
from .tokenizer import Tokenizer
from .vectors import init_embedding, load_vectors, pretrained_words, resolve_vectors
from .vocab import UNK, Corpus, CorpusBuilder, Vocab, encode_texts, pad_batch

if TYPE_CHECKING:
    from .config import TrainConfig
    from .epoch_checkpoints import EpochPosition

CHECKPOINT = "checkpoint.pt"
HOLDOUT_LOSS = "cross_entropy"  # in the holdout's metrics: the tie-break of selection_key
TOKENISE_ROWS = 1 << 18  # rows of the scored set tokenised at a time (`load_train_data`)


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


# ----------------------------------------------------------------------------------------------- data

@dataclass
class TrainData:
    """The training rows, tokenised once: ids per row (and per pair side), teacher logits, hard labels."""

    a: Corpus
    b: Corpus | None
    teacher: np.ndarray  # float32 [N, C]
    labels: np.ndarray  # int64 [N]: the hard label of each row (TrainConfig.hard_labels), -1 where it has none
    vocab: Vocab
    counts: dict
    holdout: HeldOut | None = None

    def __len__(self) -> int:
        return len(self.a)

    def lengths(self) -> np.ndarray:
        return self.a.lengths + (self.b.lengths if self.b is not None else 0)


def read_scored_table(cfg: TrainConfig, task: TaskSpec) -> pa.Table:
    """The scored set's columns that training reads (memory-mapped), with `label` and `is_original` filled in
    where it has none, cut to --limit; its logits checked against the task's label count."""
    cols = ["text", "teacher_logits"] + (["text_pair"] if task.is_pair else [])
    table = store.read_table(cfg.scored)
    missing = [c for c in cols if c not in table.column_names]
    if missing:
        raise DataError(f"{cfg.scored}: the scored set has no column(s) {missing}; its columns are "
                        f"{table.column_names}" + (" (a pair task needs text_pair)" if "text_pair" in missing else ""))
    # Sets scored from plain text (`distill score --input`) have no gold labels and no originals.
    if "label" not in table.column_names:
        table = table.append_column("label", pa.nulls(table.num_rows, pa.int64()))
    if "is_original" not in table.column_names:
        table = table.append_column("is_original", pa.array(np.zeros(table.num_rows, dtype=bool)))
    table = table.select([*cols, "label", "is_original"] + [c for c in ("source_index", "ops", "draw")
                                                            if c in table.column_names])
    if cfg.limit is not None:
        table = table.slice(0, cfg.limit)
    logits_type = table.schema.field("teacher_logits").type
    num_labels = logits_type.list_size if pa.types.is_fixed_size_list(logits_type) else None
    if num_labels != task.num_labels:
        raise TeacherMismatchError(
            f"{cfg.scored}: teacher_logits has {num_labels} classes but task '{task.name}' has {task.num_labels} "
            f"({', '.join(task.label_names)}); score with a teacher fine-tuned on this task")
    return table


def training_rows(cfg: TrainConfig, gold: np.ndarray, is_original: np.ndarray) -> np.ndarray | None:
    """The rows the objective can learn from, as a mask (None: every row). The baseline keeps the gold-labelled
    originals (the paper's "without distillation"). `ce` on gold labels keeps the gold-labelled rows: the others
    have no target, and a length-sorted batch of only those would be an optimiser step without a gradient
    (Adam's momentum and the moving average would still move the weights). Every other objective has a target
    on every row: the teacher's logits, or its argmax."""
    if cfg.baseline:
        return is_original & (gold >= 0)
    if cfg.loss == "ce" and cfg.hard_labels == "gold":
        return gold >= 0
    return None


def hard_labels(cfg: TrainConfig, gold: np.ndarray, teacher: np.ndarray) -> np.ndarray:
    """[N] int64 hard label per row (-1: none): the gold labels, or with hard_labels=teacher the teacher's argmax
    on every row (the authors' code). The baseline has no teacher: gold labels whatever the setting."""
    if cfg.hard_labels == "teacher" and not cfg.baseline:
        return teacher.argmax(axis=1).astype(np.int64)
    return gold


def no_rows_message(cfg: TrainConfig, filtered: dict[str, int] | None = None) -> str:
    if filtered and sum(filtered.values()):
        return (f"{cfg.scored}: the filters left no rows to train on (removed: "
                + ", ".join(f"{n:,} {what.replace('_', ' ')}" for what, n in filtered.items())
                + "); loosen --min-confidence, --drop-disagreeing or --rebalance")
    if cfg.baseline:
        return f"{cfg.scored}: --baseline needs original rows with gold labels, found none"
    if cfg.loss == "ce" and cfg.hard_labels == "gold":
        return (f"{cfg.scored}: --loss ce with gold labels needs rows with gold labels, found none; "
                "--hard-labels teacher trains on the teacher's argmax instead")
    return f"{cfg.scored}: the scored set has no rows"


@dataclass
class HeldOut:
    """The holdout's original rows with their gold labels: what the best epoch is chosen on."""

    texts: list[str]
    pairs: list[str] | None
    labels: np.ndarray  # int64 [n]
    record: dict  # holdout.HoldoutMask.record(): how it was drawn, for metrics.json and the report


@dataclass
class SelectedRows:
    """The scored set's rows the objective learns from, with their targets (both student families read these),
    and the holdout left out of them (None with select_on: dev). The texts stay in the memory-mapped scored set:
    `pieces` reads the kept rows' texts a slice at a time, `table` all of them at once."""

    source: pa.Table  # the scored set, every row (memory-mapped)
    keep: np.ndarray | None  # bool [rows of source]: the rows kept (None: every row)
    gold: np.ndarray  # int64 [N], -1: no gold label
    teacher: np.ndarray  # float32 [N, C]
    labels: np.ndarray  # int64 [N]: the hard label of each row, -1 where it has none
    original_rows: int  # of the N kept rows
    holdout: HeldOut | None = None
    filtered: dict[str, int] = field(default_factory=dict)  # rows each filter removed (filters.steer)

    def __len__(self) -> int:
        return len(self.gold)

    def pieces(self, columns: list[str], rows: int | None = None) -> Iterator[pa.Table]:
        """The kept rows' `columns`, in order, `rows` (default TOKENISE_ROWS) rows of the scored set at a time."""
        rows = rows or TOKENISE_ROWS
        for start in range(0, self.source.num_rows, rows):
            piece = self.source.select(columns).slice(start, rows)
            yield piece if self.keep is None else piece.filter(pa.array(self.keep[start:start + rows]))

    @property
    def table(self) -> pa.Table:
        """The kept rows' columns, all in memory."""
        return self.source if self.keep is None else self.source.filter(pa.array(self.keep))


def split_holdout(cfg: TrainConfig, table: pa.Table, gold: np.ndarray, is_original: np.ndarray
                  ) -> tuple[np.ndarray | None, HeldOut | None]:
    """With select_on: holdout, the mask of rows outside the holdout (what training may use) and the holdout's
    gold-labelled originals; with select_on: dev, (None, None)."""
    if cfg.select_on != "holdout":
        return None, None
    if "source_index" not in table.column_names:
        raise DataError("the scored set has no source_index column to draw a holdout from; use --select-on dev",
                        str(cfg.scored))
    mask = holdout_rows(table.column("source_index").to_numpy(), is_original, gold, str(cfg.scored))
    rows = np.flatnonzero(mask.held_out & is_original & (gold >= 0))
    if len(rows) == 0:
        raise DataError("the holdout has no original rows with gold labels; use --select-on dev", str(cfg.scored))
    picked = table.take(pa.array(rows))
    pairs = picked.column("text_pair").to_pylist() if "text_pair" in picked.column_names else None
    return ~mask.held_out, HeldOut(picked.column("text").to_pylist(), pairs, gold[rows], mask.record())


def select_rows(cfg: TrainConfig, task: TaskSpec) -> SelectedRows:
    """Read the scored set, check its labels and logits, set the holdout aside (select_on: holdout), and keep the
    rows the objective can learn from that the filters (`filters.steer`) let through."""
    table = read_scored_table(cfg, task)
    gold = table.column("label").fill_null(-1).to_numpy().astype(np.int64)
    if gold.max(initial=-1) >= task.num_labels:
        raise DataError(f"{cfg.scored}: label {gold.max()} is out of range for task '{task.name}'")
    teacher = pc.list_flatten(table.column("teacher_logits")).to_numpy().astype(np.float32)  # a writable copy
    teacher = teacher.reshape(-1, task.num_labels)  # [N, C]
    if not np.isfinite(teacher).all():
        raise DataError(f"{cfg.scored}: teacher_logits holds NaN or infinite values; score the set again")
    is_original = table.column("is_original").fill_null(False).to_numpy(zero_copy_only=False)
    outside, held_out = split_holdout(cfg, table, gold, is_original)
    keep = _both(_both(training_rows(cfg, gold, is_original), outside), ablation_rows(cfg, table, is_original))
    steered, filtered = steer(cfg, gold, is_original, teacher, keep if keep is not None else np.ones(len(gold), bool))
    keep = _both(keep, steered if filtered else None)
    if keep is not None:
        gold, teacher, is_original = gold[keep], teacher[keep], is_original[keep]
    if len(gold) == 0:
        raise DataError(no_rows_message(cfg, filtered))
    return SelectedRows(table, keep, gold, teacher, hard_labels(cfg, gold, teacher), int(is_original.sum()),
                        held_out, filtered)


def ablation_rows(cfg: TrainConfig, table: pa.Table, is_original: np.ndarray) -> np.ndarray | None:
    """The subset an ablation trains on (None: every row): without the synthetic rows that `drop_rule` changed,
    and/or the originals with their first `max_draws` draws. A subset of the full transfer set approximates a
    transfer set made without the rule (or with fewer draws): the dedupe ran over all of it."""
    keep = None
    if cfg.drop_rule is not None:
        ops = table.column("ops").combine_chunks() if "ops" in table.column_names else None
        if ops is None:
            raise DataError("--drop-rule needs the transfer set's ops column, which this scored set lacks",
                            str(cfg.scored))
        changed = np.zeros(table.num_rows, dtype=bool)
        hits = pc.equal(pc.list_flatten(ops), cfg.drop_rule).to_numpy(zero_copy_only=False)
        changed[pc.list_parent_indices(ops).to_numpy()[hits]] = True
        keep = is_original | ~changed
    if cfg.max_draws is not None:
        if "draw" not in table.column_names:
            raise DataError("--max-draws needs the transfer set's draw column (added in 0.1.0, #14); augment and "
                            "score the set again", str(cfg.scored))
        draw = table.column("draw").fill_null(-1).to_numpy()
        keep = _both(keep, is_original | (draw < cfg.max_draws))
    return keep


def _both(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    """Two row masks together (None: every row)."""
    return b if a is None else a if b is None else a & b


def selection_split(cfg: TrainConfig, task: TaskSpec) -> str:
    """The split whose first metric chooses the best epoch and stops training early."""
    return HOLDOUT_SPLIT if cfg.select_on == "holdout" else task.dev_splits[0]


def selection_key(cfg: TrainConfig, task: TaskSpec, scores: dict) -> list[float]:
    """What an epoch is ranked by: the selection split's first metric, and on the holdout its gold labels' mean
    cross-entropy (lower is better) to break ties, which a small holdout's accuracy often has."""
    split = scores[selection_split(cfg, task)]
    return [split[task.metrics[0]]] + ([-split[HOLDOUT_LOSS]] if HOLDOUT_LOSS in split else [])


def split_metrics(task: TaskSpec, name: str, logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The task's metrics of one evaluated split; the holdout adds its mean cross-entropy (`selection_key`)."""
    out = task_metrics.compute(task.metrics, logits.argmax(1), labels)
    if name == HOLDOUT_SPLIT:
        out[HOLDOUT_LOSS] = task_metrics.mean_cross_entropy(logits, labels)
    return out


def final_metrics(cfg: TrainConfig, task: TaskSpec, scores: dict, held_out: HeldOut | None,
                  filtered: dict[str, int]) -> dict:
    """metrics.json's (and stats.json's) figures of the kept weights: `dev` (every dev split), `holdout` (with
    select_on: holdout), `selection` (what chose the epoch) and `filtered` (what the filters removed)."""
    dev, held = split_scores(scores)
    selection = {"select_on": cfg.select_on, "split": selection_split(cfg, task), "metric": task.metrics[0],
                 **(held_out.record if held_out is not None else {})}
    return {"dev": dev, **({HOLDOUT_SPLIT: held} if held is not None else {}), "selection": selection,
            "filtered": filtered}


def load_train_data(cfg: TrainConfig, task: TaskSpec, tokenizer: Tokenizer) -> TrainData:
    """Pick the rows (`select_rows`), tokenise them a slice of the scored set at a time (`CorpusBuilder`: memory
    holds the token ids, not the texts), build the vocabulary. Both sides of a pair share one vocabulary."""
    rows = select_rows(cfg, task)
    sides = ["text", "text_pair"] if task.is_pair else ["text"]
    builder = CorpusBuilder(tokenizer, len(sides))
    with progress(len(rows), "tokenise", unit="row") as bar:
        for piece in rows.pieces(sides):
            for side, column in enumerate(sides):
                builder.add(piece.column(column), side)
            bar.update(piece.num_rows)
    tokens = builder.tokens
    vocab = Vocab.build(tokens, builder.counts, cfg.min_count, cfg.max_vocab)
    lut = vocab.lookup_table(tokens)
    a = builder.corpus(lut, 0)
    b = builder.corpus(lut, 1) if task.is_pair else None
    ids = [a.ids] + ([b.ids] if b is not None else [])
    total = sum(len(x) for x in ids)
    unk = sum(int(np.count_nonzero(x == UNK)) for x in ids)
    stats = {"rows": len(rows), "original_rows": rows.original_rows, "gold_rows": int((rows.gold >= 0).sum()),
             "hard_label_rows": int((rows.labels >= 0).sum()), "tokens": total, "distinct_tokens": len(tokens),
             "vocab_size": len(vocab), "unk_rate": round(unk / total if total else 0.0, 6), "filtered": rows.filtered}
    return TrainData(a, b, rows.teacher, rows.labels, vocab, stats, rows.holdout)


@dataclass
class DevSplit:
    name: str
    a: Corpus
    b: Corpus | None
    labels: np.ndarray


def load_dev(cfg: TrainConfig, task: TaskSpec, tokenizer: Tokenizer, vocab: Vocab,
             held_out: HeldOut | None = None) -> list[DevSplit]:
    """The splits evaluated after each epoch: the holdout first (when there is one), then every dev split."""
    out = []
    if held_out is not None:
        b = encode_texts(held_out.pairs, tokenizer, vocab) if task.is_pair else None
        out.append(DevSplit(HOLDOUT_SPLIT, encode_texts(held_out.texts, tokenizer, vocab), b, held_out.labels))
    for split in task.dev_splits:
        s, _ = read_split(task, data_dir(task, cfg.data), split)
        a = encode_texts(s.texts, tokenizer, vocab)
        b = encode_texts(s.text_pairs, tokenizer, vocab) if task.is_pair else None
        out.append(DevSplit(split, a, b, s.labels))
    return out


def expand_vocabulary(vocab: Vocab, vectors: str, limit: int, tokenizer: Tokenizer) -> tuple[Vocab, np.ndarray]:
    """Vocabulary expansion: words among the `limit` most frequent of the pretrained vectors that training never
    saw (and that the tokeniser keeps whole) get rows after the trained ones, holding their pretrained vectors
    frozen. SST-2 dev has ~5% of its tokens (in over half of its sentences) outside SST-2 train's vocabulary;
    without expansion they all read as UNK."""
    words, vecs = pretrained_words(vectors, limit)
    seen = set(vocab.index)
    keep = []
    for i, w in enumerate(words):
        if w not in seen and tokenizer.chunk(w) == [w]:
            seen.add(w)
            keep.append(i)
    if not keep:
        return vocab, np.zeros((0, 0), dtype=np.float32)
    return Vocab(vocab.tokens + [words[i] for i in keep]), vecs[keep]


def evaluate(model: nn.Module, dev: list[DevSplit], task: TaskSpec, max_len: int,
             device: torch.device | None = None) -> dict[str, dict]:
    """The task's metrics on the holdout (with its cross-entropy) and every dev split."""
    return {d.name: split_metrics(task, d.name, predict_logits(model, d.a, d.b, max_len, device=device), d.labels)
            for d in dev}


def ema_update(decay: float) -> Callable[[list, list, torch.Tensor], None]:
    """The moving average's step for `AveragedModel`: decay min(decay, (1 + n) / (10 + n)) after n updates, as
    TensorFlow's ExponentialMovingAverage with num_updates. A short run (the demo's few hundred steps) then
    averages over a horizon it can fill, instead of staying near its initial weights."""
    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged: torch.Tensor) -> None:
        n = int(num_averaged)
        d = min(decay, (1 + n) / (10 + n))
        for a, c in zip(averaged, current):
            a.lerp_(c, 1.0 - d)
    return update


def update_average(ema: AveragedModel, model: nn.Module) -> None:
    """`ema.update_parameters(model)` for an average of the parameters alone, with the same bits, without its
    regrouping of the tensors at every step: 1.7 ms a step against 0.2 on the BiLSTM (one CPU thread, about 24 ms
    a step)."""
    averaged = [p.detach() for p in ema.module.parameters()]
    current = [p.detach() for p in model.parameters()]
    if int(ema.n_averaged) == 0:
        for a, c in zip(averaged, current):
            a.copy_(c)
    else:
        ema.multi_avg_fn(averaged, current, ema.n_averaged)
    ema.n_averaged += 1


def resumed_record(epochs_done: int | None, in_epoch: EpochPosition | None = None) -> dict | None:
    """Where this process took a killed run up (stats.json's total_s and wall_s are then this process's alone;
    train_s and each epoch's figures count every process): the epochs its checkpoint had finished and, for a
    transformer that went on from inside an epoch, the batches done there; None for a run from the start."""
    if epochs_done is None and in_epoch is None:
        return None
    return {"epochs_done": epochs_done or 0,
            **({"batches_done": in_epoch.done, "in_epoch": in_epoch.epoch} if in_epoch else {})}


def epoch_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Row indices per batch: rows sorted by length (random order within a length), cut into batches, and the
    batches shuffled (batching.by_rows). Padding is near zero, so an epoch costs about what its real tokens cost."""
    return batching.by_rows(lengths, batch_size, rng)


# ----------------------------------------------------------------------------------------------- model, optimiser

@dataclass
class Student:
    """The model being trained, and what its directory needs besides the weights."""

    model: nn.Module
    config: StudentConfig
    vocab: Vocab  # the trained rows, then the frozen expansion rows
    expanded_rows: int
    vectors_found: int  # trained-vocabulary words that had a pretrained vector


def build_student(cfg: TrainConfig, task: TaskSpec, data: TrainData, tokenizer: Tokenizer) -> Student:
    """Embeddings from pretrained vectors where the vocabulary has them, plus the expansion rows; the model."""
    pretrained, found = load_vectors(cfg.vectors, data.vocab)
    vocab, frozen = expand_vocabulary(data.vocab, cfg.vectors, cfg.expand_vocab, tokenizer)
    embed_dim = pretrained.shape[1] if pretrained is not None else cfg.embed_dim
    table = init_embedding(pretrained, len(data.vocab), embed_dim, cfg.seed)
    mcfg = StudentConfig(
        arch="siamese_bilstm" if task.is_pair else "bilstm", vocab_size=len(vocab),
        num_labels=task.num_labels, embed_dim=embed_dim, hidden=cfg.hidden, fc=cfg.fc, dropout=cfg.dropout,
        embed_dropout=cfg.embed_dropout, max_len=cfg.max_len, frozen_rows=len(frozen))
    model = build_model(mcfg, np.concatenate([table, frozen]) if len(frozen) else table)
    model.embedding.weight.requires_grad_(not cfg.freeze_embeddings)
    return Student(model, mcfg, vocab, len(frozen), found)


def make_optimizer(cfg: TrainConfig, model: nn.Module, total_steps: int):
    """The optimiser and its learning-rate schedule: linear decay from lr to 0 over all steps (no warm-up), or
    constant. transformers' schedules are LambdaLRs, checkpointed like any scheduler (their state is the step)."""
    from transformers import get_constant_schedule, get_linear_schedule_with_warmup  # ~1 s: only when training

    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adam":  # fused: one kernel over every tensor, 2.5 -> 0.65 ms a BiLSTM step on one thread
        opt = torch.optim.Adam(params, lr=cfg.lr, fused=True)
    else:  # AdaDelta, as Tang et al.; its lr multiplies its own adaptive step (1.0 is the usual value)
        opt = torch.optim.Adadelta(params, lr=cfg.lr, rho=0.95, eps=1e-6)
    if cfg.schedule == "linear":
        return opt, get_linear_schedule_with_warmup(opt, num_warmup_steps=0, num_training_steps=total_steps)
    return opt, get_constant_schedule(opt)


@dataclass
class Fitter:
    """What an optimiser step needs, set up once."""

    model: nn.Module
    loss_fn: DistillLoss
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    ema: AveragedModel | None
    clip: float

    @property
    def kept(self) -> nn.Module:
        """The weights that are evaluated and kept: the model's own, or their moving average."""
        return self.ema.module if self.ema is not None else self.model

    def step(self, inputs: list[torch.Tensor], teacher: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
        """Forward, loss, backward, clip, step; the batch loss and the gradient norm before clipping."""
        loss = self.loss_fn(self.model(*inputs), teacher, labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        # With clip 0 the bound is infinite: the norm is still measured (scaling by 1.0 changes no bits). The
        # norms tell how often the clip fires, which a change of the loss's scale moves (docs/student-tuning.md).
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip if self.clip > 0 else float("inf"))
        self.optimizer.step()
        self.scheduler.step()
        if self.ema is not None:
            update_average(self.ema, self.model)
        return loss.item(), float(norm)


def make_fitter(cfg: TrainConfig, model: nn.Module, total_steps: int) -> Fitter:
    """The objective (cross-entropy alone for the baseline), the optimiser and schedule over `total_steps`, and
    the moving average of the weights when cfg.ema is set."""
    loss_fn = DistillLoss("ce" if cfg.baseline else cfg.loss, cfg.alpha, cfg.temperature)
    optimizer, scheduler = make_optimizer(cfg, model, total_steps)
    ema = AveragedModel(model, multi_avg_fn=ema_update(cfg.ema)) if cfg.ema else None
    return Fitter(model, loss_fn, optimizer, scheduler, ema, cfg.clip)


def seed_everything(seed: int) -> np.random.Generator:
    """Seed torch (weight initialisation, dropout) and Python's random; the returned numpy Generator draws the
    batches, and the checkpoint saves its state with the others."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    random.seed(seed)
    return rng


# ----------------------------------------------------------------------------------------------- checkpoints

def save_checkpoint(path: Path, fp: str, fitter: Fitter, state: TrainState, best_model: dict | None,
                    rng: np.random.Generator) -> None:
    """Everything the loop needs to continue exactly (`checkpoints.save`: atomic, with every RNG)."""
    checkpoints.save(path, fp, {**fitter_state(fitter), "best_model": best_model, "state": asdict(state)}, rng)


def load_checkpoint(path: Path, fp: str, fitter: Fitter, rng: np.random.Generator
                    ) -> tuple[TrainState, dict | None]:
    """Restore `fitter` and every RNG from a checkpoint of this configuration; the loop counters and the best
    weights so far."""
    ckpt = checkpoints.load(path, fp, rng)
    restore_fitter(fitter, ckpt)
    return TrainState(**ckpt["state"]), ckpt["best_model"]


def fitter_state(fitter: Fitter) -> dict:
    """The weights, optimiser, schedule and moving average, as a checkpoint holds them."""
    return {"model": fitter.model.state_dict(), "optimizer": fitter.optimizer.state_dict(),
            "scheduler": fitter.scheduler.state_dict(),
            "ema": fitter.ema.state_dict() if fitter.ema is not None else None}


def restore_fitter(fitter: Fitter, ckpt: dict) -> None:
    """Load what `fitter_state` saved back into `fitter`."""
    fitter.model.load_state_dict(ckpt["model"])
    fitter.optimizer.load_state_dict(ckpt["optimizer"])
    fitter.scheduler.load_state_dict(ckpt["scheduler"])
    if fitter.ema is not None:
        fitter.ema.load_state_dict(ckpt["ema"])


# ----------------------------------------------------------------------------------------------- the loop

def train_epoch(fitter: Fitter, data: TrainData, batches: list[np.ndarray], teacher: torch.Tensor,
                labels: torch.Tensor, max_len: int, device: torch.device, desc: str) -> dict:
    """One pass over `batches`: the epoch's figures for the history. The loss is the mean over the rows that
    have a target (a batch's loss is the mean over its own, so it is weighted by their count)."""
    t0 = time.perf_counter()
    fitter.model.train()
    loss_sum, targets, rows_seen, clipped, norm_sum = 0.0, 0, 0, 0, 0.0
    bar = progress(len(batches), desc, "batch")
    for rows in batches:
        inputs = [*pad_batch(data.a, rows, max_len)]  # ids [B, T], lengths [B]
        if data.b is not None:
            inputs += [*pad_batch(data.b, rows, max_len)]
        inputs = [t.to(device, non_blocking=True) for t in inputs]
        idx = torch.from_numpy(rows).to(device)
        y = labels[idx]
        loss, norm = fitter.step(inputs, teacher[idx], y)
        n = fitter.loss_fn.targets(y)
        loss_sum, targets, rows_seen = loss_sum + loss * n, targets + n, rows_seen + len(rows)
        clipped += int(fitter.clip > 0 and norm > fitter.clip)
        norm_sum += norm
        bar.update(1)
    bar.close()
    train_s = time.perf_counter() - t0
    steps = max(1, len(batches))
    return {"train_loss": round(loss_sum / max(1, targets), 6), "train_s": round(train_s, 2),
            "rows_per_s": round(rows_seen / train_s, 1), "grad_norm": round(norm_sum / steps, 4),
            "clipped": round(clipped / steps, 4)}


def record_epoch(state: TrainState, figures: dict, scores: dict, score: list[float], lr: float, patience: int) -> bool:
    """Count the finished epoch into `state` (history, best score, early stopping); True when it is the best."""
    state.epoch += 1
    dev, held_out = split_scores(scores)
    state.history.append({"epoch": state.epoch, "step": state.step, "train_loss": figures["train_loss"],
                          "dev": dev, **({HOLDOUT_SPLIT: held_out} if held_out is not None else {}), "lr": lr,
                          **{k: v for k, v in figures.items() if k != "train_loss"}})
    if state.best_score is None or score > state.best_score:  # lexicographic: the metric, then the tie-break
        state.best_score, state.best_epoch, state.bad_epochs = score, state.epoch, 0
        return True
    state.bad_epochs += 1
    state.stopped = state.bad_epochs >= patience
    return False


def run_epochs(cfg: TrainConfig, task: TaskSpec, stage: store.StageRun, fitter: Fitter, rng: np.random.Generator,
               state: TrainState, best: dict | None, one_epoch: Callable[[int], dict],
               dev_scores: Callable[[], dict], on_epoch_end: Callable[[TrainState], None] | None) -> dict | None:
    """The epochs still to run (`state` says how many ran): `one_epoch(n)` trains epoch n and returns its figures
    with the optimiser steps it took; then evaluation of the kept weights (holdout and dev), the best weights so
    far and early stopping (on `selection_split`), and a checkpoint. Returns the best weights; the training
    seconds go into the stage's timings."""
    while state.epoch < cfg.epochs and not state.stopped:
        figures = one_epoch(state.epoch + 1)
        state.step += figures.pop("steps")
        scores = dev_scores()
        if record_epoch(state, figures, scores, selection_key(cfg, task, scores), fitter.scheduler.get_last_lr()[0],
                        cfg.patience):
            best = copy.deepcopy(fitter.kept.state_dict())
        save_checkpoint(stage.work_dir / CHECKPOINT, stage.fingerprint, fitter, state, best, rng)
        if on_epoch_end is not None:
            on_epoch_end(state)
    stage.timings["train"] = round(sum(h["train_s"] for h in state.history), 4)
    return best


def fit(cfg: TrainConfig, task: TaskSpec, stage: store.StageRun, device: torch.device,
        on_epoch_end: Callable[[TrainState], None] | None = None) -> dict:
    """Train the student of `cfg` into `stage`'s work directory (or finish a killed run from its checkpoint there)
    and write its files; returns the metrics document. The caller commits the stage."""
    t_start = time.perf_counter()
    # ---- data: tokenise once, vocabulary
    tokenizer = Tokenizer(lowercase=cfg.lowercase)
    with stage.timed("tokenize"):
        data = load_train_data(cfg, task, tokenizer)
    # ---- model (seeded before anything draws), dev splits, objective, optimiser over every epoch's steps
    rng = seed_everything(cfg.seed)
    with stage.timed("vectors"):
        student = build_student(cfg, task, data, tokenizer)
    model = student.model.to(device)
    with stage.timed("tokenize"):
        dev = load_dev(cfg, task, tokenizer, student.vocab, data.holdout)
    steps_per_epoch = -(-len(data) // cfg.batch_size)  # the last batch may be short
    fitter = make_fitter(cfg, model, steps_per_epoch * cfg.epochs)
    # ---- resume from the last finished epoch, if a killed run left one
    ckpt_path = stage.work_dir / CHECKPOINT
    state, best_model, epochs_done = TrainState(), None, None
    if ckpt_path.is_file():
        state, best_model = load_checkpoint(ckpt_path, stage.fingerprint, fitter, rng)
        epochs_done = state.epoch
    # ---- the loop: an epoch of steps, then dev evaluation (best weights, early stopping) and a checkpoint
    teacher = torch.from_numpy(data.teacher).to(device)  # [N, C]
    labels = torch.from_numpy(data.labels).to(device)  # [N]
    lengths = data.lengths()

    def one_epoch(epoch: int) -> dict:
        batches = epoch_batches(lengths, cfg.batch_size, rng)
        figures = train_epoch(fitter, data, batches, teacher, labels, cfg.max_len, device, f"train epoch {epoch}")
        return {**figures, "steps": len(batches)}

    best_model = run_epochs(cfg, task, stage, fitter, rng, state, best_model, one_epoch,
                            lambda: evaluate(fitter.kept, dev, task, cfg.max_len, device), on_epoch_end)
    # ---- evaluation: the best epoch's weights, on the CPU (where students are served)
    model.load_state_dict(best_model)
    final = evaluate(model.cpu().eval(), dev, task, cfg.max_len)
    final = final_metrics(cfg, task, final, data.holdout, data.counts["filtered"])
    metrics_doc, exported = write_student(stage, cfg, task, student, tokenizer, dev, state, final)
    ckpt_path.unlink(missing_ok=True)
    stage.stats.update(run_stats(cfg, data, student, state, stage.timings, final, exported, device))
    stage.stats.update(total_s=round(time.perf_counter() - t_start, 2), resumed=resumed_record(epochs_done))
    return metrics_doc


# ----------------------------------------------------------------------------------------------- outputs

def write_student(stage: store.StageRun, cfg: TrainConfig, task: TaskSpec, student: Student, tokenizer: Tokenizer,
                  dev: list[DevSplit], state: TrainState, final: dict) -> tuple[dict, dict]:
    """Weights, vocabulary, config, metrics.json (`final`: `final_metrics` of the kept weights) and the exported
    files of the (CPU) model into the stage's work directory; returns the metrics document and what the export
    wrote."""
    model, mcfg, work = student.model, student.config, stage.work_dir
    tcfg = {**task.to_dict(), "label_names": list(task.label_names)}
    save_student(work, model, mcfg, student.vocab, tokenizer, tcfg,
                 extra={"train": stage.config, "stage_fingerprint": stage.fingerprint})
    metrics_doc = {"task": task.name, "metric": task.metrics[0], "baseline": cfg.baseline,
                   "loss": "ce" if cfg.baseline else cfg.loss, "best_epoch": state.best_epoch,
                   "epochs_run": state.epoch, "stopped_early": state.stopped, **final, "history": state.history}
    store.write_json(work / METRICS, metrics_doc)
    with stage.timed("export"):
        exported = export_student(model, mcfg, work, parse_formats(cfg.export), _check_batch(dev, mcfg))
    return metrics_doc, exported


def run_stats(cfg: TrainConfig, data: TrainData, student: Student, state: TrainState, timings: dict,
              final: dict, exported: dict, device: torch.device) -> dict:
    """stats.json's figures of a finished run (total_s aside)."""
    params = count_parameters(student.model)
    return {
        **data.counts, "vectors": resolve_vectors(cfg.vectors), "vectors_found": student.vectors_found,
        "vectors_coverage": round(student.vectors_found / max(1, len(data.vocab) - 3), 4),
        "expanded_rows": student.expanded_rows, "params": params["total"], "params_embedding": params["embedding"],
        "params_without_embedding": params["without_embedding"],
        "params_frozen_embedding": params["frozen_embedding"],
        "epochs_run": state.epoch, "best_epoch": state.best_epoch, "steps": state.step, "train_s": timings["train"],
        "train_rows_per_s": round(len(data) * state.epoch / max(1e-9, timings["train"]), 1),
        "export": exported, **final, "threads": torch.get_num_threads(), "device": device.type,
    }


def _check_batch(dev: list[DevSplit], mcfg: StudentConfig) -> tuple[torch.Tensor, ...]:
    """Up to 16 dev rows of mixed lengths: what the exported files are checked against."""
    d = dev[0]
    rows = np.arange(min(16, len(d.a)))
    inputs = [*pad_batch(d.a, rows, mcfg.max_len)]
    if d.b is not None:
        inputs += [*pad_batch(d.b, rows, mcfg.max_len)]
    return tuple(inputs)
