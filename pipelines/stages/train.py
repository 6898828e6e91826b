"""`distill train`: fit a BiLSTM student to the teacher's logits on the scored set (or, with --baseline, to the
gold labels of the original rows only: the paper's "BiLSTM without distillation").

Reads top to bottom: load the scored set -> tokenise once -> vocabulary and embeddings -> model -> optimiser ->
resume -> loop (batch, forward, loss, backward, clip, step; per epoch: dev evaluation, early stopping,
checkpoint) -> best weights -> student directory (weights, vocab, config, metrics, TorchScript, ONNX, predict.py).

Each row's loss mixes cross-entropy on its hard label (gold labels on the originals, or with --hard-labels
teacher the teacher's argmax on every row) with the distillation loss by --alpha; rows without a hard label
learn from the teacher alone (see pipelines/losses.py). Rows that give the objective no target at all (rows
without a gold label under --loss ce) are left out of training.

A killed run resumes from its last epoch checkpoint (in the stage's work directory, named by fingerprint) and
ends with exactly the weights an uninterrupted run would have: the checkpoint holds the model, optimiser,
scheduler, every RNG state and the loop counters, and batches are drawn from a numpy Generator it restores.

The defaults were chosen on SST-2; how, with every number measured, is in docs/student-tuning.md.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING

from .. import store
from ..devices import DEVICES
from ..errors import ConfigError, TeacherMismatchError
from ..settings import LOSSES, check_loss, parse_formats
from ..tasks import TaskSpec, data_dir, find_split_file, read_split
from . import StageResult
from .common import add_task_args, task_from_args

if TYPE_CHECKING:
    from ..student_training import TrainState

STAGE = "train"
# Bump when the bytes a config produces change. 2: the moving average ramps its decay up. 3: alpha mixes per row,
# mse sums over classes (the squared L2 distance), rows without a target under `ce` are left out.
STAGE_VERSION = 3
OPTIMIZERS = ("adam", "adadelta")
SCHEDULES = ("constant", "linear")
HARD_LABELS = ("gold", "teacher")
# The student's matrices are small (batch 128 x 150 LSTM units): on SST-2 a second CPU thread made an epoch
# slower (about 180 s against 140 s with one), as the threads spend more time meeting than computing.
DEFAULT_THREADS = 1


@dataclass
class TrainConfig:
    """Everything that decides the student. Defaults were chosen on SST-2 (docs/student-tuning.md)."""

    scored: Path  # the output of `distill score`
    task: TaskSpec  # a built-in task (tasks.get_task) or a generic one (tasks.generic_task)
    out: Path  # the student directory to write
    data: Path | None = None  # the task's files (dev splits are evaluated from here); the demo task has a default
    loss: str = "mse"  # mse (on logits, the paper) | kl (soft targets, T^2-scaled) | ce (hard labels only)
    alpha: float = 0.0  # per row with a hard label: weight of its cross-entropy; 1 - alpha goes to distillation
    hard_labels: str = "gold"  # gold (the originals' labels) | teacher (its argmax on every row, as the authors' code)
    temperature: float = 1.0  # softmax temperature of the kl loss
    epochs: int = 4  # passes over the scored set (early stopping may end sooner)
    patience: int = 2  # stop after this many epochs without a better dev score
    baseline: bool = False  # train on original gold-labelled rows only, with cross-entropy (no distillation)
    vectors: str = "auto"  # auto (glove-50d when installed, else none) | glove-50d | spacy[:MODEL] | none | PATH
    optimizer: str = "adam"  # adam | adadelta (the paper's)
    lr: float = 1e-3  # peak learning rate (AdaDelta: 1.0)
    schedule: str = "linear"  # constant | linear (decay to 0 over all steps)
    batch_size: int = 64  # rows per step; batches hold rows of similar length (64 beat 128 on SST-2: see the doc)
    clip: float = 10.0  # gradient norm clip (0: off); 10 since mse sums over classes (5 before: docs/student-tuning.md)
    ema: float = 0.999  # decay of a moving average of the weights, updated every step (0: off; see ema_update);
    # with it on, dev evaluation, early stopping and the saved student use the averaged weights
    hidden: int = 150  # LSTM units per direction
    fc: int = 200  # ReLU layer width
    dropout: float = 0.0  # on sentence features and the ReLU layer (the transfer set is the regulariser)
    embed_dropout: float = 0.0  # on word embeddings
    embed_dim: int = 300  # only without pretrained vectors (they set the width)
    freeze_embeddings: bool = False  # keep the initial word vectors (the paper fine-tunes them)
    max_len: int = 128  # tokens kept per text
    max_vocab: int | None = 100_000  # vocabulary rows learnt from the scored set at most (specials included)
    min_count: int = 1  # drop tokens seen fewer times from the vocabulary
    expand_vocab: int = 100_000  # frozen pretrained rows for unseen words among the vectors' N most frequent
    lowercase: bool = True  # lower-case text before tokenising (GloVe-6B is uncased)
    seed: int = 0
    limit: int | None = None  # use only the first N rows of the scored set
    export: str = "auto"  # torchscript,onnx | auto (both; onnx skipped if not installed) | none
    threads: int | None = None  # torch CPU threads (None: DEFAULT_THREADS)
    device: str = "auto"  # auto (cuda when available) | cpu | cuda; float32 either way

    def problems(self) -> list[str]:
        out = check_loss(self.loss, self.alpha, self.temperature)
        for name in ("epochs", "batch_size", "hidden", "fc", "embed_dim", "max_len", "min_count"):
            if getattr(self, name) < 1:
                out.append(f"[{name}] must be >= 1, got {getattr(self, name)}")
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

    def fingerprint_dict(self, device_type: str) -> dict:
        """The settings that change the result, with the device resolved to its type (`cpu` or `cuda`): cuDNN's
        LSTM sums in another order than the CPU's, so the two train students that agree only up to accumulated
        rounding (and may score differently on dev); a student made on one is not reused for the other. `auto`
        enters as the device it resolved to. Paths and thread counts do not enter."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        for k in ("scored", "out", "data", "threads"):
            d.pop(k)
        d["device"] = device_type
        d["task"] = self.task.to_dict()
        from ..student import resolve_vectors  # torch: only when a stage runs

        d["vectors"] = resolve_vectors(self.vectors)
        return d


