"""Training a BiLSTM student from a scored set: the data (tokenised once), the model, its objective, and the
student directory it writes, on the project's one training loop (`pipelines.training`: the plan of every
epoch's batches, the optimiser step, selection on the holdout, checkpoints). `distill train`
(pipelines/stages/train.py) checks the config, fingerprints it and opens the stage; `fit` does the rest.

`fit` reads top to bottom on one screen: load the scored set's rows (`training.rows`) -> tokenise once ->
vocabulary and embeddings -> model -> plan and optimiser -> the loop (resumed from a killed run's checkpoint) ->
the best weights evaluated on the CPU -> the student directory (weights, vocab, config, metrics, TorchScript,
ONNX, predict.py) and stats.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from .. import batching, store
from ..holdout import HOLDOUT_SPLIT
from ..settings import parse_formats
from ..tasks import TaskSpec, data_dir, read_split
from ..training.fitter import Fitter, linear_schedule, moving_average, seed_everything
from ..training.loop import Run, planned_figures, train
from ..training.objective import DistillObjective
from ..training.plan import plan_epochs
from ..training.resume import CHECKPOINT, Checkpoints
from ..training.rows import HeldOut, select_rows
from ..training.selection import Selection, TrainState, split_metrics
from .export import export_student
from .io import METRICS, count_parameters, save_student
from .models import StudentConfig, build_model, predict_logits
from .tokenizer import Tokenizer
from .vectors import init_embedding, load_vectors, pretrained_words, resolve_vectors
from .vocab import UNK, Corpus, Vocab, encode_texts, pad_batch
from .word_cache import kept_corpora, word_tokens

if TYPE_CHECKING:
    from .config import TrainConfig

__all__ = ["CHECKPOINT", "fit"]


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


def load_train_data(cfg: TrainConfig, task: TaskSpec, tokenizer: Tokenizer) -> TrainData:
    """Pick the rows (`select_rows`), take their tokens from the token cache (the whole scored set tokenised
    once, a slice at a time: `word_cache`), build the vocabulary from the kept rows' counts. Both sides of a pair
    share one vocabulary."""
    rows = select_rows(cfg, task)
    sides = ["text", "text_pair"] if task.is_pair else ["text"]
    cache = word_tokens(cfg.scored, rows, tokenizer, sides)
    tokens, kept = kept_corpora(cache, sides, rows.kept_rows())
    counts = np.zeros(len(tokens), dtype=np.int64)  # the kept rows' alone: what the vocabulary is built from
    for corpus in kept:
        counts += np.bincount(corpus.ids, minlength=len(tokens))
    vocab = Vocab.build(tokens, counts, cfg.min_count, cfg.max_vocab)
    lut = vocab.lookup_table(tokens)
    mapped = [Corpus(lut[c.ids], c.offsets) for c in kept]
    a, b = mapped[0], (mapped[1] if task.is_pair else None)
    ids = [a.ids] + ([b.ids] if b is not None else [])
    total = sum(len(x) for x in ids)
    unk = sum(int(np.count_nonzero(x == UNK)) for x in ids)
    stats = {"rows": len(rows), "original_rows": rows.original_rows, "gold_rows": int((rows.gold >= 0).sum()),
             "hard_label_rows": int((rows.labels >= 0).sum()), "tokens": total,
             "distinct_tokens": int(np.count_nonzero(counts)), "vocab_size": len(vocab),
             "unk_rate": round(unk / total if total else 0.0, 6), "filtered": rows.filtered,
             "token_cache": cache.record()}
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
        embed_dropout=cfg.embed_dropout, max_len=cfg.max_length, frozen_rows=len(frozen))
    model = build_model(mcfg, np.concatenate([table, frozen]) if len(frozen) else table)
    model.embedding.weight.requires_grad_(not cfg.freeze_embeddings)
    return Student(model, mcfg, vocab, len(frozen), found)


def make_optimizer(cfg: TrainConfig, model: nn.Module, total_steps: int):
    """The optimiser and its learning-rate schedule: linear decay from lr to 0 over all steps (no warm-up), or
    constant. transformers' schedules are LambdaLRs, checkpointed like any scheduler (their state is the step)."""
    from transformers import get_constant_schedule  # ~1 s: only when training

    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adam":  # fused: one kernel over every tensor, 2.5 -> 0.65 ms a BiLSTM step on one thread
        opt = torch.optim.Adam(params, lr=cfg.lr, fused=True)
    else:  # AdaDelta, as Tang et al.; its lr multiplies its own adaptive step (1.0 is the usual value)
        opt = torch.optim.Adadelta(params, lr=cfg.lr, rho=0.95, eps=1e-6)
    if cfg.schedule == "linear":
        return opt, linear_schedule(opt, total_steps)
    return opt, get_constant_schedule(opt)


