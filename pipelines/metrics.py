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


def majority_class(metric_names: tuple[str, ...] | list[str], gold: np.ndarray, num_labels: int,
                   ) -> tuple[int, dict[str, float]]:
    """The best constant prediction (the most frequent gold label; ties to the smaller id) and the named metrics
    of predicting it for every row that has a gold label: what any model must beat."""
    gold = np.asarray(gold, dtype=np.int64)
    gold = gold[gold >= 0]
    label = int(np.bincount(gold, minlength=num_labels).argmax()) if len(gold) else 0
    return label, compute(metric_names, np.full(len(gold), label), gold)


ECE_BINS = 15


def softmax(logits: np.ndarray) -> np.ndarray:
    """[N, C] class probabilities of logits, in float64 (shifted by each row's maximum)."""
    z = np.asarray(logits, dtype=np.float64)
    p = np.exp(z - z.max(axis=1, keepdims=True)) if len(z) else z
    return p / p.sum(axis=1, keepdims=True) if len(z) else p


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """[N, C] log class probabilities of logits, in float64."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True) if len(z) else z
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True)) if len(z) else z


def mean_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean of -log softmax(logits)[label] over the rows with a label (gold >= 0)."""
    keep = np.asarray(labels) >= 0
    log_p = log_softmax(np.asarray(logits)[keep])
    return round(float(-log_p[np.arange(len(log_p)), np.asarray(labels)[keep]].mean()), 6) if len(log_p) else 0.0


def class_view(logits: np.ndarray, gold: np.ndarray, num_labels: int) -> dict:
    """Per-class precision and recall, the confusion matrix (rows: gold label, columns: predicted) and the
    expected calibration error (ECE_BINS equal-width bins of the top softmax probability: the rows' share in
    each bin times |accuracy - mean confidence| there, summed), over rows with a gold label."""
    logits, gold = np.asarray(logits, dtype=np.float64), np.asarray(gold)
    keep = gold >= 0
    logits, gold = logits[keep], gold[keep]
    pred = logits.argmax(1) if len(logits) else np.zeros(0, dtype=np.int64)
    confusion = np.zeros((num_labels, num_labels), dtype=np.int64)
    np.add.at(confusion, (gold, pred), 1)
    predicted, actual = confusion.sum(0), confusion.sum(1)
    diag = np.diag(confusion)
    precision = np.divide(diag, predicted, out=np.zeros(num_labels), where=predicted > 0)
    recall = np.divide(diag, actual, out=np.zeros(num_labels), where=actual > 0)
    confidence = softmax(logits).max(1) if len(logits) else np.zeros(0)
    bins = np.minimum((confidence * ECE_BINS).astype(np.int64), ECE_BINS - 1)
    correct = (pred == gold).astype(np.float64)
    ece = sum(abs(correct[bins == b].mean() - confidence[bins == b].mean()) * np.mean(bins == b)
              for b in range(ECE_BINS) if np.any(bins == b))
    return {"confusion": confusion.tolist(), "precision": np.round(precision, 6).tolist(),
            "recall": np.round(recall, 6).tolist(), "ece": round(float(ece), 6), "rows": int(len(gold))}
