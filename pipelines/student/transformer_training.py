"""Training the transformer student (DistilBERT-style) from a scored set, without loading the teacher model.

Set-up: the scored set's rows (the same selection and checks as the BiLSTM's: `training.select_rows`),
tokenised with the teacher's tokenizer (masked words as its mask token, `pipelines.encoding`) -> the student
made from the teacher's layers (or from `--student-init`) -> AdamW (no decay on biases and norms) with a linear
warm-up and decay -> resume. The loop: length-bucketed token-budget batches (`batching.by_tokens`, shuffled per epoch),
`grad_accum` batches per step, the loss of `losses.DistillLoss` (KL at T scaled by T², by default), bf16 autocast
where the device computes it natively; dev evaluation, early stopping and a checkpoint after each epoch (exact
resume: weights, optimiser, schedule, every RNG), and one of the epoch in progress every `checkpoint_minutes`
(`epoch_checkpoints`), as its epochs can take hours on a CPU. What it writes: the student as a Hugging Face
model directory (save_pretrained: weights, config, tokenizer), metrics.json and student.json.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from .. import batching, store
from ..devices import autocast, resolve_dtype, torch_dtype
from ..encoding import Encoded, collate, encode, render_masks
from ..errors import DataError
from ..holdout import HOLDOUT_SPLIT
from ..losses import DistillLoss
from ..progress import progress
from ..tasks import TaskSpec, data_dir, read_split
from ..teacher import hub
from .epoch_checkpoints import EPOCH_CHECKPOINT, EpochCheckpoints, EpochPosition
from .io import METRICS
from .training import (CHECKPOINT, Fitter, HeldOut, TrainState, final_metrics, load_checkpoint, resumed_record,
                       run_epochs, seed_everything, select_rows, split_metrics)
from .transformer_export import export_transformer
from .transformer import check_tokenizers_agree, encoder_blocks, parse_layers, student_from_teacher

if TYPE_CHECKING:
    from collections.abc import Callable

    from .config import TrainConfig

STUDENT_FILE = "student.json"  # what kind of student a directory holds, and what it was made from


class LogitsOf(nn.Module):
    """A Hugging Face classifier as a function of its inputs returning logits (what Fitter, checkpoints and the
    ONNX export see)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        kwargs = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        return self.model(input_ids=input_ids, attention_mask=attention_mask, **kwargs).logits


@dataclass
class TokenRows:
    """Training rows tokenised once, with their targets."""

    enc: Encoded
    teacher: np.ndarray  # float32 [N, C]
    labels: np.ndarray  # int64 [N], -1: no hard label
    counts: dict
    holdout: HeldOut | None = None


def scored_teacher_dir(record: Any) -> Path | None:
    """The teacher directory a scored set's manifest names, when this machine has it."""
    path = Path(record["path"]) if isinstance(record, dict) and record.get("path") else None
    return path if path is not None and (path / "config.json").is_file() else None


def load_rows(cfg: TrainConfig, task: TaskSpec, tokenizer: Any) -> TokenRows:
    """The scored set's rows the objective learns from (`training.select_rows`, as for the BiLSTM), tokenised
    for the transformer."""
    rows = select_rows(cfg, task)
    pairs = rows.table.column("text_pair").to_pylist() if task.is_pair else None
    enc = encode(tokenizer, mask_rendered(rows.table.column("text").to_pylist(), tokenizer),
                 mask_rendered(pairs, tokenizer) if pairs is not None else None, cfg.max_len)
    counts = {"rows": rows.table.num_rows, "gold_rows": int((rows.gold >= 0).sum()), "tokens": int(enc.lengths.sum()),
              "filtered": rows.filtered}
    return TokenRows(enc, rows.teacher, rows.labels, counts, rows.holdout)


def mask_rendered(texts: list[str], tokenizer: Any) -> list[str]:
    return render_masks(texts, tokenizer.mask_token)


