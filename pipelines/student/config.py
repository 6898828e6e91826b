"""The settings of a student (`distill train`, the `student` section of a run config): what decides it, and what
its fingerprint holds. Two families: the BiLSTM of Tang et al. (the default) and a DistilBERT-style transformer
made from the teacher's own layers; the loss, learning rate, clip and moving average default per family
(`FAMILY_DEFAULTS`), and settings of one family do not enter the other's fingerprint. Importable without torch:
the command's flags are derived from it."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import ClassVar

from ..devices import DEVICES
from ..errors import ConfigError
from ..flags import setting, warn_renamed
from ..holdout import SELECT_ON
from ..settings import LOSSES, check_loss, parse_formats
from ..tasks import TaskSpec

OPTIMIZERS = ("adam", "adadelta")
SCHEDULES = ("constant", "linear")
HARD_LABELS = ("gold", "teacher")
ABLATION_RULES = ("mask", "pos", "ngram")
# The student's matrices are small (batch 128 x 150 LSTM units): on SST-2 a second CPU thread made an epoch
# slower (about 180 s against 140 s with one), as the threads spend more time meeting than computing.
DEFAULT_THREADS = 1
STUDENT_KINDS = ("bilstm", "transformer")
# Settings whose default depends on the family: None in a TrainConfig means this value.
FAMILY_DEFAULTS = {
    "bilstm": {"loss": "mse", "lr": 1e-3, "grad_clip": 10.0, "ema": 0.999, "batch_size": 64},
    # DistilBERT's objective (KL at T, scaled by T^2) and the usual fine-tuning recipe of a BERT-family encoder:
    # batches of 32 rows, as the teacher's fine-tune (docs/benchmarks.md: rows against token budgets).
    "transformer": {"loss": "kl", "lr": 5e-5, "grad_clip": 1.0, "ema": 0.0, "batch_size": 32},
}
# Settings renamed in 0.2 (one name across commands): their fingerprints keep the former names, so students made
# before keep theirs.
FINGERPRINT_NAMES = {"family": "student", "max_length": "max_len", "grad_clip": "clip", "warmup_ratio": "warmup"}
# `distill train --help` headings.
IO, LOSS, TRAINING, SELECTION, FILTERS, BILSTM, TRANSFORMER, RUNTIME = (
    "input and output", "student and loss", "training", "selection of the best epoch", "filters and ablations",
    "BiLSTM only", "transformer only", "runtime")
TRANSFORMER_ONLY = ("student_init", "layers", "batch_tokens", "warmup_ratio", "weight_decay")
BILSTM_ONLY = ("vectors", "optimizer", "schedule", "hidden", "fc", "dropout", "embed_dropout",
               "embed_dim", "freeze_embeddings", "max_vocab", "min_count", "expand_vocab", "lowercase", "export")


@dataclass
class TrainConfig:
    """Everything that decides the student. Defaults were chosen on SST-2 (docs/student-tuning.md)."""

    HELP_GROUPS: ClassVar[tuple[str, ...]] = (IO, LOSS, TRAINING, SELECTION, FILTERS, BILSTM, TRANSFORMER, RUNTIME)

    scored: Path = setting(help="the output of `distill score`", group=IO)
    task: TaskSpec  # a built-in task (tasks.get_task) or a generic one (tasks.generic_task)
    out: Path = setting(help="the student directory to write", group=IO)
    data: Path | None = None  # the task's files (dev splits are evaluated from here); the demo task has a default
    family: str = setting(
        "bilstm", choices=STUDENT_KINDS, group=LOSS, renamed=("student",),
        help="bilstm (Tang et al.; siamese for pairs) | transformer (DistilBERT-style: the teacher's embeddings, "
             "one layer of two and its head, trained from the cached logits)")
    loss: str | None = setting(
        None,
        help="mse (on logits, the paper) | kl (soft targets, T^2-scaled) | ce (hard labels only); default mse "
             "for bilstm, kl for transformer",
        choices=LOSSES, group=LOSS)
    alpha: float = setting(
        0.0,
        help="per row with a hard label: weight of its cross-entropy; 1 - alpha goes to distillation", group=LOSS)
    hard_labels: str = setting(
        "gold",
        help="gold (the originals' labels) | teacher (its argmax on every row, as the authors' code)",
        choices=HARD_LABELS, group=LOSS)
    temperature: float = setting(1.0, help="softmax temperature of the kl loss", group=LOSS)
    epochs: int = setting(4, help="passes over the scored set (early stopping may end sooner)", group=TRAINING)
    patience: int = setting(2, help="stop after this many epochs without a better score on the selection split",
                            group=SELECTION)
    min_confidence: float = setting(
        0.0, help="drop synthetic rows whose teacher's top softmax probability is below this (0: keep every row)",
        group=FILTERS)
    drop_disagreeing: bool = setting(
        False, help="drop the originals whose gold label the teacher's argmax disagrees with", group=FILTERS)
    rebalance: bool = setting(
        False, help="subsample the synthetic rows so that their classes (the teacher's argmax) have the "
                    "originals' class shares", group=FILTERS)
    drop_rule: str | None = setting(
        None, choices=ABLATION_RULES,
        help="ablation: leave out the synthetic rows this rule (mask, pos or ngram) changed", group=FILTERS)
    max_draws: int | None = setting(
        None, help="ablation: train on the originals and the first N draws of each (0: the originals alone)",
        group=FILTERS)
    select_on: str = setting(
        "holdout", choices=SELECT_ON,
        help="holdout (one in 20 of the training originals, at most 2,000, and the rows made from them, left out of "
             "training) | dev (the first dev split, which is then no longer an unbiased estimate): where the best "
             "epoch and early stopping are chosen", group=SELECTION)
    baseline: bool = setting(
        False,
        help="train on original gold-labelled rows only, with cross-entropy (no distillation)", group=LOSS)
    vectors: str = setting(
        "auto",
        help="auto (glove-50d when installed, else none) | glove-50d | spacy[:MODEL] | none | PATH", group=BILSTM)
    optimizer: str = setting("adam", help="adam | adadelta (the paper's)", choices=OPTIMIZERS, group=BILSTM)
    lr: float | None = setting(None, help="peak learning rate; default 1e-3 for bilstm (AdaDelta: use 1.0), 5e-5 "
                                         "for transformer", group=TRAINING)
    schedule: str = setting("linear", help="constant | linear (decay to 0 over all steps)",
                            choices=SCHEDULES, group=BILSTM)
    batch_size: int | None = setting(
        None,
        help="rows per batch, of similar length; default 64 for bilstm (64 beat 128 on SST-2: see the doc), 32 "
             "for transformer", group=TRAINING)
    grad_clip: float | None = setting(
        None,
        help="gradient norm clip (0: off); default 10 for bilstm (mse sums over classes: docs/student-tuning.md), "
             "1 for transformer", group=TRAINING, renamed=("clip",))
    ema: float | None = setting(
        None,
        help="decay per step of a moving average of the weights (0: off); with it on, dev evaluation, early "
             "stopping and the saved student use the averaged weights; default 0.999 for bilstm, 0 for transformer",
             group=TRAINING)
    hidden: int = setting(150, help="LSTM units per direction", group=BILSTM)
    fc: int = setting(200, help="ReLU layer width", group=BILSTM)
    dropout: float = setting(
        0.0,
        help="on sentence features and the ReLU layer (the transfer set is the regulariser)", group=BILSTM)
    embed_dropout: float = setting(0.0, help="on word embeddings", group=BILSTM)
    embed_dim: int = setting(300, help="only without pretrained vectors (they set the width)", group=BILSTM)
    freeze_embeddings: bool = setting(False, help="keep the initial word vectors (the paper fine-tunes them)",
                                      group=BILSTM)
    max_length: int = setting(128, help="tokens kept per text", group=TRAINING, renamed=("max_len",))
    max_vocab: int | None = setting(
        100_000,
        help="vocabulary rows learnt from the scored set at most (specials included)", group=BILSTM)
    min_count: int = setting(1, help="drop tokens seen fewer times from the vocabulary", group=BILSTM)
    expand_vocab: int = setting(
        100_000,
        help="frozen pretrained rows for unseen words among the vectors' N most frequent", group=BILSTM)
    lowercase: bool = setting(True, help="lower-case text before tokenising (GloVe-6B is uncased)", group=BILSTM)
    seed: int = setting(0, help="seed of the initialisation and the batch order", group=TRAINING)
    seeds: tuple[int, ...] | None = setting(
        None,
        help="several students, e.g. 0,1,2: one per seed into OUT/seed-N/, side by side (BiLSTMs: one process per "
             "CPU), and their mean ± std (one number N without a comma: the former count, seeds SEED..SEED+N-1)",
        group=TRAINING)
    limit: int | None = setting(None, help="use only the first N rows of the scored set", group=TRAINING)
    export: str = setting("auto", help="torchscript,onnx | auto (both; onnx skipped if not installed) | none",
                          group=RUNTIME)
    student_init: str | None = setting(
        None, help="transformer: the model to make the student from, a directory or hub id (default the scored set's "
                   "teacher); another encoder must share the teacher's tokenizer", group=TRANSFORMER)
    layers: str | None = setting(
        None, help="transformer: the layers to keep, e.g. 0,2,4 (default one of two of the teacher's; all of "
                   "--student-init's)", group=TRANSFORMER)
    batch_tokens: int | None = setting(
        None, help="transformer: cut batches by this many padded tokens instead of --batch-size rows (a budget "
                   "of short phrases holds hundreds of rows: few optimiser steps on a small transfer set)",
                   group=TRANSFORMER)
    grad_accum: int = setting(1, help="batches per optimiser step (gradient accumulation)", group=TRAINING)
    warmup_ratio: float = setting(0.1, help="transformer: fraction of the steps with a linear warm-up of the rate",
                                  group=TRANSFORMER, renamed=("warmup",))
    weight_decay: float = setting(0.01, help="transformer: AdamW's weight decay (none on biases and norms)",
                                  group=TRANSFORMER)
    checkpoint_minutes: float = setting(
        10.0, help="also checkpoint the epoch in progress every this many minutes of training, so a "
                   "killed run loses at most that much (0: only at the end of each epoch); not in the fingerprint",
                   group=RUNTIME)
    threads: int | None = setting(None, help=f"torch CPU threads (default {DEFAULT_THREADS} for bilstm, every "
                                             "core for transformer)", group=RUNTIME)
    device: str = setting(
        "auto", choices=DEVICES,
        help="auto (cuda when available) | cpu | cuda, float32 either way; the resolved device type enters the "
             "fingerprint, as a GPU gives a slightly different student", group=RUNTIME)

    def __post_init__(self) -> None:
        if isinstance(self.seeds, (str, int)):
            self.seeds = parse_seeds(str(self.seeds), self.seed)

    def resolved(self) -> TrainConfig:
        """This config with the family's defaults filled in where a setting was left to them (None)."""
        defaults = FAMILY_DEFAULTS.get(self.family, FAMILY_DEFAULTS["bilstm"])
        return replace(self, **{k: v for k, v in defaults.items() if getattr(self, k) is None})

    def problems(self) -> list[str]:
        if self.family not in STUDENT_KINDS:
            return [f"[family] must be one of {', '.join(STUDENT_KINDS)}, got '{self.family}'"]
        if any(getattr(self, k) is None for k in FAMILY_DEFAULTS["bilstm"]):
            return self.resolved().problems()
        out = check_loss(self.loss, self.alpha, self.temperature) + self.other_family_settings()
        for name in ("batch_tokens", "grad_accum"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                out.append(f"[{name}] must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            out.append(f"[warmup_ratio] must be in [0, 1), got {self.warmup_ratio}")
        if not self.checkpoint_minutes >= 0:
            out.append(f"[checkpoint_minutes] must be >= 0, got {self.checkpoint_minutes}")
        if self.weight_decay < 0:
            out.append(f"[weight_decay] must be >= 0, got {self.weight_decay}")
        for name in ("epochs", "batch_size", "hidden", "fc", "embed_dim", "max_length", "min_count"):
            if getattr(self, name) < 1:
                out.append(f"[{name}] must be >= 1, got {getattr(self, name)}")
        if self.select_on not in SELECT_ON:
            out.append(f"[select_on] must be one of {', '.join(SELECT_ON)}, got '{self.select_on}'")
        if not 0.0 <= self.min_confidence < 1.0:
            out.append(f"[min_confidence] must be in [0, 1), got {self.min_confidence}")
        if self.drop_rule is not None and self.drop_rule not in ABLATION_RULES:
            out.append(f"[drop_rule] must be one of {', '.join(ABLATION_RULES)}, got '{self.drop_rule}'")
        if self.max_draws is not None and self.max_draws < 0:
            out.append(f"[max_draws] must be >= 0, got {self.max_draws}")
        if self.seeds is not None and not self.seeds:
            out.append("[seeds] names no seed: give them as 0,1,2")
        if self.patience < 1:
            out.append(f"[patience] must be >= 1, got {self.patience}")
        if self.device not in DEVICES:
            out.append(f"[device] must be one of {', '.join(DEVICES)}, got '{self.device}'")
        if self.hard_labels not in HARD_LABELS:
            out.append(f"[hard_labels] must be one of {', '.join(HARD_LABELS)}, got '{self.hard_labels}'")
        if self.optimizer not in OPTIMIZERS:
            out.append(f"[optimizer] unknown optimizer '{self.optimizer}'; choose one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            out.append(f"[schedule] unknown schedule '{self.schedule}'; choose one of {', '.join(SCHEDULES)}")
        if not 0.0 <= self.ema < 1.0:
            out.append(f"[ema] must be in [0, 1), got {self.ema}")
        if not self.lr > 0:
            out.append(f"[lr] must be > 0, got {self.lr}")
        for name in ("dropout", "embed_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                out.append(f"[{name}] must be in [0, 1), got {getattr(self, name)}")
        if self.max_vocab is not None and self.max_vocab < 4:
            out.append(f"[max_vocab] must be >= 4 (3 special rows + 1), got {self.max_vocab}")
        if self.limit is not None and self.limit < 1:
            out.append(f"[limit] must be >= 1, got {self.limit}")
        try:
            parse_formats(self.export)
        except ConfigError as e:
            out.extend(e.problems)
        return out

    def other_family_settings(self) -> list[str]:
        """The other family's settings set away from their defaults: said, where they were silently ignored."""
        if self.family == "bilstm":
            names, family, other = TRANSFORMER_ONLY, "a transformer", "transformer"
        else:  # export is the transformer's too (ONNX); the moving average is the BiLSTM's alone
            names, family, other = (*(k for k in BILSTM_ONLY if k != "export"), "ema"), "a BiLSTM", "bilstm"
        defaults = {f.name: f.default for f in fields(self)} | FAMILY_DEFAULTS[self.family]
        return [f"[{k}] is {family} setting (got {getattr(self, k)!r}); the {self.family} student does not use "
                f"it: leave it out, or train a {other} student" for k in names if getattr(self, k) != defaults[k]]

    def hashed_settings(self, device_type: str) -> dict:
        """`fingerprint_dict` under the names the fingerprint hashes: the renamed settings under their former
        names, so a student made before the renaming is found again."""
        return {FINGERPRINT_NAMES.get(k, k): v for k, v in self.fingerprint_dict(device_type).items()}

    def fingerprint_dict(self, device_type: str) -> dict:
        """The settings that change the result, with the device resolved to its type (`cpu` or `cuda`): cuDNN's
        LSTM sums in another order than the CPU's, so the two train students that agree only up to accumulated
        rounding (and may score differently on dev); a student made on one is not reused for the other. `auto`
        enters as the device it resolved to. Paths, thread counts and checkpoint_minutes do not enter."""
        cfg = self.resolved()
        d = {f.name: getattr(cfg, f.name) for f in fields(cfg)}
        other_family = TRANSFORMER_ONLY + ("family",) if cfg.family == "bilstm" else BILSTM_ONLY
        for k in ("scored", "out", "data", "threads", "seeds", "checkpoint_minutes") + other_family:
            d.pop(k)
        d["device"] = device_type
        d["task"] = cfg.task.to_dict()
        if cfg.family == "bilstm" and cfg.grad_accum == 1:  # a BiLSTM setting since 0.2: students made before
            d.pop("grad_accum")                             # it (one batch a step) keep their fingerprint
        if cfg.family == "bilstm":
            from ..student.vectors import resolve_vectors  # torch: only when a stage runs

            d["vectors"] = resolve_vectors(cfg.vectors)
        elif cfg.export != "auto":  # what a transformer student's directory holds (auto: as before, no entry)
            d["export"] = cfg.export
        return d


def parse_seeds(text: str, seed: int) -> tuple[int, ...]:
    """`0,1,2` -> (0, 1, 2). One number without a comma is the count `--seeds N` used to be (seeds SEED..
    SEED+N-1), with a warning; `5,` is the one seed 5."""
    parts = [x.strip() for x in text.split(",") if x.strip()]
    try:
        values = tuple(int(x) for x in parts)
    except ValueError:
        raise ConfigError(f"[seeds] expected seeds as 0,1,2, got {text!r}") from None
    if "," not in text and len(values) == 1:
        warn_renamed(f"--seeds {values[0]} (a count)", f"--seeds {','.join(str(seed + i) for i in range(values[0]))}")
        return tuple(seed + i for i in range(values[0]))
    return values
