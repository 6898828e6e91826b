"""Student directories: `save_student` writes weights (safetensors), vocab.json and config.json; `load_student`
reads them back as a model in eval mode; `load_metrics` reads metrics.json (written by `distill train`);
`count_parameters` sizes a model for reports and stats."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from ..errors import DataError
from .models import StudentConfig, build_model, input_names
from .tokenizer import Tokenizer
from .vocab import Vocab

WEIGHTS = "model.safetensors"
VOCAB = "vocab.json"
CONFIG = "config.json"
METRICS = "metrics.json"


def save_student(out: Path, model: nn.Module, cfg: StudentConfig, vocab: Vocab, tokenizer: Tokenizer,
                 task: dict, extra: dict | None = None) -> None:
    """Weights (safetensors), vocab.json and config.json (model, tokeniser, task labels)."""
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(out / WEIGHTS))
    vocab.save(out / VOCAB)
    config = {"model": cfg.to_dict(), "tokenizer": tokenizer.to_dict(), "task": task,
              "label_names": list(task.get("label_names", [])), "inputs": input_names(cfg.arch),
              **(extra or {})}
    (out / CONFIG).write_text(json.dumps(config, indent=1, ensure_ascii=False) + "\n", "utf-8")


@dataclass
class LoadedStudent:
    model: nn.Module
    cfg: StudentConfig
    vocab: Vocab
    tokenizer: Tokenizer
    config: dict


def load_student(student_dir: str | Path) -> LoadedStudent:
    """A student directory back as a model in eval mode (weights read with safetensors: no code can run)."""
    from safetensors.torch import load_file

    d = Path(student_dir)
    for name in (WEIGHTS, VOCAB, CONFIG):
        if not (d / name).is_file():
            raise DataError(f"{d}: not a student directory (no {name}); pass the --out of `distill train`")
    config = json.loads((d / CONFIG).read_text("utf-8"))
    cfg = StudentConfig.from_dict(config["model"])
    model = build_model(cfg)
    model.load_state_dict(load_file(str(d / WEIGHTS)))
    model.eval()
    tok = config.get("tokenizer", {})
    return LoadedStudent(model, cfg, Vocab.load(d / VOCAB), Tokenizer(lowercase=tok.get("lowercase", True)), config)


def load_metrics(student_dir: str | Path) -> dict:
    """A student directory's metrics.json (dev metrics and per-epoch history, written by `distill train`)."""
    path = Path(student_dir) / METRICS
    if not path.is_file():
        raise DataError(f"{student_dir}: no {METRICS}; pass a student directory written by `distill train`")
    return json.loads(path.read_text("utf-8"))


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Weights in all, in the embedding table (frozen pretrained rows included), and outside it."""
    frozen = model.embedding.frozen.numel()
    total = sum(p.numel() for p in model.parameters()) + frozen
    emb = model.embedding.weight.numel() + frozen
    return {"total": total, "embedding": emb, "without_embedding": total - emb, "frozen_embedding": frozen}
