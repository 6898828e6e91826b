"""Settings dataclasses that a stage's config and its library code share, importable without torch (so that
`distill COMMAND --help` answers at once)."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ConfigError
from .flags import setting

LOSSES = ("mse", "kl", "ce")  # distill train --loss: mse on logits, kl at a temperature, ce on hard labels only
EXPORT_FORMATS = ("torchscript", "onnx")  # what `distill train --export` can write beside the weights


def check_loss(name: str, alpha: float, temperature: float) -> list[str]:
    """Problems with a loss setting (empty when valid), for a ConfigError listing all of them."""
    problems = []
    if name not in LOSSES:
        problems.append(f"[loss] unknown loss '{name}'; choose one of {', '.join(LOSSES)}")
    if not 0.0 <= alpha <= 1.0:
        problems.append(f"[alpha] must be in [0, 1], got {alpha}")
    if not temperature > 0:
        problems.append(f"[temperature] must be > 0, got {temperature}")
    return problems


def parse_formats(spec: str) -> tuple[str, ...]:
    """`torchscript,onnx` | `auto` (both; ONNX skipped when its packages are missing) | `none`."""
    if spec in ("auto", "none"):
        return (spec,)
    names = tuple(s.strip() for s in spec.split(",") if s.strip())
    bad = [n for n in names if n not in EXPORT_FORMATS]
    if bad:
        raise ConfigError(f"[export] unknown format(s) {bad}; choose from {', '.join(EXPORT_FORMATS)}, auto or none")
    return names


@dataclass(frozen=True)
class TrainSettings:
    """Fine-tuning hyper-parameters of `distill finetune-teacher` (the reference teacher's recipe by default)."""

    epochs: int = setting(2, help="passes over the training split")
    lr: float = setting(5e-5, help="AdamW peak learning rate")
    weight_decay: float = setting(0.01, help="AdamW decoupled weight decay (not on biases and LayerNorm weights)")
    warmup_ratio: float = setting(
        0.06,
        help="fraction of all steps spent warming up linearly from 0; then linear decay to 0")
    batch_tokens: int = setting(1024, help="padded tokens per training batch (batches are grouped by length)")
    grad_clip: float = setting(1.0, help="max global gradient norm")
    eval_steps: int = setting(0, help="also evaluate every N optimizer steps (0: only at the end of each epoch)")
    eval_batch_tokens: int | None = setting(
        None,
        help="padded tokens per evaluation batch (speed only); None: per device")
    seed: int = setting(0, help="batch order, dropout and the new classification head")
