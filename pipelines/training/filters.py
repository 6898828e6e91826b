"""Steering the transfer set at training time: which scored rows a distilled student learns from.

Three filters, off by default, each a TrainConfig setting (so each enters the student's fingerprint), applied
after the holdout is set aside and before training; what each removed is counted into stats.json,
metrics.json and the report:
- `min_confidence`: drop synthetic rows whose teacher's top softmax probability is below it (a teacher unsure
  of a mangled sentence teaches noise);
- `drop_disagreeing`: drop the originals whose gold label the teacher's argmax contradicts (with the default
  alpha 0 the student learns the teacher's logits there, which the gold label says are wrong);
- `rebalance`: subsample the synthetic rows so that their classes, by the teacher's argmax, have the
  originals' gold class shares (augmentation can tilt them: n-grams of positive reviews read as neutral).
Baselines learn from the gold originals alone: no filter applies to them. Rebalancing picks rows in the order
of one permutation seeded by FILTER_SEED, never by the student's seed, so every seed learns from the same rows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..metrics import softmax

if TYPE_CHECKING:
    from ..student.config import TrainConfig

FILTER_SEED = 0


def steer(cfg: TrainConfig, gold: np.ndarray, is_original: np.ndarray, teacher: np.ndarray,
          among: np.ndarray) -> tuple[np.ndarray, dict[str, int]]:
    """The rows the filters keep (a mask over all rows) and how many each one removed, looking only at the
    rows in `among` (those still meant for training)."""
    keep = np.ones(len(gold), dtype=bool)
    counts: dict[str, int] = {}
    if cfg.baseline:
        return keep, counts
    synthetic = among & ~is_original
    if cfg.min_confidence > 0:
        low = synthetic & (softmax(teacher).max(axis=1) < cfg.min_confidence)
        keep &= ~low
        counts["low_confidence_synthetic"] = int(low.sum())
    if cfg.drop_disagreeing:
        wrong = among & is_original & (gold >= 0) & (teacher.argmax(axis=1) != gold)
        keep &= ~wrong
        counts["disagreeing_originals"] = int(wrong.sum())
    if cfg.rebalance:
        extra = surplus_rows(teacher.argmax(axis=1), synthetic & keep, gold[among & is_original & (gold >= 0) & keep],
                             teacher.shape[1])
        keep &= ~extra
        counts["rebalanced_synthetic"] = int(extra.sum())
    return keep, counts


def surplus_rows(predicted: np.ndarray, synthetic: np.ndarray, original_gold: np.ndarray,
                 num_labels: int) -> np.ndarray:
    """The synthetic rows to drop so that the rest have the originals' class shares: the largest set whose
    count of class c is at most the synthetic rows of class c, for every c; rows are kept in the order of one
    permutation of FILTER_SEED."""
    drop = np.zeros(len(predicted), dtype=bool)
    shares = np.bincount(original_gold, minlength=num_labels) / max(1, len(original_gold))
    have = np.bincount(predicted[synthetic], minlength=num_labels)
    if not synthetic.any() or shares.sum() == 0:
        return drop
    total = min(have[c] / shares[c] for c in range(num_labels) if shares[c] > 0)
    quota = np.floor(total * shares + 1e-9).astype(np.int64)
    order = np.random.default_rng(FILTER_SEED).permutation(len(predicted))
    for c in range(num_labels):
        rows = order[synthetic[order] & (predicted[order] == c)]
        drop[rows[quota[c]:]] = True
    return drop
