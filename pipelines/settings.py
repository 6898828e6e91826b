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


EPOCHS_EXAMPLES = 50_000  # `epochs: null` trains on about this many examples in all (`epochs_for`)
EPOCHS_RANGE = (3, 10)  # ... but never fewer than 3 epochs (the usual recipe) nor more than 10
LR_SEARCH = (2e-5, 3e-5, 5e-5)  # the rates `lr: auto` tries (the usual recipe's range)


def epochs_for(n_examples: int) -> int:
    """Epochs by data size: 3 (the usual recipe) from 16,667 training examples up, more for smaller tasks so
    that a few thousand examples still get about EPOCHS_EXAMPLES example-updates, at most 10 (RTE, MRPC)."""
    low, high = EPOCHS_RANGE
    return int(min(high, max(low, -(-EPOCHS_EXAMPLES // max(1, n_examples)))))


def parse_lr(value: float | str) -> float | str:
    """A learning rate as given in YAML or on the command line: a number (5e-5, "3e-5") or "auto"; anything
    else is returned unchanged for `TrainSettings.problems` to name."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


@dataclass(frozen=True)
class TrainSettings:
    """Fine-tuning hyper-parameters of `distill finetune-teacher`: the usual recipe (AdamW, batches of 32
    examples, 10% warm-up then linear decay), with epochs by data size unless given."""

    epochs: int | None = setting(
        None,
        help="passes over the training split; left out: by data size (3 from 16,667 examples up, up to 10 for "
             "small tasks; the number used is recorded)")
    lr: float | str = setting(
        5e-5,
        help=f"AdamW peak learning rate, or auto: try {', '.join(f'{r:g}' for r in LR_SEARCH)} on a subset of "
             "the training split, keep the best on the holdout (costs about 3 short fine-tunes more)")
    weight_decay: float = setting(0.01, help="AdamW decoupled weight decay (not on biases and LayerNorm weights)")
    warmup_ratio: float = setting(
        0.1,
        help="fraction of all steps spent warming up linearly from 0; then linear decay to 0")
    batch_size: int = setting(32, help="examples per training batch (grouped by length to save padding)")
    grad_clip: float = setting(1.0, help="max global gradient norm")
    eval_steps: int = setting(0, help="also evaluate every N optimizer steps (0: only at the end of each epoch)")
    eval_batch_tokens: int | None = setting(
        None,
        help="padded tokens per evaluation batch (speed only); left out: per device")
    seed: int = setting(0, help="batch order, dropout and the new classification head")

    def __post_init__(self) -> None:
        object.__setattr__(self, "lr", parse_lr(self.lr))  # "3e-5" from a flag is the number 3e-5

    def problems(self) -> list[str]:
        """What is wrong with these settings (empty when valid), for a ConfigError listing all of them."""
        out = [f"[{name}] must be >= 1, got {getattr(self, name)}"
               for name in ("epochs", "batch_size", "eval_batch_tokens")
               if getattr(self, name) is not None and getattr(self, name) < 1]
        if not (self.lr == "auto" or isinstance(self.lr, float) and self.lr > 0):
            out.append(f"[lr] must be a number > 0 or auto, got {self.lr!r}")
        if self.weight_decay < 0:
            out.append(f"[weight_decay] must be >= 0, got {self.weight_decay}")
        if not 0 <= self.warmup_ratio < 1:
            out.append(f"[warmup_ratio] must be in [0, 1), got {self.warmup_ratio}")
        if self.grad_clip <= 0:
            out.append(f"[grad_clip] must be > 0, got {self.grad_clip}")
        if self.eval_steps < 0:
            out.append(f"[eval_steps] must be >= 0, got {self.eval_steps}")
        return out