def hash_split_files(data: Path, splits: tuple[str, ...]) -> dict[str, str]:
    """sha256 of each split's file (or of a datasets directory's files): the dev data is part of the result."""
    out = {}
    for split in splits:
        path = find_split_file(data, split)
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        out[split] = store.hash_files(files, root=path if path.is_dir() else None)
    return out


def resolve_labels(task: TaskSpec, data: Path | None, scored_manifest: dict) -> TaskSpec:
    """A generic task without a label list takes the one its transfer set was made with (recorded in the
    manifest), or else reads it from the train split, as the augment stage did."""
    if task.label_values:
        return task
    recorded = (scored_manifest.get("task") or {}).get("label_values")
    if recorded:
        return replace(task, label_names=tuple(recorded), label_values=tuple(recorded),
                       metrics=tuple((scored_manifest.get("task") or {}).get("metrics") or task.metrics))
    _, task = read_split(task, data_dir(task, data), "train")
    return task


def stage_fingerprint(cfg: TrainConfig, task: TaskSpec, scored_manifest: dict, device_type: str) -> str:
    """Chains the scored set's fingerprint with the settings, the dev files, the vectors and the versions of the
    packages whose kernels compute the student (another torch may give other floats)."""
    from ..student import resolve_vectors, vectors_identity

    dev_files = hash_split_files(data_dir(task, cfg.data), task.dev_splits)
    return store.fingerprint(f"{STAGE}@{STAGE_VERSION}", scored_manifest["fingerprint"],
                             cfg.fingerprint_dict(device_type), task.to_dict(), dev_files,
                             vectors_identity(resolve_vectors(cfg.vectors)), store.result_versions())


def run(cfg: TrainConfig, *, on_epoch_end: Callable[[TrainState], None] | None = None) -> StageResult:
    """Train (or resume, or skip when the output is already complete). `on_epoch_end` is called after each
    epoch's checkpoint is written (tests use it to interrupt a run)."""
    from ..student import load_metrics, torch_threads  # torch: imported when the stage runs, not for --help
    from ..student_training import fit
    from ..teacher import resolve_device

    problems = cfg.problems()
    if problems:
        raise ConfigError(problems)
    scored_manifest = store.require_stage_output(cfg.scored, "score", "--scored")
    task = resolve_labels(cfg.task, cfg.data, scored_manifest)
    scored_labels = (scored_manifest.get("task") or {}).get("label_names")
    if scored_labels and list(scored_labels) != list(task.label_names):
        raise TeacherMismatchError(
            f"{cfg.scored}: the scored set's labels are {list(scored_labels)} but task '{task.name}' has "
            f"{list(task.label_names)}; train with the task the set was made for")
    device = resolve_device(cfg.device)
    fp = stage_fingerprint(cfg, task, scored_manifest, device.type)
    out = Path(cfg.out)
    if store.is_complete(out, fp):
        return StageResult(out, True, _summary(load_metrics(out), out, cached=True))
    extra = {"task": task.name, "teacher": scored_manifest.get("teacher"), "baseline": cfg.baseline}
    with torch_threads(cfg.threads or DEFAULT_THREADS), \
            store.stage_run(STAGE, out, fp, _jsonable(cfg.fingerprint_dict(device.type)), resumable=True,
                            seed=cfg.seed, inputs={"scored": scored_manifest["fingerprint"]}, extra=extra) as stage:
        metrics_doc = fit(cfg, task, stage, device, on_epoch_end)
        stage.commit()
    return StageResult(out, False, _summary(metrics_doc, out))


