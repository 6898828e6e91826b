"""Scoring: a teacher's logits for many rows, fast and in row order.

Speed comes from work not done: rows are tokenised in one bulk call without padding, sorted by length and packed
into batches whose padded size stays under a token budget (`batching.by_tokens`, so little compute goes to
padding), and run under `torch.inference_mode` with SDPA attention. On CUDA, host batches are pinned and copied
without blocking, and a batch that runs out of memory is retried as two halves (never dropping or repeating a row).

Fine-tuning evaluates with the same `encode`, `collate` and `predict_logits`, so the dev accuracy a fine-tuning
run reports is measured by the same code path the scorer later labels the transfer set with.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from augment import MASK_SYMBOL

from .. import batching
from ..encoding import Encoded, collate, encode, render_masks  # noqa: F401 (shared with the student)
from ..devices import (autocast, autocast_dtype, default_batch_tokens, resolve_device, resolve_dtype,
                       set_cpu_threads, torch_dtype)
from ..errors import DistillError
from ..hub import ModelFiles, load_classifier, load_tokenizer, locate_model
from .checks import check_mask_token, check_max_length, label_names_of, mask_token_problem

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------- batches

def to_device(batch: dict[str, np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    """On CUDA: pinned host memory and a non-blocking copy, so the next batch is prepared while this one runs."""
    tensors = {k: torch.from_numpy(v) for k, v in batch.items()}
    if device.type != "cuda":
        return tensors
    return {k: t.pin_memory().to(device, non_blocking=True) for k, t in tensors.items()}


# ----------------------------------------------------------------------------------------------- forward passes

# Messages of CUDA allocation failures that are not raised as torch.cuda.OutOfMemoryError (cuBLAS and cuDNN
# workspaces, raw CUDA runtime errors): each means the batch was too large, as an OutOfMemoryError does.
_CUDA_ALLOC_FAILURES = ("CUDA out of memory", "CUBLAS_STATUS_ALLOC_FAILED", "CUDNN_STATUS_ALLOC_FAILED",
                        "cudaErrorMemoryAllocation", "CUDA error: out of memory")


def is_cuda_oom(error: BaseException) -> bool:
    """True for any CUDA allocation failure, whichever exception type carries it."""
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and any(m in str(error) for m in _CUDA_ALLOC_FAILURES)


def run_with_halving(forward: Callable[[np.ndarray], torch.Tensor], rows: np.ndarray,
                     on_oom: Callable[[int], None] | None = None) -> list[tuple[np.ndarray, torch.Tensor]]:
    """`forward(rows)`, and on a CUDA allocation failure the same rows as two halves (recursively), calling
    `on_oom(len(rows))` for each failure. Returns (rows, logits) pieces that together cover `rows` exactly once,
    in order; any other error is raised as it is."""
    try:
        return [(rows, forward(rows))]
    except (torch.cuda.OutOfMemoryError, RuntimeError) as e:
        if not is_cuda_oom(e):
            raise
        if len(rows) == 1:
            raise DistillError("CUDA ran out of memory on a single row; lower --max-length, use --dtype bf16, "
                               "or score on a larger GPU or with --device cpu") from e
    # Outside the except block, so the failed attempt's tensors (held by the traceback) are freed first.
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if on_oom is not None:
        on_oom(len(rows))
    half = len(rows) // 2
    log.warning("CUDA out of memory on a batch of %d rows; retrying as %d + %d", len(rows), half, len(rows) - half)
    return run_with_halving(forward, rows[:half], on_oom) + run_with_halving(forward, rows[half:], on_oom)


@torch.inference_mode()
def predict_logits(model: torch.nn.Module, enc: Encoded, *, batch_tokens: int, device: torch.device,
                   amp_dtype: torch.dtype | None = None, pad_id: int = 0,
                   progress: Callable[[int], Any] | None = None,
                   on_oom: Callable[[int], None] | None = None) -> np.ndarray:
    """float32 logits [n, num_labels] of all rows, in row order. The model must be in eval mode. `on_oom` is
    told of every batch that had to be halved (see run_with_halving)."""
    def forward(rows: np.ndarray) -> torch.Tensor:
        batch = to_device(collate(enc, rows, pad_id), device)
        with autocast(device, amp_dtype):
            return model(**batch).logits.float()  # [B, C]; float32 whatever the compute dtype

    pieces: list[tuple[np.ndarray, torch.Tensor]] = []
    for rows in batching.by_tokens(enc.lengths, batch_tokens):
        pieces += run_with_halving(forward, rows, on_oom)
        if progress is not None:
            progress(len(rows))
    num_labels = int(model.config.num_labels)
    if not pieces:
        return np.zeros((0, num_labels), dtype=np.float32)
    # One device-to-host copy per call (not per batch), then scatter back to the input order.
    logits = torch.cat([p for _, p in pieces]).cpu().numpy()
    out = np.empty_like(logits)
    out[np.concatenate([r for r, _ in pieces])] = logits
    return out


def validate_logits(logits: Any, num_rows: int, num_labels: int, teacher: str) -> np.ndarray:
    """Check a batch of results at the boundary: [n, num_labels], float32, finite."""
    if not isinstance(logits, np.ndarray) or logits.shape != (num_rows, num_labels):
        shape = getattr(logits, "shape", type(logits).__name__)
        raise DistillError(f"teacher {teacher} returned logits of shape {shape} for {num_rows} rows, expected "
                           f"[{num_rows}, {num_labels}]; is it a sequence classifier with {num_labels} labels?")
    if logits.dtype != np.float32:
        raise DistillError(f"teacher {teacher} returned {logits.dtype} logits, expected float32")
    bad = ~np.isfinite(logits).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise DistillError(f"teacher {teacher} returned NaN or infinite logits for {len(rows)} rows (first: row "
                           f"{int(rows[0])}); fp16 can overflow, so try --dtype bf16 or float32, and check the "
                           "weights")
    return logits


class Float32(torch.nn.Module):
    """A module run in float32 inside a reduced-precision model: its weights float32, autocast off, its floating
    inputs cast up (the classification head and the pooler: a few small matmuls that decide the logits)."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner.float()

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        up = [a.float() if torch.is_tensor(a) and a.is_floating_point() else a for a in args]
        device_type = next((a.device.type for a in up if torch.is_tensor(a)), "cpu")
        with torch.autocast(device_type=device_type, enabled=False):
            return self.inner(*up, **kwargs)


