"""Stand-alone predictions of a transformer student directory written by `distill train --student transformer`.

Needs only numpy, onnxruntime and tokenizers (no torch, no transformers, not this project):

    python predict.py STUDENT_DIR "a gorgeous , witty film" "a chore to sit through"

or, from Python: `Student(dir).predict(texts)` (label names) and `.logits(texts, pairs=None)`.
Masked words of the transfer set's neutral symbol are rendered as the tokenizer's mask token, as in training.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

MASK_SYMBOL = "⟨mask⟩"  # augment.MASK_SYMBOL (kept in sync by a test)


class Student:
    def __init__(self, directory: str | Path):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        d = Path(directory)
        info = json.loads((d / "student.json").read_text("utf-8"))
        config = json.loads((d / "config.json").read_text("utf-8"))
        self.labels = [config["id2label"][str(i)] for i in range(len(config["id2label"]))]
        self.max_len = int(info["train"]["max_len"])
        special = {}  # the special tokens: tokenizer_config.json, or the older special_tokens_map.json
        for name in ("special_tokens_map.json", "tokenizer_config.json"):
            if (d / name).is_file():
                special.update(json.loads((d / name).read_text("utf-8")))
        mask = special.get("mask_token")
        self.mask = mask["content"] if isinstance(mask, dict) else mask
        self.tokenizer = Tokenizer.from_file(str(d / "tokenizer.json"))
        self.tokenizer.enable_truncation(self.max_len)
        pad = special.get("pad_token")
        pad = pad["content"] if isinstance(pad, dict) else pad
        self.tokenizer.enable_padding(pad_id=self.tokenizer.token_to_id(pad) or 0, pad_token=pad or "[PAD]")
        self.session = ort.InferenceSession(str(d / "model.onnx"), providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]

    def _render(self, texts: list[str]) -> list[str]:
        return [t.replace(MASK_SYMBOL, self.mask) if self.mask else t for t in texts]

    def logits(self, texts: list[str], pairs: list[str] | None = None) -> np.ndarray:
        texts = self._render(list(texts))
        items = list(zip(texts, self._render(list(pairs)))) if pairs is not None else texts
        enc = self.tokenizer.encode_batch(items)
        feed = {"input_ids": np.array([e.ids for e in enc], dtype=np.int64),
                "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64),
                "token_type_ids": np.array([e.type_ids for e in enc], dtype=np.int64)}
        return self.session.run(None, {k: feed[k] for k in self.inputs})[0]

    def predict(self, texts: list[str], pairs: list[str] | None = None) -> list[str]:
        return [self.labels[i] for i in self.logits(texts, pairs).argmax(1)]


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: python predict.py STUDENT_DIR TEXT [TEXT ...]")
    student = Student(sys.argv[1])
    for text, label in zip(sys.argv[2:], student.predict(sys.argv[2:])):
        print(f"{label}\t{text}")
