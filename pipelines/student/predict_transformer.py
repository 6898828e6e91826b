"""Stand-alone predictions of a transformer student directory written by `distill train --student transformer`.

Needs only numpy, onnxruntime and tokenizers (no torch, no transformers, not this project). The command line is
the BiLSTM's predict.py's (one text per argument, or one per stdin line with `-`; pair tasks take
TEXT<TAB>PAIR):

    python predict.py "a gorgeous , witty film" "a chore to sit through"      # label<TAB>probability<TAB>text
    python predict.py --json - < texts.txt                                     # one JSON object per line
    python predict.py --dir STUDENT_DIR "a gorgeous , witty film"             # another student directory

or, from Python: `Student(dir).predict(texts)` (label names), `.predict_proba(texts, pairs=None)` and
`.logits(texts, pairs=None)`.
Masked words of the transfer set's neutral symbol are rendered as the tokenizer's mask token, as in training.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

MASK_SYMBOL = "⟨mask⟩"  # augment.MASK_SYMBOL (kept in sync by a test)


class Student:
    def __init__(self, directory: str | Path | None = None):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        d = Path(directory) if directory is not None else Path(__file__).resolve().parent
        info = json.loads((d / "student.json").read_text("utf-8"))
        self.is_pair = bool((info.get("task") or {}).get("pair_col"))
        config = json.loads((d / "config.json").read_text("utf-8"))
        self.labels = [config["id2label"][str(i)] for i in range(len(config["id2label"]))]
        self.max_len = int(info["train"].get("max_length") or info["train"]["max_len"])  # max_len: before 0.2
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

    def predict_proba(self, texts: list[str], pairs: list[str] | None = None) -> list[list[float]]:
        z = self.logits(texts, pairs).astype(np.float64)
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return (e / e.sum(axis=1, keepdims=True)).tolist()


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Predict with a distill transformer student directory.")
    parser.add_argument("texts", nargs="+", help="texts to classify, or - to read one per line from stdin")
    parser.add_argument("--dir", default=None, help="the student directory (default: this file's directory)")
    parser.add_argument("--json", action="store_true", help="one JSON object per text")
    args = parser.parse_args(argv)
    if args.dir is None and len(args.texts) > 1 and (Path(args.texts[0]) / "student.json").is_file():
        # the old command line, `predict.py STUDENT_DIR TEXT ...`
        print("predict.py: the directory goes after --dir now (predict.py --dir DIR TEXT ...)", file=sys.stderr)
        args.dir, args.texts = args.texts[0], args.texts[1:]
    lines = sys.stdin.read().splitlines() if args.texts == ["-"] else args.texts
    student = Student(args.dir)
    texts, pairs = lines, None
    if student.is_pair:
        split = [ln.split("\t", 1) for ln in lines]
        if any(len(s) != 2 for s in split):
            parser.error("a pair student needs TEXT<TAB>PAIR on every line")
        texts, pairs = [s[0] for s in split], [s[1] for s in split]
    for text, probs in zip(lines, student.predict_proba(texts, pairs) if lines else []):
        best = max(range(len(probs)), key=probs.__getitem__)
        if args.json:
            print(json.dumps({"text": text, "label": student.labels[best], "probs": probs}, ensure_ascii=False))
        else:
            print(f"{student.labels[best]}\t{probs[best]:.4f}\t{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