def make_student(cfg: TrainConfig, task: TaskSpec, teacher_dir: Path | None,
                 init_dir: Path | None = None) -> tuple[nn.Module, dict]:
    """The student model and what it was made from: the teacher's layers (one of two by default), or those of
    `init_dir` (--student-init's model, located: all its layers by default) with a head for the task's labels."""
    init = init_dir or teacher_dir
    teacher_dir = teacher_dir or init
    # Another encoder gets a new head for the task's labels (a bare encoder has none; another task's is replaced).
    base = hub.load_classifier(init, torch.device("cpu"),
                               label_names=None if init == teacher_dir else list(task.label_names))
    parent, attr, _ = encoder_blocks(base)
    total = len(getattr(parent, attr))
    layers = parse_layers(cfg.layers, total) if (cfg.layers or init == teacher_dir) else list(range(total))
    return student_from_teacher(base, layers), {"init": str(init), "layers": layers, "init_layers": total}


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: weight decay on weight matrices, none on biases and normalisation weights."""
    decay, plain = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (plain if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0}]


def make_fitter(cfg: TrainConfig, model: nn.Module, total_steps: int) -> Fitter:
    from transformers import get_linear_schedule_with_warmup

    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup * total_steps), max(1, total_steps))
    loss_fn = DistillLoss("ce" if cfg.baseline else cfg.loss, cfg.alpha, cfg.temperature)
    return Fitter(LogitsOf(model), loss_fn, optimizer, scheduler, None, cfg.clip)


def batch_tensors(enc: Encoded, rows: np.ndarray, pad_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    batch = collate(enc, rows, pad_id)
    if "attention_mask" not in batch:
        batch["attention_mask"] = np.ones_like(batch["input_ids"])
    return {k: torch.from_numpy(v).to(device) for k, v in batch.items()}


def train_epoch(fitter: Fitter, data: TokenRows, batches: list[np.ndarray], accum: int, pad_id: int,
                device: torch.device, amp: torch.dtype | None, position: EpochPosition,
                saves: EpochCheckpoints, desc: str) -> dict:
    """One pass from `position` (the start, or where a killed run's checkpoint left the epoch): `accum` batches
    per optimiser step, the step's loss the mean over all its rows with a target; `saves` may checkpoint after
    each step."""
    t0, seconds_before = time.perf_counter(), position.seconds
    fitter.model.train()
    teacher, labels = torch.from_numpy(data.teacher).to(device), torch.from_numpy(data.labels).to(device)
    bar = progress(len(batches), desc, "batch", initial=position.done)
    for start in range(position.done, len(batches), accum):
        group = batches[start:start + accum]
        group_targets = max(1, sum(fitter.loss_fn.targets(labels[torch.from_numpy(r).to(device)]) for r in group))
        fitter.optimizer.zero_grad(set_to_none=True)
        for rows in group:
            idx = torch.from_numpy(rows).to(device)
            with autocast(device, amp):
                logits = fitter.model(**batch_tensors(data.enc, rows, pad_id, device)).float()
            loss = fitter.loss_fn.row_losses(logits, teacher[idx], labels[idx]).sum() / group_targets
            loss.backward()
            position.loss_sum += loss.item() * group_targets
            bar.update(1)
        bound = fitter.clip if fitter.clip > 0 else float("inf")
        norm = torch.nn.utils.clip_grad_norm_(fitter.model.parameters(), bound)
        fitter.optimizer.step()
        fitter.scheduler.step()
        position.done, position.targets = start + len(group), position.targets + group_targets
        position.norm_sum, position.steps = position.norm_sum + float(norm), position.steps + 1
        position.seconds = seconds_before + time.perf_counter() - t0
        saves.after_step(position)
    bar.close()
    seconds = seconds_before + time.perf_counter() - t0
    return {"train_loss": round(position.loss_sum / max(1, position.targets), 6), "train_s": round(seconds, 2),
            "steps": position.steps, "rows_per_s": round(len(data.labels) / max(seconds, 1e-9), 1),
            "grad_norm": round(position.norm_sum / max(1, position.steps), 4)}


@torch.inference_mode()
def predict(model: nn.Module, enc: Encoded, pad_id: int, device: torch.device, amp: torch.dtype | None,
            batch_tokens: int) -> np.ndarray:
    model.eval()
    out = []
    order = batching.by_tokens(enc.lengths, batch_tokens)
    for rows in order:
        with autocast(device, amp):
            out.append(model(**batch_tensors(enc, rows, pad_id, device)).float().cpu().numpy())
    logits = np.concatenate(out) if out else np.zeros((0, 0), np.float32)
    result = np.empty_like(logits)
    result[np.concatenate(order)] = logits
    return result


@dataclass
class DevRows:
    name: str
    enc: Encoded
    labels: np.ndarray


def load_dev(cfg: TrainConfig, task: TaskSpec, tokenizer: Any, held_out: HeldOut | None) -> list[DevRows]:
    """The splits evaluated after each epoch: the holdout first (when there is one), then every dev split."""
    out = []
    if held_out is not None:
        out.append(DevRows(HOLDOUT_SPLIT, encode(tokenizer, held_out.texts, held_out.pairs, cfg.max_len),
                           held_out.labels))
    for split in task.dev_splits:
        s, _ = read_split(task, data_dir(task, cfg.data), split)
        out.append(DevRows(split, encode(tokenizer, s.texts, s.text_pairs, cfg.max_len), s.labels))
    return out


def evaluate(model: nn.Module, dev: list[DevRows], task: TaskSpec, pad_id: int, device: torch.device,
             amp: torch.dtype | None, batch_tokens: int) -> dict[str, dict]:
    return {d.name: split_metrics(task, d.name, predict(model, d.enc, pad_id, device, amp, batch_tokens), d.labels)
            for d in dev}


def made_from_what(cfg: TrainConfig, stage: store.StageRun) -> tuple[Path | None, Path | None, Any]:
    """The teacher directory the scored set names (when this machine has it), --student-init's model (located
    by the stage) and the tokenizer the student reads with: the teacher's, which another encoder must share."""
    teacher_dir = scored_teacher_dir(stage.extra.get("teacher"))
    init = stage.extra.get("student_init")
    init_dir = Path(init["path"]) if init else None
    if teacher_dir is None and init_dir is None:
        raise DataError("the scored set's manifest names no teacher directory on this machine to make the student "
                        "from; pass --student-init with a model directory or hub id", str(cfg.scored))
    tokenizer = hub.load_tokenizer(teacher_dir or init_dir)
    if init_dir is not None and teacher_dir is not None:
        check_tokenizers_agree(tokenizer, hub.load_tokenizer(init_dir), str(teacher_dir), init["name"])
    return teacher_dir, init_dir, tokenizer


