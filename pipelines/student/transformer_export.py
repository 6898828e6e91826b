"""Export the transformer student for serving: `model.onnx` (dynamic batch and sequence axes), checked against
PyTorch, and a stand-alone `predict.py` (this package's `predict_transformer.py`, copied) that needs only
onnxruntime, the `tokenizers` package and the student directory."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import MissingResourceError
from .export import ONNX, ONNX_OPSET, PREDICT, _atomic, onnx_available

PREDICT_SOURCE = Path(__file__).with_name("predict_transformer.py")


def export_onnx(model: nn.Module, out: Path, example: dict[str, torch.Tensor]) -> None:
    """`model` (inputs by name -> logits) as ONNX, every input with dynamic batch and sequence axes."""
    reason = onnx_available()
    if reason:
        raise MissingResourceError(f"ONNX export needs onnx and onnxruntime: {reason}")
    model.eval()
    names = list(example)
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes["logits"] = {0: "batch"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the legacy exporter's notices
        _atomic(out / ONNX, lambda tmp: torch.onnx.export(
            model, tuple(example[n] for n in names), str(tmp), dynamo=False, input_names=names,
            output_names=["logits"], dynamic_axes=axes, opset_version=ONNX_OPSET))


@torch.no_grad()
def onnx_difference(model: nn.Module, out: Path, batch: dict[str, torch.Tensor]) -> float:
    """Largest |logit difference| between the model and model.onnx on `batch`."""
    import onnxruntime as ort

    model.eval()
    ref = model(**batch).float().numpy()
    sess = ort.InferenceSession(str(out / ONNX), providers=["CPUExecutionProvider"])
    got = sess.run(None, {k: v.numpy() for k, v in batch.items()})[0]
    return float(np.abs(got - ref).max())


def export_transformer(model: nn.Module, out: Path, check_batch: dict[str, torch.Tensor]) -> dict:
    """model.onnx and predict.py into `out`; the ONNX file's largest logit difference from PyTorch on
    `check_batch` (rows of different lengths, padded)."""
    example = {k: v[:2, :] for k, v in check_batch.items()}
    export_onnx(model, out, example)
    _atomic(out / PREDICT, lambda tmp: shutil.copyfile(PREDICT_SOURCE, tmp))
    return {"formats": ["onnx"], "max_abs_diff": {"onnx": onnx_difference(model, out, check_batch)}}
