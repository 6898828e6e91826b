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

The tokeniser below is the one the students are trained with (`pipelines.student.tokenizer` imports it from
here, so serving and training cannot tokenise differently): texts are lower-cased (per config.json), split like
spaCy/PTB ("does n't", "it 's"), and the masked-word symbol maps to its own vocabulary row. `distill train` copies this file, unchanged, into every student directory.
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

MASK_SYMBOL = "⟨mask⟩"  # the transfer set's masked word: a token of its own
PAD, UNK = 0, 1  # the first rows of vocab.json: <pad>, <unk>


class Tokenizer:
    """Lower-cased (optionally) PTB/spaCy-style word tokeniser.

    Text is split on whitespace, then each chunk by one regex, so `tokenize(text)` is the concatenation of
    `chunk(c)` over `text.split()` (which lets a corpus be tokenised one distinct chunk at a time).
    >>> Tokenizer()("Don't panic: it's well-made ⟨mask⟩'s")
    ['do', "n't", 'panic', ':', 'it', "'s", 'well', '-', 'made', '⟨mask⟩', "'s"]
    """

    # Contraction suffixes spaCy and the PTB split off ("it's" -> "it" "'s"; "don't" -> "do" "n't").
    SUFFIX = r"'(?:s|m|d|re|ve|ll)\b"
    PATTERN = "|".join([
        re.escape(MASK_SYMBOL),  # the transfer set's mask symbol: one token, even when glued to a neighbour
        r"\.\.\.+|--+|``|''",  # multi-character punctuation the PTB keeps whole
        r"\b(?:mr|mrs|ms|dr|st|vs|jr|sr|etc|inc|ltd|co)\.",  # a few abbreviations spaCy keeps with their period
        r"(?:[^\W\d_]\.){2,}",  # initialisms: u.s., e.t.
        r"\d+(?:[.,:]\d+)+",  # numbers: 1.5, 3,000, 10:30
        r"\w+?(?=n't\b)",  # the stem before n't: do|n't, ca|n't, wo|n't
        r"n't\b",
        r"\w+(?='(?:s|m|d|re|ve|ll)\b)",  # the stem before 's 'm 'd 're 've 'll
        SUFFIX,
        r"\w+(?:'(?!(?:s|m|d|re|ve|ll)\b)\w+)*",  # words, with inner apostrophes that are no suffix (o'clock)
        r"\S",  # any other character on its own: punctuation, hyphens, slashes, symbols
    ])

    def __init__(self, lowercase: bool = True):
        self.lowercase = lowercase
        self._re = re.compile(self.PATTERN, re.IGNORECASE)

    def chunk(self, chunk: str) -> list[str]:
        """Tokens of one whitespace-free chunk (or of any text: it is split on whitespace by the regex too)."""
        if self.lowercase:
            chunk = chunk.lower()
        return self._re.findall(chunk.replace("\u2019", "'"))

    def __call__(self, text: str) -> list[str]:
        out: list[str] = []
        for c in text.split():
            out.extend(self.chunk(c))
        return out

    def to_dict(self) -> dict:
        return {"kind": "regex-ptb", "lowercase": self.lowercase}


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
        split = [ln.split("\t", 1) for ln in lines]
        if any(len(s) != 2 for s in split):
            parser.error("a pair student needs TEXT<TAB>PAIR on every line")
        texts, pairs = [s[0] for s in split], [s[1] for s in split]
    for text, probs in zip(lines, student.predict_proba(texts, pairs)):
        best = max(range(len(probs)), key=probs.__getitem__)
        if args.json:
            print(json.dumps({"text": text, "label": student.labels[best], "probs": probs}, ensure_ascii=False))
        else:
            print(f"{student.labels[best]}\t{probs[best]:.4f}\t{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
