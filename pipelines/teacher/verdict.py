"""Whether a fine-tuned teacher learnt the task: its selection split's metrics against the majority-class
baseline (and, on binary tasks, Matthews correlation), so that `distill run` says a failed teacher is one
instead of distilling it. Pure numpy: no torch, no model."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import metrics as task_metrics

MCC_FLOOR = 0.05  # a binary teacher whose predictions correlate less than this with the gold labels learnt nothing
TRY = ("more epochs (--set finetune.epochs=N)", "another learning rate (--set finetune.lr=auto tries three)",
       "a larger backbone (--set teacher.model=DIR_OR_HUB_ID)",
       "a teacher of your own (--teacher DIR --set teacher.finetune=false)")


def assess(metric_names: tuple[str, ...], pred: np.ndarray, gold: np.ndarray, num_labels: int, split: str,
           ) -> dict[str, Any]:
    """The teacher's predictions `pred` on `split` judged: its metrics, the majority class's, Matthews correlation
    (binary tasks), the predicted class counts, and the reasons it failed (none: it learnt something): its first
    metric no better than the best constant prediction's, MCC below MCC_FLOOR, or one class for every row."""
    keep = np.asarray(gold) >= 0
    pred, gold = np.asarray(pred)[keep], np.asarray(gold)[keep]
    own = task_metrics.compute(metric_names, pred, gold)
    label, majority = task_metrics.majority_class(metric_names, gold, num_labels)
    first, reasons = metric_names[0], []
    constant = [task_metrics.compute((first,), np.full(len(gold), c), gold)[first] for c in range(num_labels)]
    if own[first] <= max(constant):  # F1 of the positive class, say, is best for a constant prediction of it
        reasons.append(f"its {split} {first} {own[first]:.4f} is no better than predicting class "
                       f"{int(np.argmax(constant))} for every row ({max(constant):.4f})")
    mcc = round(task_metrics.mcc(pred, gold), 6) if num_labels == 2 else None
    if mcc is not None and mcc < MCC_FLOOR:
        reasons.append(f"its {split} Matthews correlation is {mcc:.3f} (below {MCC_FLOOR})")
    predicted = np.bincount(pred, minlength=num_labels)
    if len(pred) > 1 and (predicted > 0).sum() == 1:
        reasons.append(f"it predicts class {int(predicted.argmax())} for every {split} row")
    return {"split": split, "metrics": own, "majority": {"label": label, **majority}, "mcc": mcc,
            "predicted_distribution": predicted.tolist(), "failed": bool(reasons), "reasons": reasons}


def failure_message(check: dict[str, Any], teacher_dir: str) -> str:
    """What `distill run` says when it stops before scoring with a failed teacher: why, and what to try."""
    return (f"the fine-tuned teacher at {teacher_dir} did not learn the task: {'; '.join(check['reasons'])}. "
            f"Its students could only copy that. Try {', '.join(TRY[:-1])}, or {TRY[-1]}; or distil it anyway "
            "with --set teacher.force=true")