def fit_transformer(cfg: TrainConfig, task: TaskSpec, stage: store.StageRun, device: torch.device,
                    on_epoch_end: Callable[[TrainState], None] | None = None) -> dict:
    """Train the transformer student of `cfg` into `stage`'s work directory (or finish a killed run from its
    checkpoint) and write it; returns the metrics document. The caller commits the stage."""
    t_start = time.perf_counter()
    teacher_dir, init_dir, tokenizer = made_from_what(cfg, stage)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    amp = torch_dtype(resolve_dtype("auto", device.type))  # bf16 where native (GPUs, AVX512-BF16/AMX CPUs)
    with stage.timed("tokenize"):
        data = load_rows(cfg, task, tokenizer)
        dev = load_dev(cfg, task, tokenizer, data.holdout)
    rng = seed_everything(cfg.seed)
    model, made_from = make_student(cfg, task, teacher_dir, init_dir)
    model = model.to(device)
    batches_per_epoch = len(batching.by_tokens(data.enc.lengths, cfg.batch_tokens))
    fitter = make_fitter(cfg, model, -(-batches_per_epoch // cfg.grad_accum) * cfg.epochs)
    ckpt_path = stage.work_dir / CHECKPOINT
    state, best, epochs_done = TrainState(), None, None
    if ckpt_path.is_file():
        state, best = load_checkpoint(ckpt_path, stage.fingerprint, fitter, rng)
        epochs_done = state.epoch
    saves = EpochCheckpoints(stage.work_dir / EPOCH_CHECKPOINT, stage.fingerprint, fitter, rng,
                             cfg.checkpoint_minutes * 60)

    def one_epoch(epoch: int) -> dict:
        position = saves.start(epoch)  # a killed run's place in this epoch, or its start
        batches = batching.by_tokens(data.enc.lengths, cfg.batch_tokens, rng)
        return train_epoch(fitter, data, batches, cfg.grad_accum, pad_id, device, amp, position, saves,
                           f"train epoch {epoch}")

    def epoch_saved(finished: TrainState) -> None:  # the epoch checkpoint now holds what the in-epoch one did
        if on_epoch_end is not None:
            on_epoch_end(finished)
        saves.remove()

    best = run_epochs(cfg, task, stage, fitter, rng, state, best, one_epoch,
                      lambda: evaluate(fitter.model, dev, task, pad_id, device, amp, cfg.batch_tokens), epoch_saved)
    fitter.model.load_state_dict(best)
    final = final_metrics(cfg, task, evaluate(fitter.model, dev, task, pad_id, device, amp, cfg.batch_tokens),
                          data.holdout, data.counts["filtered"])
    metrics_doc = write_student(stage, cfg, task, model, tokenizer, state, final, made_from)
    with stage.timed("export"):
        exported = export_transformer(LogitsOf(model).cpu(), stage.work_dir, check_batch(dev[0], pad_id)) \
            if cfg.export != "none" else {"formats": []}
    ckpt_path.unlink(missing_ok=True)
    saves.remove()  # a killed run's, when it stopped between its last epoch checkpoint and this point
    params = sum(p.numel() for p in model.parameters())
    stage.stats.update(data.counts, student="transformer", **made_from, params=params, epochs_run=state.epoch,
                       best_epoch=state.best_epoch, steps=state.step, train_s=stage.timings["train"], **final,
                       precision=str(amp).removeprefix("torch.") if amp else "float32",
                       threads=torch.get_num_threads(), device=device.type, export=exported,
                       total_s=round(time.perf_counter() - t_start, 2),
                       resumed=resumed_record(epochs_done, saves.resumed))
    return metrics_doc


def check_batch(dev: DevRows, pad_id: int) -> dict[str, torch.Tensor]:
    """Up to 16 dev rows of mixed lengths, padded: what the ONNX file is checked against."""
    rows = np.arange(min(16, len(dev.enc)))
    return batch_tensors(dev.enc, rows, pad_id, torch.device("cpu"))


def write_student(stage: store.StageRun, cfg: TrainConfig, task: TaskSpec, model: nn.Module, tokenizer: Any,
                  state: TrainState, final: dict, made_from: dict) -> dict:
    """The student as a Hugging Face model directory (float32 weights, config, tokenizer), its metrics and what
    it was made from."""
    work = stage.work_dir
    model.cpu().save_pretrained(work, safe_serialization=True)
    tokenizer.save_pretrained(work)
    store.write_json(work / STUDENT_FILE, {"kind": "transformer", **made_from, "task": task.to_dict(),
                                           "train": stage.config, "stage_fingerprint": stage.fingerprint})
    metrics_doc = {"task": task.name, "metric": task.metrics[0], "baseline": cfg.baseline, "student": "transformer",
                   "loss": "ce" if cfg.baseline else cfg.loss, "best_epoch": state.best_epoch,
                   "epochs_run": state.epoch, "stopped_early": state.stopped, **final, "history": state.history}
    store.write_json(work / METRICS, metrics_doc)
    return metrics_doc