class BiLSTMObjective(DistillObjective):
    """A batch of training rows -> padded ids (and lengths, for both sides of a pair) -> logits; the per-row
    losses are the students' own (`training.objective`)."""

    def __init__(self, cfg: TrainConfig, model: nn.Module, data: TrainData, device: torch.device):
        super().__init__(cfg, data.teacher, data.labels, device)
        self.model, self.data, self.max_len = model, data, cfg.max_length

    def logits(self, rows: np.ndarray) -> torch.Tensor:
        inputs = [*pad_batch(self.data.a, rows, self.max_len)]  # ids [B, T], lengths [B]
        if self.data.b is not None:
            inputs += [*pad_batch(self.data.b, rows, self.max_len)]
        return self.model(*(t.to(self.device, non_blocking=True) for t in inputs))


def epoch_batches(lengths: np.ndarray, batch_size: int):
    """One epoch's batches: rows sorted by length (random order within a length), cut into batches, and the
    batches shuffled (batching.by_rows). Padding is near zero, so an epoch costs about what its real tokens cost."""
    return lambda rng: batching.by_rows(lengths, batch_size, rng)


def fit(cfg: TrainConfig, task: TaskSpec, stage: store.StageRun, device: torch.device,
        on_epoch_end: Callable[[TrainState], None] | None = None) -> dict:
    """Train the student of `cfg` into `stage`'s work directory (or finish a killed run from its checkpoint there)
    and write its files; returns the metrics document. The caller commits the stage."""
    t_start = time.perf_counter()
    # ---- data: tokenise once, vocabulary
    tokenizer = Tokenizer(lowercase=cfg.lowercase)
    with stage.timed("tokenize"):
        data = load_train_data(cfg, task, tokenizer)
    # ---- model (seeded before anything draws), dev splits, every epoch's batches, optimiser over all their steps
    rng = seed_everything(cfg.seed)
    with stage.timed("vectors"):
        student = build_student(cfg, task, data, tokenizer)
    model = student.model.to(device)
    with stage.timed("tokenize"):
        dev = load_dev(cfg, task, tokenizer, student.vocab, data.holdout)
    plan = plan_epochs(epoch_batches(data.lengths(), cfg.batch_size), cfg.epochs, rng, cfg.grad_accum)
    optimizer, scheduler = make_optimizer(cfg, model, plan.total_steps)
    fitter = Fitter(model, optimizer, scheduler, cfg.grad_clip, device, None, moving_average(model, cfg.ema))
    # ---- the loop, from a killed run's checkpoint when there is one
    job = Run(fitter, BiLSTMObjective(cfg, model, data, device), plan, Selection.of(cfg.select_on, task, cfg.patience),
              lambda: evaluate(fitter.kept, dev, task, cfg.max_length, device),
              Checkpoints(stage.work_dir / CHECKPOINT, stage.fingerprint, fitter, rng, cfg.checkpoint_minutes * 60))
    state, best_model, resumed = train(job, stage, on_epoch_end)
    # ---- evaluation: the best epoch's weights, on the CPU (where students are served)
    model.load_state_dict(best_model)
    final = evaluate(model.cpu().eval(), dev, task, cfg.max_length)
    final = job.keeper.final(final, data.holdout.record if data.holdout else None, data.counts["filtered"])
    stage.extra["holdout"] = data.holdout.record if data.holdout else None  # the manifest's, as the teacher's
    metrics_doc, exported = write_student(stage, cfg, task, student, tokenizer, dev, state, final)
    job.saves.remove()
    stage.stats.update(run_stats(cfg, data, student, state, stage.timings, final, exported, device))
    stage.stats.update(planned_figures(plan, state), total_s=round(time.perf_counter() - t_start, 2), resumed=resumed)
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