def keep_head_in_float32(model: torch.nn.Module) -> torch.nn.Module:
    """Wrap in `Float32` every child of a transformers classifier outside its base model (the head: classifier,
    pre_classifier, ...) and the base model's pooler, when it has one."""
    base_name = getattr(model, "base_model_prefix", "")
    for name, child in list(model.named_children()):
        if name != base_name and any(True for _ in child.parameters()):
            setattr(model, name, Float32(child))
    base = getattr(model, base_name, None)
    if base is not None and getattr(base, "pooler", None) is not None:
        base.pooler = Float32(base.pooler)
    return model


def prepare_for_inference(model: torch.nn.Module, dtype: str, device: torch.device) -> torch.nn.Module:
    """The model as scoring runs it. On GPUs float32 matmuls use TF32. bf16/fp16: the weights are cast to that
    dtype once here (autocast would cast them again for every batch) and autocast keeps the ops it lists as
    float32 (layer norm, softmax) in float32; the classification head and the pooler stay float32
    (`keep_head_in_float32`). int8 (CPU): the linear layers dynamically quantised, weights int8 and activations
    quantised per batch, through torch.ao."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    amp_dtype = torch_dtype(dtype)
    if amp_dtype is not None:
        return keep_head_in_float32(model.to(amp_dtype))
    if dtype == "int8":
        with warnings.catch_warnings():  # torch.ao.quantization is deprecated in favour of torchao (not a dependency)
            warnings.simplefilter("ignore")
            from torch.ao.quantization import quantize_dynamic

            return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    return model


class TeacherScorer:
    """Logits of a teacher for batches of rows: the model and tokenizer are loaded once in `__init__`, and
    `__call__` is a pure batch function (Ray Data's callable-class shape, so it can be handed to `map_batches`
    unchanged). The `score` stage reads shards, calls it, and writes what it returns."""

    def __init__(self, teacher: str | Path | ModelFiles, *, device: str = "auto", dtype: str = "float32",
                 max_length: int = 128, batch_tokens: int | None = None, threads: int | None = None,
                 trust_remote_code: bool = False):
        self.files = teacher if isinstance(teacher, ModelFiles) else locate_model(teacher, trust_remote_code)
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device.type)  # `auto`: the fast precision of this device
        self.amp_dtype = autocast_dtype(self.dtype, self.device)
        self.max_length = max_length
        self.batch_tokens = batch_tokens or default_batch_tokens(self.device)
        self.threads = set_cpu_threads(threads)
        self.tokenizer = load_tokenizer(self.files.path, trust_remote_code)
        self.model = prepare_for_inference(
            load_classifier(self.files.path, self.device, trust_remote_code=trust_remote_code).eval(),
            self.dtype, self.device)
        check_max_length(self.model.config, self.tokenizer, max_length, self.files.name)
        self.num_labels = int(self.model.config.num_labels)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self._mask_problem = mask_token_problem(self.tokenizer)

    @property
    def label_names(self) -> list[str]:
        return label_names_of(self.model.config)

    def encode(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> Encoded:
        """Render mask symbols to this teacher's mask token, then tokenise (CPU only: may run in another
        thread while the device computes)."""
        has_mask = any(MASK_SYMBOL in t for t in texts) or (pairs is not None and any(MASK_SYMBOL in t for t in pairs))
        if has_mask and self._mask_problem is not None:
            check_mask_token(self.tokenizer, self.files.name, self._mask_problem)
        mask = self.tokenizer.mask_token if has_mask else None
        return encode(self.tokenizer, render_masks(texts, mask),
                      render_masks(pairs, mask) if pairs is not None else None, self.max_length)

    def score(self, enc: Encoded, progress: Callable[[int], Any] | None = None) -> np.ndarray:
        logits = predict_logits(self.model, enc, batch_tokens=self.batch_tokens, device=self.device,
                                amp_dtype=self.amp_dtype, pad_id=self.pad_id, progress=progress,
                                on_oom=self._lower_budget)
        return validate_logits(logits, len(enc), self.num_labels, self.files.name)

    def _lower_budget(self, failed_rows: int) -> None:
        """After an out-of-memory batch, halve the token budget for the rest of the job (never under one
        full-length row), so later batches do not fail and retry again and again."""
        lowered = max(self.max_length, self.batch_tokens // 2)
        if lowered < self.batch_tokens:
            log.warning("lowering the batch budget from %d to %d tokens for the rest of the job",
                        self.batch_tokens, lowered)
            self.batch_tokens = lowered

    def predict(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> np.ndarray:
        return self.score(self.encode(texts, pairs))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        pairs = list(batch["text_pair"]) if "text_pair" in batch else None
        return {**batch, "teacher_logits": self.predict(list(batch["text"]), pairs)}
