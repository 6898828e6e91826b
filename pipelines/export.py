"""Export a student for serving: TorchScript (`model.pt`), ONNX (`model.onnx`) and a standalone `predict.py`.

`predict.py` needs only the student directory and torch *or* onnxruntime: it carries its own copy of the
tokeniser (the `Tokenizer` class source from `pipelines/student.py`, copied verbatim so the two cannot drift),
maps tokens through vocab.json, pads exactly as training did, runs the model and applies softmax.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from augment import MASK_SYMBOL

from .errors import MissingResourceError
from .settings import EXPORT_FORMATS as FORMATS
from .student import PAD, UNK, BiLSTMClassifier, StudentConfig, Tokenizer, _input_names

TORCHSCRIPT = "model.pt"
ONNX = "model.onnx"
PREDICT = "predict.py"
ONNX_OPSET = 17


def example_inputs(cfg: StudentConfig, batch: int = 2, length: int = 5) -> tuple[torch.Tensor, ...]:
    ids = torch.full((batch, length), 3 % cfg.vocab_size, dtype=torch.int64)
    lengths = torch.full((batch,), length, dtype=torch.int64)
    return (ids, lengths, ids, lengths) if cfg.arch == "siamese_bilstm" else (ids, lengths)


def export_torchscript(model: BiLSTMClassifier, path: Path) -> None:
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


def export_onnx(model: BiLSTMClassifier, cfg: StudentConfig, path: Path) -> None:
    """ONNX with dynamic batch and length axes, via the TorchScript-based exporter (`dynamo=False`): the dynamo
    exporter cannot express the LSTM with dynamic lengths in torch 2.13."""
    reason = onnx_available()
    if reason:
        raise MissingResourceError(f"ONNX export needs onnx and onnxruntime: {reason}")
    model.eval()
    names = _input_names(cfg.arch)
    # Each text side has its own length axis: a shared name would tell onnxruntime they are always equal.
    axes = {n: ({0: "batch", 1: "length" + n[3:]} if n.startswith("ids") else {0: "batch"}) for n in names}
    axes["logits"] = {0: "batch"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # legacy-exporter notices and LSTM batch-size hints (axes are dynamic)
        _atomic(path, lambda tmp: torch.onnx.export(
            model, example_inputs(cfg), str(tmp), dynamo=False, input_names=names, output_names=["logits"],
            dynamic_axes=axes, opset_version=ONNX_OPSET))


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def export_student(model: BiLSTMClassifier, cfg: StudentConfig, out: Path, formats: tuple[str, ...],
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
def check_exports(model: BiLSTMClassifier, out: Path, formats: list[str], inputs: tuple[torch.Tensor, ...]
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


# ----------------------------------------------------------------------------------------------- predict.py

_PREDICT_HEAD = '''\
"""Standalone predictor for this distill student directory (written by `distill train`).

Needs only this directory and either onnxruntime (+ numpy) or torch; nothing from distill-pipelines.

Command line (one text per argument, or one per stdin line with `-`; pair tasks take TEXT<TAB>PAIR):
    python predict.py "a gorgeous , witty film" "a chore to sit through"
    python predict.py --backend torchscript --json - < texts.txt

Python:
    import sys; sys.path.insert(0, "path/to/student")
    from predict import Student
    student = Student("path/to/student")                 # backend "auto": onnxruntime if installed, else torch
    student.predict_proba(["a gorgeous , witty film"])   # [[p_negative, p_positive]]
    student.predict(["a gorgeous , witty film"])         # ["positive"]

The tokeniser below is a verbatim copy of `pipelines.student.Tokenizer`: texts are lower-cased (per config.json),
split like spaCy/PTB ("does n't", "it 's"), and the masked-word symbol maps to its own vocabulary row.
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

MASK_SYMBOL = {mask!r}
PAD, UNK = {pad}, {unk}


'''

_PREDICT_TAIL = '''

