"""A trained student directory of either family, loaded for CPU inference as it is served.

`load_served(dir)` tells the families apart by their files (a BiLSTM directory has vocab.json and config.json
from `io.save_student`; a transformer directory has student.json and a Hugging Face model) and returns one
`ServedStudent`: the task it was trained on, its size, and `logits(texts, pairs)`. `distill eval` and the
report's student rows read students through it, so both families are measured the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DataError
from .io import VOCAB, WEIGHTS, count_parameters, load_student
from .transformer_training import STUDENT_FILE

BATCH_ROWS = {"bilstm": 256, "transformer": 32}  # default rows per inference batch


@dataclass
class ServedStudent:
    path: Path
    family: str  # bilstm | transformer
    task: dict[str, Any]  # the task record the student was trained with (TaskSpec.to_dict)
    label_names: list[str]
    is_pair: bool
    params: int
    params_without_embedding: int
    size_bytes: int
    model: Any  # the loaded model and what encodes text for it: read by `logits`
    encoder: Any

    def logits(self, texts: list[str], pairs: list[str] | None = None, batch_rows: int | None = None) -> np.ndarray:
        """Float32 logits [N, C] in row order, on the CPU, `batch_rows` rows at a time (BiLSTM batches are formed
        from length-sorted rows; transformer batches in input order, as a serving loop meets them)."""
        return _FAMILIES[self.family][1](self, texts, pairs, batch_rows or BATCH_ROWS[self.family])


def family_of(student_dir: Path) -> str:
    if not student_dir.is_dir():
        raise DataError(f"{student_dir}: no such directory; pass the --out of `distill train`")
    if (student_dir / STUDENT_FILE).is_file() and (student_dir / WEIGHTS).is_file():
        return "transformer"
    if (student_dir / VOCAB).is_file() and (student_dir / WEIGHTS).is_file():
        return "bilstm"
    raise DataError(f"{student_dir}: not a student directory (neither a BiLSTM's {WEIGHTS} and {VOCAB} nor a "
                    f"transformer's {STUDENT_FILE} and {WEIGHTS}); pass the --out of `distill train`")


def load_served(student_dir: str | Path) -> ServedStudent:
    d = Path(student_dir)
    return _FAMILIES[family_of(d)][0](d)


def _load_bilstm(d: Path) -> ServedStudent:
    loaded = load_student(d)
    params = count_parameters(loaded.model)
    task = loaded.config.get("task") or {}
    labels = loaded.config.get("label_names") or task.get("label_names") or []
    return ServedStudent(d, "bilstm", task, list(labels), loaded.cfg.arch == "siamese_bilstm", params["total"],
                         params["without_embedding"], (d / WEIGHTS).stat().st_size, loaded, None)


def _bilstm_logits(s: ServedStudent, texts: list[str], pairs: list[str] | None, batch_rows: int) -> np.ndarray:
    from .models import predict_logits
    from .vocab import encode_texts

    loaded = s.model
    a = encode_texts(texts, loaded.tokenizer, loaded.vocab)
    b = encode_texts(pairs, loaded.tokenizer, loaded.vocab) if pairs is not None else None
    with torch.inference_mode():
        return predict_logits(loaded.model, a, b, loaded.cfg.max_len, batch_rows)


def _load_transformer(d: Path) -> ServedStudent:
    from .. import hub

    record = json.loads((d / STUDENT_FILE).read_text("utf-8"))
    task = record.get("task") or {}
    tokenizer = hub.load_tokenizer(d)
    model = hub.load_classifier(d, torch.device("cpu")).eval()
    total = sum(p.numel() for p in model.parameters())
    embedding = sum(p.numel() for p in model.base_model.embeddings.parameters())
    train = record.get("train") or {}
    max_len = int(train.get("max_length") or train.get("max_len") or 128)  # max_len: before 0.2
    return ServedStudent(d, "transformer", task, list(task.get("label_names") or []), task.get("pair_col") is not None,
                         total, total - embedding, (d / WEIGHTS).stat().st_size, model,
                         (tokenizer, max_len))


def _transformer_logits(s: ServedStudent, texts: list[str], pairs: list[str] | None,
                        batch_rows: int) -> np.ndarray:
    from ..encoding import encode
    from .transformer_training import batch_tensors

    tokenizer, max_len = s.encoder
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    enc = encode(tokenizer, texts, pairs, max_len)
    out = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch_rows):
            rows = np.arange(i, min(i + batch_rows, len(texts)))
            out.append(s.model(**batch_tensors(enc, rows, pad_id, torch.device("cpu"))).logits.float().numpy())
    return np.concatenate(out) if out else np.zeros((0, len(s.label_names)), np.float32)


_FAMILIES = {"bilstm": (_load_bilstm, _bilstm_logits), "transformer": (_load_transformer, _transformer_logits)}