def _summary(m: dict, out: Path, cached: bool = False) -> str:
    dev = "; ".join(f"{split} " + " ".join(f"{k}={v:.4f}" for k, v in vals.items()) for split, vals in m["dev"].items())
    kind = "baseline (gold labels, ce)" if m.get("baseline") else f"distilled ({m.get('loss')})"
    return (f"train {m['task']}: {kind} student, {dev} (best epoch {m['best_epoch']} of {m['epochs_run']})"
            f" -> {out}" + (" [cached]" if cached else ""))


def _jsonable(d: dict) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in d.items()}


# ----------------------------------------------------------------------------------------------- CLI

def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command's options (the `distill` parser gives it its name, help and description)."""
    d = TrainConfig(scored=Path(), task=None, out=Path())  # type: ignore[arg-type]
    add_task_args(p)
    p.add_argument("--scored", type=Path, required=True, help="the scored set (output of `distill score`)")
    p.add_argument("--out", type=Path, required=True, help="the student directory to write")
    p.add_argument("--loss", choices=LOSSES, default=d.loss, help=f"distillation loss (default {d.loss})")
    p.add_argument("--alpha", type=float, default=d.alpha,
                   help="per row with a hard label, the weight of its cross-entropy; the rest goes to the "
                        "distillation loss, which rows without a hard label get in full (default 0)")
    p.add_argument("--hard-labels", choices=HARD_LABELS, default=d.hard_labels,
                   help="gold: the originals' gold labels (default) | teacher: the teacher's argmax on every row")
    p.add_argument("--temperature", type=float, default=d.temperature, help="softmax temperature for --loss kl")
    p.add_argument("--epochs", type=int, default=d.epochs, help=f"default {d.epochs}")
    p.add_argument("--patience", type=int, default=d.patience,
                   help=f"epochs without a better dev score before stopping (default {d.patience})")
    p.add_argument("--baseline", action="store_true", help="no distillation: original rows, gold labels, ce")
    p.add_argument("--vectors", default=d.vectors,
                   help="auto (glove-50d if installed) | glove-50d | spacy[:MODEL] | none | PATH (GloVe/word2vec text)")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=d.optimizer)
    p.add_argument("--lr", type=float, default=d.lr, help=f"default {d.lr}")
    p.add_argument("--schedule", choices=SCHEDULES, default=d.schedule)
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"default {d.batch_size}")
    p.add_argument("--clip", type=float, default=d.clip, help=f"gradient norm clip (default {d.clip}; 0: off)")
    p.add_argument("--ema", type=float, default=d.ema,
                   help=f"decay per step of the weights' moving average, which is evaluated and saved "
                        f"(default {d.ema}; 0: off)")
    p.add_argument("--hidden", type=int, default=d.hidden, help="LSTM units per direction")
    p.add_argument("--fc", type=int, default=d.fc, help="ReLU layer width")
    p.add_argument("--dropout", type=float, default=d.dropout)
    p.add_argument("--embed-dropout", type=float, default=d.embed_dropout)
    p.add_argument("--embed-dim", type=int, default=d.embed_dim, help="embedding width without pretrained vectors")
    p.add_argument("--freeze-embeddings", action="store_true", help="keep the pretrained word vectors fixed")
    p.add_argument("--max-vocab", type=int, default=d.max_vocab)
    p.add_argument("--min-count", type=int, default=d.min_count)
    p.add_argument("--expand-vocab", type=int, default=d.expand_vocab,
                   help="add frozen pretrained rows for unseen words among the N most frequent vectors (0: off)")
    p.add_argument("--max-len", type=int, default=d.max_len, help="tokens kept per text")
    p.add_argument("--no-lowercase", dest="lowercase", action="store_false", help="keep the text's case")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--limit", type=int, default=None, help="use only the first N rows of the scored set")
    p.add_argument("--export", default=d.export, help="torchscript,onnx | auto (default) | none")
    p.add_argument("--threads", type=int, default=None, help=f"torch CPU threads (default {DEFAULT_THREADS})")
    p.add_argument("--device", choices=DEVICES, default=d.device,
                   help="auto (default: cuda when available) | cpu | cuda; the resolved device type enters the "
                        "fingerprint, as a GPU gives a slightly different student")
    p.set_defaults(func=_from_args)


def _from_args(args: argparse.Namespace) -> StageResult:
    values = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)}
    values["task"] = task_from_args(args)
    return run(TrainConfig(**values))