class Student:
    """A student directory ready to predict: tokeniser, vocabulary and the exported model."""

    def __init__(self, student_dir: str | Path | None = None, backend: str = "auto"):
        d = Path(student_dir) if student_dir is not None else Path(__file__).resolve().parent
        config = json.loads((d / "config.json").read_text("utf-8"))
        self.labels = config["label_names"]
        self.max_len = config["model"]["max_len"]
        self.is_pair = config["model"]["arch"] == "siamese_bilstm"
        self.input_names = config["inputs"]
        self.tokenizer = Tokenizer(lowercase=config["tokenizer"]["lowercase"])
        tokens = json.loads((d / "vocab.json").read_text("utf-8"))["tokens"]
        self.index = {t: i for i, t in enumerate(tokens)}
        if backend == "auto":
            try:
                import onnxruntime  # noqa: F401
                backend = "onnx" if (d / "model.onnx").is_file() else "torchscript"
            except ImportError:
                backend = "torchscript"
        self.backend = backend
        if backend == "onnx":
            import numpy as np
            import onnxruntime as ort

            self._np = np
            self._session = ort.InferenceSession(str(d / "model.onnx"), providers=["CPUExecutionProvider"])
        elif backend == "torchscript":
            import warnings

            import torch

            self._torch = torch
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit still loads; it is only deprecated
                self._module = torch.jit.load(str(d / "model.pt"), map_location="cpu").eval()
        else:
            raise ValueError(f"unknown backend {backend!r}; choose auto, onnx or torchscript")

    def encode(self, text: str) -> list[int]:
        """Vocabulary ids of a text, cut to max_len; an empty text becomes one PAD token (as in training)."""
        ids = [self.index.get(t, UNK) for t in self.tokenizer(text)][: self.max_len]
        return ids or [PAD]

    def _padded(self, rows: list[list[int]]) -> tuple[list[list[int]], list[int]]:
        width = max(len(r) for r in rows)
        return [r + [PAD] * (width - len(r)) for r in rows], [len(r) for r in rows]

    def logits(self, texts: list[str], pairs: list[str] | None = None, batch_size: int = 64) -> list[list[float]]:
        if self.is_pair != (pairs is not None):
            raise ValueError("this student takes text pairs" if self.is_pair else "this student takes single texts")
        out: list[list[float]] = []
        for i in range(0, len(texts), batch_size):
            inputs = [*self._padded([self.encode(t) for t in texts[i:i + batch_size]])]
            if pairs is not None:
                inputs += [*self._padded([self.encode(t) for t in pairs[i:i + batch_size]])]
            out.extend(self._run(inputs))
        return out

    def _run(self, inputs: list) -> list[list[float]]:
        if self.backend == "onnx":
            feed = {n: self._np.asarray(x, dtype=self._np.int64) for n, x in zip(self.input_names, inputs)}
            return self._session.run(None, feed)[0].tolist()
        with self._torch.no_grad():
            return self._module(*[self._torch.tensor(x, dtype=self._torch.int64) for x in inputs]).tolist()

    def predict_proba(self, texts: list[str], pairs: list[str] | None = None) -> list[list[float]]:
        return [_softmax(z) for z in self.logits(texts, pairs)]

    def predict(self, texts: list[str], pairs: list[str] | None = None) -> list[str]:
        return [self.labels[max(range(len(p)), key=p.__getitem__)] for p in self.predict_proba(texts, pairs)]


def _softmax(z: list[float]) -> list[float]:
    m = max(z)
    e = [math.exp(v - m) for v in z]
    s = sum(e)
    return [v / s for v in e]


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Predict with a distill student directory.")
    parser.add_argument("texts", nargs="+", help="texts to classify, or - to read one per line from stdin")
    parser.add_argument("--dir", default=None, help="the student directory (default: this file's directory)")
    parser.add_argument("--backend", default="auto", choices=["auto", "onnx", "torchscript"])
    parser.add_argument("--json", action="store_true", help="one JSON object per text")
    args = parser.parse_args(argv)
    lines = sys.stdin.read().splitlines() if args.texts == ["-"] else args.texts
    student = Student(args.dir, args.backend)
    texts, pairs = lines, None
    if student.is_pair:
        split = [ln.split("\\t", 1) for ln in lines]
        if any(len(s) != 2 for s in split):
            parser.error("a pair student needs TEXT<TAB>PAIR on every line")
        texts, pairs = [s[0] for s in split], [s[1] for s in split]
    for text, probs in zip(lines, student.predict_proba(texts, pairs)):
        best = max(range(len(probs)), key=probs.__getitem__)
        if args.json:
            print(json.dumps({"text": text, "label": student.labels[best], "probs": probs}, ensure_ascii=False))
        else:
            print(f"{student.labels[best]}\\t{probs[best]:.4f}\\t{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''


def predict_source() -> str:
    """The text of predict.py: head, the tokeniser class copied from pipelines/student.py, the runner."""
    head = _PREDICT_HEAD.format(mask=MASK_SYMBOL, pad=PAD, unk=UNK)
    return head + inspect.getsource(Tokenizer) + _PREDICT_TAIL


def write_predict_helper(path: Path) -> None:
    _atomic(path, lambda tmp: tmp.write_text(predict_source(), "utf-8"))
