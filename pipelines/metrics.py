"""Task metrics on label ids: accuracy, F1 of the positive class (id 1), Matthews correlation."""

from __future__ import annotations

import numpy as np


def accuracy(pred: np.ndarray, gold: np.ndarray) -> float:
    return float(np.mean(pred == gold)) if len(gold) else 0.0


def f1(pred: np.ndarray, gold: np.ndarray, positive: int = 1) -> float:
    """F1 of class `positive`, as GLUE reports it for MRPC and QQP."""
    tp = int(np.sum((pred == positive) & (gold == positive)))
    fp = int(np.sum((pred == positive) & (gold != positive)))
    fn = int(np.sum((pred != positive) & (gold == positive)))
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def mcc(pred: np.ndarray, gold: np.ndarray) -> float:
    """Matthews correlation (binary), as GLUE reports it for CoLA; 0 when undefined."""
    tp = float(np.sum((pred == 1) & (gold == 1)))
    tn = float(np.sum((pred == 0) & (gold == 0)))
    fp = float(np.sum((pred == 1) & (gold == 0)))
    fn = float(np.sum((pred == 0) & (gold == 1)))
    denom = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return float((tp * tn - fp * fn) / denom) if denom else 0.0


METRICS = {"accuracy": accuracy, "f1": f1, "mcc": mcc}


def compute(metric_names: tuple[str, ...] | list[str], pred: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    """The named metrics over rows that have a gold label (gold >= 0)."""
    pred, gold = np.asarray(pred), np.asarray(gold)
    keep = gold >= 0
    return {name: round(METRICS[name](pred[keep], gold[keep]), 6) for name in metric_names}
