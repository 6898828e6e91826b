"""Export a student for serving: TorchScript (`model.pt`), ONNX (`model.onnx`) and a stand-alone `predict.py`.

`predict.py` is this package's own `predict.py`, copied byte for byte: it needs only the student directory and
torch *or* onnxruntime (+ numpy). `check_exports` measures how far each exported file's logits are from the
model's.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import MissingResourceError
from ..store import replacing
from ..settings import EXPORT_FORMATS as FORMATS
from .models import StudentConfig, input_names

TORCHSCRIPT = "model.pt"
ONNX = "model.onnx"
PREDICT = "predict.py"
PREDICT_SOURCE = Path(__file__).with_name(PREDICT)  # the stand-alone program copied into every student directory
ONNX_OPSET = 17


def example_inputs(cfg: StudentConfig, batch: int = 2, length: int = 5) -> tuple[torch.Tensor, ...]:
    """Inputs of the right kinds for tracing: ids [batch, length] and lengths [batch] for each text side."""
    ids = torch.full((batch, length), 3 % cfg.vocab_size, dtype=torch.int64)
    lengths = torch.full((batch,), length, dtype=torch.int64)
    return tuple(ids if name.startswith("ids") else lengths for name in input_names(cfg.arch))


def export_torchscript(model: nn.Module, path: Path) -> None:
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated in favour of torch.export; it still serves
        scripted = torch.jit.script(model)
    _atomic(path, lambda tmp: scripted.save(str(tmp)))


def onnx_available() -> str | None:
    """None when ONNX export and checking can run, else the reason."""
    for mod in ("onnx", "onnxruntime"):
        try:
            __import__(mod)
        except ImportError:
            return (f"{mod} is not installed (it is part of the default install; reinstall distill-pipelines, or "
                    "pip install onnx onnxruntime onnxscript)")
    return None


def export_onnx(model: nn.Module, cfg: StudentConfig, path: Path) -> None:
    """ONNX with dynamic batch and length axes, via the TorchScript-based exporter (`dynamo=False`): the dynamo
    exporter cannot express the LSTM with dynamic lengths in torch 2.13."""
    reason = onnx_available()
    if reason:
        raise MissingResourceError(f"ONNX export needs onnx and onnxruntime: {reason}")
    model.eval()
    names = input_names(cfg.arch)
    # Each text side has its own length axis: a shared name would tell onnxruntime they are always equal.
    axes = {n: ({0: "batch", 1: "length" + n[3:]} if n.startswith("ids") else {0: "batch"}) for n in names}
    axes["logits"] = {0: "batch"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # legacy-exporter notices and LSTM batch-size hints (axes are dynamic)
        _atomic(path, lambda tmp: torch.onnx.export(
            model, example_inputs(cfg), str(tmp), dynamo=False, input_names=names, output_names=["logits"],
            dynamic_axes=axes, opset_version=ONNX_OPSET))


def _atomic(path: Path, write) -> None:
    with replacing(path) as tmp:
        write(tmp)


def export_student(model: nn.Module, cfg: StudentConfig, out: Path, formats: tuple[str, ...],
                   check_inputs: tuple[torch.Tensor, ...] | None = None) -> dict:
    """Write the requested formats and predict.py into `out`; returns what was written and, given
    `check_inputs`, the largest |logit difference| of each export against the model on them."""
    report: dict = {}
    if formats == ("none",):
        return {"formats": []}
    wanted = list(FORMATS) if formats == ("auto",) else list(formats)
    if formats == ("auto",) and (reason := onnx_available()):
        wanted.remove("onnx")
        report["onnx_skipped"] = reason
    if "torchscript" in wanted:
        export_torchscript(model, out / TORCHSCRIPT)
    if "onnx" in wanted:
        export_onnx(model, cfg, out / ONNX)
    write_predict_helper(out / PREDICT)
    report["formats"] = wanted
    if check_inputs is not None:
        report["max_abs_diff"] = check_exports(model, out, wanted, check_inputs)
    return report


@torch.no_grad()
def check_exports(model: nn.Module, out: Path, formats: list[str], inputs: tuple[torch.Tensor, ...]
                  ) -> dict[str, float]:
    """Largest |logit difference| between the model and each exported file on `inputs`."""
    model.eval()
    ref = model(*inputs).numpy()
    diffs = {}
    if "torchscript" in formats:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            scripted = torch.jit.load(str(out / TORCHSCRIPT))
        diffs["torchscript"] = float(np.abs(scripted(*inputs).numpy() - ref).max())
    if "onnx" in formats:
        import onnxruntime as ort

        sess = ort.InferenceSession(str(out / ONNX), providers=["CPUExecutionProvider"])
        feed = {i.name: t.numpy() for i, t in zip(sess.get_inputs(), inputs)}
        diffs["onnx"] = float(np.abs(sess.run(None, feed)[0] - ref).max())
    return diffs


def predict_source() -> str:
    """The text of predict.py, as every student directory gets it."""
    return PREDICT_SOURCE.read_text("utf-8")


def write_predict_helper(path: Path) -> None:
    _atomic(path, lambda tmp: shutil.copyfile(PREDICT_SOURCE, tmp))
