"""A few seconds of measured throughput on this machine, for `distill run --dry-run`'s time estimates: the teacher
scoring rows, an optimiser step of the teacher being fine-tuned, of a BiLSTM student and of a transformer
student. Each measures the same kind of work the stage does (the same model sizes, device, precision and batch
shape) on a sample of the run's own text, with random weights where the trained ones do not exist yet."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .devices import autocast, resolve_device, resolve_dtype, torch_threads

STEPS = 3  # timed optimiser steps after one warm-up step (the median is kept)


@dataclass
class Rate:
    """Rows a second on a device in a precision (for training: rows of optimiser steps a second)."""

    rows_per_s: float
    device: str
    dtype: str

    def seconds(self, rows: float) -> float:
        return rows / max(self.rows_per_s, 1e-9)


def teacher_rate(teacher: str | Path, texts: list[str], pairs: list[str] | None, *, device: str, dtype: str,
                 max_length: int, batch_tokens: int | None, trust_remote_code: bool) -> tuple[Rate, float]:
    """The teacher's scoring rows/s on `texts` (as the score stage runs it) and the mean tokens a row."""
    from .teacher.scorer import TeacherScorer

    scorer = TeacherScorer(teacher, device=device, dtype=dtype, max_length=max_length, batch_tokens=batch_tokens,
                           trust_remote_code=trust_remote_code)
    enc = scorer.encode(texts, pairs)
    scorer.score(scorer.encode(texts[:32], pairs[:32] if pairs else None))  # warm-up
    t0 = time.perf_counter()
    scorer.score(enc)
    seconds = time.perf_counter() - t0
    return Rate(len(texts) / seconds, scorer.device.type, scorer.dtype), float(np.diff(enc.offsets).mean())


def step_seconds(loss_of: Callable[[], torch.Tensor], model: torch.nn.Module, device: torch.device,
                 amp_dtype: torch.dtype | None) -> float:
    """Median seconds of one forward, backward and AdamW step of `model` on the batch `loss_of` computes."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6)
    model.train()
    times = []
    for _ in range(STEPS + 1):
        t0 = time.perf_counter()
        with autocast(device, amp_dtype):
            loss = loss_of()
        loss.float().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def typical_batch(texts: list[str], pairs: list[str] | None, batch_size: int) -> list[int]:
    """`batch_size` rows of median length: the trainers batch rows of similar length, so a typical batch pads
    little and is about as long as the median row (the first rows of a sample would pad to the longest)."""
    lengths = [len(t) + (len(pairs[i]) if pairs else 0) for i, t in enumerate(texts)]
    order = sorted(range(len(texts)), key=lengths.__getitem__)
    start = max(0, min(len(order) - batch_size, len(order) // 2 - batch_size // 2))
    return order[start:start + batch_size]


def encoder_training_rate(model: torch.nn.Module, tokenizer, texts: list[str], pairs: list[str] | None,
                          batch_size: int, max_length: int, device: torch.device, dtype: str) -> Rate:
    """Training rows/s of a transformers classifier (the teacher being fine-tuned, or the transformer student)
    on batches of `batch_size` rows of `texts`."""
    from .devices import autocast_dtype

    rows = typical_batch(texts, pairs, batch_size)
    n = len(rows)
    batch = tokenizer([texts[i] for i in rows], [pairs[i] for i in rows] if pairs else None, padding=True,
                      truncation=True, max_length=max_length, return_tensors="pt").to(device)
    model = model.to(device)

    def loss_of() -> torch.Tensor:
        return model(**batch).logits.float().pow(2).mean()

    return Rate(n / step_seconds(loss_of, model, device, autocast_dtype(dtype, device)), device.type, dtype)


def bilstm_training_rate(texts: list[str], pairs: list[str] | None, *, num_labels: int, embed_dim: int,
                         hidden: int, fc: int, batch_size: int, max_length: int, threads: int,
                         vocab_size: int = 50_000, device: str = "auto") -> Rate:
    """Training rows/s of a BiLSTM student of these sizes (random weights and word ids) on batches of
    `batch_size` rows as long, in words, as `texts`, in `threads` torch threads (each student process's own)."""
    from .student.models import StudentConfig, build_model

    dev = resolve_device(device)
    arch = "siamese_bilstm" if pairs else "bilstm"
    model = build_model(StudentConfig(arch, vocab_size, num_labels, embed_dim, hidden, fc, max_len=max_length))
    model = model.to(dev)
    rng = np.random.default_rng(0)
    rows = typical_batch(texts, pairs, batch_size)
    n = len(rows)

    def words(column: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = torch.tensor([min(max(1, len(column[i].split())), max_length) for i in rows])
        ids = torch.from_numpy(rng.integers(4, vocab_size, size=(n, int(lengths.max())), dtype=np.int64))
        return ids.to(dev), lengths

    inputs = words(texts) + (words(pairs) if pairs else ())

    def loss_of() -> torch.Tensor:
        return model(*inputs).pow(2).mean()

    with torch_threads(threads):
        return Rate(n / step_seconds(loss_of, model, dev, None), dev.type, "float32")


def transformer_student_dtype(device: torch.device) -> str:
    """The precision the transformer student trains in on `device` (bf16 autocast where it is native)."""
    return resolve_dtype("auto", device.type)
