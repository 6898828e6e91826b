"""The held-out slice of the training originals that model selection uses, so that dev is only reported.

`select_on: holdout` (the default of `distill train`, `distill finetune-teacher` and `distill run`): a fixed,
seeded, stratified slice of the training split's examples (HOLDOUT_FRACTION of them, at most HOLDOUT_MAX, with
the split's class shares) is left out of training, together with every synthetic row made from them, and the
best epoch, early stopping and the teacher's best checkpoint are chosen on it. The slice depends only on the
split's labels and on HOLDOUT_SEED, never on the student's seed: every seed and both student families select
on the same examples, and a teacher fine-tuned by the project on the same split chose its checkpoint on the
same ones (and, refitted on a small split, then trained on them too). `select_on: dev` is the old
behaviour (selection on the first dev split), kept for comparison; the report says which was used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import DataError

SELECT_ON = ("holdout", "dev")
HOLDOUT_SPLIT = "holdout"  # its name beside the dev splits in metrics, histories and the report
HOLDOUT_FRACTION = 0.05
HOLDOUT_MAX = 2000
HOLDOUT_SEED = 0


def holdout_size(n_examples: int) -> int:
    """Examples held out of a split of n: 5%, at least 1, at most 2,000."""
    return min(HOLDOUT_MAX, max(1, round(HOLDOUT_FRACTION * n_examples)))


def holdout_examples(labels: np.ndarray) -> np.ndarray:
    """The held-out example indices (sorted) of a split whose examples have these label ids (-1: none), drawn
    with the split's class shares (stratified: a small holdout drawn at random can lean to one class, and then
    a student that predicts that class looks best on it). Within each class, examples are taken in the order of
    one seeded permutation of the whole split."""
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) < 2:
        raise DataError(f"a holdout needs at least 2 training examples, found {len(labels)}; "
                        "use --select-on dev (select_on: dev in a run config)")
    order = np.random.default_rng(HOLDOUT_SEED).permutation(len(labels))
    classes, counts = np.unique(labels, return_counts=True)
    quotas = class_quotas(holdout_size(len(labels)), counts)
    picked = [order[labels[order] == c][:q] for c, q in zip(classes, quotas)]
    return np.sort(np.concatenate(picked))


def class_quotas(k: int, counts: np.ndarray) -> np.ndarray:
    """k split among classes in proportion to their counts (largest remainder; ties to the earlier class)."""
    exact = k * counts / counts.sum()
    quotas = np.floor(exact).astype(np.int64)
    extra = np.argsort(-(exact - quotas), kind="stable")[:k - quotas.sum()]
    quotas[extra] += 1
    return quotas


@dataclass
class HoldoutMask:
    """Which rows of a transfer or scored set belong to the holdout (originals and the rows made from them)."""

    held_out: np.ndarray  # bool [N]
    examples: int  # held-out examples
    of_examples: int  # examples the slice was drawn from

    def record(self) -> dict:
        return {"select_on": "holdout", "examples": self.examples, "of_examples": self.of_examples,
                "rows": int(self.held_out.sum()), "fraction": HOLDOUT_FRACTION, "max": HOLDOUT_MAX,
                "seed": HOLDOUT_SEED}


def holdout_rows(source_index: np.ndarray, is_original: np.ndarray, gold: np.ndarray, where: str) -> HoldoutMask:
    """The holdout of a transfer set, from its `source_index` (the row of the original in the training split),
    `is_original` and gold label columns. The split is read back off its labelled originals (its size: the
    largest source index + 1; its labels: theirs), so the slice is the one a teacher fine-tuned on that split
    held out; unlabelled text augmented after the split (`distill augment --input`) is never held out."""
    labelled = is_original & (gold >= 0)
    originals = source_index[labelled]
    if len(originals) == 0:
        raise DataError("the set has no original rows with gold labels to hold out (a set made from unlabelled "
                        "text?); use --select-on dev (select_on: dev in a run config)", where)
    labels = np.full(int(originals.max()) + 1, -1, dtype=np.int64)
    labels[originals] = gold[labelled]
    chosen = holdout_examples(labels)
    return HoldoutMask(np.isin(source_index, chosen), int(np.isin(chosen, originals).sum()), len(labels))


def split_scores(scores: dict) -> tuple[dict, dict | None]:
    """An evaluation's metrics per split, as (the dev splits', the holdout's or None)."""
    return {k: v for k, v in scores.items() if k != HOLDOUT_SPLIT}, scores.get(HOLDOUT_SPLIT)
